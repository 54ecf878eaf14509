"""Prometheus text exposition (version 0.0.4) of a `NodeUsage`: `/metrics/cadvisor`
with cAdvisor's metric names and labels, and `/metrics/resource` with the kubelet's
resource metrics (what metrics-server reads).

cAdvisor series carry `container, id, image, name, namespace, pod`: `id` is the cgroup
path, `name` the runtime's container id; a pod's own cgroup is a series with
container="" (and holds the pod's network counters, one series per interface); the
root cgroup "/" (the node) a series with every label empty but id. Samples have
timestamps in milliseconds, as both endpoints write them. Families are sorted by
name, labels by label name, as the Go client writes them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from kubelet.stats.snapshot import ContainerUsage, Cpu, Memory, NodeUsage, PodUsage

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = dict[str, str]


@dataclass
class Family:
    name: str
    help: str
    type: str  # "counter" or "gauge"
    samples: list[tuple[Labels, float, int | None]] = field(default_factory=list)

    def add(self, labels: Labels, value: float, timestamp_ms: int | None = None) -> None:
        self.samples.append((labels, value, timestamp_ms))


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def render(families: Iterable[Family]) -> str:
    lines = []
    for family in sorted(families, key=lambda f: f.name):
        lines.append(f"# HELP {family.name} {family.help}")
        lines.append(f"# TYPE {family.name} {family.type}")
        for labels, value, timestamp in family.samples:
            text = ",".join(f'{k}="{escape(v)}"' for k, v in sorted(labels.items()))
            line = f"{family.name}{{{text}}}" if text else family.name
            line += f" {format_value(value)}"
            if timestamp is not None:
                line += f" {timestamp}"
            lines.append(line)
    return "\n".join(lines) + "\n"


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


# -- /metrics/cadvisor ---------------------------------------------------------------


@dataclass
class _Series:
    labels: Labels
    cpu: Cpu | None
    memory: Memory | None
    start_time: float | None


def _cadvisor_series(usage: NodeUsage) -> list[_Series]:
    empty = {"container": "", "image": "", "name": "", "namespace": "", "pod": ""}
    series = [_Series({**empty, "id": "/"}, usage.cpu, usage.memory, usage.start_time)]
    seen = {"/"}
    for system in usage.system_containers:
        if system.cgroup in seen:
            continue  # the kubelet and the runtime may share a cgroup: one series each id
        seen.add(system.cgroup)
        series.append(_Series({**empty, "id": system.cgroup}, system.cpu, system.memory,
                              system.start_time))  # fmt: skip
    for pod in usage.pods:
        series.append(_Series(_pod_labels(pod), pod.cpu, pod.memory, pod.start_time))
        for container in pod.containers:
            labels = _container_labels(pod, container)
            series.append(_Series(labels, container.cpu, container.memory, container.start_time))
    return series


def _pod_labels(pod: PodUsage) -> Labels:
    return {
        "container": "", "id": pod.cgroup or f"/{pod.sandbox_id}", "image": "", "name": "",
        "namespace": pod.namespace, "pod": pod.name,
    }  # fmt: skip


def _container_labels(pod: PodUsage, container: ContainerUsage) -> Labels:
    return {
        "container": container.name, "id": container.cgroup or f"/{container.id}",
        "image": container.image, "name": container.id, "namespace": pod.namespace,
        "pod": pod.name,
    }  # fmt: skip


def cadvisor(usage: NodeUsage) -> str:
    now = _ms(usage.time)
    cpu = Family("container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.",
                 "counter")  # fmt: skip
    memory_usage = Family(
        "container_memory_usage_bytes",
        "Current memory usage in bytes, including all memory regardless of when it was accessed",
        "gauge",
    )
    working_set = Family("container_memory_working_set_bytes", "Current working set in bytes.",
                         "gauge")  # fmt: skip
    rss = Family("container_memory_rss", "Size of RSS in bytes.", "gauge")
    cache = Family("container_memory_cache", "Number of bytes of page cache memory.", "gauge")
    limit = Family("container_spec_memory_limit_bytes", "Memory limit for the container.", "gauge")
    last_seen = Family("container_last_seen", "Last time a container was seen by the exporter",
                       "gauge")  # fmt: skip
    start = Family("container_start_time_seconds",
                   "Start time of the container since unix epoch in seconds.", "gauge")  # fmt: skip
    for item in _cadvisor_series(usage):
        if item.cpu is not None:
            cpu.add({**item.labels, "cpu": "total"}, item.cpu.usage_core_nano_seconds / 1e9, now)
        if item.memory is not None:
            memory_usage.add(item.labels, item.memory.usage_bytes, now)
            working_set.add(item.labels, item.memory.working_set_bytes, now)
            rss.add(item.labels, item.memory.rss_bytes, now)
            cache.add(item.labels, item.memory.cache_bytes, now)
            if item.labels["id"] != "/":
                limit.add(item.labels, item.memory.limit_bytes or 0, now)  # 0: unlimited
        last_seen.add(item.labels, int(usage.time), now)
        if item.start_time is not None:
            start.add(item.labels, item.start_time, now)
    families = [cpu, memory_usage, working_set, rss, cache, limit, last_seen, start]
    families += _network_families(usage, now)
    families += _fs_families(usage, now)
    machine_labels = {
        "boot_id": usage.machine.boot_id,
        "machine_id": usage.machine.machine_id,
        "system_uuid": usage.machine.system_uuid,
    }
    cores = Family("machine_cpu_cores", "Number of logical CPU cores.", "gauge")
    cores.add(machine_labels, usage.machine.cpu_cores)
    installed = Family(
        "machine_memory_bytes", "Amount of memory installed on the machine.", "gauge"
    )
    installed.add(machine_labels, usage.machine.memory_bytes)
    return render([*families, cores, installed])


def _network_families(usage: NodeUsage, now: int) -> list[Family]:
    names = {
        ("rx_bytes", "container_network_receive_bytes_total"): "Cumulative count of bytes received",
        ("rx_errors", "container_network_receive_errors_total"):
            "Cumulative count of errors encountered while receiving",
        ("tx_bytes", "container_network_transmit_bytes_total"):
            "Cumulative count of bytes transmitted",
        ("tx_errors", "container_network_transmit_errors_total"):
            "Cumulative count of errors encountered while transmitting",
    }  # fmt: skip
    families = {attr: Family(name, text, "counter") for (attr, name), text in names.items()}
    owners: list[tuple[Labels, object]] = []
    if usage.network is not None:
        root = {"container": "", "id": "/", "image": "", "name": "", "namespace": "", "pod": ""}
        owners.append((root, usage.network))
    owners += [(_pod_labels(p), p.network) for p in usage.pods if p.network is not None]
    for labels, network in owners:
        for interface in getattr(network, "interfaces", []):
            for attr, family in families.items():
                family.add({**labels, "interface": interface.name}, getattr(interface, attr), now)
    return list(families.values())


def _fs_families(usage: NodeUsage, now: int) -> list[Family]:
    used = Family("container_fs_usage_bytes",
                  "Number of bytes that are consumed by the container on this filesystem.",
                  "gauge")  # fmt: skip
    capacity = Family("container_fs_limit_bytes",
                      "Number of bytes that can be consumed by the container on this filesystem.",
                      "gauge")  # fmt: skip
    inodes_free = Family("container_fs_inodes_free", "Number of available Inodes", "gauge")
    inodes = Family("container_fs_inodes_total", "Number of Inodes", "gauge")
    for pod in usage.pods:
        for container in pod.containers:
            fs = container.rootfs
            if fs is None:
                continue
            labels = {**_container_labels(pod, container), "device": fs.device}
            if fs.used_bytes is not None:
                used.add(labels, fs.used_bytes, now)
            if fs.capacity_bytes is not None:
                capacity.add(labels, fs.capacity_bytes, now)
            if fs.inodes_free is not None:
                inodes_free.add(labels, fs.inodes_free, now)
            if fs.inodes is not None:
                inodes.add(labels, fs.inodes, now)
    return [used, capacity, inodes_free, inodes]


# -- /metrics/resource ---------------------------------------------------------------


def resource(usage: NodeUsage) -> str:
    stable = "[STABLE] "
    node_cpu = Family("node_cpu_usage_seconds_total",
                      stable + "Cumulative cpu time consumed by the node in core-seconds",
                      "counter")  # fmt: skip
    node_memory = Family("node_memory_working_set_bytes",
                         stable + "Current working set of the node in bytes", "gauge")  # fmt: skip
    pod_cpu = Family("pod_cpu_usage_seconds_total",
                     stable + "Cumulative cpu time consumed by the pod in core-seconds",
                     "counter")  # fmt: skip
    pod_memory = Family("pod_memory_working_set_bytes",
                        stable + "Current working set of the pod in bytes", "gauge")  # fmt: skip
    container_cpu = Family("container_cpu_usage_seconds_total",
                           stable + "Cumulative cpu time consumed by the container in core-seconds",
                           "counter")  # fmt: skip
    container_memory = Family("container_memory_working_set_bytes",
                              stable + "Current working set of the container in bytes",
                              "gauge")  # fmt: skip
    container_start = Family("container_start_time_seconds",
                             stable + "Start time of the container since unix epoch in seconds",
                             "gauge")  # fmt: skip
    error_text = "1 if there was an error while getting container metrics, 0 otherwise"
    scrape_error = Family("resource_scrape_error", stable + error_text, "gauge")
    old_scrape_error = Family("scrape_error", "[ALPHA] (Deprecated since 1.29.0) " + error_text,
                              "gauge")  # fmt: skip
    if usage.cpu is not None:
        node_cpu.add({}, usage.cpu.usage_core_nano_seconds / 1e9, _ms(usage.cpu.time))
    if usage.memory is not None:
        node_memory.add({}, usage.memory.working_set_bytes, _ms(usage.memory.time))
    for pod in usage.pods:
        pod_labels = {"namespace": pod.namespace, "pod": pod.name}
        if pod.cpu is not None:
            pod_cpu.add(pod_labels, pod.cpu.usage_core_nano_seconds / 1e9, _ms(pod.cpu.time))
        if pod.memory is not None:
            pod_memory.add(pod_labels, pod.memory.working_set_bytes, _ms(pod.memory.time))
        for container in pod.containers:
            labels = {**pod_labels, "container": container.name}
            if container.cpu is not None:
                container_cpu.add(labels, container.cpu.usage_core_nano_seconds / 1e9,
                                  _ms(container.cpu.time))  # fmt: skip
            if container.memory is not None:
                container_memory.add(labels, container.memory.working_set_bytes,
                                     _ms(container.memory.time))  # fmt: skip
            if container.start_time is not None:
                container_start.add(labels, container.start_time, _ms(container.start_time))
    failed = 1 if usage.errors else 0
    scrape_error.add({}, failed)
    old_scrape_error.add({}, failed)
    return render([node_cpu, node_memory, pod_cpu, pod_memory, container_cpu, container_memory,
                   container_start, scrape_error, old_scrape_error])  # fmt: skip
