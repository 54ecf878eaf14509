"""Filters: can this pod run on this node? Pure functions of a pod (dict) and a
`NodeInfo`, run in the kube-scheduler's default order; a node fails at the first
filter that rejects it, with that filter's reasons, worded as the kube-scheduler's
plugins word them (messages.py counts them into the "0/N nodes are available" text).

    NodeUnschedulable  spec.unschedulable, unless tolerated    (unresolvable)
    NodeName           spec.nodeName set to another node       (unresolvable)
    TaintToleration    NoSchedule/NoExecute taints             (unresolvable)
    NodeAffinity       nodeSelector, required node affinity    (unresolvable)
    NodePorts          hostPort conflicts                      (preemption could help)
    NodeResourcesFit   pods, cpu, memory, ephemeral-storage    (preemption could help)

The kube-scheduler has no Ready filter: the node lifecycle controller taints a node
that is not Ready with node.kubernetes.io/not-ready (Ready=False) or
node.kubernetes.io/unreachable (Ready=Unknown or no condition), NoSchedule. Until
kubeling's controllers do that, `effective_taints` adds those taints itself when the
node lacks them, so the wording and the tolerations that let pods in (DaemonSets
tolerate them) are the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from control.scheduler.model import HostPort, NodeInfo, Object, Resources, host_ports
from kubeapi.tolerations import tolerates

NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"

REASON_UNSCHEDULABLE = "node(s) were unschedulable"
REASON_NODE_NAME = "node(s) didn't match the requested node name"
REASON_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
REASON_PORTS = "node(s) didn't have free ports for the requested pod ports"
REASON_TOO_MANY_PODS = "Too many pods"


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a node was rejected; `resolvable`: whether preemption could help."""

    reasons: tuple[str, ...]
    resolvable: bool


Filter = Callable[[Object, NodeInfo, Resources], Failure | None]


# -- taints and tolerations --------------------------------------------------------------


def ready_status(node: Object) -> str:
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return str(condition.get("status") or "Unknown")
    return "Unknown"


def effective_taints(node: Object) -> list[Object]:
    """The node's taints, plus the not-ready/unreachable taint its Ready condition implies."""
    taints = [t for t in (node.get("spec") or {}).get("taints") or [] if isinstance(t, dict)]
    status = ready_status(node)
    if status != "True":
        key = NOT_READY if status == "False" else UNREACHABLE
        if not any(t.get("key") == key and t.get("effect") == "NoSchedule" for t in taints):
            taints.append({"key": key, "effect": "NoSchedule"})
    return taints


def _tolerations(pod: Object) -> list[Object]:
    return [t for t in (pod.get("spec") or {}).get("tolerations") or [] if isinstance(t, dict)]


def untolerated_taint(
    taints: Sequence[Object], tolerations: Sequence[Object], effects: tuple[str, ...]
) -> Object | None:
    """The first taint with one of `effects` that no toleration tolerates."""
    for taint in taints:
        if taint.get("effect") in effects and not any(tolerates(t, taint) for t in tolerations):
            return taint
    return None


def node_unschedulable(pod: Object, info: NodeInfo, requests: Resources) -> Failure | None:
    if not (info.node.get("spec") or {}).get("unschedulable"):
        return None
    taint = {"key": UNSCHEDULABLE, "effect": "NoSchedule"}
    if any(tolerates(t, taint) for t in _tolerations(pod)):
        return None
    return Failure((REASON_UNSCHEDULABLE,), resolvable=False)


def node_name(pod: Object, info: NodeInfo, requests: Resources) -> Failure | None:
    wanted = (pod.get("spec") or {}).get("nodeName")
    if wanted and wanted != info.name:
        return Failure((REASON_NODE_NAME,), resolvable=False)
    return None


def taint_toleration(pod: Object, info: NodeInfo, requests: Resources) -> Failure | None:
    taint = untolerated_taint(
        effective_taints(info.node), _tolerations(pod), ("NoSchedule", "NoExecute")
    )
    if taint is None:
        return None
    reason = f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '')}}}"
    return Failure((reason,), resolvable=False)


# -- node affinity ---------------------------------------------------------------------


