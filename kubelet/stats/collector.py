"""The kubelet's stats provider: one `NodeUsage` from CRI stats, cgroup files and /proc,
what the Summary API and the metrics endpoints render.

Where each figure comes from (the CRI first, files for what it lacks):
- pods: ListPodSandboxStats (cpu, memory, network, process count, the containers'
  stats); a runtime without it (UNIMPLEMENTED) gets ListContainerStats and the pod
  cgroup. Pod identity from the sandbox labels io.kubernetes.pod.{name,namespace,uid}
  (the sandbox metadata otherwise); startTime from the pod's status.startTime in
  `pods()`, else the sandbox's creation.
- containers: cpu, memory, writable layer from the CRI; page cache and the memory limit
  from the container's cgroup, its path from ContainerStatus(verbose) `runtimeSpec.
  linux.cgroupsPath` (containerd and kubeling both report the spec); start time and log
  path from ContainerStatus. Both are asked once per container and cached.
- the pod cgroup: PodSandboxStatus(verbose) `config.linux.cgroupParent`, cached.
- node: CPU from /proc/stat, memory from /proc/meminfo, interfaces from /proc/net/dev,
  fs from statvfs of the kubelet's root dir, imageFs from ImageFsInfo.
- system containers: "pods" is <cgroup_root>/kubepods; "kubelet" this process's
  cgroup and "runtime" the CRI server's (its pid from SO_PEERCRED on the socket),
  each only when it is not the root cgroup (that would be the whole node).
- usageNanoCores: `CpuRates` over the samples of every reading; `run` makes sure
  there is a reading at least every `SAMPLE_PERIOD` seconds, so that a request
  always has a recent base. Any reading counts: the sampler reads only when nobody
  else has for that long, since a reading of 100 pods costs the CRI server a cgroup
  walk of each. The period is longer than the eviction manager's 10 s, whose
  readings then keep the sampler quiet (with equal periods both would read, one
  just after the other).
- volumes and ephemeral storage: storage.py (the sizes under
  <root_dir>/pods/<uid>/volumes/*/*, the containers' writable layers and logs).
An RPC that fails leaves its figures out and adds a line to `NodeUsage.errors`
(resource_scrape_error); the reading itself never fails.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import grpc

from cri.api import api_pb2
from kubelet.stats import machine, storage
from kubelet.stats.cgroups import CgroupLayout, CgroupUsage, process_cgroup
from kubelet.stats.rates import CpuRates
from kubelet.stats.snapshot import (
    ContainerUsage,
    Cpu,
    Fs,
    Machine,
    Memory,
    Network,
    NodeUsage,
    PodUsage,
    SystemContainer,
)
from kubelet.stats.times import parse_time

log = logging.getLogger(__name__)

SAMPLE_PERIOD = 15.0
POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
POD_UID = "io.kubernetes.pod.uid"
CONTAINER_NAME = "io.kubernetes.container.name"


class Cri(Protocol):
    """What the collector needs of kubelet.cri_client.CriClient."""

    @property
    def runtime(self) -> Any: ...

    @property
    def images(self) -> Any: ...

    @property
    def timeout(self) -> float: ...


class _ContainerInfo:
    """What ContainerStatus told once about a container: it does not change."""

    __slots__ = ("cgroup", "image", "limit", "log_path", "start_time")

    def __init__(self, status: api_pb2.ContainerStatusResponse) -> None:
        self.start_time = status.status.started_at / 1e9 if status.status.started_at else None
        self.log_path = status.status.log_path
        self.image = status.status.image.image or status.status.image_ref
        spec = _verbose(status.info).get("runtimeSpec") or {}
        linux = spec.get("linux") or {} if isinstance(spec, dict) else {}
        path = linux.get("cgroupsPath") if isinstance(linux, dict) else None
        self.cgroup = "/" + str(path).strip("/") if path and ":" not in str(path) else None
        memory = (linux.get("resources") or {}).get("memory") or {}
        limit = memory.get("limit") if isinstance(memory, dict) else None
        self.limit = int(limit) if isinstance(limit, int) and limit > 0 else None


def _verbose(info: Any) -> dict[str, Any]:
    try:
        value = json.loads(info.get("info", "{}"))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class StatsCollector:
    def __init__(
        self,
        cri: Cri,
        *,
        node_name: str,
        root_dir: Path,
        cgroup_root: str = "/",
        pods: Callable[[], list[dict[str, Any]]] = list,
        runtime_endpoint: str = "",
        cgroups: CgroupLayout | None = None,
        proc: Path = Path("/proc"),
        sys: Path = Path("/sys"),
        etc: Path = Path("/etc"),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cri = cri
        self.node_name = node_name
        self.root_dir = root_dir
        self.cgroup_root = cgroup_root
        self.pods = pods
        self.runtime_endpoint = runtime_endpoint
        self.cgroups = (
            cgroups if cgroups is not None else CgroupLayout.detect(Path("/sys/fs/cgroup"))
        )
        self.proc = proc
        self.sys = sys
        self.etc = etc
        self.clock = clock
        self.rates = CpuRates()
        self._containers: dict[str, _ContainerInfo] = {}
        self._pod_cgroups: dict[str, str | None] = {}
        self._volumes = storage.VolumeUsageCache()
        self._runtime_pid_cache = 0
        self._lock = threading.Lock()
        self._last_reading: float | None = None  # time.monotonic() of the latest reading
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the sampler ------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, args=(self._stop,), daemon=True,
                                        name="kubelet-stats-sampler")  # fmt: skip
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def run(self, stop: threading.Event) -> None:
        """Until `stop`, take a reading whenever none was taken for SAMPLE_PERIOD
        seconds (the rates' bases)."""
        while not stop.is_set():
            last = self._last_reading
            if last is not None and (due := last + SAMPLE_PERIOD - time.monotonic()) > 0:
                stop.wait(due)
                continue
            try:
                self.collect()  # sets _last_reading, also when it fails
            except Exception:
                log.exception("stats sample failed")

    # -- one reading ------------------------------------------------------------------

    def collect(self) -> NodeUsage:
        with self._lock:  # one reading at a time: the caches and rate bases are shared
            try:
                return self._collect()
            finally:
                self._last_reading = time.monotonic()

    def _collect(self) -> NodeUsage:
        now = self.clock()
        errors: list[str] = []
        memory_info = machine.memory(self.proc)
        node_cpu = self._cpu("node", now, machine.cpu_usage_ns(self.proc))
        node_memory = Memory(
            time=now,
            usage_bytes=memory_info.usage_bytes,
            working_set_bytes=memory_info.working_set_bytes,
            rss_bytes=memory_info.rss_bytes,
            page_faults=memory_info.page_faults,
            major_page_faults=memory_info.major_page_faults,
            limit_bytes=memory_info.total_bytes,
            available_bytes=memory_info.available_bytes,
        )
        network = None
        with contextlib.suppress(OSError):
            network = Network(
                now,
                machine.interfaces(self.proc / "net" / "dev"),
                machine.default_interface(self.proc),
            )
        max_pid = running = None
        with contextlib.suppress(OSError, ValueError, IndexError):
            max_pid, running = machine.pid_limits(self.proc)
        pods = self._pods(now, errors)
        return NodeUsage(
            node_name=self.node_name,
            time=now,
            start_time=machine.boot_time(self.proc),
            machine=Machine(
                cpu_cores=machine.cpu_cores(self.proc),
                memory_bytes=memory_info.total_bytes,
                boot_id=machine.read_id(self.proc / "sys" / "kernel" / "random" / "boot_id"),
                machine_id=machine.read_id(self.etc / "machine-id"),
                system_uuid=machine.read_id(self.sys / "class" / "dmi" / "id" / "product_uuid"),
            ),
            cpu=node_cpu,
            memory=node_memory,
            network=network,
            fs=storage.filesystem(self._node_fs_path(), now),
            image_fs=self._image_fs(now, errors),
            max_pid=max_pid,
            running_processes=running,
            system_containers=self._system_containers(now, memory_info.total_bytes),
            pods=pods,
            errors=errors,
        )

    def _cpu(self, key: str, now: float, usage_ns: int, reported: int | None = None) -> Cpu:
        rate = self.rates.observe(key, int(now * 1e9), usage_ns)
        return Cpu(now, usage_ns, rate if rate is not None else reported)

    def _node_fs_path(self) -> Path:
        return self.root_dir if self.root_dir.exists() else Path("/")

    def _image_fs(self, now: float, errors: list[str]) -> Fs | None:
        try:
            info = self.cri.images.ImageFsInfo(
                api_pb2.ImageFsInfoRequest(), timeout=self.cri.timeout
            )
        except grpc.RpcError as e:
            errors.append(f"ImageFsInfo: {e.details() if hasattr(e, 'details') else e}")
            return None
        if not info.image_filesystems:
            return None
        usage = info.image_filesystems[0]
        return storage.filesystem(
            Path(usage.fs_id.mountpoint or "/"), now,
            usage.used_bytes.value, usage.inodes_used.value,
        )  # fmt: skip

    # -- pods and containers ------------------------------------------------------------

    def _pods(self, now: float, errors: list[str]) -> list[PodUsage]:
        runtime = self.cri.runtime
        timeout = self.cri.timeout
        try:
            sandboxes = runtime.ListPodSandbox(
                api_pb2.ListPodSandboxRequest(
                    filter=api_pb2.PodSandboxFilter(
                        state=api_pb2.PodSandboxStateValue(state=api_pb2.SANDBOX_READY)
                    )
                ),
                timeout=timeout,
            ).items
            containers = {
                c.id: c
                for c in runtime.ListContainers(
                    api_pb2.ListContainersRequest(), timeout=timeout
                ).containers
            }
        except grpc.RpcError as e:
            errors.append(f"list pods: {_details(e)}")
            return []
        sandbox_stats: dict[str, api_pb2.PodSandboxStats] = {}
        by_sandbox: dict[str, list[api_pb2.ContainerStats]] = {}
        try:
            listed = runtime.ListPodSandboxStats(
                api_pb2.ListPodSandboxStatsRequest(), timeout=timeout
            )
            for item in listed.stats:
                sandbox_stats[item.attributes.id] = item
                by_sandbox[item.attributes.id] = list(item.linux.containers)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNIMPLEMENTED:
                errors.append(f"ListPodSandboxStats: {_details(e)}")
            try:
                for stats in runtime.ListContainerStats(
                    api_pb2.ListContainerStatsRequest(), timeout=timeout
                ).stats:
                    known = containers.get(stats.attributes.id)
                    if known is not None:
                        by_sandbox.setdefault(known.pod_sandbox_id, []).append(stats)
            except grpc.RpcError as e2:
                errors.append(f"ListContainerStats: {_details(e2)}")
        start_times = _pod_start_times(self.pods())
        result = []
        seen_keys: set[str] = {"node"}
        for sandbox in sandboxes:
            labels = sandbox.labels
            name = labels.get(POD_NAME, sandbox.metadata.name)
            namespace = labels.get(POD_NAMESPACE, sandbox.metadata.namespace)
            uid = labels.get(POD_UID, sandbox.metadata.uid)
            cgroup = self._pod_cgroup(sandbox.id)
            pod_containers = [
                self._container(stats, containers.get(stats.attributes.id), now, errors)
                for stats in by_sandbox.get(sandbox.id, [])
            ]
            seen_keys.update(f"container/{c.id}" for c in pod_containers)
            seen_keys.add(f"pod/{sandbox.id}")
            stats = sandbox_stats.get(sandbox.id)
            cpu, memory, network, processes = self._pod_usage(sandbox.id, stats, cgroup, now)
            volumes = self._volumes.pod_volumes(self.root_dir, uid, now)
            result.append(
                PodUsage(
                    name=name,
                    namespace=namespace,
                    uid=uid,
                    sandbox_id=sandbox.id,
                    start_time=start_times.get(uid, sandbox.created_at / 1e9),
                    cgroup=cgroup,
                    containers=pod_containers,
                    cpu=cpu,
                    memory=memory,
                    network=network,
                    process_count=processes,
                    volumes=volumes,
                    ephemeral_storage=storage.ephemeral_storage(
                        self._node_fs_path(), pod_containers, volumes, now
                    ),
                )
            )
        self.rates.retain(seen_keys | {f"system/{n}" for n in ("kubelet", "runtime", "pods")})
        live = set(containers)
        for gone in self._containers.keys() - live:
            del self._containers[gone]
        self._volumes.retain({p.uid for p in result})
        for gone in self._pod_cgroups.keys() - {s.id for s in sandboxes}:
            del self._pod_cgroups[gone]
        return result

    def _pod_cgroup(self, sandbox_id: str) -> str | None:
        if sandbox_id not in self._pod_cgroups:
            cgroup = None
            with contextlib.suppress(grpc.RpcError):
                status = self.cri.runtime.PodSandboxStatus(
                    api_pb2.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=True),
                    timeout=self.cri.timeout,
                )
                config = _verbose(status.info).get("config") or {}
                parent = (config.get("linux") or {}).get("cgroupParent", "")
                if parent and ":" not in parent:
                    cgroup = "/" + str(parent).strip("/")
            self._pod_cgroups[sandbox_id] = cgroup
        return self._pod_cgroups[sandbox_id]

    def _pod_usage(
        self,
        sandbox_id: str,
        stats: api_pb2.PodSandboxStats | None,
        cgroup: str | None,
        now: float,
    ) -> tuple[Cpu | None, Memory | None, Network | None, int | None]:
        files = self.cgroups.read(cgroup) if cgroup else None
        key = f"pod/{sandbox_id}"
        cpu = memory = network = None
        processes = None
        linux = stats.linux if stats is not None else None
        if linux is not None and linux.HasField("cpu"):
            cpu = self._cpu(key, now, linux.cpu.usage_core_nano_seconds.value,
                            _reported_rate(linux.cpu))  # fmt: skip
        elif files is not None and files.cpu_usage_ns is not None:
            cpu = self._cpu(key, now, files.cpu_usage_ns)
        if linux is not None and linux.HasField("memory"):
            memory = _memory(linux.memory, files, now)
        elif files is not None:
            memory = _memory_from_files(files, now)
        if linux is not None and linux.HasField("network"):
            default = linux.network.default_interface.name or None
            network = Network(
                now,
                [
                    machine.InterfaceCounters(
                        i.name,
                        i.rx_bytes.value,
                        i.rx_errors.value,
                        i.tx_bytes.value,
                        i.tx_errors.value,
                    )
                    for i in linux.network.interfaces
                ],
                default,
            )
        if linux is not None and linux.HasField("process"):
            processes = linux.process.process_count.value
        return cpu, memory, network, processes

    def _container(
        self,
        stats: api_pb2.ContainerStats,
        listed: api_pb2.Container | None,
        now: float,
        errors: list[str],
    ) -> ContainerUsage:
        container_id = stats.attributes.id
        info = self._containers.get(container_id)
        if info is None:
            try:
                info = _ContainerInfo(
                    self.cri.runtime.ContainerStatus(
                        api_pb2.ContainerStatusRequest(container_id=container_id, verbose=True),
                        timeout=self.cri.timeout,
                    )
                )
                self._containers[container_id] = info
            except grpc.RpcError as e:
                errors.append(f"ContainerStatus {container_id}: {_details(e)}")
        name = stats.attributes.labels.get(CONTAINER_NAME, stats.attributes.metadata.name)
        cgroup = info.cgroup if info is not None else None
        files = self.cgroups.read(cgroup) if cgroup else None
        key = f"container/{container_id}"
        cpu = memory = None
        if stats.HasField("cpu"):
            cpu = self._cpu(key, now, stats.cpu.usage_core_nano_seconds.value,
                            _reported_rate(stats.cpu))  # fmt: skip
        elif files is not None and files.cpu_usage_ns is not None:
            cpu = self._cpu(key, now, files.cpu_usage_ns)
        if stats.HasField("memory"):
            memory = _memory(stats.memory, files, now, info.limit if info else None)
        elif files is not None:
            memory = _memory_from_files(files, now)
        rootfs = None
        if stats.HasField("writable_layer"):
            layer = stats.writable_layer
            rootfs = storage.filesystem(
                Path(layer.fs_id.mountpoint or "/"), now,
                layer.used_bytes.value, layer.inodes_used.value,
            )  # fmt: skip
        logs = (
            storage.container_logs(info.log_path, name, now)
            if info is not None and info.log_path
            else None
        )
        image = info.image if info is not None else ""
        if not image and listed is not None:
            image = listed.image.image or listed.image_ref
        return ContainerUsage(
            name=name,
            id=container_id,
            image=image,
            start_time=info.start_time if info is not None else None,
            cgroup=cgroup,
            cpu=cpu,
            memory=memory,
            rootfs=rootfs,
            logs=logs,
        )

    # -- system containers ----------------------------------------------------------------

    def _runtime_pid(self) -> int:
        """The CRI server's pid, asked of its socket once and again after it is gone
        (each ask is a connection the server sees and drops)."""
        pid = self._runtime_pid_cache
        if not pid or not (self.proc / str(pid)).is_dir():
            pid = machine.socket_peer_pid(self.runtime_endpoint)
            self._runtime_pid_cache = pid
        return pid

    def _system_containers(self, now: float, capacity: int) -> list[SystemContainer]:
        found: list[tuple[str, str, str, float | None]] = []  # name, memory and cpu cgroups
        pods_cgroup = "/" + "/".join(p for p in (self.cgroup_root.strip("/"), "kubepods") if p)
        if self.cgroups.exists(pods_cgroup):
            started = self.cgroups.start_time(pods_cgroup)
            found.append(("pods", pods_cgroup, pods_cgroup, started))
        runtime_pid = self._runtime_pid()
        processes: list[tuple[str, int | str]] = [("kubelet", "self")]
        if runtime_pid:
            processes.append(("runtime", runtime_pid))
        for name, pid in processes:
            memory_cgroup = process_cgroup(self.proc, pid)
            cpu_cgroup = process_cgroup(self.proc, pid, "cpuacct") or memory_cgroup
            if memory_cgroup and cpu_cgroup and memory_cgroup != "/":
                started = machine.process_start_time(self.proc, pid)
                found.append((name, memory_cgroup, cpu_cgroup, started))
        result = []
        for name, memory_cgroup, cpu_cgroup, started in found:
            files = self.cgroups.read(memory_cgroup, cpu_relative=cpu_cgroup)
            if files is None:
                continue
            cpu = None
            if files.cpu_usage_ns is not None:
                cpu = self._cpu(f"system/{name}", now, files.cpu_usage_ns)
            memory = _memory_from_files(files, now, capacity)
            result.append(SystemContainer(name, memory_cgroup, started, cpu, memory))
        return result


