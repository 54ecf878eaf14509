"""Containers through the CRI server's gRPC stubs, against the real kernel (root):
create, start, logs, ExecSync, stop, status, list, remove, and the sandbox's
Stop/Remove taking its containers along. The server and its isolation: conftest.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import grpc
import pytest

from cri.api import api_pb2
from tests.integration.cri.support import NEEDS_CRI, Cri, alive, mounted, wait_for

pytestmark = NEEDS_CRI

COMMAND = ["sh", "-c", "echo hello; echo oops >&2; sleep 60"]


def test_run_exec_stop_remove(cri: Cri) -> None:
    sandbox_id = cri.run_sandbox("web")
    sandbox = cri.runtime.PodSandboxStatus(
        api_pb2.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=True)
    )
    pod_ip = sandbox.status.network.ip
    netns = json.loads(sandbox.info["info"])["netNamespacePath"]
    container_id = cri.create(sandbox_id, "app", COMMAND)
    assert len(container_id) == 64
    created = cri.status(container_id).status
    assert created.state == api_pb2.CONTAINER_CREATED
    assert created.created_at > 0
    assert cri.list(state={"state": api_pb2.CONTAINER_CREATED}) == [container_id]

    cri.start_container(container_id)
    status = cri.status(container_id).status
    assert status.state == api_pb2.CONTAINER_RUNNING
    assert status.started_at >= status.created_at > 0
    assert status.metadata.name == "app"
    assert status.labels == {"name": "app"}
    assert status.image_ref
    assert status.log_path == str(cri.logs / "web" / "app" / "0.log")
    pid = cri.pid(container_id)
    assert alive(pid)
    assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(netns).st_ino
    assert cri.list() == [container_id]
    assert cri.list(id=container_id[:12]) == [container_id]
    assert cri.list(pod_sandbox_id=sandbox_id) == [container_id]
    assert cri.list(label_selector={"name": "app"}) == [container_id]
    assert cri.list(label_selector={"name": "other"}) == []
    assert cri.list(state={"state": api_pb2.CONTAINER_RUNNING}) == [container_id]

    log = Path(status.log_path)
    wait_for(lambda: log.exists() and "oops" in log.read_text(), "the log lines")
    lines = [line.split(" ", 1)[1] for line in log.read_text().splitlines()]
    assert "stdout F hello" in lines
    assert "stderr F oops" in lines

    # Log rotation: the kubelet moves the file away and asks for a new one.
    rotated = log.with_suffix(".log.1")
    log.rename(rotated)
    cri.runtime.ReopenContainerLog(api_pb2.ReopenContainerLogRequest(container_id=container_id))
    assert log.exists()
    with open(f"/proc/{pid}/fd/1", "w") as stdout:  # the container's stdout pipe
        stdout.write("rotated\n")
    wait_for(lambda: "rotated" in log.read_text(), "a line in the reopened log")
    assert "rotated" not in rotated.read_text()

    hostname = cri.exec(container_id, ["cat", "/etc/hostname"])
    assert hostname.exit_code == 0
    assert hostname.stdout.decode().strip() == "web"
    assert cri.exec(container_id, ["hostname"]).stdout.decode().strip() == "web"
    # The pod's eth0 and IP (busybox here has no ip applet: the kernel's tables).
    assert cri.exec(container_id, ["cat", "/sys/class/net/eth0/operstate"]).exit_code == 0
    assert f"{pod_ip}\n" in cri.exec(container_id, ["cat", "/proc/net/fib_trie"]).stdout.decode()
    assert cri.exec(container_id, ["sh", "-c", "echo err >&2; exit 3"]).exit_code == 3
    assert cri.exec(container_id, ["sh", "-c", "echo err >&2; exit 3"]).stderr == b"err\n"
    with pytest.raises(grpc.RpcError) as late:
        cri.exec(container_id, ["sleep", "10"], timeout=1)
    assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

    for _ in range(2):
        cri.runtime.StopContainer(
            api_pb2.StopContainerRequest(container_id=container_id, timeout=2)
        )
    stopped = cri.status(container_id).status
    assert stopped.state == api_pb2.CONTAINER_EXITED
    assert stopped.exit_code in (137, 143)
    assert stopped.reason == "Error"
    assert stopped.finished_at >= stopped.started_at
    assert not alive(pid)
    assert cri.list(state={"state": api_pb2.CONTAINER_RUNNING}) == []

    for _ in range(2):
        cri.runtime.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=container_id))
    assert cri.list() == []
    assert mounted(container_id) == []
    assert cri.state.joinpath("containers", container_id).exists() is False
    with pytest.raises(grpc.RpcError) as gone:
        cri.status(container_id)
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    # Unknown ids: Stop and Remove succeed.
    cri.runtime.StopContainer(api_pb2.StopContainerRequest(container_id="f" * 64))
    cri.runtime.RemoveContainer(api_pb2.RemoveContainerRequest(container_id="f" * 64))
    # The name is free again.
    again = cri.create(sandbox_id, "app", COMMAND)
    assert cri.list() == [again]


def test_completed_container(cri: Cri) -> None:
    sandbox_id = cri.run_sandbox("job")
    container_id = cri.run_to_exit(sandbox_id, "true", ["true"])
    status = cri.status(container_id).status
    assert status.exit_code == 0
    assert status.reason == "Completed"
    assert status.finished_at >= status.started_at > 0
    assert cri.list(state={"state": api_pb2.CONTAINER_EXITED}) == [container_id]


def test_container_stats(cri: Cri) -> None:
    sandbox_id = cri.run_sandbox("stats")
    burner = ["sh", "-c", "dd if=/dev/zero of=/dev/null bs=1M count=200; sleep 60"]
    container_id = cri.create(sandbox_id, "burn", burner)
    cri.start_container(container_id)
    waiting = cri.create(sandbox_id, "idle", ["true"])  # created, never started

    def stats() -> api_pb2.ContainerStats:
        request = api_pb2.ContainerStatsRequest(container_id=container_id)
        result: api_pb2.ContainerStats = cri.runtime.ContainerStats(request).stats
        return result

    first = stats()
    assert first.cpu.HasField("usage_nano_cores")
    wait_for(lambda: stats().cpu.usage_core_nano_seconds.value > 0, "CPU usage")
    sample = stats()
    assert sample.attributes.id == container_id
    assert sample.attributes.metadata.name == "burn"
    assert sample.attributes.labels == {"name": "burn"}
    assert sample.cpu.timestamp > 0
    assert sample.cpu.usage_core_nano_seconds.value >= first.cpu.usage_core_nano_seconds.value
    assert sample.memory.timestamp > 0
    assert sample.memory.working_set_bytes.value > 0
    assert sample.memory.usage_bytes.value >= sample.memory.working_set_bytes.value
    assert sample.writable_layer.fs_id.mountpoint == str(cri.images.root)
    assert sample.writable_layer.HasField("inodes_used")

    def listed(**filter: Any) -> list[str]:
        request = api_pb2.ListContainerStatsRequest(
            filter=api_pb2.ContainerStatsFilter(**filter) if filter else None
        )
        return sorted(s.attributes.id for s in cri.runtime.ListContainerStats(request).stats)

    both = sorted([container_id, waiting])
    assert listed() == both
    assert listed(id=container_id) == [container_id]
    assert listed(id=container_id[:12]) == [container_id]
    assert listed(pod_sandbox_id=sandbox_id) == both
    assert listed(label_selector={"name": "burn"}) == [container_id]
    assert listed(label_selector={"name": "other"}) == []
    assert listed(id="f" * 64) == []

    with pytest.raises(grpc.RpcError) as unknown:
        cri.runtime.ContainerStats(api_pb2.ContainerStatsRequest(container_id="f" * 64))
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND

    # An exited container has no stats in the list.
    cri.runtime.StopContainer(api_pb2.StopContainerRequest(container_id=container_id))
    assert listed() == [waiting]


def test_bad_requests(cri: Cri) -> None:
    sandbox_id = cri.run_sandbox("bad")
    with pytest.raises(grpc.RpcError) as missing:
        cri.create(sandbox_id, "x", ["true"], image="127.0.0.1:1/kubeling/missing:1")
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert "kubeling/missing:1" in str(missing.value.details())
    with pytest.raises(grpc.RpcError) as no_metadata:
        cri.runtime.CreateContainer(
            api_pb2.CreateContainerRequest(
                pod_sandbox_id=sandbox_id,
                config=api_pb2.ContainerConfig(image={"image": cri.image}),
            )
        )
    assert no_metadata.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "config.metadata" in str(no_metadata.value.details())
    with pytest.raises(grpc.RpcError) as no_sandbox:
        cri.create("e" * 64, "x", ["true"])
    assert no_sandbox.value.code() == grpc.StatusCode.NOT_FOUND
    first = cri.create(sandbox_id, "dup", ["true"])
    with pytest.raises(grpc.RpcError) as taken:
        cri.create(sandbox_id, "dup", ["true"])
    assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert cri.list() == [first]
    with pytest.raises(grpc.RpcError) as not_running:
        cri.exec(first, ["true"])
    assert not_running.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_host_pid_container_leaves_nothing(cri: Cri) -> None:
    sandbox_id = cri.run_sandbox("hostpid")
    config = api_pb2.ContainerConfig(
        metadata={"name": "hp"},
        image={"image": cri.image},
        command=["sh", "-c", "sleep 1001 & exec sleep 1002"],
        linux={"security_context": {"namespace_options": {"pid": api_pb2.NODE}}},
    )
    container_id = str(
        cri.runtime.CreateContainer(
            api_pb2.CreateContainerRequest(pod_sandbox_id=sandbox_id, config=config)
        ).container_id
    )
    cri.start_container(container_id)
    pid = cri.pid(container_id)
    assert os.stat(f"/proc/{pid}/ns/pid").st_ino == os.stat("/proc/self/ns/pid").st_ino
    children = Path(f"/proc/{pid}/task/{pid}/children")
    wait_for(lambda: children.read_text().split(), "the background sleep")
    child = int(children.read_text().split()[0])
    cri.runtime.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=container_id))
    assert cri.list() == []
    assert not alive(pid)
    wait_for(lambda: not alive(child), "the background sleep to be killed")
    for controller in os.listdir("/sys/fs/cgroup"):
        path = Path(f"/sys/fs/cgroup/{controller}{cri.cgroup_parent}/{container_id}")
        assert not path.exists(), path


def test_sandbox_stop_and_remove_take_the_containers(cri: Cri) -> None:
    sandbox_id = cri.run_sandbox("pod")
    container_id = cri.create(sandbox_id, "app", COMMAND)
    cri.start_container(container_id)
    pid = cri.pid(container_id)
    cri.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=sandbox_id))
    assert cri.status(container_id).status.state == api_pb2.CONTAINER_EXITED
    assert not alive(pid)
    cri.runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id))
    assert cri.list() == []
    assert mounted(container_id) == []
    assert mounted(sandbox_id) == []


def test_remove_sandbox_with_a_running_container(cri: Cri) -> None:
    sandbox_id = cri.run_sandbox("busy")
    container_id = cri.create(sandbox_id, "app", COMMAND)
    cri.start_container(container_id)
    pid = cri.pid(container_id)
    cri.runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id))
    assert cri.list() == []
    assert not alive(pid)
    assert mounted(container_id) == []
    assert not cri.state.joinpath("containers", container_id).exists()
    for controller in os.listdir("/sys/fs/cgroup"):
        path = Path(f"/sys/fs/cgroup/{controller}{cri.cgroup_parent}/{container_id}")
        assert not path.exists(), path
