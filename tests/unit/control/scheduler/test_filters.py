"""The pure filters, one behaviour each, in the kube-scheduler's words."""

from __future__ import annotations

from typing import Any

import pytest

from control.scheduler import filters
from control.scheduler.filters import Failure, run_filters
from control.scheduler.model import NodeInfo, pod_requests


def node(name: str = "n", *, cpu: str = "2", memory: str = "4Gi", pods: str = "110",
         labels: dict[str, str] | None = None, taints: list[Any] | None = None,
         ready: str | None = "True", unschedulable: bool = False) -> NodeInfo:  # fmt: skip
    conditions = [] if ready is None else [{"type": "Ready", "status": ready}]
    return NodeInfo.of({
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"taints": taints or [], "unschedulable": unschedulable},
        "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods,
                                   "ephemeral-storage": "1Gi"}, "conditions": conditions},
    })  # fmt: skip


def pod(*, requests: dict[str, str] | None = None, ports: list[Any] | None = None,
        **spec: Any) -> dict[str, Any]:  # fmt: skip
    container: dict[str, Any] = {"name": "c", "image": "x", "ports": ports or []}
    if requests:
        container["resources"] = {"requests": requests}
    return {"metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"containers": [container], **spec}}  # fmt: skip


def check(p: dict[str, Any], info: NodeInfo) -> Failure | None:
    return run_filters(p, info, pod_requests(p))


def test_a_ready_node_with_room_fits() -> None:
    assert check(pod(requests={"cpu": "500m", "memory": "1Gi"}), node()) is None


@pytest.mark.parametrize(
    ("requests", "reasons"),
    [
        ({"cpu": "3"}, ("Insufficient cpu",)),
        ({"memory": "5Gi"}, ("Insufficient memory",)),
        ({"cpu": "2001m", "memory": "4097Mi"}, ("Insufficient cpu", "Insufficient memory")),
        ({"ephemeral-storage": "2Gi"}, ("Insufficient ephemeral-storage",)),
        ({"cpu": "2", "memory": "4Gi"}, None),
    ],
)
def test_resources(requests: dict[str, str], reasons: tuple[str, ...] | None) -> None:
    failure = check(pod(requests=requests), node())
    assert (failure.reasons if failure else None) == reasons
    assert failure is None or failure.resolvable


def test_resources_count_what_bound_pods_take_and_the_pod_count() -> None:
    info = node(pods="2")
    info.add_pod(pod(requests={"cpu": "1500m"}))
    assert check(pod(requests={"cpu": "500m"}), info) is None
    assert check(pod(requests={"cpu": "501m"}), info) == Failure(("Insufficient cpu",), True)
    info.add_pod(pod())
    assert check(pod(), info) == Failure(("Too many pods",), True)
    info.remove_pod(pod())
    assert check(pod(), info) is None


def test_limits_stand_for_missing_requests_and_init_containers_take_the_max() -> None:
    p = pod()
    p["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "1"}}
    p["spec"]["initContainers"] = [{"name": "i", "resources": {"requests": {"cpu": "3"}}}]
    assert pod_requests(p).milli_cpu == 3000
    assert check(p, node()) == Failure(("Insufficient cpu",), True)


def test_not_ready_and_unreachable_nodes_are_tainted() -> None:
    failure = check(pod(), node(ready="False"))
    assert failure == Failure(("node(s) had untolerated taint {node.kubernetes.io/not-ready: }",),
                              False)  # fmt: skip
    failure = check(pod(), node(ready=None))
    assert failure is not None and "node.kubernetes.io/unreachable" in failure.reasons[0]
    tolerant = pod(tolerations=[{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}])
    assert check(tolerant, node(ready="False")) is None


def test_unschedulable_node() -> None:
    assert check(pod(), node(unschedulable=True)) == Failure(("node(s) were unschedulable",), False)
    tolerant = pod(tolerations=[{"key": "node.kubernetes.io/unschedulable",
                                 "operator": "Exists", "effect": "NoSchedule"}])  # fmt: skip
    assert check(tolerant, node(unschedulable=True)) is None


@pytest.mark.parametrize(
    ("toleration", "fits"),
    [
        ({"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"}, True),
        ({"key": "k", "value": "v"}, True),  # Equal is the default, any effect
        ({"key": "k", "operator": "Exists"}, True),
        ({"operator": "Exists"}, True),  # everything
        ({"key": "k", "value": "other"}, False),
        ({"key": "k", "value": "v", "effect": "NoExecute"}, False),
        ({"value": "v"}, False),  # an empty key needs Exists
    ],
)
def test_tolerations(toleration: dict[str, str], fits: bool) -> None:
    info = node(taints=[{"key": "k", "value": "v", "effect": "NoSchedule"}])
    failure = check(pod(tolerations=[toleration]), info)
    assert (failure is None) == fits
    if failure:
        assert failure.reasons == ("node(s) had untolerated taint {k: v}",)


def test_only_noschedule_and_noexecute_taints_filter() -> None:
    soft = node(taints=[{"key": "k", "value": "v", "effect": "PreferNoSchedule"}])
    assert check(pod(), soft) is None
    hard = node(taints=[{"key": "e", "effect": "NoExecute"}])
    assert check(pod(), hard) == Failure(("node(s) had untolerated taint {e: }",), False)


AFFINITY = "node(s) didn't match Pod's node affinity/selector"


def required(*expressions: dict[str, Any]) -> dict[str, Any]:
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": list(expressions)}]}}}  # fmt: skip


@pytest.mark.parametrize(
    ("expression", "fits"),
    [
        ({"key": "zone", "operator": "In", "values": ["a", "b"]}, True),
        ({"key": "zone", "operator": "In", "values": ["c"]}, False),
        ({"key": "zone", "operator": "NotIn", "values": ["c"]}, True),
        ({"key": "absent", "operator": "NotIn", "values": ["c"]}, True),
        ({"key": "zone", "operator": "NotIn", "values": ["a"]}, False),
        ({"key": "zone", "operator": "Exists"}, True),
        ({"key": "absent", "operator": "Exists"}, False),
        ({"key": "absent", "operator": "DoesNotExist"}, True),
        ({"key": "zone", "operator": "DoesNotExist"}, False),
        ({"key": "gen", "operator": "Gt", "values": ["4"]}, True),
        ({"key": "gen", "operator": "Gt", "values": ["5"]}, False),
        ({"key": "gen", "operator": "Lt", "values": ["6"]}, True),
        ({"key": "gen", "operator": "Lt", "values": ["5"]}, False),
        ({"key": "zone", "operator": "Gt", "values": ["1"]}, False),  # not a number
        ({"key": "absent", "operator": "Lt", "values": ["1"]}, False),
    ],
)
def test_required_node_affinity(expression: dict[str, Any], fits: bool) -> None:
    info = node(labels={"zone": "a", "gen": "5"})
    failure = check(pod(affinity=required(expression)), info)
    assert failure == (None if fits else Failure((AFFINITY,), False))


def test_affinity_terms_are_ored_and_empty_terms_match_nothing() -> None:
    info = node("n1", labels={"zone": "a"})
    terms = [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["x"]}]},
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]},
    ]
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": terms}}}  # fmt: skip
    assert check(pod(affinity=affinity), info) is None
    empty = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{}]}}}  # fmt: skip
    assert check(pod(affinity=empty), info) == Failure((AFFINITY,), False)


