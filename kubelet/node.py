"""The node agent: registers this machine's Node, keeps its status current and renews
its Lease, as the kubelet's node status and node lease controllers do.

What it owns: the Node object's labels, taints at registration, spec.podCIDR, and
`status` (capacity, allocatable, conditions, addresses, nodeInfo, daemonEndpoints,
images); the Lease `kube-node-lease/<node>`; the node's events (Starting, NodeReady,
NodeNotReady and the pressure transitions). What it doesn't: pods (the pod workers),
eviction itself (it only reports pressure), the node lifecycle controller's taints.

Split: pure functions compute capacity, allocatable, conditions and images from
facts (`Machine`, `Usage`, the CRI's answers); `Host` reads those facts from files
under a root directory (so tests give a fake tree); `NodeAgent` talks to the API
server and the runtime.

Timing (the kubelet's, with node leases): the Lease is renewed every
lease-duration/4 (10 s for 40 s); the status is PATCHed every
node_status_update_frequency, and at once when a condition changes (checked every
second: a CRI Status call). lastHeartbeatTime moves on every post;
lastTransitionTime only when a condition's status changes. An API server that is
away is logged and retried; the agent never stops on its own.
"""

from __future__ import annotations

import datetime
import http.client
import logging
import os
import platform
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import grpc

from cri.api import api_pb2
from kubeapi.client import ApiError, Client
from kubeapi.quantity import QuantityError, parse_quantity
from kubelet.config import KubeletConfig
from kubelet.cri_client import CriClient
from kubelet.events import NORMAL, EventRecorder

log = logging.getLogger(__name__)

Object = dict[str, Any]

# The Kubernetes minor kubeling's API server serves (its /version says v1.32.0-kubeling):
# clients such as kubectl compare the node's version with the server's.
KUBELET_VERSION = "v1.32.0-kubeling"
MAX_IMAGES_IN_STATUS = 50  # the kubelet's --node-status-max-images default
LEASE_NAMESPACE = "kube-node-lease"
CONDITION_CHECK_PERIOD = 1.0  # seconds between the quick Ready/pressure checks
API_ERRORS = (ApiError, OSError, http.client.HTTPException)

ARCHITECTURES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


# -- facts about the machine -----------------------------------------------------------


@dataclass(frozen=True)
class Machine:
    """What does not change while the node runs."""

    cpus: int
    memory_bytes: int
    machine_id: str
    system_uuid: str
    boot_id: str
    kernel_version: str
    os_image: str
    architecture: str  # GOARCH spelling: amd64, arm64


@dataclass(frozen=True)
class Usage:
    """What the pressure conditions are computed from."""

    memory_available_bytes: int
    fs_capacity_bytes: int
    fs_available_bytes: int
    inodes: int
    inodes_free: int
    pids_max: int
    pids_used: int


class Host:
    """Reads machine facts from /proc, /sys and /etc below `root` ("/" on a real node),
    and the filesystem holding `state_dir` (the kubelet's root dir: its nodefs)."""

    def __init__(self, state_dir: Path, *, root: Path = Path("/")) -> None:
        self.root = root
        self.state_dir = state_dir

    def _read(self, relative: str, default: str = "") -> str:
        try:
            return (self.root / relative).read_text().strip()
        except OSError:
            return default

    def machine(self) -> Machine:
        release = self._read("proc/sys/kernel/osrelease") or os.uname().release
        return Machine(
            cpus=self._cpus(),
            memory_bytes=meminfo(self._read("proc/meminfo")).get("MemTotal", 0),
            machine_id=self._read("etc/machine-id"),
            system_uuid=self._read("sys/class/dmi/id/product_uuid"),
            boot_id=self._read("proc/sys/kernel/random/boot_id"),
            kernel_version=release,
            os_image=os_release_name(self._read("etc/os-release")),
            architecture=ARCHITECTURES.get(platform.machine(), platform.machine()),
        )

    def _cpus(self) -> int:
        # The CPUs this process may run on: a cpuset narrower than the machine counts.
        try:
            return len(os.sched_getaffinity(0))
        except OSError:
            return os.cpu_count() or 1

    def usage(self) -> Usage:
        stat = os.statvfs(existing_parent(self.state_dir))
        pid_max = int(self._read("proc/sys/kernel/pid_max", "0") or 0)
        threads_max = int(self._read("proc/sys/kernel/threads-max", "0") or 0)
        limits = [n for n in (pid_max, threads_max) if n > 0]
        return Usage(
            memory_available_bytes=meminfo(self._read("proc/meminfo")).get("MemAvailable", 0),
            fs_capacity_bytes=stat.f_blocks * stat.f_frsize,
            fs_available_bytes=stat.f_bavail * stat.f_frsize,
            inodes=stat.f_files,
            inodes_free=stat.f_favail,
            pids_max=min(limits) if limits else 0,
            pids_used=loadavg_entities(self._read("proc/loadavg")),
        )

    def default_route_address(self) -> str:
        """The source address the kernel picks for the default route, else 127.0.0.1."""
        gateway = default_gateway(self._read("proc/net/route"))
        if gateway is None:
            return "127.0.0.1"
        try:
            # A connected UDP socket sends nothing; it only asks the routing table.
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.connect((gateway, 9))
                return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as bytes per field (the file says kB, meaning KiB)."""
    fields: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            factor = 1024 if len(parts) > 1 and parts[1] == "kB" else 1
            fields[name.strip()] = int(parts[0]) * factor
    return fields


def os_release_name(text: str) -> str:
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "PRETTY_NAME":
            return value.strip().strip("\"'")
    return "Linux"


def loadavg_entities(text: str) -> int:
    """The number of scheduling entities (threads) in /proc/loadavg's "running/total"."""
    parts = text.split()
    if len(parts) >= 4 and "/" in parts[3]:
        total = parts[3].split("/")[1]
        if total.isdigit():
            return int(total)
    return 0