def _as_int(text: Any) -> int | None:
    try:
        return int(str(text))
    except ValueError:
        return None


def requirement_matches(requirement: Object, values: dict[str, str]) -> bool:
    """One NodeSelectorRequirement against labels (or fields)."""
    key = str(requirement.get("key", ""))
    operator = requirement.get("operator")
    wanted = [str(v) for v in requirement.get("values") or []]
    present = key in values
    if operator == "In":
        return present and values[key] in wanted
    if operator == "NotIn":
        return not present or values[key] not in wanted
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt") and present and len(wanted) == 1:
        have, bound = _as_int(values[key]), _as_int(wanted[0])
        if have is None or bound is None:
            return False
        return have > bound if operator == "Gt" else have < bound
    return False


def term_matches(term: Object, node: Object) -> bool:
    """A NodeSelectorTerm: all its expressions and fields; an empty term matches nothing."""
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False
    labels = {str(k): str(v) for k, v in ((node.get("metadata") or {}).get("labels") or {}).items()}
    node_fields = {"metadata.name": str((node.get("metadata") or {}).get("name", ""))}
    return all(requirement_matches(r, labels) for r in expressions) and all(
        requirement_matches(r, node_fields) for r in fields
    )


def _node_affinity(pod: Object) -> Object:
    affinity = (pod.get("spec") or {}).get("affinity") or {}
    return dict(affinity.get("nodeAffinity") or {})


def matches_node_selector_and_affinity(pod: Object, node: Object) -> bool:
    spec = pod.get("spec") or {}
    labels = (node.get("metadata") or {}).get("labels") or {}
    for key, wanted in (spec.get("nodeSelector") or {}).items():
        if labels.get(key) != wanted:
            return False
    required = _node_affinity(pod).get("requiredDuringSchedulingIgnoredDuringExecution")
    if required is None:
        return True
    terms = required.get("nodeSelectorTerms") or []
    return any(term_matches(term, node) for term in terms)


def node_affinity(pod: Object, info: NodeInfo, requests: Resources) -> Failure | None:
    if matches_node_selector_and_affinity(pod, info.node):
        return None
    return Failure((REASON_AFFINITY,), resolvable=False)


# -- host ports and resources ----------------------------------------------------------


def ports_conflict(wanted: HostPort, used: HostPort) -> bool:
    (ip, protocol, port), (used_ip, used_protocol, used_port) = wanted, used
    if port != used_port or protocol != used_protocol:
        return False
    return ip == used_ip or "0.0.0.0" in (ip, used_ip)


def node_ports(pod: Object, info: NodeInfo, requests: Resources) -> Failure | None:
    for wanted in host_ports(pod):
        if any(ports_conflict(wanted, used) for used in info.host_ports):
            return Failure((REASON_PORTS,), resolvable=True)
    return None


def insufficient(requests: Resources, info: NodeInfo) -> tuple[str, ...]:
    """NodeResourcesFit's reasons, in its order."""
    free = info.allocatable - info.requested
    reasons: list[str] = []
    if requests.pods > free.pods:
        reasons.append(REASON_TOO_MANY_PODS)
    if requests.milli_cpu and requests.milli_cpu > free.milli_cpu:
        reasons.append("Insufficient cpu")
    if requests.memory and requests.memory > free.memory:
        reasons.append("Insufficient memory")
    if requests.ephemeral_storage and requests.ephemeral_storage > free.ephemeral_storage:
        reasons.append("Insufficient ephemeral-storage")
    return tuple(reasons)


def node_resources_fit(pod: Object, info: NodeInfo, requests: Resources) -> Failure | None:
    reasons = insufficient(requests, info)
    return Failure(reasons, resolvable=True) if reasons else None


FILTERS: tuple[Filter, ...] = (
    node_unschedulable, node_name, taint_toleration, node_affinity, node_ports,
    node_resources_fit,
)  # fmt: skip


def run_filters(pod: Object, info: NodeInfo, requests: Resources) -> Failure | None:
    """The first filter's failure, or None when the pod fits the node."""
    for check in FILTERS:
        failure = check(pod, info, requests)
        if failure is not None:
            return failure
    return None