def test_node_selector() -> None:
    info = node(labels={"disk": "ssd"})
    assert check(pod(nodeSelector={"disk": "ssd"}), info) is None
    assert check(pod(nodeSelector={"disk": "hdd"}), info) == Failure((AFFINITY,), False)


def test_host_ports() -> None:
    info = node()
    info.add_pod(pod(ports=[{"containerPort": 80, "hostPort": 8080}]))
    clash = pod(ports=[{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1"}])
    ports = "node(s) didn't have free ports for the requested pod ports"
    assert check(clash, info) == Failure((ports,), True)
    assert check(pod(ports=[{"containerPort": 80, "hostPort": 8080, "protocol": "UDP"}]),
                 info) is None  # fmt: skip
    assert check(pod(ports=[{"containerPort": 80}]), info) is None
    assert filters.ports_conflict(("10.0.0.1", "TCP", 1), ("10.0.0.2", "TCP", 1)) is False


def test_first_failing_filter_wins() -> None:
    info = node(cpu="1", taints=[{"key": "k", "effect": "NoSchedule"}], labels={})
    failure = check(pod(requests={"cpu": "2"}, nodeSelector={"x": "y"}), info)
    assert failure == Failure(("node(s) had untolerated taint {k: }",), False)


def test_node_name() -> None:
    assert check(pod(nodeName="other"), node("n")) == Failure(
        ("node(s) didn't match the requested node name",), False
    )
