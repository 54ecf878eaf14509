"""One reading of the node's resource usage, what /stats/summary and the metrics
endpoints render: the node, its system containers, and each pod with its containers.

Values only; `collector.py` fills them, `summary.py` and `prometheus.py` render them.
Times are unix seconds (floats); None means the figure is unknown (rendered as absent,
as the Summary API's optional fields are).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kubelet.stats.machine import InterfaceCounters


@dataclass(frozen=True, slots=True)
class Cpu:
    time: float
    usage_core_nano_seconds: int
    usage_nano_cores: int | None = None  # None until two samples give a rate


@dataclass(frozen=True, slots=True)
class Memory:
    time: float
    usage_bytes: int
    working_set_bytes: int
    rss_bytes: int = 0
    cache_bytes: int = 0
    page_faults: int = 0
    major_page_faults: int = 0
    limit_bytes: int | None = None  # None: unlimited
    available_bytes: int | None = None  # the limit (or capacity) minus the working set


@dataclass(frozen=True, slots=True)
class Fs:
    time: float
    used_bytes: int | None = None
    capacity_bytes: int | None = None
    available_bytes: int | None = None
    inodes: int | None = None
    inodes_free: int | None = None
    inodes_used: int | None = None
    device: str = ""  # the mountpoint or device, cAdvisor's `device` label


@dataclass(frozen=True, slots=True)
class Network:
    time: float
    interfaces: list[InterfaceCounters]
    default: str | None = None  # the interface the Summary API shows at the top level


@dataclass(frozen=True, slots=True)
class ContainerUsage:
    name: str
    id: str
    image: str
    start_time: float | None
    cgroup: str | None  # cgroupfs path from the hierarchy root ("/kubepods/.../<id>")
    cpu: Cpu | None = None
    memory: Memory | None = None
    rootfs: Fs | None = None
    logs: Fs | None = None


@dataclass(frozen=True, slots=True)
class VolumeUsage:
    name: str
    fs: Fs


@dataclass(frozen=True, slots=True)
class PodUsage:
    name: str
    namespace: str
    uid: str
    sandbox_id: str
    start_time: float | None
    cgroup: str | None
    containers: list[ContainerUsage] = field(default_factory=list)
    cpu: Cpu | None = None
    memory: Memory | None = None
    network: Network | None = None
    process_count: int | None = None
    volumes: list[VolumeUsage] = field(default_factory=list)
    ephemeral_storage: Fs | None = None


@dataclass(frozen=True, slots=True)
class SystemContainer:
    name: str  # "kubelet", "runtime", "pods"
    cgroup: str
    start_time: float | None
    cpu: Cpu | None
    memory: Memory | None


@dataclass(frozen=True, slots=True)
class Machine:
    cpu_cores: int
    memory_bytes: int
    boot_id: str = ""
    machine_id: str = ""
    system_uuid: str = ""


@dataclass(frozen=True, slots=True)
class NodeUsage:
    node_name: str
    time: float
    start_time: float
    machine: Machine
    cpu: Cpu | None
    memory: Memory | None
    network: Network | None
    fs: Fs | None
    image_fs: Fs | None
    max_pid: int | None
    running_processes: int | None
    system_containers: list[SystemContainer]
    pods: list[PodUsage]
    errors: list[str] = field(default_factory=list)  # what could not be read this time
