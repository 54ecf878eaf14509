"""The eviction manager: watches the node's memory, disk and PIDs against the eviction
thresholds, reports pressure for the node's conditions and for pod admission, and when a
threshold is crossed reclaims node-level resources (dead containers, unused images) or
else evicts one pod per monitoring interval, as the kubelet's eviction manager does.

Signals (from one stats reading, `kubelet.stats` NodeUsage, the Summary API's figures):
  memory.available    node memory capacity - the working set of the root cgroup (as
                      cAdvisor computes it from /proc/meminfo: MemTotal - MemFree -
                      Inactive(file)); not MemAvailable, which counts reclaimable slab
                      and active page cache as free
  nodefs.available    statvfs of the kubelet's root dir: available bytes / capacity
  nodefs.inodesFree   the same filesystem's free inodes / inodes
  imagefs.available   the image store's filesystem (CRI ImageFsInfo's mountpoint)
  imagefs.inodesFree
  pid.available       pid_max - the tasks that exist (/proc/loadavg)

Thresholds are `signal<quantity` or `signal<percent%` of the signal's capacity; hard
ones act at once, soft ones once met for their grace period. A threshold met stays met
until the signal is above it by its minimum reclaim. A pressure condition stays True
for the pressure transition period after the last observation that met it, so the
condition does not flap.

On pressure, per monitoring interval: for a disk signal, collect dead containers and
unused images first and look again; if still met, rank the active pods (memory: pods
over their requests first, then lower priority, then usage above requests; disk: the
same with ephemeral storage; inodes: usage; PIDs: priority then processes) and evict
the first: its containers stop with grace 0 (hard) or min(its grace, the max pod grace
period) (soft), its status becomes Failed/Evicted with the message, an Evicted event.
Static, mirror and system-critical pods are never evicted and always admitted.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

from kubeapi.quantity import QuantityError, parse_quantity
from kubeapi.tolerations import tolerated
from kubelet.pods.qos import BESTEFFORT, pod_qos_class
from kubelet.pods.static import is_mirror, is_static
from kubelet.stats.snapshot import NodeUsage, PodUsage

log = logging.getLogger(__name__)

Pod = dict[str, Any]

MEMORY_AVAILABLE = "memory.available"
NODEFS_AVAILABLE = "nodefs.available"
NODEFS_INODES_FREE = "nodefs.inodesFree"
IMAGEFS_AVAILABLE = "imagefs.available"
IMAGEFS_INODES_FREE = "imagefs.inodesFree"
PID_AVAILABLE = "pid.available"
SIGNALS = (MEMORY_AVAILABLE, NODEFS_AVAILABLE, NODEFS_INODES_FREE, IMAGEFS_AVAILABLE,
           IMAGEFS_INODES_FREE, PID_AVAILABLE)  # fmt: skip
DISK_SIGNALS = (NODEFS_AVAILABLE, NODEFS_INODES_FREE, IMAGEFS_AVAILABLE, IMAGEFS_INODES_FREE)

MEMORY_PRESSURE = "MemoryPressure"
DISK_PRESSURE = "DiskPressure"
PID_PRESSURE = "PIDPressure"
CONDITION_OF = {MEMORY_AVAILABLE: MEMORY_PRESSURE, PID_AVAILABLE: PID_PRESSURE,
                **dict.fromkeys(DISK_SIGNALS, DISK_PRESSURE)}  # fmt: skip
# The resource a signal starves, as the eviction message names it.
RESOURCE_OF = {
    MEMORY_AVAILABLE: "memory", NODEFS_AVAILABLE: "ephemeral-storage",
    IMAGEFS_AVAILABLE: "ephemeral-storage", NODEFS_INODES_FREE: "inodes",
    IMAGEFS_INODES_FREE: "inodes", PID_AVAILABLE: "pids",
}  # fmt: skip

EVICTED = "Evicted"  # the pod status reason and the event reason
MEMORY_PRESSURE_TAINT = "node.kubernetes.io/memory-pressure"
SYSTEM_CRITICAL_PRIORITY = 2_000_000_000  # system-cluster-critical and above
DEFAULT_TRANSITION_PERIOD = 300.0
DEFAULT_MONITORING_INTERVAL = 10.0


# -- thresholds ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Amount:
    """A quantity, or a fraction of the signal's capacity (from "10%")."""

    quantity: Fraction | None = None
    percentage: Fraction | None = None  # 0..1

    def of(self, capacity: int) -> Fraction:
        if self.percentage is not None:
            return self.percentage * capacity
        return self.quantity or Fraction(0)


