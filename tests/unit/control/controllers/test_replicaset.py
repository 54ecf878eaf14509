"""ReplicaSet decisions: claim (adopt, release, ignore terminating), the deletion
order, the plan and the status counts."""

from __future__ import annotations

from typing import Any

from control.controllers.base import selector_matches
from control.controllers.replicaset import claim, plan, pod_from_template, status

RS: dict[str, Any] = {
    "apiVersion": "apps/v1", "kind": "ReplicaSet",
    "metadata": {"name": "web", "namespace": "default", "uid": "rs-1", "generation": 3},
    "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
             "template": {"metadata": {"labels": {"app": "web", "tier": "f"}},
                          "spec": {"containers": [{"name": "c", "image": "i"}]}}},
}  # fmt: skip


def pod(name: str, *, labels: dict[str, str] | None = None, owner: str | None = "rs-1",
        node: str = "", phase: str = "Pending", ready: bool = False,
        created: str = "2026-01-01T00:00:00Z", deleting: bool = False,
        ) -> dict[str, Any]:  # fmt: skip
    meta: dict[str, Any] = {"name": name, "namespace": "default", "uid": f"u-{name}",
                            "labels": {"app": "web"} if labels is None else labels,
                            "creationTimestamp": created}  # fmt: skip
    if owner:
        meta["ownerReferences"] = [{"uid": owner, "controller": True, "kind": "ReplicaSet"}]
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:01:00Z"
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    return {"metadata": meta, "spec": {"nodeName": node},
            "status": {"phase": phase, "conditions": conditions}}  # fmt: skip


def names(pods: Any) -> list[str]:
    return [p["metadata"]["name"] for p in pods]


def test_selectors() -> None:
    labels = {"app": "web", "env": "prod"}
    assert selector_matches({"matchLabels": {"app": "web"}}, labels)
    assert not selector_matches({"matchLabels": {"app": "db"}}, labels)
    assert not selector_matches({}, labels)  # empty selects nothing
    expr = {"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]},
                                 {"key": "x", "operator": "DoesNotExist"}]}  # fmt: skip
    assert selector_matches(expr, labels)
    assert not selector_matches(
        {"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]}, labels
    )
    assert not selector_matches({"matchExpressions": [{"key": "x", "operator": "Exists"}]}, labels)


def test_claim_adopts_orphans_releases_non_matching_and_ignores_others() -> None:
    pods = [
        pod("mine"),
        pod("orphan", owner=None),
        pod("relabelled", labels={"app": "other"}),
        pod("someone-elses", owner="rs-2"),
        pod("going", deleting=True),
        pod("done", phase="Succeeded"),
        pod("stranger", owner=None, labels={"app": "db"}),
    ]
    claimed = claim(RS, pods)
    assert names(claimed.owned) == ["mine", "orphan"]
    assert names(claimed.adopt) == ["orphan"]
    assert names(claimed.release) == ["relabelled"]


def test_a_terminating_replicaset_adopts_nothing() -> None:
    rs = {**RS, "metadata": {**RS["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    assert claim(rs, [pod("orphan", owner=None)]).adopt == []


def test_plan_creates_the_missing_pods() -> None:
    assert plan(3, [pod("a")]).create == 2
    assert plan(1, [pod("a")]) == plan(0, [])


def test_scale_down_deletes_unscheduled_then_pending_then_not_ready_then_newest() -> None:
    pods = [
        pod("old-ready", node="n", phase="Running", ready=True, created="2026-01-01T00:00:00Z"),
        pod("new-ready", node="n", phase="Running", ready=True, created="2026-01-02T00:00:00Z"),
        pod("not-ready", node="n", phase="Running", created="2026-01-01T00:00:00Z"),
        pod("pending", node="n", phase="Pending", created="2026-01-01T00:00:00Z"),
        pod("unscheduled", created="2026-01-01T00:00:00Z"),
    ]
    order = ["unscheduled", "pending", "not-ready", "new-ready", "old-ready"]
    for keep in range(5):
        assert names(plan(keep, pods).delete) == order[: 5 - keep]


def test_status_counts() -> None:
    pods = [pod("a", ready=True, labels={"app": "web", "tier": "f"}), pod("b"), pod("c")]
    assert status(RS, pods) == {
        "replicas": 3, "fullyLabeledReplicas": 1, "readyReplicas": 1,
        "availableReplicas": 1, "observedGeneration": 3,
    }  # fmt: skip


def test_pods_come_from_the_template_with_a_controller_reference() -> None:
    made = pod_from_template(RS)
    assert made["metadata"]["generateName"] == "web-"
    assert made["metadata"]["labels"] == {"app": "web", "tier": "f"}
    assert made["metadata"]["ownerReferences"] == [{
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "rs-1",
        "controller": True, "blockOwnerDeletion": True,
    }]  # fmt: skip
    assert made["spec"] == RS["spec"]["template"]["spec"]
