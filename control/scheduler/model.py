"""What the scheduler's pure functions read: a pod's requests and host ports, and a
node with what its bound pods already take (`NodeInfo`). Built from API dicts by
the cache (cache.py); filters.py and scores.py only read them.

Requests follow the kube-scheduler: a pod asks for the sum of its containers'
requests or the largest init container's, whichever is larger, plus its overhead; a
container with limits but no requests asks for its limits (the API's defaulting).
For scoring, a container that asks for no cpu or memory counts as 100m and 200Mi
(`nonzero_requests`), so empty pods still spread. Extended resources are not
counted yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubeapi.quantity import QuantityError, milli_value, value

Object = dict[str, Any]

DEFAULT_MILLI_CPU = 100
DEFAULT_MEMORY = 200 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Resources:
    milli_cpu: int = 0
    memory: int = 0
    ephemeral_storage: int = 0
    pods: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            self.milli_cpu + other.milli_cpu, self.memory + other.memory,
            self.ephemeral_storage + other.ephemeral_storage, self.pods + other.pods,
        )  # fmt: skip

    def __sub__(self, other: Resources) -> Resources:
        return Resources(
            self.milli_cpu - other.milli_cpu, self.memory - other.memory,
            self.ephemeral_storage - other.ephemeral_storage, self.pods - other.pods,
        )  # fmt: skip


def _quantity(values: Any, name: str, *, milli: bool = False) -> int:
    if not isinstance(values, dict) or name not in values:
        return 0
    try:
        return milli_value(values[name]) if milli else value(values[name])
    except QuantityError:
        return 0


def resource_list(values: Any) -> Resources:
    """A ResourceList (`{"cpu": "500m", "memory": "1Gi", ...}`) as Resources."""
    return Resources(
        milli_cpu=_quantity(values, "cpu", milli=True),
        memory=_quantity(values, "memory"),
        ephemeral_storage=_quantity(values, "ephemeral-storage"),
        pods=_quantity(values, "pods"),
    )


def _container_requests(container: Object) -> Resources:
    resources = container.get("resources") or {}
    requests = dict(resources.get("limits") or {})
    requests.update(resources.get("requests") or {})
    return resource_list(requests)


def _max(a: Resources, b: Resources) -> Resources:
    return Resources(
        max(a.milli_cpu, b.milli_cpu), max(a.memory, b.memory),
        max(a.ephemeral_storage, b.ephemeral_storage), max(a.pods, b.pods),
    )  # fmt: skip


def pod_requests(pod: Object) -> Resources:
    """What the pod asks of a node (pods=1: the pod itself)."""
    spec = pod.get("spec") or {}
    total = Resources()
    for container in spec.get("containers") or []:
        total = total + _container_requests(container)
    for container in spec.get("initContainers") or []:
        total = _max(total, _container_requests(container))
    total = total + resource_list(spec.get("overhead"))
    return Resources(total.milli_cpu, total.memory, total.ephemeral_storage, 1)


def nonzero_requests(pod: Object) -> Resources:
    """Requests for scoring: cpu and memory defaulted per container when zero."""
    milli_cpu = memory = 0
    for container in (pod.get("spec") or {}).get("containers") or []:
        asked = _container_requests(container)
        milli_cpu += asked.milli_cpu or DEFAULT_MILLI_CPU
        memory += asked.memory or DEFAULT_MEMORY
    return Resources(milli_cpu, memory, 0, 1)


HostPort = tuple[str, str, int]  # (host IP, protocol, port)


def host_ports(pod: Object) -> tuple[HostPort, ...]:
    """The (hostIP, protocol, hostPort) the pod's containers ask for."""
    found: list[HostPort] = []
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            number = int(port.get("hostPort") or 0)
            if number:
                found.append(
                    (str(port.get("hostIP") or "0.0.0.0"), str(port.get("protocol") or "TCP"),
                     number)
                )  # fmt: skip
    return tuple(found)


@dataclass(slots=True)
class NodeInfo:
    """A node and the sum of what the pods bound (or assumed) to it take."""

    name: str
    node: Object
    allocatable: Resources
    requested: Resources = Resources()
    nonzero_requested: Resources = Resources()
    host_ports: list[HostPort] = field(default_factory=list)

    @classmethod
    def of(cls, node: Object) -> NodeInfo:
        status = node.get("status") or {}
        return cls(
            name=str(node["metadata"]["name"]), node=node,
            allocatable=resource_list(status.get("allocatable") or status.get("capacity")),
        )  # fmt: skip

    def add_pod(self, pod: Object) -> None:
        self.requested = self.requested + pod_requests(pod)
        self.nonzero_requested = self.nonzero_requested + nonzero_requests(pod)
        self.host_ports.extend(host_ports(pod))

    def remove_pod(self, pod: Object) -> None:
        self.requested = self.requested - pod_requests(pod)
        self.nonzero_requested = self.nonzero_requested - nonzero_requests(pod)
        for port in host_ports(pod):
            if port in self.host_ports:
                self.host_ports.remove(port)