@dataclass(frozen=True, slots=True)
class Threshold:
    signal: str
    value: Amount
    grace_period: float = 0.0  # soft thresholds: how long it must be met first
    hard: bool = True
    min_reclaim: Amount = Amount()


def parse_amount(signal: str, text: str) -> Amount:
    """ "100Mi" or "10%" for `signal`; ValueError when it is neither, or negative."""
    value = text.strip()
    percent = value.endswith("%")
    try:
        quantity = Fraction(value[:-1]) if percent else parse_quantity(value)
    except (QuantityError, ValueError, ZeroDivisionError):
        raise ValueError(f"{signal}: invalid threshold {text!r} (expected 100Mi or 10%)") from None
    if percent:
        if not 0 <= quantity <= 100:
            raise ValueError(f"{signal}: percentage {text!r} is not in 0..100%")
        return Amount(percentage=quantity / 100)
    if quantity < 0:
        raise ValueError(f"{signal}: threshold {text!r} must not be negative")
    return Amount(quantity=quantity)


def _check_signal(signal: str) -> None:
    if signal not in SIGNALS:
        raise ValueError(f"unsupported eviction signal {signal!r} (one of {', '.join(SIGNALS)})")


def parse_thresholds(
    hard: Mapping[str, str],
    soft: Mapping[str, str] | None = None,
    soft_grace_periods: Mapping[str, float] | None = None,
    min_reclaim: Mapping[str, str] | None = None,
) -> list[Threshold]:
    """The thresholds of the settings (signal -> "100Mi"/"10%"; grace periods in
    seconds); ValueError naming what is wrong."""
    soft = soft or {}
    grace = soft_grace_periods or {}
    reclaim = min_reclaim or {}
    for signal in [*hard, *soft, *grace, *reclaim]:
        _check_signal(signal)
    reclaims = {signal: parse_amount(signal, text) for signal, text in reclaim.items()}
    thresholds = [
        Threshold(signal, parse_amount(signal, text), min_reclaim=reclaims.get(signal, Amount()))
        for signal, text in hard.items()
    ]
    for signal, text in soft.items():
        if signal not in grace:
            raise ValueError(f"no grace period given for the soft eviction threshold {signal}")
        if grace[signal] < 0:
            raise ValueError(f"{signal}: the soft eviction grace period must not be negative")
        amount = parse_amount(signal, text)
        reclaimed = reclaims.get(signal, Amount())
        thresholds.append(Threshold(signal, amount, grace[signal], False, reclaimed))
    for signal in grace:
        if signal not in soft:
            raise ValueError(f"{signal}: a soft eviction grace period without a soft threshold")
    return thresholds


# -- quantities as the kubelet prints them --------------------------------------------

