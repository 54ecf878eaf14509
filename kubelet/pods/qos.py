"""Quality of service: a pod's QoS class (Guaranteed, Burstable, BestEffort) as
Kubernetes computes it, the container resources the kubelet derives from requests
and limits (CPU shares, CFS quota, memory limit, OOM score adjustment), and the pod's
cgroup parent in the kubelet's cgroupfs layout:

    <cgroup_root>/kubepods/pod<uid>                  Guaranteed
    <cgroup_root>/kubepods/burstable/pod<uid>        Burstable
    <cgroup_root>/kubepods/besteffort/pod<uid>       BestEffort

Everything here is pure; kubelet/pods/cgroups.py creates and removes the directories.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from kubeapi.quantity import parse_quantity

GUARANTEED = "Guaranteed"
BURSTABLE = "Burstable"
BESTEFFORT = "BestEffort"

# Only these two resources decide the class (hugepages, ephemeral-storage do not).
QOS_RESOURCES = ("cpu", "memory")

# As the kubelet's cm package: shares per CPU, the floor the kernel accepts, and the
# CFS period it uses for quotas.
SHARES_PER_CPU = 1024
MIN_SHARES = 2
QUOTA_PERIOD_US = 100_000
MIN_QUOTA_US = 1000

# OOM score adjustments (pkg/kubelet/qos/policy.go).
GUARANTEED_OOM_SCORE_ADJ = -997
BESTEFFORT_OOM_SCORE_ADJ = 1000


def _resources(container: dict[str, Any], kind: str) -> dict[str, Fraction]:
    given = (container.get("resources") or {}).get(kind) or {}
    found: dict[str, Fraction] = {}
    for name in QOS_RESOURCES:
        if name in given:
            value = parse_quantity(str(given[name]))
            if value > 0:
                found[name] = value
    return found


def requests_of(container: dict[str, Any]) -> dict[str, Fraction]:
    """CPU and memory requests; a limit without a request counts as the request (the API
    server defaults it so)."""
    return {**_resources(container, "limits"), **_resources(container, "requests")}


def limits_of(container: dict[str, Any]) -> dict[str, Fraction]:
    return _resources(container, "limits")


def all_containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod.get("spec") or {}
    return list(spec.get("initContainers") or []) + list(spec.get("containers") or [])


def qos_class(pod: dict[str, Any]) -> str:
    """Guaranteed when every container limits both CPU and memory and requests what it
    limits; BestEffort when no container requests or limits either; else Burstable."""
    requests: dict[str, Fraction] = {}
    limits: dict[str, Fraction] = {}
    guaranteed = True
    for container in all_containers(pod):
        container_requests = requests_of(container)
        container_limits = limits_of(container)
        for name, value in container_requests.items():
            requests[name] = requests.get(name, Fraction(0)) + value
        for name, value in container_limits.items():
            limits[name] = limits.get(name, Fraction(0)) + value
        if set(container_limits) != set(QOS_RESOURCES):
            guaranteed = False
    if not requests and not limits:
        return BESTEFFORT
    if guaranteed and requests == limits:
        return GUARANTEED
    return BURSTABLE


def pod_qos_class(pod: dict[str, Any]) -> str:
    """status.qosClass when the API server set it, else computed."""
    given = (pod.get("status") or {}).get("qosClass")
    return str(given) if given else qos_class(pod)


def qos_cgroup(cgroup_root: str, qos: str) -> str:
    """The QoS class's cgroup: kubepods, kubepods/burstable or kubepods/besteffort."""
    base = posixpath.join("/", cgroup_root.strip("/"), "kubepods")
    if qos == GUARANTEED:
        return base
    return posixpath.join(base, qos.lower())


def pod_cgroup_parent(pod: dict[str, Any], cgroup_root: str) -> str:
    """The cgroupfs path of the pod's own cgroup, the sandbox's cgroup_parent."""
    uid = str((pod.get("metadata") or {}).get("uid", ""))
    return posixpath.join(qos_cgroup(cgroup_root, pod_qos_class(pod)), f"pod{uid}")


