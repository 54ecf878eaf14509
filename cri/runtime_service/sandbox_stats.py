"""PodSandboxStats and ListPodSandboxStats, as containerd's CRI plugin serves them
(internal/cri/server/sandbox_stats_linux.go, sandbox_stats_list.go).

Owns: putting a sandbox's figures together. Doesn't own: reading cgroups
(runtime.cgroups), interface counters (cri.network), the containers' own stats
(container_stats.py).

Where each figure comes from:
- cpu, memory and process_count: the pod's cgroup, the sandbox's cgroup_parent (the
  kubelet's pod-level cgroup, which holds the pause container's and every
  container's cgroup), when it is given and exists. Without one, the sum over the
  sandbox's own cgroups: the pause container's and its containers' (exited ones
  included, so that cumulative CPU time never goes down). containerd reads only
  the cgroup parent and fails without one.
- process_count: the processes in those cgroups at every level (cgroup.procs, so
  the pause process counts, as it does in the pod cgroup the kubelet reads; one
  hierarchy is read, the pids controller's where there is one);
  containerd adds up its containers' pids, without the pause.
- usage_nano_cores: the CPU time since the previous call for the same sandbox over
  the time between the two (0 on the first call), as for containers.
- network: the counters of the pod's own interface (eth0), which is also
  `default_interface`, as containerd reports them. They are read from the host end
  of the pod's veth pair (the host's net/dev, received and sent swapped, one read
  for all the pods of a ListPodSandboxStats): entering each pod's namespace for
  them (a thread and a netlink socket per pod) was most of the CRI server's CPU at
  rest. A sandbox without a host end (a network set up by other means) gets
  every interface but lo inside its namespace, over rtnetlink,
  `default_interface` eth0 if there, else the first. Absent for a host-network pod,
  and when the counters cannot be read (logged).
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
from collections.abc import Iterable, Sequence
from typing import Any

from cri.api import api_pb2
from cri.network import InterfaceStats, NetworkError
from cri.node import Node
from cri.runtime_service.container_stats import container_stats_by_sandbox, list_container_stats
from cri.runtime_service.containers import Containers, open_cgroup, spec_cgroup
from cri.runtime_service.usage import CpuSamples, memory_usage
from cri.store import NotFound, SandboxRecord, SandboxState
from runtime import errors as runtime_errors
from runtime.cgroups import CgroupError, Manager
from runtime.cgroups.fs import read_pids
from runtime.cgroups.stats import CgroupStats, CpuStats, MemoryStats

log = logging.getLogger(__name__)


class SandboxStats:
    """The sandbox stats RPCs over one node; safe from any thread."""

    def __init__(self, node: Node, containers: Containers) -> None:
        self.node = node
        self.containers = containers
        self._cpu = CpuSamples()

    def stats(self, id_or_prefix: str) -> api_pb2.PodSandboxStats:
        record = self._ready(id_or_prefix)
        return self._stats(record, self._counters([record]))

    def _counters(self, records: list[SandboxRecord]) -> dict[str, InterfaceStats] | None:
        """The pods' own interfaces' counters, from the host ends of their veth pairs
        (None when they cannot be read: each pod's namespace is asked then)."""
        try:
            return self.node.network.pod_interface_stats(r.id for r in records if r.netns_path)
        except NetworkError as e:
            log.warning("interface counters: %s", e)
            return None

    def _ready(self, id_or_prefix: str) -> SandboxRecord:
        record = self.node.store.get_sandbox(id_or_prefix)  # NOT_FOUND names the id
        if record.state is not SandboxState.READY:
            raise runtime_errors.InvalidState(f"sandbox {record.id} is not ready")
        return record

    def list_stats(
        self, request: api_pb2.ListPodSandboxStatsRequest
    ) -> api_pb2.ListPodSandboxStatsResponse:
        wanted = request.filter
        filter = api_pb2.PodSandboxFilter(
            id=wanted.id,
            label_selector=dict(wanted.label_selector),
            state=api_pb2.PodSandboxStateValue(state=api_pb2.SANDBOX_READY),
        )
        records = self.node.store.list_sandboxes(filter)
        # The containers' states and stats once for all sandboxes (one supervisor
        # `list`), not once per sandbox.
        by_sandbox = container_stats_by_sandbox(self.containers, (r.id for r in records))
        counters = self._counters(records)
        stats = []
        for record in records:
            with contextlib.suppress(NotFound, runtime_errors.InvalidState):
                ready = self._ready(record.id)
                stats.append(self._stats(ready, counters, by_sandbox[record.id]))
        self._cpu.retain({record.id for record in self.node.store.list_sandboxes()})
        return api_pb2.ListPodSandboxStatsResponse(stats=stats)

    def _stats(
        self,
        record: SandboxRecord,
        counters: dict[str, InterfaceStats] | None,
        containers: Sequence[api_pb2.ContainerStats] | None = None,
    ) -> api_pb2.PodSandboxStats:
        """`containers`: the sandbox's containers' stats, when the caller has them."""
        linux = api_pb2.LinuxPodSandboxStats()
        managers = self._cgroups(record)
        timestamp = time.time_ns()
        if managers:
            sample = sum_stats(manager.stats() for manager in managers)
            linux.cpu.CopyFrom(self._cpu.usage(record.id, timestamp, sample.cpu.usage_total_ns))
            linux.memory.CopyFrom(memory_usage(timestamp, sample))
        pids: set[int] = set()
        for manager in managers:
            with contextlib.suppress(CgroupError, OSError):
                pids.update(process_ids(manager))
        linux.process.CopyFrom(
            api_pb2.ProcessUsage(
                timestamp=timestamp, process_count=api_pb2.UInt64Value(value=len(pids))
            )
        )
        network = self._network(record, timestamp, counters)
        if network is not None:
            linux.network.CopyFrom(network)
        if containers is None:
            containers = list_container_stats(
                self.containers,
                api_pb2.ListContainerStatsRequest(
                    filter=api_pb2.ContainerStatsFilter(pod_sandbox_id=record.id)
                ),
            ).stats
        linux.containers.extend(containers)
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
            pod = open_cgroup(record.cgroup_parent)
            if pod is not None:
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

    def _network(
        self, record: SandboxRecord, timestamp: int, host_ends: dict[str, InterfaceStats] | None
    ) -> api_pb2.NetworkUsage | None:
        if not record.netns_path:
            return None  # the host's network
        own = None if host_ends is None else host_ends.get(record.id)
        try:
            if own is not None:
                counters = [own]
            else:  # no host end of a veth: whatever the namespace itself has
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


def process_ids(manager: Manager) -> set[int]:
    """The processes in the cgroup and its descendants, from one hierarchy: the pids
    controller's, else the unified one, else any (the runtime puts a process in the
    same cgroup of every hierarchy). Walking every hierarchy (a dozen on cgroup v1)
    found the same pids, at a dozen times the cost, for every pod every few seconds."""
    paths = manager.paths
    directory = paths.get("pids") or paths.get("") or next(iter(paths.values()), None)
    return set() if directory is None else read_pids(directory)


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
