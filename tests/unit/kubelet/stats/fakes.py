"""Fakes for the stats and node-server unit tests: a CRI with one pod sandbox and its
containers (`FakeCri`), /proc trees and cgroup trees (v1 and v2 layouts) in tmp dirs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc

from cri.api import api_pb2

POD_CGROUP = "/kubepods/besteffort/poduid-1"
SANDBOX = "sandbox-1"
CONTAINER = "container-1"
OLD_CONTAINER = "container-0"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def fake_proc(root: Path, *, cpu_ticks: int = 1000) -> Path:
    """A /proc with the files the collector reads; `cpu_ticks` busy user ticks."""
    write(root / "stat", f"cpu  {cpu_ticks} 0 100 5000 50 0 0 0 0 0\ncpu0 1 0 0 0 0 0 0 0\n"
          "cpu1 1 0 0 0 0 0 0 0\nbtime 1700000000\n")  # fmt: skip
    write(root / "meminfo", "MemTotal:       4000 kB\nMemFree:        1000 kB\n"
          "Inactive(file):  500 kB\nAnonPages:       800 kB\n")  # fmt: skip
    write(root / "vmstat", "pgfault 77\npgmajfault 3\n")
    write(root / "loadavg", "0.10 0.20 0.30 2/345 999\n")
    write(root / "sys" / "kernel" / "pid_max", "32768\n")
    write(root / "sys" / "kernel" / "random" / "boot_id", "boot-1\n")
    write(
        root / "net" / "dev",
        "Inter-|   Receive                                                |  Transmit\n"
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets "
        "errs drop fifo colls carrier compressed\n"
        "    lo:     100       1    0    0    0     0          0         0      100       1"
        "    0    0    0     0       0          0\n"
        "  eth0:    5000      10    1    0    0     0          0         0     6000      12"
        "    2    0    0     0       0          0\n",
    )
    write(
        root / "net" / "route",
        "Iface\tDestination\tGateway\nnet0\t0000000A\t0\neth0\t00000000\t0\n",
    )
    write(root / "self" / "cgroup", "0::/\n")
    return root


def cgroup_v1(root: Path, relative: str, *, usage: int, inactive: int, cpu_ns: int,
              limit: int = 9223372036854771712, cache: int = 0) -> None:  # fmt: skip
    rel = relative.strip("/")
    write(root / "memory" / rel / "memory.usage_in_bytes", f"{usage}\n")
    write(root / "memory" / rel / "memory.limit_in_bytes", f"{limit}\n")
    write(root / "memory" / rel / "memory.stat",
          f"cache {cache}\nrss 1\ntotal_cache {cache}\ntotal_rss {usage - cache}\n"
          f"total_inactive_file {inactive}\ntotal_pgfault 11\ntotal_pgmajfault 2\n")  # fmt: skip
    write(root / "cpu,cpuacct" / rel / "cpuacct.usage", f"{cpu_ns}\n")


def hybrid_root(root: Path) -> Path:
    (root / "cpu,cpuacct").mkdir(parents=True, exist_ok=True)
    (root / "memory").mkdir(parents=True, exist_ok=True)
    write(root / "unified" / "cgroup.controllers", "hugetlb\n")
    return root


def cgroup_v2(root: Path, relative: str, *, usage: int, inactive: int, cpu_ns: int,
              limit: str = "max", cache: int = 0) -> None:  # fmt: skip
    write(root / "cgroup.controllers", "cpuset cpu io memory pids\n")
    rel = relative.strip("/")
    write(root / rel / "memory.current", f"{usage}\n")
    write(root / rel / "memory.max", f"{limit}\n")
    write(root / rel / "memory.stat",
          f"anon {usage - cache}\nfile {cache}\ninactive_file {inactive}\npgfault 11\n"
          "pgmajfault 2\n")  # fmt: skip
    write(root / rel / "cpu.stat", f"usage_usec {cpu_ns // 1000}\nuser_usec 1\n")


def _value(value: int) -> api_pb2.UInt64Value:
    return api_pb2.UInt64Value(value=value)


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class FakeRuntime:
    """One ready sandbox (pod web in namespace default) with a running container `main`
    and an exited earlier instance of it; stats as kubeling's CRI reports them."""

    def __init__(self, log_dir: Path, *, cpu_ns: int = 2_000_000_000) -> None:
        self.log_dir = log_dir
        self.cpu_ns = cpu_ns
        self.state = {CONTAINER: api_pb2.CONTAINER_RUNNING, OLD_CONTAINER: api_pb2.CONTAINER_EXITED}
        self.exec_url = ""
        self.requests: list[Any] = []
        self.sandbox_stats_implemented = True
        self.status_calls = 0

    def labels(self, container: str | None = None) -> dict[str, str]:
        labels = {"io.kubernetes.pod.name": "web", "io.kubernetes.pod.namespace": "default",
                  "io.kubernetes.pod.uid": "uid-1"}  # fmt: skip
        if container:
            labels["io.kubernetes.container.name"] = container
        return labels

    def _selected(self, selector: dict[str, str]) -> bool:
        labels = self.labels("main")
        return all(labels.get(k) == v for k, v in selector.items())

    def ListPodSandbox(self, request: Any, timeout: float = 0) -> Any:
        sandbox = api_pb2.PodSandbox(
            id=SANDBOX, state=api_pb2.SANDBOX_READY, created_at=1_700_000_100_000_000_000,
            metadata=api_pb2.PodSandboxMetadata(name="web", namespace="default", uid="uid-1"),
            labels=self.labels(),
        )  # fmt: skip
        selected = self._selected(dict(request.filter.label_selector))
        return api_pb2.ListPodSandboxResponse(items=[sandbox] if selected else [])

    def PodSandboxStatus(self, request: Any, timeout: float = 0) -> Any:
        info = {"config": {"linux": {"cgroupParent": POD_CGROUP}}}
        return api_pb2.PodSandboxStatusResponse(info={"info": json.dumps(info)})

    def ListContainers(self, request: Any, timeout: float = 0) -> Any:
        if not self._selected(dict(request.filter.label_selector)):
            return api_pb2.ListContainersResponse()
        items = [
            api_pb2.Container(
                id=cid,
                pod_sandbox_id=SANDBOX,
                state=self.state[cid],
                created_at=created,
                metadata=api_pb2.ContainerMetadata(name="main", attempt=attempt),
                image=api_pb2.ImageSpec(image="busybox:latest"),
                labels=self.labels("main"),
            )
            for cid, attempt, created in ((OLD_CONTAINER, 0, 1), (CONTAINER, 1, 2))
        ]
        return api_pb2.ListContainersResponse(containers=items)

    def ContainerStatus(self, request: Any, timeout: float = 0) -> Any:
        self.status_calls += 1
        cid = request.container_id
        if cid not in self.state:
            raise FakeRpcError(grpc.StatusCode.NOT_FOUND, f"container {cid} not found")
        spec = {"linux": {"cgroupsPath": f"{POD_CGROUP}/{cid}",
                          "resources": {"memory": {"limit": 64 << 20}}}}  # fmt: skip
        status = api_pb2.ContainerStatus(
            id=cid, state=self.state[cid], started_at=1_700_000_200_000_000_000,
            log_path=str(self.log_dir / "main" / f"{0 if cid == OLD_CONTAINER else 1}.log"),
            image=api_pb2.ImageSpec(image="busybox:latest"),
        )  # fmt: skip
        info = {"info": json.dumps({"runtimeSpec": spec})} if request.verbose else {}
        return api_pb2.ContainerStatusResponse(status=status, info=info)

    def _container_stats(self) -> api_pb2.ContainerStats:
        return api_pb2.ContainerStats(
            attributes=api_pb2.ContainerAttributes(
                id=CONTAINER, metadata=api_pb2.ContainerMetadata(name="main", attempt=1),
                labels=self.labels("main"),
            ),
            cpu=api_pb2.CpuUsage(timestamp=1, usage_core_nano_seconds=_value(self.cpu_ns)),
            memory=api_pb2.MemoryUsage(
                timestamp=1, working_set_bytes=_value(3000), usage_bytes=_value(4000),
                rss_bytes=_value(2500), page_faults=_value(9), major_page_faults=_value(1),
            ),
            writable_layer=api_pb2.FilesystemUsage(
                timestamp=1, fs_id=api_pb2.FilesystemIdentifier(mountpoint="/"),
                used_bytes=_value(8192), inodes_used=_value(4),
            ),
        )  # fmt: skip

    def ListPodSandboxStats(self, request: Any, timeout: float = 0) -> Any:
        if not self.sandbox_stats_implemented:
            raise FakeRpcError(grpc.StatusCode.UNIMPLEMENTED, "not implemented")
        interface = api_pb2.NetworkInterfaceUsage(
            name="eth0", rx_bytes=_value(1234), rx_errors=_value(0), tx_bytes=_value(4321),
            tx_errors=_value(1),
        )  # fmt: skip
        linux = api_pb2.LinuxPodSandboxStats(
            cpu=api_pb2.CpuUsage(timestamp=1, usage_core_nano_seconds=_value(self.cpu_ns + 10)),
            memory=api_pb2.MemoryUsage(timestamp=1, working_set_bytes=_value(5000),
                                       usage_bytes=_value(6000)),
            network=api_pb2.NetworkUsage(timestamp=1, default_interface=interface,
                                         interfaces=[interface]),
            process=api_pb2.ProcessUsage(timestamp=1, process_count=_value(2)),
            containers=[self._container_stats()],
        )  # fmt: skip
        stats = api_pb2.PodSandboxStats(
            attributes=api_pb2.PodSandboxAttributes(id=SANDBOX, labels=self.labels()),
            linux=linux,
        )
        return api_pb2.ListPodSandboxStatsResponse(stats=[stats])

    def ListContainerStats(self, request: Any, timeout: float = 0) -> Any:
        return api_pb2.ListContainerStatsResponse(stats=[self._container_stats()])

    def Exec(self, request: Any, timeout: float = 0) -> Any:
        self.requests.append(request)
        if request.container_id != CONTAINER:
            raise FakeRpcError(grpc.StatusCode.NOT_FOUND, "no such container")
        return api_pb2.ExecResponse(url=self.exec_url)

    def Attach(self, request: Any, timeout: float = 0) -> Any:
        self.requests.append(request)
        return api_pb2.AttachResponse(url=self.exec_url)

    def PortForward(self, request: Any, timeout: float = 0) -> Any:
        self.requests.append(request)
        return api_pb2.PortForwardResponse(url=self.exec_url)


class FakeImages:
    def ImageFsInfo(self, request: Any, timeout: float = 0) -> Any:
        usage = api_pb2.FilesystemUsage(
            timestamp=1, fs_id=api_pb2.FilesystemIdentifier(mountpoint="/"),
            used_bytes=_value(1 << 20), inodes_used=_value(10),
        )  # fmt: skip
        return api_pb2.ImageFsInfoResponse(image_filesystems=[usage])


class FakeCri:
    def __init__(self, log_dir: Path) -> None:
        self.runtime = FakeRuntime(log_dir)
        self.images = FakeImages()
        self.timeout = 5.0


def pod() -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default", "uid": "uid-1"},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
        "status": {"phase": "Running", "startTime": "2023-11-14T22:15:00Z"},
    }  # fmt: skip
