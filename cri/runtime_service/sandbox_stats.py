"""PodSandboxStats and ListPodSandboxStats, as containerd's CRI plugin serves them
(internal/cri/server/sandbox_stats_linux.go, sandbox_stats_list.go).

Owns: putting a sandbox's figures together. Doesn't own: reading cgroups
(runtime.cgroups), interface counters (cri.network, over rtnetlink inside the pod's
network namespace), the containers' own stats (container_stats.py).

Where each figure comes from:
- cpu, memory and process_count: the pod's cgroup, the sandbox's cgroup_parent (the
  kubelet's pod-level cgroup, which holds the pause container's and every
  container's cgroup), when it is given and exists. Without one, the sum over the
  sandbox's own cgroups: the pause container's and its containers' (exited ones
  included, so that cumulative CPU time never goes down). containerd reads only
  the cgroup parent and fails without one.
- process_count: the processes in those cgroups at every level (cgroup.procs, so
  the pause process counts, as it does in the pod cgroup the kubelet reads);
  containerd adds up its containers' pids, without the pause.
- usage_nano_cores: the CPU time since the previous call for the same sandbox over
  the time between the two (0 on the first call), as for containers.
- network: the counters of every interface but lo inside the pod's network
  namespace, `default_interface` the pod's own (eth0), else the first; absent for a
  host-network pod, and when the namespace cannot be read (logged).
- containers: the sandbox's created and running containers, as ListContainerStats
  gives them.

Errors: NOT_FOUND for an unknown sandbox; FAILED_PRECONDITION for one not ready
(containerd answers UNAVAILABLE; here a sandbox's state is a precondition, as for
ExecSync). ListPodSandboxStats covers the ready sandboxes its filter selects (id or
unique prefix, labels); one that stops or goes away while it is read is left out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Iterable
from typing import Any

from cri.api import api_pb2
from cri.network import NetworkError
from cri.node import Node
from cri.runtime_service.container_stats import list_container_stats
from cri.runtime_service.containers import Containers, spec_cgroup
from cri.runtime_service.usage import CpuSamples, memory_usage
from cri.store import NotFound, SandboxRecord, SandboxState
from runtime import errors as runtime_errors
from runtime.cgroups import CgroupError, Manager, open_manager
from runtime.cgroups.stats import CgroupStats, CpuStats, MemoryStats

log = logging.getLogger(__name__)


class SandboxStats:
    """The sandbox stats RPCs over one node; safe from any thread."""

    def __init__(self, node: Node, containers: Containers) -> None:
        self.node = node
        self.containers = containers
        self._cpu = CpuSamples()

    def stats(self, id_or_prefix: str) -> api_pb2.PodSandboxStats:
        record = self.node.store.get_sandbox(id_or_prefix)  # NOT_FOUND names the id
        if record.state is not SandboxState.READY:
            raise runtime_errors.InvalidState(f"sandbox {record.id} is not ready")
        return self._stats(record)

    def list_stats(
        self, request: api_pb2.ListPodSandboxStatsRequest
    ) -> api_pb2.ListPodSandboxStatsResponse:
        wanted = request.filter
        filter = api_pb2.PodSandboxFilter(
            id=wanted.id,
            label_selector=dict(wanted.label_selector),
            state=api_pb2.PodSandboxStateValue(state=api_pb2.SANDBOX_READY),
        )
        stats = []
        for record in self.node.store.list_sandboxes(filter):
            with contextlib.suppress(NotFound, runtime_errors.InvalidState):
                stats.append(self.stats(record.id))
        self._cpu.retain({record.id for record in self.node.store.list_sandboxes()})
        return api_pb2.ListPodSandboxStatsResponse(stats=stats)

    def _stats(self, record: SandboxRecord) -> api_pb2.PodSandboxStats:
        linux = api_pb2.LinuxPodSandboxStats()
        managers = self._cgroups(record)
        timestamp = time.time_ns()
        if managers:
            sample = sum_stats(manager.stats() for manager in managers)
            linux.cpu.CopyFrom(self._cpu.usage(record.id, timestamp, sample.cpu.usage_total_ns))
            linux.memory.CopyFrom(memory_usage(timestamp, sample))
        pids: set[int] = set()
        for manager in managers:
            with contextlib.suppress(CgroupError):
                pids.update(manager.pids())
        linux.process.CopyFrom(
            api_pb2.ProcessUsage(
                timestamp=timestamp, process_count=api_pb2.UInt64Value(value=len(pids))
            )
        )
        network = self._network(record, timestamp)
        if network is not None:
            linux.network.CopyFrom(network)
        containers = list_container_stats(
            self.containers,
            api_pb2.ListContainerStatsRequest(
                filter=api_pb2.ContainerStatsFilter(pod_sandbox_id=record.id)
            ),
        )
        linux.containers.extend(containers.stats)
        return api_pb2.PodSandboxStats(
            attributes=api_pb2.PodSandboxAttributes(
                id=record.id,
                metadata=record.metadata(),
                labels=dict(record.labels),
                annotations=dict(record.annotations),
            ),
            linux=linux,
        )

    def _cgroups(self, record: SandboxRecord) -> list[Manager]:
        """The pod's cgroup if it has one, else the pause's and its containers'."""
        if record.cgroup_parent:
            try:
                pod = open_manager(record.cgroup_parent)
            except CgroupError:
                pod = None
            if pod is not None and pod.exists():
                return [pod]
        managers = []
        pause = spec_cgroup(self._pause_spec(record))
        if pause is not None:
            managers.append(pause)
        for container in self.node.store.list_containers(
            api_pb2.ContainerFilter(pod_sandbox_id=record.id)
        ):
            manager = self.containers.cgroup(container)
            if manager is not None:
                managers.append(manager)
        return managers

    def _pause_spec(self, record: SandboxRecord) -> dict[str, Any] | None:
        try:
            spec = json.loads((self.node.sandboxes_dir / record.id / "config.json").read_text())
        except (OSError, ValueError):
            return None
        return spec if isinstance(spec, dict) else None

    def _network(self, record: SandboxRecord, timestamp: int) -> api_pb2.NetworkUsage | None:
        if not record.netns_path:
            return None  # the host's network
        try:
            counters = self.node.network.interface_stats(record.netns_path)
        except (NetworkError, OSError) as e:
            log.warning(
                "sandbox %s: interface counters: %s", record.id, e, extra={"sandbox": record.id}
            )
            return None
        usage = api_pb2.NetworkUsage(timestamp=timestamp)
        for counter in counters:
            usage.interfaces.add(
                name=counter.name,
                rx_bytes=api_pb2.UInt64Value(value=counter.rx_bytes),
                rx_errors=api_pb2.UInt64Value(value=counter.rx_errors),
                tx_bytes=api_pb2.UInt64Value(value=counter.tx_bytes),
                tx_errors=api_pb2.UInt64Value(value=counter.tx_errors),
            )
        default = self.node.network.config.interface
        chosen = next((i for i in usage.interfaces if i.name == default), None)
        if chosen is None and usage.interfaces:
            chosen = usage.interfaces[0]
        if chosen is not None:
            usage.default_interface.CopyFrom(chosen)
        return usage


def sum_stats(samples: Iterable[CgroupStats]) -> CgroupStats:
    """CPU and memory of several cgroups added up (one sample is returned as is). The
    memory limit is unknown for a sum: each cgroup has its own."""
    items = list(samples)
    if len(items) == 1:
        return items[0]
    cpu = {f.name: sum(getattr(s.cpu, f.name) for s in items) for f in dataclasses.fields(CpuStats)}
    memory = {
        f.name: sum(getattr(s.memory, f.name) for s in items)
        for f in dataclasses.fields(MemoryStats)
        if f.name != "limit_bytes"
    }
    return CgroupStats(cpu=CpuStats(**cpu), memory=MemoryStats(**memory))
