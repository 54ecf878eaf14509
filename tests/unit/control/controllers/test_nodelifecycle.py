"""Node lifecycle decisions: heartbeats, conditions set to Unknown, the taints the
Ready condition implies, pods marked not ready, and when a tainted node's pod goes."""

from __future__ import annotations

from typing import Any, cast

import pytest

from control.controllers.base import Informer
from control.controllers.nodelifecycle import (
    NOT_READY,
    UNREACHABLE,
    NodeLifecycleController,
    Tainted,
    TaintEvictionController,
    condition_taints,
    disruption_status,
    eviction_delay,
    heartbeat,
    no_execute_taints,
    not_ready_pod_status,
    parse_time,
    ready_status,
    unknown_conditions,
)
from kubeapi.client import Client
from kubeapi.tolerations import tolerates

NOW = "2026-01-01T00:00:10Z"


def node(ready: str | None = "True", taints: list[Any] | None = None) -> dict[str, Any]:
    conditions = [] if ready is None else [
        {"type": "Ready", "status": ready, "lastHeartbeatTime": "2026-01-01T00:00:00Z"}
    ]  # fmt: skip
    return {"metadata": {"name": "n"}, "spec": {"taints": taints or []},
            "status": {"conditions": conditions}}  # fmt: skip


def test_ready_status_and_heartbeat() -> None:
    assert ready_status(node("True")) == "True"
    assert ready_status(node("False")) == "False"
    assert ready_status(node(None)) is None
    lease = {"spec": {"renewTime": "2026-01-01T00:00:05.123456Z"}}
    assert heartbeat(node(), lease) == ("2026-01-01T00:00:05.123456Z", "2026-01-01T00:00:00Z")
    assert heartbeat(node(None), None) == ("", "")


def test_unknown_conditions_sets_the_watched_ones_and_adds_missing() -> None:
    conditions = [
        {"type": "Ready", "status": "True", "reason": "KubeletReady",
         "lastHeartbeatTime": "2026-01-01T00:00:00Z"},
        {"type": "MemoryPressure", "status": "False"},
        {"type": "NetworkUnavailable", "status": "False"},
    ]  # fmt: skip
    result = unknown_conditions(conditions, NOW)
    assert result is not None
    by_type = {c["type"]: c for c in result}
    ready = by_type["Ready"]
    assert ready["status"] == "Unknown" and ready["reason"] == "NodeStatusUnknown"
    assert ready["message"] == "Kubelet stopped posting node status."
    assert ready["lastTransitionTime"] == NOW
    assert ready["lastHeartbeatTime"] == "2026-01-01T00:00:00Z"  # kept: the last real one
    assert by_type["MemoryPressure"]["status"] == "Unknown"
    assert by_type["NetworkUnavailable"]["status"] == "False"  # not one of the four
    for kind in ("DiskPressure", "PIDPressure"):
        assert by_type[kind]["status"] == "Unknown"
        assert by_type[kind]["reason"] == "NodeStatusNeverUpdated"
    assert unknown_conditions(result, NOW) is None  # nothing more to change


@pytest.mark.parametrize(("ready", "expected"), [
    ("True", set()),
    ("False", {f"{NOT_READY}:NoSchedule", f"{NOT_READY}:NoExecute"}),
    ("Unknown", {f"{UNREACHABLE}:NoSchedule", f"{UNREACHABLE}:NoExecute"}),
])  # fmt: skip
def test_condition_taints_follow_ready(ready: str, expected: set[str]) -> None:
    other = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    taints = condition_taints([other], ready, NOW)
    assert other in taints
    assert {f"{t['key']}:{t['effect']}" for t in taints if t is not other} == expected
    for taint in taints:
        if taint["effect"] == "NoExecute":
            assert taint["timeAdded"] == NOW


