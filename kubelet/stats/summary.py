"""The Summary API (`/stats/summary`): a `NodeUsage` as the JSON of the kubelet's
stats/v1alpha1 types (Summary, NodeStats, PodStats, ContainerStats, CPUStats,
MemoryStats, NetworkStats, FsStats, VolumeStats, RlimitStats, ProcessStats).

Unknown figures are left out, as the API's optional (pointer) fields are; times are
RFC 3339. `only_cpu_and_memory` gives what the kubelet's ?only_cpu_and_memory=true
gives (the metrics server's query): cpu and memory of node, pods and containers.
"""

from __future__ import annotations

from typing import Any

from kubelet.stats.snapshot import (
    ContainerUsage,
    Cpu,
    Fs,
    Memory,
    Network,
    NodeUsage,
    PodUsage,
    SystemContainer,
)
from kubelet.stats.times import format_time


def summary(usage: NodeUsage, *, only_cpu_and_memory: bool = False) -> dict[str, Any]:
    node: dict[str, Any] = {
        "nodeName": usage.node_name,
        "systemContainers": [_system(c) for c in usage.system_containers],
        "startTime": format_time(usage.start_time),
    }
    _put(node, "cpu", _cpu(usage.cpu))
    _put(node, "memory", _memory(usage.memory))
    if not only_cpu_and_memory:
        _put(node, "network", _network(usage.network))
        _put(node, "fs", _fs(usage.fs))
        if usage.image_fs is not None:
            node["runtime"] = {"imageFs": _fs(usage.image_fs)}
        if usage.max_pid is not None:
            node["rlimit"] = {
                "time": format_time(usage.time),
                "maxpid": usage.max_pid,
                "curproc": usage.running_processes,
            }
    return {
        "node": node,
        "pods": [_pod(p, only_cpu_and_memory) for p in usage.pods],
    }


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        target[key] = value


def _cpu(cpu: Cpu | None) -> dict[str, Any] | None:
    if cpu is None:
        return None
    rendered: dict[str, Any] = {"time": format_time(cpu.time)}
    if cpu.usage_nano_cores is not None:
        rendered["usageNanoCores"] = cpu.usage_nano_cores
    rendered["usageCoreNanoSeconds"] = cpu.usage_core_nano_seconds
    return rendered


def _memory(memory: Memory | None) -> dict[str, Any] | None:
    if memory is None:
        return None
    rendered: dict[str, Any] = {"time": format_time(memory.time)}
    if memory.available_bytes is not None:
        rendered["availableBytes"] = memory.available_bytes
    rendered.update(
        usageBytes=memory.usage_bytes,
        workingSetBytes=memory.working_set_bytes,
        rssBytes=memory.rss_bytes,
        pageFaults=memory.page_faults,
        majorPageFaults=memory.major_page_faults,
    )
    return rendered


def _interface(counters: Any) -> dict[str, Any]:
    return {
        "name": counters.name,
        "rxBytes": counters.rx_bytes,
        "rxErrors": counters.rx_errors,
        "txBytes": counters.tx_bytes,
        "txErrors": counters.tx_errors,
    }


def _network(network: Network | None) -> dict[str, Any] | None:
    if network is None:
        return None
    rendered: dict[str, Any] = {"time": format_time(network.time)}
    default = next((i for i in network.interfaces if i.name == network.default), None)
    if default is None and network.interfaces:
        default = network.interfaces[0]
    if default is not None:
        rendered.update(_interface(default))  # the default interface, inline
    rendered["interfaces"] = [_interface(i) for i in network.interfaces]
    return rendered


def _fs(fs: Fs | None) -> dict[str, Any] | None:
    if fs is None:
        return None
    rendered: dict[str, Any] = {"time": format_time(fs.time)}
    for key, value in (
        ("availableBytes", fs.available_bytes),
        ("capacityBytes", fs.capacity_bytes),
        ("usedBytes", fs.used_bytes),
        ("inodesFree", fs.inodes_free),
        ("inodes", fs.inodes),
        ("inodesUsed", fs.inodes_used),
    ):
        if value is not None:
            rendered[key] = value
    return rendered


def _system(container: SystemContainer) -> dict[str, Any]:
    rendered: dict[str, Any] = {"name": container.name}
    if container.start_time is not None:
        rendered["startTime"] = format_time(container.start_time)
    _put(rendered, "cpu", _cpu(container.cpu))
    _put(rendered, "memory", _memory(container.memory))
    return rendered


def _container(container: ContainerUsage, only_cpu_and_memory: bool) -> dict[str, Any]:
    rendered: dict[str, Any] = {"name": container.name}
    if container.start_time is not None:
        rendered["startTime"] = format_time(container.start_time)
    _put(rendered, "cpu", _cpu(container.cpu))
    _put(rendered, "memory", _memory(container.memory))
    if not only_cpu_and_memory:
        _put(rendered, "rootfs", _fs(container.rootfs))
        _put(rendered, "logs", _fs(container.logs))
    return rendered


def _pod(pod: PodUsage, only_cpu_and_memory: bool) -> dict[str, Any]:
    rendered: dict[str, Any] = {
        "podRef": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
    }
    if pod.start_time is not None:
        rendered["startTime"] = format_time(pod.start_time)
    rendered["containers"] = [_container(c, only_cpu_and_memory) for c in pod.containers]
    _put(rendered, "cpu", _cpu(pod.cpu))
    _put(rendered, "memory", _memory(pod.memory))
    if not only_cpu_and_memory:
        _put(rendered, "network", _network(pod.network))
        if pod.volumes:
            rendered["volume"] = [{**(_fs(v.fs) or {}), "name": v.name} for v in pod.volumes]
        _put(rendered, "ephemeral-storage", _fs(pod.ephemeral_storage))
        if pod.process_count is not None:
            rendered["process_stats"] = {"process_count": pod.process_count}
    return rendered