def milli_cpu_to_shares(milli_cpu: int) -> int:
    if milli_cpu <= 0:
        return MIN_SHARES
    return max(MIN_SHARES, milli_cpu * SHARES_PER_CPU // 1000)


def milli_cpu_to_quota(milli_cpu: int, period: int = QUOTA_PERIOD_US) -> int:
    """CFS quota in microseconds per `period`; 0 (no quota) for no limit."""
    if milli_cpu <= 0:
        return 0
    return max(MIN_QUOTA_US, milli_cpu * period // 1000)


def _milli(value: Fraction) -> int:
    scaled = value * 1000
    return int(-((-scaled.numerator) // scaled.denominator))  # round up, as MilliValue


def _bytes(value: Fraction) -> int:
    return int(-((-value.numerator) // value.denominator))


@dataclass(frozen=True, slots=True)
class ContainerResources:
    """What the CRI's LinuxContainerResources get for one container."""

    cpu_shares: int
    cpu_quota: int
    cpu_period: int
    memory_limit_in_bytes: int
    oom_score_adj: int


def oom_score_adj(qos: str, memory_request: int, memory_capacity: int) -> int:
    """Guaranteed -997, BestEffort 1000, Burstable 1000 - 1000*request/capacity kept in
    2..999 (so a Burstable container is always killed after BestEffort ones and before
    Guaranteed ones)."""
    if qos == GUARANTEED:
        return GUARANTEED_OOM_SCORE_ADJ
    if qos == BESTEFFORT:
        return BESTEFFORT_OOM_SCORE_ADJ
    if memory_capacity <= 0:
        return 999
    adj = 1000 - (1000 * memory_request) // memory_capacity
    return min(999, max(2, adj))


def container_resources(
    pod: dict[str, Any], container: dict[str, Any], *, memory_capacity: int
) -> ContainerResources:
    requests = requests_of(container)
    limits = limits_of(container)
    cpu_request = _milli(requests["cpu"]) if "cpu" in requests else 0
    cpu_limit = _milli(limits["cpu"]) if "cpu" in limits else 0
    memory_request = _bytes(requests["memory"]) if "memory" in requests else 0
    memory_limit = _bytes(limits["memory"]) if "memory" in limits else 0
    quota = milli_cpu_to_quota(cpu_limit)
    return ContainerResources(
        cpu_shares=milli_cpu_to_shares(cpu_request),
        cpu_quota=quota,
        cpu_period=QUOTA_PERIOD_US if quota else 0,
        memory_limit_in_bytes=memory_limit,
        oom_score_adj=oom_score_adj(pod_qos_class(pod), memory_request, memory_capacity),
    )


@dataclass(frozen=True, slots=True)
class PodCgroupLimits:
    """The pod cgroup's own limits: shares from the summed CPU requests, a quota and a
    memory limit only when every container sets that limit (else the pod is unbounded)."""

    cpu_shares: int
    cpu_quota: int
    memory_limit_in_bytes: int


def pod_cgroup_limits(pod: dict[str, Any]) -> PodCgroupLimits:
    containers = list((pod.get("spec") or {}).get("containers") or [])
    init_containers = list((pod.get("spec") or {}).get("initContainers") or [])
    cpu_request = 0
    cpu_limit = 0
    memory_limit = 0
    cpu_limited = memory_limited = bool(containers)
    for container in containers:
        requests, limits = requests_of(container), limits_of(container)
        cpu_request += _milli(requests["cpu"]) if "cpu" in requests else 0
        if "cpu" in limits:
            cpu_limit += _milli(limits["cpu"])
        else:
            cpu_limited = False
        if "memory" in limits:
            memory_limit += _bytes(limits["memory"])
        else:
            memory_limited = False
    # Init containers run alone: the pod needs at least the largest of them.
    for container in init_containers:
        requests, limits = requests_of(container), limits_of(container)
        cpu_request = max(cpu_request, _milli(requests["cpu"]) if "cpu" in requests else 0)
        if "cpu" in limits:
            cpu_limit = max(cpu_limit, _milli(limits["cpu"]))
        else:
            cpu_limited = False
        if "memory" in limits:
            memory_limit = max(memory_limit, _bytes(limits["memory"]))
        else:
            memory_limited = False
    qos = pod_qos_class(pod)
    return PodCgroupLimits(
        cpu_shares=MIN_SHARES if qos == BESTEFFORT else milli_cpu_to_shares(cpu_request),
        cpu_quota=milli_cpu_to_quota(cpu_limit) if cpu_limited else 0,
        memory_limit_in_bytes=memory_limit if memory_limited else 0,
    )