def _details(error: grpc.RpcError) -> str:
    details = getattr(error, "details", None)
    return str(details() if callable(details) else error)


def _reported_rate(cpu: api_pb2.CpuUsage) -> int | None:
    return cpu.usage_nano_cores.value if cpu.HasField("usage_nano_cores") else None


def _memory(
    reported: api_pb2.MemoryUsage,
    files: CgroupUsage | None,
    now: float,
    spec_limit: int | None = None,
) -> Memory:
    """The CRI's memory figures, with page cache and limit from the cgroup."""
    limit = files.memory_limit_bytes if files is not None else spec_limit
    working_set = reported.working_set_bytes.value
    available = reported.available_bytes.value if reported.HasField("available_bytes") else None
    if available is None and limit is not None:
        available = max(limit - working_set, 0)
    return Memory(
        time=now,
        usage_bytes=reported.usage_bytes.value,
        working_set_bytes=working_set,
        rss_bytes=reported.rss_bytes.value,
        cache_bytes=files.memory_cache_bytes if files is not None else 0,
        page_faults=reported.page_faults.value,
        major_page_faults=reported.major_page_faults.value,
        limit_bytes=limit,
        available_bytes=available,
    )


def _memory_from_files(files: CgroupUsage, now: float, capacity: int | None = None) -> Memory:
    limit = files.memory_limit_bytes
    ceiling = limit if limit is not None else capacity
    return Memory(
        time=now,
        usage_bytes=files.memory_usage_bytes,
        working_set_bytes=files.memory_working_set_bytes,
        rss_bytes=files.memory_rss_bytes,
        cache_bytes=files.memory_cache_bytes,
        page_faults=files.page_faults,
        major_page_faults=files.major_page_faults,
        limit_bytes=limit,
        available_bytes=None
        if ceiling is None
        else max(ceiling - files.memory_working_set_bytes, 0),
    )


def _pod_start_times(pods: list[dict[str, Any]]) -> dict[str, float]:
    """status.startTime of each pod the kubelet runs, by uid."""
    times = {}
    for pod in pods:
        uid = (pod.get("metadata") or {}).get("uid")
        started = (pod.get("status") or {}).get("startTime")
        if uid and started:
            with contextlib.suppress(ValueError):
                times[uid] = parse_time(started)
    return times
