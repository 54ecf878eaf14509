"""Helpers shared by the CRI integration tests: commands, `ip -j` output, a pod CIDR
no route or address of the host overlaps, mounts and processes, and `Cri`, a real
CRI server on its own node with the stubs to drive it (conftest.py's `cri` fixture
makes one per test, test_sandbox.py a subclass of it) with `serving`, which starts it and
tears it down."""

from __future__ import annotations

import builtins
import contextlib
import ipaddress
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest

from cri.api import api_pb2, api_pb2_grpc
from cri.network import NetworkConfig
from cri.node import Node, open_node
from cri.runtime_service import RuntimeService
from cri.server import build_server
from cri.streaming.server import StreamingServer
from cri.supervisor.client import running_supervisor
from images.store import ImageStore
from tests.integration.runtime.support import alive as alive
from tests.integration.runtime.support import wait_for as _wait_for

CRI_TOOLS = ("ip", "iptables", "nsenter", "skopeo", "docker-registry")
# `pytestmark` of a module that drives a real server (conftest.py's `cri` fixture).
NEEDS_CRI = [
    pytest.mark.root,
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in CRI_TOOLS),
        reason=f"needs {', '.join(CRI_TOOLS)}",
    ),
]


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: exit {result.returncode}: {result.stderr}")
    return result


def in_netns(netns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run("nsenter", f"--net={netns}", *argv, check=check)


def ip_json(*argv: str, netns: str | None = None) -> list[dict[str, Any]]:
    command = ("ip", "-j", *argv)
    result = in_netns(netns, *command) if netns else run(*command)
    found: list[dict[str, Any]] = json.loads(result.stdout or "[]")
    return found


def free_cidr(second_octet: int) -> str:
    """A /24 of 10.<second_octet>.0.0/16 that no route or address of the host overlaps."""
    taken = []
    for entry in ip_json("-4", "route", "show", "table", "all"):
        dst = str(entry.get("dst", ""))
        if dst and dst != "default":
            with contextlib.suppress(ValueError):
                taken.append(ipaddress.ip_network(dst, strict=False))
    for iface in ip_json("-4", "addr", "show"):
        for info in iface.get("addr_info", []):
            taken.append(ipaddress.ip_network(f"{info['local']}/{info['prefixlen']}", strict=False))
    candidates = [ipaddress.ip_network(f"10.{second_octet}.{n}.0/24") for n in range(256)]
    random.shuffle(candidates)
    for candidate in candidates:
        if not any(candidate.overlaps(other) for other in taken):
            return str(candidate)
    raise AssertionError(f"no free /24 in 10.{second_octet}.0.0/16")


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    return _wait_for(predicate, what, timeout)


def mounted(fragment: str) -> list[str]:
    with open("/proc/self/mountinfo") as mountinfo:
        return [line.split()[4] for line in mountinfo if fragment in line.split()[4]]


@dataclass
class Cri:
    state: Path
    socket: str
    network: NetworkConfig
    images: ImageStore
    cgroup_parent: str
    image: str
    logs: Path
    node: Node | None = None
    server: grpc.Server | None = None
    service: RuntimeService | None = None
    streaming: StreamingServer | None = None
    channel: grpc.Channel | None = None
    runtime: Any = None
    image_service: Any = None

    def start(self) -> None:
        self.node = open_node(self.state, self.images, self.network)
        self.streaming = StreamingServer("127.0.0.1:0")
        self.streaming.start()
        self.server, self.service = build_server(
            self.socket, self.images, node=self.node, streaming=self.streaming, workers=8
        )
        self.channel = grpc.insecure_channel(f"unix://{self.socket}")
        self.runtime = api_pb2_grpc.RuntimeServiceStub(self.channel)
        self.image_service = api_pb2_grpc.ImageServiceStub(self.channel)

    def stop_server(self) -> None:
        if self.service is not None:
            self.service.close()
        if self.channel is not None:
            self.channel.close()
        if self.server is not None:
            self.server.stop(grace=None).wait()
        if self.streaming is not None:
            self.streaming.stop()
        self.channel = self.server = self.service = self.streaming = None

    def pull(self) -> str:
        request = api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=self.image))
        return str(self.image_service.PullImage(request).image_ref)

    def sandbox_config(self, name: str, cgroup_parent: str = "") -> api_pb2.PodSandboxConfig:
        return api_pb2.PodSandboxConfig(
            metadata={"name": name, "namespace": "test", "uid": f"uid-{name}"},
            hostname=name,
            log_directory=str(self.logs / name),
            linux={"cgroup_parent": cgroup_parent or self.cgroup_parent},
            labels={"pod": name},
        )

    def run_sandbox(self, name: str, cgroup_parent: str = "") -> str:
        config = self.sandbox_config(name, cgroup_parent)
        response = self.runtime.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config))
        return str(response.pod_sandbox_id)

    def create(
        self,
        sandbox_id: str,
        name: str,
        command: list[str],
        image: str = "",
        linux: dict[str, Any] | None = None,
    ) -> str:
        config = api_pb2.ContainerConfig(
            metadata={"name": name},
            image={"image": image or self.image},
            command=command,
            log_path=f"{name}/0.log",
            labels={"name": name},
            linux=linux,
        )
        request = api_pb2.CreateContainerRequest(
            pod_sandbox_id=sandbox_id,
            config=config,
            sandbox_config=self.sandbox_config(self.sandbox_name(sandbox_id)),
        )
        return str(self.runtime.CreateContainer(request).container_id)

    def sandbox_name(self, sandbox_id: str) -> str:
        request = api_pb2.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id)
        return str(self.runtime.PodSandboxStatus(request).status.metadata.name)

    def sandbox_status(
        self, sandbox_id: str, verbose: bool = False
    ) -> api_pb2.PodSandboxStatusResponse:
        request = api_pb2.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=verbose)
        response: api_pb2.PodSandboxStatusResponse = self.runtime.PodSandboxStatus(request)
        return response

    def start_container(self, container_id: str) -> None:
        self.runtime.StartContainer(api_pb2.StartContainerRequest(container_id=container_id))

    def run_to_exit(self, sandbox_id: str, name: str, command: list[str]) -> str:
        """Create and start a container, wait until it has exited; its id."""
        container_id = self.create(sandbox_id, name, command)
        self.start_container(container_id)
        wait_for(
            lambda: self.status(container_id).status.state == api_pb2.CONTAINER_EXITED,
            f"container {name} to exit",
        )
        return container_id

    def status(self, container_id: str, verbose: bool = False) -> api_pb2.ContainerStatusResponse:
        request = api_pb2.ContainerStatusRequest(container_id=container_id, verbose=verbose)
        response: api_pb2.ContainerStatusResponse = self.runtime.ContainerStatus(request)
        return response

    def pid(self, container_id: str) -> int:
        return int(json.loads(self.status(container_id, verbose=True).info["info"])["pid"])

    def exec(self, container_id: str, cmd: list[str], timeout: int = 0) -> Any:
        request = api_pb2.ExecSyncRequest(container_id=container_id, cmd=cmd, timeout=timeout)
        return self.runtime.ExecSync(request)

    def list(self, **filter: Any) -> list[str]:
        request = api_pb2.ListContainersRequest(filter=api_pb2.ContainerFilter(**filter))
        return [item.id for item in self.runtime.ListContainers(request).containers]

    def cgroup_dirs(self, relative: str) -> builtins.list[Path]:  # list: the method above
        """The directories of the cgroup `relative` (to the root) in every hierarchy."""
        root = Path("/sys/fs/cgroup")
        return [root / c / relative.lstrip("/") for c in sorted(p.name for p in root.iterdir())]