_BINARY = (("Ei", 2**60), ("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10))


def quantity_text(amount: int | Fraction, resource: str = "memory") -> str:
    """A byte amount in the largest binary suffix that keeps it whole ("50Mi", "1536Ki",
    "1000"), counts (inodes, pids) as plain numbers."""
    value = int(amount)
    if resource in ("memory", "ephemeral-storage") and value:
        for suffix, unit in _BINARY:
            if value % unit == 0:
                return f"{value // unit}{suffix}"
    return str(value)


# -- observations ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Observation:
    available: int
    capacity: int


def observe(usage: NodeUsage) -> dict[str, Observation]:
    """Each signal's available amount and capacity in one stats reading (signals whose
    figures are missing are left out: they meet no threshold)."""
    found: dict[str, Observation] = {}
    memory = usage.memory
    if memory is not None and memory.available_bytes is not None:
        capacity = memory.limit_bytes or usage.machine.memory_bytes
        found[MEMORY_AVAILABLE] = Observation(memory.available_bytes, capacity)
    for bytes_signal, inodes_signal, fs in (
        (NODEFS_AVAILABLE, NODEFS_INODES_FREE, usage.fs),
        (IMAGEFS_AVAILABLE, IMAGEFS_INODES_FREE, usage.image_fs),
    ):
        if fs is None:
            continue
        if fs.available_bytes is not None and fs.capacity_bytes:
            found[bytes_signal] = Observation(fs.available_bytes, fs.capacity_bytes)
        if fs.inodes_free is not None and fs.inodes:
            found[inodes_signal] = Observation(fs.inodes_free, fs.inodes)
    if usage.max_pid and usage.running_processes is not None:
        found[PID_AVAILABLE] = Observation(usage.max_pid - usage.running_processes,
                                           usage.max_pid)  # fmt: skip
    return found


def met(
    thresholds: Sequence[Threshold],
    observations: Mapping[str, Observation],
    *,
    with_reclaim: bool,
) -> list[Threshold]:
    """The thresholds whose signal is below them (plus their minimum reclaim)."""
    out = []
    for threshold in thresholds:
        seen = observations.get(threshold.signal)
        if seen is None:
            continue
        limit = threshold.value.of(seen.capacity)
        if with_reclaim:
            limit += threshold.min_reclaim.of(seen.capacity)
        if seen.available < limit:
            out.append(threshold)
    return out


# -- pods: ranking and messages --------------------------------------------------------


def is_critical(pod: Pod) -> bool:
    """Static and mirror pods, and pods of system-critical priority: never evicted,
    always admitted (the node needs them)."""
    priority = (pod.get("spec") or {}).get("priority")
    return (
        is_static(pod)
        or is_mirror(pod)
        or (isinstance(priority, int) and priority >= SYSTEM_CRITICAL_PRIORITY)
    )


def pod_request(pod: Pod, resource: str) -> Fraction:
    """The pod's request of `resource`: the sum over its containers, or the largest
    init container's when larger (init containers run one at a time)."""
    spec = pod.get("spec") or {}

    def request(container: dict[str, Any]) -> Fraction:
        resources = container.get("resources") or {}
        given = (resources.get("requests") or {}).get(resource)
        if given is None:
            given = (resources.get("limits") or {}).get(resource)
        return parse_quantity(str(given)) if given is not None else Fraction(0)

    total = sum((request(c) for c in spec.get("containers") or []), Fraction(0))
    largest_init = max((request(c) for c in spec.get("initContainers") or []), default=Fraction(0))
    return max(total, largest_init)


def _priority(pod: Pod) -> int:
    value = (pod.get("spec") or {}).get("priority")
    return value if isinstance(value, int) else 0


def memory_usage(stats: PodUsage) -> int:
    """The working set of the pod's containers (the pod cgroup's when they have none)."""
    figures = [c.memory.working_set_bytes for c in stats.containers if c.memory is not None]
    if figures:
        return sum(figures)
    return stats.memory.working_set_bytes if stats.memory is not None else 0


def disk_usage(stats: PodUsage, inodes: bool) -> int:
    """Ephemeral storage: writable layers, logs and emptyDir volumes (bytes or inodes)."""
    fs = stats.ephemeral_storage
    if fs is None:
        return 0
    return (fs.inodes_used if inodes else fs.used_bytes) or 0


def rank(pods: Sequence[Pod], stats: Mapping[str, PodUsage], signal: str) -> list[Pod]:
    """The pods in eviction order for `signal`. Pods without stats go first (nothing
    says they use little); then, for memory and disk, pods using more than they
    request; then lower priority; then the larger usage above the request."""

    def key(pod: Pod) -> tuple[int, int, int, int]:
        found = stats.get(str((pod.get("metadata") or {}).get("uid")))
        if found is None:
            return (0, 0, _priority(pod), 0)
        if signal == PID_AVAILABLE:
            return (1, 0, _priority(pod), -(found.process_count or 0))
        if signal == MEMORY_AVAILABLE:
            usage, request = memory_usage(found), pod_request(pod, "memory")
        elif signal in (NODEFS_INODES_FREE, IMAGEFS_INODES_FREE):
            usage, request = disk_usage(found, inodes=True), Fraction(0)
        else:
            usage, request = disk_usage(found, inodes=False), pod_request(pod, "ephemeral-storage")
        exceeds = usage > request
        return (1, 0 if exceeds else 1, _priority(pod), -int(usage - request))

    return sorted(pods, key=key)


def eviction_message(
    pod: Pod, stats: PodUsage | None, threshold: Threshold, observation: Observation
) -> str:
    """The kubelet's text: the starved resource, the threshold and what was available,
    then each container using more of it than it requests."""
    resource = RESOURCE_OF[threshold.signal]
    quantity = quantity_text(threshold.value.of(observation.capacity), resource)
    available = quantity_text(observation.available, resource)
    message = (f"The node was low on resource: {resource}. "
               f"Threshold quantity: {quantity}, available: {available}. ")  # fmt: skip
    if stats is not None and resource in ("memory", "ephemeral-storage"):
        by_name = {c.name: c for c in stats.containers}
        for container in (pod.get("spec") or {}).get("containers") or []:
            usage_of = by_name.get(container.get("name", ""))
            if usage_of is None:
                continue
            if resource == "memory":
                if usage_of.memory is None:
                    continue
                usage = usage_of.memory.working_set_bytes
            else:
                if usage_of.rootfs is None or usage_of.logs is None:
                    continue
                usage = (usage_of.rootfs.used_bytes or 0) + (usage_of.logs.used_bytes or 0)
            requests = (container.get("resources") or {}).get("requests") or {}
            request = parse_quantity(str(requests.get(resource, "0")))
            if usage > request:
                message += (f"Container {container['name']} was using "
                            f"{quantity_text(usage, resource)}, request is "
                            f"{quantity_text(request, resource)}, has larger consumption "
                            f"of {resource}. ")  # fmt: skip
    return message.rstrip()


def tolerates_memory_pressure(pod: Pod) -> bool:
    taint = {"key": MEMORY_PRESSURE_TAINT, "effect": "NoSchedule"}
    return tolerated((pod.get("spec") or {}).get("tolerations") or [], taint)


# -- the manager -----------------------------------------------------------------------


class Events(Protocol):
    def record(
        self, obj: dict[str, Any], event_type: str, reason: str, message: str,
        *, field_path: str = "",
    ) -> None: ...  # fmt: skip


# (pod, grace period, message, DisruptionTarget condition) -> whether the pod is evicted
EvictFunc = Callable[[Pod, int, str, dict[str, Any]], bool]


def _rfc3339(moment: float) -> str:
    return datetime.datetime.fromtimestamp(moment, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _is_active(pod: Pod) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not (pod.get("metadata") or {}).get(
        "deletionTimestamp"
    )


def _grace_period(pod: Pod) -> int:
    given = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
    return int(given) if isinstance(given, int) and given >= 0 else 30


class EvictionManager:
    """`synchronize()` is one monitoring pass (`run` repeats it every
    `monitoring_interval` seconds); the pressure queries and `admit` answer from the
    last pass, without I/O."""

    def __init__(
        self,
        thresholds: Sequence[Threshold],
        *,
        stats: Callable[[], NodeUsage],
        pods: Callable[[], list[Pod]],
        evict: EvictFunc,
        reclaim_disk: Sequence[Callable[[], object]] = (),
        events: Events | None = None,
        transition_period: float = DEFAULT_TRANSITION_PERIOD,
        monitoring_interval: float = DEFAULT_MONITORING_INTERVAL,
        max_pod_grace_period: int = 0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.thresholds = list(thresholds)
        self.stats = stats
        self.pods = pods
        self.evict = evict
        self.reclaim_disk = list(reclaim_disk)
        self.events = events
        self.transition_period = transition_period
        self.monitoring_interval = monitoring_interval
        self.max_pod_grace_period = max_pod_grace_period
        self.clock = clock
        self.wall_clock = wall_clock
        self._lock = threading.Lock()
        self._met: list[Threshold] = []
        self._first_met: dict[Threshold, float] = {}
        self._condition_seen: dict[str, float] = {}  # condition -> last observed met
        self._conditions: set[str] = set()

    # -- what the node and admission ask ----------------------------------------------

    def conditions(self) -> set[str]:
        with self._lock:
            return set(self._conditions)

    def memory_pressure(self) -> bool:
        return MEMORY_PRESSURE in self.conditions()

    def disk_pressure(self) -> bool:
        return DISK_PRESSURE in self.conditions()

    def pid_pressure(self) -> bool:
        return PID_PRESSURE in self.conditions()

    def admit(self, pod: Pod) -> tuple[str, str] | None:
        """None to admit `pod`, else (reason, message) of its rejection: under memory
        pressure alone BestEffort pods are refused (unless they tolerate the
        memory-pressure taint); under any other pressure, every pod. Critical pods
        always come in."""
        conditions = self.conditions()
        if not conditions or is_critical(pod):
            return None
        if conditions == {MEMORY_PRESSURE} and (
            pod_qos_class(pod) != BESTEFFORT or tolerates_memory_pressure(pod)
        ):
            return None
        names = " ".join(sorted(conditions))
        return EVICTED, f"Pod was rejected: The node had condition: [{names}]."

    # -- one pass ----------------------------------------------------------------------

    def synchronize(self) -> Pod | None:
        """Observe, update the pressure, reclaim or evict; the pod evicted, if one."""
        if not self.thresholds:
            return None
        usage = self.stats()
        observations = observe(usage)
        now = self.clock()
        with self._lock:
            previous = list(self._met)
        current = met(self.thresholds, observations, with_reclaim=False)
        # Met before and not yet reclaimed by the minimum amount: still met.
        current += [t for t in met(previous, observations, with_reclaim=True) if t not in current]
        with self._lock:
            self._first_met = {t: self._first_met.get(t, now) for t in current}
            for threshold in current:
                self._condition_seen[CONDITION_OF[threshold.signal]] = now
            self._conditions = {
                c for c, seen in self._condition_seen.items()
                if now - seen < self.transition_period or c in
                {CONDITION_OF[t.signal] for t in current}
            }  # fmt: skip
            acting = [t for t in current if now - self._first_met[t] >= t.grace_period]
            self._met = current
        if not acting:
            return None
        # Memory first (the kernel's OOM killer is the alternative), then disk, then PIDs.
        threshold = min(acting, key=lambda t: (SIGNALS.index(t.signal), not t.hard))
        seen = observations[threshold.signal]
        limit = int(threshold.value.of(seen.capacity))
        log.warning("eviction threshold %s<%s met (available %s of %s)", threshold.signal,
                    limit, seen.available, seen.capacity)  # fmt: skip
        if threshold.signal in DISK_SIGNALS and self._reclaim_node_level(threshold):
            return None
        return self._evict_one(threshold, observations[threshold.signal], usage)

    def _reclaim_node_level(self, threshold: Threshold) -> bool:
        """Dead containers and unused images first; True when that relieved the
        signal (with its minimum reclaim), so no pod needs to go."""
        if not self.reclaim_disk:
            return False
        for reclaim in self.reclaim_disk:
            try:
                reclaim()
            except Exception:
                log.exception("eviction: node-level reclaim for %s", threshold.signal)
        after = observe(self.stats())
        if met([threshold], after, with_reclaim=True):
            return False
        log.info("eviction: %s relieved by reclaiming containers and images", threshold.signal)
        return True

    def _evict_one(
        self, threshold: Threshold, observation: Observation, usage: NodeUsage
    ) -> Pod | None:
        candidates = [p for p in self.pods() if _is_active(p) and not is_critical(p)]
        stats = {p.uid: p for p in usage.pods}
        for pod in rank(candidates, stats, threshold.signal):
            uid = str((pod.get("metadata") or {}).get("uid"))
            message = eviction_message(pod, stats.get(uid), threshold, observation)
            if threshold.hard:
                grace = 0
            elif self.max_pod_grace_period < 0:
                grace = _grace_period(pod)
            else:
                grace = min(_grace_period(pod), self.max_pod_grace_period)
            condition = {
                "type": "DisruptionTarget", "status": "True",
                "reason": "TerminationByKubelet", "message": message,
                "lastTransitionTime": _rfc3339(self.wall_clock()),
            }  # fmt: skip
            if self.evict(pod, grace, message, condition):
                if self.events is not None:
                    self.events.record(pod, "Warning", EVICTED, message)
                meta = pod.get("metadata") or {}
                log.warning("evicted pod %s/%s: %s", meta.get("namespace"), meta.get("name"),
                            message)  # fmt: skip
                return pod
        return None

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.synchronize()
            except Exception:
                log.exception("eviction manager")
            stop.wait(self.monitoring_interval)
