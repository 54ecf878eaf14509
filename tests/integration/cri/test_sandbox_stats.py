"""PodSandboxStats and ListPodSandboxStats through the CRI server's gRPC stubs,
against the real kernel (root): a pod with its own pod-level cgroup (as the kubelet
gives each pod) reports the CPU and memory of that cgroup, its processes, the
counters of its eth0 (bytes received grow after traffic sent to the pod's own
address on the test's bridge) and its containers' stats. The server: conftest.py.
"""

from __future__ import annotations

import socket
from typing import Any

import grpc
import pytest

from cri.api import api_pb2
from tests.integration.cri.support import NEEDS_CRI, Cri, wait_for

pytestmark = NEEDS_CRI

BURN = ["sh", "-c", "while :; do :; done"]
SLEEP = ["sleep", "600"]
DATAGRAMS = 200
PAYLOAD = b"x" * 1000


def stats(cri: Cri, sandbox_id: str) -> api_pb2.PodSandboxStats:
    request = api_pb2.PodSandboxStatsRequest(pod_sandbox_id=sandbox_id)
    result: api_pb2.PodSandboxStats = cri.runtime.PodSandboxStats(request).stats
    return result


def listed(cri: Cri, **filter: Any) -> list[str]:
    request = api_pb2.ListPodSandboxStatsRequest(
        filter=api_pb2.PodSandboxStatsFilter(**filter) if filter else None
    )
    return sorted(s.attributes.id for s in cri.runtime.ListPodSandboxStats(request).stats)


def send_to_pod(address: str) -> None:
    """UDP datagrams to the pod's own address (port 9, discard: nobody listens)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for _ in range(DATAGRAMS):
            sender.sendto(PAYLOAD, (address, 9))


def test_pod_stats_from_its_cgroup_and_netns(cri: Cri) -> None:
    sandbox_id = cri.run_sandbox("web", cgroup_parent=f"{cri.cgroup_parent}/pod-web")
    pod_ip = cri.sandbox_status(sandbox_id).status.network.ip
    pause = stats(cri, sandbox_id).linux.process.process_count.value
    assert pause == 1  # kubeling's pause is one process
    burner = cri.create(sandbox_id, "burn", BURN)
    sleeper = cri.create(sandbox_id, "idle", SLEEP)
    for container_id in (burner, sleeper):
        cri.start_container(container_id)

    first = stats(cri, sandbox_id)
    assert first.attributes.id == sandbox_id
    assert first.attributes.metadata.name == "web"
    assert first.attributes.labels == {"pod": "web"}
    linux = first.linux
    assert linux.cpu.timestamp > 0
    assert linux.cpu.HasField("usage_nano_cores")
    assert linux.memory.working_set_bytes.value > 0
    assert linux.memory.usage_bytes.value >= linux.memory.working_set_bytes.value
    # The pause's processes and one per container (sh busy-looping, sleep).
    assert linux.process.process_count.value == pause + 2
    assert sorted(c.attributes.id for c in linux.containers) == sorted([burner, sleeper])
    assert {c.attributes.metadata.name for c in linux.containers} == {"burn", "idle"}

    # A second sample gives the rate: about one core is busy.
    wait_for(
        lambda: stats(cri, sandbox_id).linux.cpu.usage_nano_cores.value > 200_000_000,
        "the pod's CPU rate",
    )
    later = stats(cri, sandbox_id).linux
    assert later.cpu.usage_core_nano_seconds.value > linux.cpu.usage_core_nano_seconds.value

    network = linux.network
    assert network.timestamp > 0
    assert network.default_interface.name == "eth0"
    assert [i.name for i in network.interfaces] == ["eth0"]
    received = network.default_interface.rx_bytes.value
    send_to_pod(pod_ip)
    wait_for(
        lambda: (
            stats(cri, sandbox_id).linux.network.default_interface.rx_bytes.value
            >= received + DATAGRAMS * len(PAYLOAD)
        ),
        "the bytes sent to the pod to be counted",
    )
    after = stats(cri, sandbox_id).linux.network.default_interface
    assert after.rx_errors.value == 0
    assert after.tx_bytes.value >= network.default_interface.tx_bytes.value

    # A container that exits leaves the process count and the containers' list.
    cri.runtime.StopContainer(api_pb2.StopContainerRequest(container_id=burner, timeout=0))
    final = stats(cri, sandbox_id).linux
    assert final.process.process_count.value == pause + 1
    assert [c.attributes.id for c in final.containers] == [sleeper]
    assert final.cpu.usage_core_nano_seconds.value >= later.cpu.usage_core_nano_seconds.value


def test_list_covers_the_ready_sandboxes_the_filter_selects(cri: Cri) -> None:
    web = cri.run_sandbox("web", cgroup_parent=f"{cri.cgroup_parent}/pod-web")
    db = cri.run_sandbox("db", cgroup_parent=f"{cri.cgroup_parent}/pod-db")
    gone = cri.run_sandbox("gone", cgroup_parent=f"{cri.cgroup_parent}/pod-gone")
    cri.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=gone))

    assert listed(cri) == sorted([web, db])
    assert listed(cri, id=web) == [web]
    assert listed(cri, id=db[:10]) == [db]
    assert listed(cri, id=gone) == []
    assert listed(cri, id="f" * 64) == []
    assert listed(cri, label_selector={"pod": "db"}) == [db]
    assert listed(cri, label_selector={"pod": "nothing"}) == []
    items = cri.runtime.ListPodSandboxStats(api_pb2.ListPodSandboxStatsRequest()).stats
    assert len({item.linux.process.process_count.value for item in items}) == 1  # pause alone
    assert all(item.linux.network.default_interface.name == "eth0" for item in items)

    with pytest.raises(grpc.RpcError) as unknown:
        stats(cri, "f" * 64)
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as stopped:
        stats(cri, gone)
    assert stopped.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_host_network_pod_has_no_network_stats(cri: Cri) -> None:
    config = cri.sandbox_config("host", cgroup_parent=f"{cri.cgroup_parent}/pod-host")
    config.linux.security_context.namespace_options.network = api_pb2.NODE
    response = cri.runtime.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config))
    result = stats(cri, response.pod_sandbox_id)
    assert not result.linux.HasField("network")
    assert result.linux.process.process_count.value > 0
    assert result.linux.memory.working_set_bytes.value > 0