def network_config(
    state: Path, netns_dir: Path, *, bridge: str, veth_prefix: str, chain_prefix: str
) -> NetworkConfig:
    """A test's own network: its bridge, veth and chain prefixes, netns directory and a
    free /24 of 10.214.0.0/16; ip_forward and br_netfilter are left alone."""
    return NetworkConfig(
        bridge=bridge,
        pod_cidr=free_cidr(214),
        state_dir=state / "network",
        netns_dir=netns_dir,
        veth_prefix=veth_prefix,
        chain_prefix=chain_prefix,
        ip_forward=False,
        load_br_netfilter=False,
    )


C = TypeVar("C", bound=Cri)


def isolated_cri(images: ImageStore, tmp_path: Path, tag: str, image: str, *, cls: type[C]) -> C:
    """A CRI server of one test's own, not started (`serving` starts it): a state
    directory kl<tag>-*, bridge k<tag><hex>, veth and chain prefixes, netns directory
    and cgroup parent /kubeling-test-<tag>-<hex>. `tag` (two letters) tells apart the
    test suites whose servers may run side by side."""
    suffix = uuid.uuid4().hex[:6]
    state = Path(tempfile.mkdtemp(prefix=f"kl{tag}-"))  # short: the supervisor's socket path
    network = network_config(
        state,
        tmp_path / "netns",
        bridge=f"k{tag}{suffix}",
        veth_prefix=f"{tag[0]}{suffix[:5]}",
        chain_prefix=f"K{tag[0].upper()}-{suffix}",
    )
    return cls(
        state,
        str(tmp_path / "cri.sock"),
        network,
        images,
        f"/kubeling-test-{tag}-{suffix}",
        image,
        tmp_path / "logs",
    )


@contextlib.contextmanager
def serving(cri: C) -> Iterator[C]:
    """Start `cri`; on the way out remove its sandboxes (and so their containers), stop
    the server, destroy the network, stop the supervisor by pid, remove the cgroup
    parent with whatever pod-level cgroups a test made below it, and the state
    directory."""
    cri.start()
    try:
        yield cri
    finally:
        try:
            assert cri.node is not None
            for record in cri.node.store.list_sandboxes():
                cri.runtime.RemovePodSandbox(
                    api_pb2.RemovePodSandboxRequest(pod_sandbox_id=record.id)
                )
            cri.stop_server()
            cri.node.network.destroy()
        finally:
            pid = running_supervisor(cri.state / "supervisor")
            if pid > 0:
                os.kill(pid, signal.SIGTERM)
                wait_for(lambda: not alive(pid), f"supervisor {pid} to exit")
            for parent in cri.cgroup_dirs(cri.cgroup_parent):
                if parent.is_dir():
                    remove_cgroup_tree(parent)
            shutil.rmtree(cri.state)


def remove_cgroup_tree(top: Path) -> None:
    """rmdir `top` and every cgroup below it, deepest first (all must be empty)."""
    for directory, _, _ in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
        os.rmdir(directory)