def default_gateway(route_table: str) -> str | None:
    """The gateway of the first default route in /proc/net/route (little-endian hex)."""
    for line in route_table.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and fields[1] == "00000000" and fields[7] == "00000000":
            try:
                raw = int(fields[2], 16)
            except ValueError:
                continue
            return socket.inet_ntoa(raw.to_bytes(4, "little"))
    return None


# -- capacity and allocatable ----------------------------------------------------------


def format_cpu(millis: int) -> str:
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def format_bytes(amount: int) -> str:
    return f"{amount // 1024}Ki" if amount and amount % 1024 == 0 else str(amount)


def capacity(machine: Machine, usage: Usage, max_pods: int) -> dict[str, str]:
    return {
        "cpu": str(machine.cpus),
        "ephemeral-storage": format_bytes(usage.fs_capacity_bytes // 1024 * 1024),
        "hugepages-2Mi": "0",
        "memory": format_bytes(machine.memory_bytes // 1024 * 1024),
        "pods": str(max_pods),
    }


def threshold_amount(threshold: str, total: int) -> Fraction:
    """An eviction threshold ("100Mi", "10%") in base units of a resource of `total`."""
    text = threshold.strip()
    if text.endswith("%"):
        return Fraction(text[:-1]) / 100 * total
    return parse_quantity(text)


def allocatable(
    node_capacity: Mapping[str, str],
    *,
    system_reserved: Mapping[str, str],
    kube_reserved: Mapping[str, str],
    eviction_hard: Mapping[str, str],
) -> dict[str, str]:
    """capacity - system-reserved - kube-reserved - the hard eviction threshold of memory
    (memory.available) and of ephemeral storage (nodefs.available), at least 0, as the
    kubelet's node allocatable."""
    result: dict[str, str] = {}
    for name, text in node_capacity.items():
        amount = parse_quantity(text)
        reserved = sum(
            (parse_quantity(r[name]) for r in (system_reserved, kube_reserved) if name in r),
            Fraction(0),
        )
        signal = {"memory": "memory.available", "ephemeral-storage": "nodefs.available"}.get(name)
        if signal and signal in eviction_hard:
            reserved += threshold_amount(eviction_hard[signal], int(amount))
        left = max(amount - reserved, Fraction(0))
        if name == "cpu":
            result[name] = format_cpu(int(left * 1000))
        elif name in ("memory", "ephemeral-storage") or name.startswith("hugepages-"):
            result[name] = format_bytes(int(left))
        else:
            result[name] = str(int(left))
    return result


# -- conditions ------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True", "False", "Unknown"
    reason: str
    message: str


PRESSURE_TEXT = {
    # type: ((reason, message) when False, (reason, message) when True)
    "MemoryPressure": (
        ("KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        ("KubeletHasInsufficientMemory", "kubelet has insufficient memory available"),
    ),
    "DiskPressure": (
        ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("KubeletHasDiskPressure", "kubelet has disk pressure"),
    ),
    "PIDPressure": (
        ("KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        ("KubeletHasInsufficientPID", "kubelet has insufficient PID available"),
    ),
}
# The events the kubelet records when a condition changes: type -> (False, True).
CONDITION_EVENTS = {
    "MemoryPressure": ("NodeHasSufficientMemory", "NodeHasInsufficientMemory"),
    "DiskPressure": ("NodeHasNoDiskPressure", "NodeHasDiskPressure"),
    "PIDPressure": ("NodeHasSufficientPID", "NodeHasInsufficientPID"),
    "Ready": ("NodeNotReady", "NodeReady"),
}


def _below(observed: int, threshold: str | None, total: int) -> bool:
    return threshold is not None and observed < threshold_amount(threshold, total)


def pressure_conditions(
    usage: Usage, memory_capacity: int, eviction_hard: Mapping[str, str]
) -> list[Condition]:
    """MemoryPressure, DiskPressure and PIDPressure: True when an observed signal is
    below its hard eviction threshold (memory.available; nodefs.available or
    nodefs.inodesFree; pid.available)."""
    memory = _below(
        usage.memory_available_bytes, eviction_hard.get("memory.available"), memory_capacity
    )
    disk = _below(
        usage.fs_available_bytes, eviction_hard.get("nodefs.available"), usage.fs_capacity_bytes
    ) or _below(usage.inodes_free, eviction_hard.get("nodefs.inodesFree"), usage.inodes)
    pids = _below(
        usage.pids_max - usage.pids_used, eviction_hard.get("pid.available"), usage.pids_max
    )
    return pressure_list(memory, disk, pids)


class Pressure(Protocol):
    """The eviction manager's view of the node (kubelet.eviction.EvictionManager):
    with thresholds that hold for the pressure transition period."""

    def memory_pressure(self) -> bool: ...

    def disk_pressure(self) -> bool: ...

    def pid_pressure(self) -> bool: ...


def pressure_list(memory: bool, disk: bool, pids: bool) -> list[Condition]:
    """The three pressure conditions, given which are under pressure."""
    out = []
    for kind, pressed in (
        ("MemoryPressure", memory),
        ("DiskPressure", disk),
        ("PIDPressure", pids),
    ):
        reason, message = PRESSURE_TEXT[kind][pressed]
        out.append(Condition(kind, "True" if pressed else "False", reason, message))
    return out


def ready_condition(
    runtime_status: api_pb2.StatusResponse | None, problems: Sequence[str]
) -> Condition:
    """Ready from the runtime's RuntimeReady and NetworkReady conditions (None: the
    runtime did not answer) and any other problem (an unhealthy PLEG)."""
    errors: list[str] = []
    if runtime_status is None:
        errors.append("container runtime is down")
    else:
        found = {c.type: c for c in runtime_status.status.conditions}
        for kind, what in (("RuntimeReady", "not ready"), ("NetworkReady", "network not ready")):
            condition = found.get(kind)
            if condition is None:
                errors.append(f"container runtime {what}: {kind} missing")
            elif not condition.status:
                errors.append(
                    f"container runtime {what}: {kind}=false "
                    f"reason:{condition.reason} message:{condition.message}"
                )
    errors += problems
    if errors:
        return Condition("Ready", "False", "KubeletNotReady", "; ".join(errors))
    return Condition("Ready", "True", "KubeletReady", "kubelet is posting ready status")


def merge_conditions(
    previous: Sequence[Object], current: Sequence[Condition], now: str
) -> list[Object]:
    """The status.conditions to post: heartbeat now; the transition time kept from
    `previous` unless the condition's status changed."""
    before = {c.get("type"): c for c in previous}
    merged = []
    for condition in current:
        old = before.get(condition.type)
        transition = now
        if (
            old is not None
            and old.get("status") == condition.status
            and old.get("lastTransitionTime")
        ):
            transition = str(old["lastTransitionTime"])
        merged.append({
            "type": condition.type, "status": condition.status,
            "lastHeartbeatTime": now, "lastTransitionTime": transition,
            "reason": condition.reason, "message": condition.message,
        })  # fmt: skip
    return merged


def node_images(images: Sequence[api_pb2.Image], limit: int = MAX_IMAGES_IN_STATUS) -> list[Object]:
    """status.images: the largest `limit` images, each with its digests then its tags."""
    ordered = sorted(images, key=lambda image: image.size, reverse=True)
    out = []
    for image in ordered:
        names = list(image.repo_digests) + list(image.repo_tags)
        if names:
            out.append({"names": names, "sizeBytes": int(image.size)})
        if len(out) == limit:
            break
    return out


def without_heartbeats(status: Object) -> Object:
    """`status` without what changes on every post, to tell a real change."""
    conditions = [
        {k: v for k, v in c.items() if k != "lastHeartbeatTime"}
        for c in status.get("conditions") or []
    ]
    return {**status, "conditions": conditions}


def rfc3339(moment: float) -> str:
    return datetime.datetime.fromtimestamp(moment, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time(moment: float) -> str:
    return datetime.datetime.fromtimestamp(moment, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- the agent -------------------------------------------------------------------------


class NodeAgent:
    """Registers the Node, then (`run`) keeps its Lease and status current.

    `kubelet_port` gives the node HTTP API's bound port (known once it listens);
    `pleg_healthy`, when given, is asked on every check and keeps the node NotReady
    while it says False; `pressure` (the eviction manager), when given, decides the
    pressure conditions in place of the hard thresholds checked here."""

    def __init__(
        self,
        client: Client,
        config: KubeletConfig,
        cri: CriClient,
        events: EventRecorder,
        *,
        kubelet_port: Callable[[], int],
        pleg_healthy: Callable[[], bool] | None = None,
        pressure: Pressure | None = None,
        host: Host | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.config = config
        self.cri = cri
        self.events = events
        self.kubelet_port = kubelet_port
        self.pleg_healthy = pleg_healthy
        self.pressure = pressure
        self.host = host or Host(config.root_dir)
        self.clock = clock
        self.name = config.node_name
        self._machine = self.host.machine()
        self._lock = threading.Lock()
        self._node: Object = {}
        self._posted: Object = {}  # the last status the API server accepted
        self._runtime_version = ""
        self._lease: Object | None = None

    # -- the Node object ---------------------------------------------------------------

    def node(self) -> Object:
        """The last Node object the API server returned ({} before registration)."""
        with self._lock:
            return dict(self._node)

    def labels(self) -> dict[str, str]:
        arch = self._machine.architecture
        return {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": arch,
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": arch,
            **self.config.node_labels,
        }

    def initial_node(self) -> Object:
        spec: Object = {}
        if self.config.pod_cidr:
            spec["podCIDR"] = self.config.pod_cidr
            spec["podCIDRs"] = [self.config.pod_cidr]
        if self.config.register_with_taints:
            spec["taints"] = [dict(t) for t in self.config.register_with_taints]
        return {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.name, "labels": self.labels()},
            "spec": spec, "status": self.compute_status({}),
        }  # fmt: skip

    def register(self, stop: threading.Event | None = None) -> Object:
        """Create the Node, or bring an existing one's labels, taints and podCIDR in
        line; then post its status. Retries (with back-off) until the API server
        answers or `stop` is set. The Node as the server has it."""
        delay = 0.5
        while True:
            try:
                return self._register_once()
            except API_ERRORS as e:
                log.warning("register node %s: %s (retrying in %.1fs)", self.name, e, delay)
            if stop is not None and stop.wait(delay):
                raise RuntimeError(f"register node {self.name}: stopped before the API answered")
            if stop is None:
                time.sleep(delay)
            delay = min(delay * 2, 7.0)

    def _register_once(self) -> Object:
        wanted = self.initial_node()
        try:
            node = self.client.create("/api/v1/nodes", wanted)
        except ApiError as e:
            if e.code != 409:
                raise
            node = self._reconcile_existing()
            self._store(node)
            self.events.record(node, NORMAL, "Starting", "Starting kubelet.")
            # Transitions (and their events) count from the status the node had.
            return self.post_status(force=True) or node
        log.info("registered node %s", self.name)
        self._store(node)
        self.events.record(node, NORMAL, "Starting", "Starting kubelet.")
        self._record_transitions({}, node.get("status") or {}, node)
        return node

    def _reconcile_existing(self) -> Object:
        path = f"/api/v1/nodes/{self.name}"
        for _ in range(5):
            existing = self.client.get(path)
            updated = reconcile_node(existing, self.initial_node())
            if updated == existing:
                return existing
            try:
                node = self.client.update(path, updated)
                log.info("updated the existing node %s", self.name)
                return node
            except ApiError as e:
                if e.code != 409:
                    raise
        raise ApiError("PUT", path, 409, {"reason": "Conflict", "message": "kept conflicting"})

    def _store(self, node: Object) -> None:
        with self._lock:
            self._node = node
            self._posted = dict(node.get("status") or {})

    # -- status ------------------------------------------------------------------------

    def _runtime_status(self) -> api_pb2.StatusResponse | None:
        try:
            status: api_pb2.StatusResponse = self.cri.runtime.Status(
                api_pb2.StatusRequest(), timeout=10
            )
            return status
        except grpc.RpcError as e:
            log.debug("CRI Status: %s", e)
            return None

    def _runtime_name(self) -> str:
        if not self._runtime_version:
            try:
                version = self.cri.runtime.Version(api_pb2.VersionRequest(), timeout=10)
                self._runtime_version = f"{version.runtime_name}://{version.runtime_version}"
            except grpc.RpcError as e:
                log.debug("CRI Version: %s", e)
        return self._runtime_version

    def _images(self) -> list[Object] | None:
        try:
            response = self.cri.images.ListImages(api_pb2.ListImagesRequest(), timeout=10)
        except grpc.RpcError as e:
            log.debug("CRI ListImages: %s", e)
            return None
        return node_images(response.images)

    def conditions(self) -> list[Condition]:
        if self.pressure is not None:
            pressure = self.pressure
            pressed = pressure_list(pressure.memory_pressure(), pressure.disk_pressure(),
                                    pressure.pid_pressure())  # fmt: skip
        else:
            pressed = pressure_conditions(
                self.host.usage(), self._machine.memory_bytes, self.config.eviction_hard
            )
        problems = []
        if self.pleg_healthy is not None and not self.pleg_healthy():
            problems.append("PLEG is not healthy: the runtime's state was not relisted lately")
        return [
            *pressed,
            ready_condition(self._runtime_status(), problems),
        ]

    def addresses(self) -> list[Object]:
        internal = self.config.node_ip or self.host.default_route_address()
        return [
            {"type": "InternalIP", "address": internal},
            {"type": "Hostname", "address": self.name},
        ]

    def compute_status(self, previous: Object) -> Object:
        """The full status to post, given the last posted one."""
        machine = self._machine
        usage = self.host.usage()
        node_capacity = capacity(machine, usage, self.config.max_pods)
        status: Object = {
            "capacity": node_capacity,
            "allocatable": allocatable(
                node_capacity, system_reserved=self.config.system_reserved,
                kube_reserved=self.config.kube_reserved,
                eviction_hard=self.config.eviction_hard,
            ),
            "conditions": merge_conditions(
                previous.get("conditions") or [], self.conditions(), rfc3339(self.clock())
            ),
            "addresses": self.addresses(),
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port()}},
            "nodeInfo": {
                "machineID": machine.machine_id, "systemUUID": machine.system_uuid,
                "bootID": machine.boot_id, "kernelVersion": machine.kernel_version,
                "osImage": machine.os_image, "containerRuntimeVersion": self._runtime_name(),
                "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": KUBELET_VERSION,
                "operatingSystem": "linux", "architecture": machine.architecture,
            },
        }  # fmt: skip
        images = self._images()
        status["images"] = images if images is not None else previous.get("images") or []
        return status

    def post_status(self, *, force: bool = False) -> Object | None:
        """PATCH nodes/<name>/status when it changed (or `force`); the Node returned, or
        None when nothing was sent. Re-registers a Node that was deleted."""
        with self._lock:
            previous = dict(self._posted)
        status = self.compute_status(previous)
        if not force and without_heartbeats(status) == without_heartbeats(previous):
            return None
        try:
            node = self.client.patch(f"/api/v1/nodes/{self.name}/status", {"status": status})
        except ApiError as e:
            if e.code != 404:
                raise
            log.warning("node %s is gone from the API: registering it again", self.name)
            node = self.client.create("/api/v1/nodes", {**self.initial_node(), "status": status})
        self._record_transitions(previous, status, node)
        self._store(node)
        return node

    def _record_transitions(self, before: Object, after: Object, node: Object) -> None:
        old = {c.get("type"): c.get("status") for c in before.get("conditions") or []}
        for condition in after.get("conditions") or []:
            kind, status = condition.get("type"), condition.get("status")
            names = CONDITION_EVENTS.get(str(kind))
            if names is None or old.get(kind) == status:
                continue
            reason = names[1] if status == "True" else names[0]
            self.events.record(node, NORMAL, reason, f"Node {self.name} status is now: {reason}")

    def conditions_changed(self) -> bool:
        """Whether a quick check of the conditions differs from the last posted ones."""
        with self._lock:
            posted = {c.get("type"): c.get("status") for c in self._posted.get("conditions") or []}
        return any(posted.get(c.type) != c.status for c in self.conditions())

    # -- lease -------------------------------------------------------------------------

    def renew_lease(self) -> Object:
        """Create or renew kube-node-lease/<node>; the Lease."""
        path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases"
        now = micro_time(self.clock())
        spec = {
            "holderIdentity": self.name,
            "leaseDurationSeconds": self.config.node_lease_duration_seconds,
            "renewTime": now,
        }
        current = self._lease
        if current is None:
            try:
                current = self.client.get(f"{path}/{self.name}")
            except ApiError as e:
                if e.code != 404:
                    raise
        if current is None:
            lease = self.client.create(path, {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": LEASE_NAMESPACE,
                             "ownerReferences": self._owner()},
                "spec": spec,
            })  # fmt: skip
        else:
            updated = {**current, "spec": {**(current.get("spec") or {}), **spec}}
            metadata = dict(updated.get("metadata") or {})
            if not metadata.get("ownerReferences") and self._owner():
                metadata["ownerReferences"] = self._owner()
            updated["metadata"] = metadata
            try:
                lease = self.client.update(f"{path}/{self.name}", updated)
            except ApiError as e:
                self._lease = None  # stale or gone: read it again next time
                raise e
        self._lease = lease
        return lease

    def _owner(self) -> list[Object]:
        node = self.node()
        uid = (node.get("metadata") or {}).get("uid")
        if not uid:
            return []
        return [{"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": uid}]

    # -- the loop ----------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Register (if not yet), then renew the Lease and post the status until `stop`."""
        if not self.node():
            try:
                self.register(stop)
            except RuntimeError:
                return
        renew_every = max(self.config.node_lease_duration_seconds / 4, 1.0)
        next_lease = next_check = time.monotonic()
        # Registration posted the status just now.
        next_status = next_lease + self.config.node_status_update_frequency
        lease_delay = 0.2
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_lease:
                try:
                    self.renew_lease()
                    next_lease = now + renew_every
                    lease_delay = 0.2
                except API_ERRORS as e:
                    # The kubelet retries a failed renewal with a back-off capped at 7 s.
                    log.warning("renew lease of node %s: %s", self.name, e)
                    next_lease = now + lease_delay
                    lease_delay = min(lease_delay * 2, 7.0)
            try:
                if now >= next_status:
                    self.post_status(force=True)
                    next_status = now + self.config.node_status_update_frequency
                elif now >= next_check and self.conditions_changed():
                    self.post_status()
            except API_ERRORS as e:
                log.warning("update status of node %s: %s", self.name, e)
                next_status = now + min(self.config.node_status_update_frequency, 2.0)
            next_check = now + CONDITION_CHECK_PERIOD
            stop.wait(max(min(next_lease, next_status, next_check) - time.monotonic(), 0.05))


def reconcile_node(existing: Object, wanted: Object) -> Object:
    """`existing` with the kubelet's labels, missing register taints and an unset
    podCIDR from `wanted` (what the kubelet reconciles on re-registration)."""
    metadata = dict(existing.get("metadata") or {})
    metadata["labels"] = {**(metadata.get("labels") or {}), **wanted["metadata"]["labels"]}
    spec = dict(existing.get("spec") or {})
    wanted_spec = wanted.get("spec") or {}
    if wanted_spec.get("podCIDR") and not spec.get("podCIDR"):
        spec["podCIDR"] = wanted_spec["podCIDR"]
        spec["podCIDRs"] = wanted_spec["podCIDRs"]
    taints = list(spec.get("taints") or [])
    for taint in wanted_spec.get("taints") or []:
        if not any(
            t.get("key") == taint.get("key") and t.get("effect") == taint.get("effect")
            for t in taints
        ):
            taints.append(taint)
    if taints:
        spec["taints"] = taints
    return {**existing, "metadata": metadata, "spec": spec}


def check_quantities(settings: Mapping[str, Mapping[str, str]]) -> None:
    """ValueError naming the setting with a malformed quantity (reserved amounts,
    eviction thresholds), so a bad flag fails at start and not on every status."""
    for setting, values in settings.items():
        for name, text in values.items():
            try:
                if setting == "eviction-hard":
                    threshold_amount(text, 100)
                else:
                    parse_quantity(text)
            except (QuantityError, ValueError, ArithmeticError) as e:
                raise ValueError(f"--{setting} {name}={text}: {e}") from None