def test_condition_taints_switch_and_keep_time_added() -> None:
    earlier = "2026-01-01T00:00:01Z"
    unreachable = [{"key": UNREACHABLE, "effect": "NoSchedule"},
                   {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": earlier}]  # fmt: skip
    assert condition_taints(unreachable, "Unknown", NOW) == unreachable  # unchanged
    switched = condition_taints(unreachable, "False", NOW)
    assert {t["key"] for t in switched} == {NOT_READY}
    assert condition_taints(unreachable, "True", NOW) == []


def test_not_ready_pod_status() -> None:
    pod: dict[str, Any] = {
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "True"},
            ],
        }
    }
    status = not_ready_pod_status(pod, NOW)
    assert status is not None and status["phase"] == "Running"
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert ready == {"type": "Ready", "status": "False", "lastTransitionTime": NOW}
    assert pod["status"]["conditions"][1]["status"] == "True"  # the input is not changed
    assert not_ready_pod_status({"status": status}, NOW) is None


def test_tolerates() -> None:
    taint = {"key": UNREACHABLE, "effect": "NoExecute"}
    assert tolerates({"operator": "Exists"}, taint)
    assert tolerates({"key": UNREACHABLE, "operator": "Exists"}, taint)
    assert tolerates({"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}, taint)
    assert not tolerates({"key": UNREACHABLE, "operator": "Exists", "effect": "NoSchedule"}, taint)
    assert not tolerates({"key": NOT_READY, "operator": "Exists"}, taint)
    valued = {"key": "k", "value": "v", "effect": "NoExecute"}
    assert tolerates({"key": "k", "value": "v"}, valued)
    assert not tolerates({"key": "k", "value": "w"}, valued)
    assert not tolerates({"value": "v"}, valued)  # no key and no Exists


def test_eviction_delay() -> None:
    unreachable = Tainted({"key": UNREACHABLE, "effect": "NoExecute"}, added=100.0)
    custom = Tainted({"key": "maintenance", "effect": "NoExecute"}, added=104.0)
    for_300 = {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute",
               "tolerationSeconds": 300}  # fmt: skip
    for_10 = {"key": UNREACHABLE, "operator": "Exists", "tolerationSeconds": 10}
    forever = {"operator": "Exists"}
    assert eviction_delay([for_300], [], 150.0) is None  # no taint
    assert eviction_delay([], [unreachable], 150.0) == 0.0  # not tolerated: at once
    assert eviction_delay([for_300], [unreachable, custom], 150.0) == 0.0  # one not tolerated
    assert eviction_delay([for_300], [unreachable], 150.0) == 250.0
    assert eviction_delay([for_300, for_10], [unreachable], 105.0) == 5.0  # the shortest
    assert eviction_delay([for_300], [unreachable], 500.0) == 0.0  # over already
    assert eviction_delay([forever], [unreachable, custom], 1e9) is None
    assert eviction_delay([forever, for_10], [unreachable], 100.0) == 10.0
    negative = {"key": UNREACHABLE, "operator": "Exists", "tolerationSeconds": -5}
    assert eviction_delay([negative], [unreachable], 100.0) == 0.0


def test_disruption_status() -> None:
    pod = {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}}
    status = disruption_status(pod, NOW)
    assert status is not None and status["phase"] == "Running"
    assert [c["type"] for c in status["conditions"]] == ["Ready", "DisruptionTarget"]
    assert status["conditions"][1]["message"] == "Taint manager: deleting due to NoExecute taint"
    assert disruption_status({"status": status}, NOW) is None


def test_no_execute_taints_and_times() -> None:
    tainted = node(taints=[{"key": "a", "effect": "NoSchedule"},
                           {"key": "b", "effect": "NoExecute"}])  # fmt: skip
    assert no_execute_taints(tainted) == [{"key": "b", "effect": "NoExecute"}]
    assert parse_time("1970-01-01T00:01:00Z") == 60.0
    assert parse_time("1970-01-01T00:01:00.500000Z") == 60.5
    assert parse_time("yesterday") is None


# -- the acting layer, with informers fed by hand and a recording client ---------------


class RecordingClient:
    """Answers writes with the body sent (as the API would, roughly) and records them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    def update(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("update", path, body))
        return body

    def patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("patch", path, body))
        return body

    def delete(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        self.calls.append(("delete", path, body))
        return {}


def informer(*objects: dict[str, Any]) -> Informer:
    fed = Informer(cast(Client, None), "/unused")
    fed._apply({"type": "RELISTED", "object": {"items": list(objects)}})
    return fed


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_silent_node_becomes_unknown_after_the_grace_period() -> None:
    client, clock = RecordingClient(), Clock()
    lease = {"metadata": {"name": "n", "namespace": "kube-node-lease"},
             "spec": {"renewTime": "2026-01-01T00:00:00.000000Z"}}  # fmt: skip
    pod = {"metadata": {"name": "p", "namespace": "default"}, "spec": {"nodeName": "n"},
           "status": {"conditions": [{"type": "Ready", "status": "True"}]}}  # fmt: skip
    leases = informer(lease)
    controller = NodeLifecycleController(
        cast(Client, client), informer(node()), leases, informer(pod), grace_period=40.0,
        monitor_period=5.0, clock=clock, wall=lambda: 1_767_225_600.0,
    )  # fmt: skip
    assert controller.sync("n") == 5.0
    clock.now += 39
    controller.sync("n")
    assert client.calls == []  # within the grace period
    # A renewal restarts the grace period, whatever time the renewal says.
    renewed = {**lease, "spec": {"renewTime": "2020-01-01T00:00:00.000000Z"}}
    leases._apply({"type": "MODIFIED", "object": renewed})
    clock.now += 39
    controller.sync("n")  # 78 s since the first sight, but renewed just now
    clock.now += 39
    controller.sync("n")
    assert client.calls == []
    clock.now += 2
    controller.sync("n")
    status, taints, pod_status = client.calls
    assert status[:2] == ("update", "/api/v1/nodes/n/status")
    ready = {c["type"]: c for c in status[2]["status"]["conditions"]}["Ready"]
    assert (ready["status"], ready["reason"]) == ("Unknown", "NodeStatusUnknown")
    assert taints[:2] == ("patch", "/api/v1/nodes/n")
    assert {(t["key"], t["effect"]) for t in taints[2]["spec"]["taints"]} == {
        (UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")}  # fmt: skip
    assert pod_status[:2] == ("update", "/api/v1/namespaces/default/pods/p/status")
    assert pod_status[2]["status"]["conditions"][0]["status"] == "False"


def test_taint_eviction_waits_for_the_toleration() -> None:
    client, wall = RecordingClient(), Clock(1_767_225_600.0)
    tainted = node("Unknown", taints=[{"key": UNREACHABLE, "effect": "NoExecute",
                                       "timeAdded": "2026-01-01T00:00:00Z"}])  # fmt: skip
    toleration = {"key": UNREACHABLE, "operator": "Exists", "tolerationSeconds": 30}
    tolerant = {"metadata": {"name": "p", "namespace": "default", "uid": "u"},
                "spec": {"nodeName": "n", "tolerations": [toleration]}}  # fmt: skip
    intolerant = {"metadata": {"name": "q", "namespace": "default", "uid": "v"},
                  "spec": {"nodeName": "n"}}  # fmt: skip
    controller = TaintEvictionController(
        cast(Client, client), informer(tainted), informer(tolerant, intolerant), wall=wall
    )
    wall.now += 10
    assert controller.sync("default/p") == 20.0
    assert controller.sync("default/q") is None
    marked, deleted = client.calls
    assert marked[:2] == ("update", "/api/v1/namespaces/default/pods/q/status")
    (disruption,) = marked[2]["status"]["conditions"]
    assert disruption["type"] == "DisruptionTarget"
    assert disruption["reason"] == "DeletionByTaintManager"
    assert deleted == ("delete", "/api/v1/namespaces/default/pods/q", {
        "apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": "v"}})  # fmt: skip
    wall.now += 20
    assert controller.sync("default/p") is None
    assert client.calls[-1][1] == "/api/v1/namespaces/default/pods/p"
