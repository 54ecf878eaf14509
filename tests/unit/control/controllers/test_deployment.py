"""Deployment decisions: template hash, fenceposts (rounding), rolling and recreate
steps within maxSurge/maxUnavailable, history cleanup, status and conditions."""

from __future__ import annotations

from typing import Any

import pytest

from control.controllers.deployment import (
    HASH_LABEL,
    RS,
    deployment_status,
    fenceposts,
    history_to_delete,
    new_replicaset,
    paused_scale,
    recreate_step,
    rolling_step,
    same_template,
    scaled_value,
    template_hash,
)  # fmt: skip
from control.controllers.serviceaccount import needs_default

TEMPLATE = {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}  # fmt: skip


def deployment(replicas: int = 4, surge: Any = 1, unavailable: Any = 1) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "default", "uid": "d-1", "generation": 2},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "strategy": {"type": "RollingUpdate",
                              "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
                 "template": TEMPLATE},
    }  # fmt: skip


def test_template_hash_is_stable_safe_and_ignores_its_own_label() -> None:
    first = template_hash(TEMPLATE)
    assert first == template_hash(
        {"spec": TEMPLATE["spec"], "metadata": {"labels": {"app": "web"}}}
    )
    labelled = {**TEMPLATE, "metadata": {"labels": {"app": "web", HASH_LABEL: first}}}
    assert template_hash(labelled) == first
    assert same_template(labelled, TEMPLATE)
    nulls = {**TEMPLATE, "metadata": {"labels": {"app": "web"}, "creationTimestamp": None}}
    assert same_template(nulls, TEMPLATE) and template_hash(nulls) == first
    other = {**TEMPLATE, "spec": {"containers": [{"name": "c", "image": "busybox:1.37"}]}}
    assert template_hash(other) != first
    assert template_hash(TEMPLATE, 1) != first
    assert set(first) <= set("bcdfghjklmnpqrstvwxz2456789") and 0 < len(first) <= 10


@pytest.mark.parametrize(("value", "total", "up", "expected"), [
    (2, 10, True, 2), ("25%", 10, True, 3), ("25%", 10, False, 2), ("0%", 10, True, 0),
    ("100%", 3, False, 3), ("1", 4, True, 1), (None, 4, True, 0),
])  # fmt: skip
def test_scaled_value_rounds_surge_up_and_unavailable_down(
    value: Any, total: int, up: bool, expected: int
) -> None:
    assert scaled_value(value, total, round_up=up) == expected


def test_fenceposts() -> None:
    assert fenceposts(deployment(10, "25%", "25%")) == (3, 2)
    assert fenceposts(deployment(3, 0, 0)) == (0, 1)  # both zero would never progress


def simulate(replicas: int, surge: int, unavailable: int) -> list[tuple[int, int, int]]:
    """Run the rolling steps with pods appearing and becoming available at once (or
    not): every state keeps pods <= replicas + surge and available >= replicas -
    unavailable."""
    old = RS("old", replicas, replicas, replicas, "1")
    new = RS("new", 0, 0, 0, "2")
    seen = []
    for _ in range(50):
        changes = rolling_step(replicas, surge, unavailable, new, [old])
        if not changes:
            break
        if "new" in changes:  # pods are created, then become ready
            count = changes["new"]
            new = RS("new", count, count, new.available, "2")
            seen.append((old.current + new.current, old.available + new.available, 0))
            new = RS("new", count, count, count, "2")
        if "old" in changes:
            count = changes["old"]
            old = RS("old", count, count, min(old.available, count), "1")
        seen.append((old.current + new.current, old.available + new.available, new.replicas))
    assert old.replicas == 0 and new.replicas == replicas
    return seen


@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable"),
    [(4, 1, 1), (4, 1, 0), (4, 0, 1), (10, 3, 2), (1, 1, 0), (3, 0, 1)],
)
def test_rolling_steps_stay_within_surge_and_unavailable(
    replicas: int, surge: int, unavailable: int
) -> None:  # fmt: skip
    for pods, available, _ in simulate(replicas, surge, unavailable):
        assert pods <= replicas + surge
        assert available >= replicas - unavailable


def test_rolling_step_waits_for_new_pods_to_become_available() -> None:
    old = RS("old", 3, 3, 3, "1")
    new = RS("new", 1, 1, 0, "2")  # surged, not yet available
    assert rolling_step(3, 1, 0, new, [old]) == {}
    assert rolling_step(3, 1, 0, RS("new", 1, 1, 1, "2"), [old]) == {"old": 2}


def test_rolling_step_scales_down_unavailable_old_pods_first() -> None:
    older = RS("older", 2, 2, 0, "1")  # not available: removing them costs nothing
    old = RS("old", 2, 2, 2, "2")
    new = RS("new", 0, 0, 0, "3")
    assert rolling_step(4, 0, 2, new, [older, old]) == {"older": 0}


def test_rolling_step_counts_pods_still_reported_by_old_sets() -> None:
    # Scaled down in spec, pods not yet gone: no room to surge yet.
    old = RS("old", 2, 3, 2, "1")
    assert "new" not in rolling_step(3, 0, 1, RS("new", 1, 1, 1, "2"), [old])


def test_recreate_scales_old_to_zero_waits_then_scales_new() -> None:
    new = RS("new", 0, 0, 0)
    assert recreate_step(3, new, [RS("old", 3, 3, 3)]) == {"old": 0}
    assert recreate_step(3, new, [RS("old", 0, 2, 0)]) == {}
    assert recreate_step(3, new, [RS("old", 0, 0, 0)]) == {"new": 3}


def test_history_beyond_the_limit_goes_oldest_revision_first() -> None:
    olds = [RS("r1", 0, 0, 0, revision=1), RS("r3", 0, 0, 0, revision=3),
            RS("r2", 0, 0, 0, revision=2), RS("busy", 1, 1, 1, revision=0)]  # fmt: skip
    assert history_to_delete(olds, 1) == ["r1", "r2"]
    assert history_to_delete(olds, 10) == []
    assert history_to_delete(olds, 0) == ["r1", "r2", "r3"]


def rs_status(replicas: int, available: int, name: str = "web-x") -> dict[str, Any]:
    return {"metadata": {"name": name},
            "status": {"replicas": replicas, "readyReplicas": available,
                       "availableReplicas": available}}  # fmt: skip


def test_status_while_progressing_and_when_complete() -> None:
    d = deployment()
    progressing = deployment_status(d, rs_status(2, 1), [rs_status(3, 3, "web-old")], "t1")
    assert {k: v for k, v in progressing.items() if k != "conditions"} == {
        "observedGeneration": 2, "replicas": 5, "updatedReplicas": 2, "readyReplicas": 4,
        "availableReplicas": 4, "unavailableReplicas": 0,
    }  # fmt: skip
    conditions = {c["type"]: c for c in progressing["conditions"]}
    assert conditions["Available"]["reason"] == "MinimumReplicasAvailable"
    assert conditions["Progressing"]["reason"] == "ReplicaSetUpdated"
    d["status"] = progressing
    done = deployment_status(d, rs_status(4, 4), [rs_status(0, 0, "web-old")], "t2")
    conditions = {c["type"]: c for c in done["conditions"]}
    assert conditions["Progressing"]["reason"] == "NewReplicaSetAvailable"
    assert conditions["Progressing"]["message"] == 'ReplicaSet "web-x" has successfully progressed.'
    assert conditions["Progressing"]["lastTransitionTime"] == "t1"  # still True
    assert conditions["Progressing"]["lastUpdateTime"] == "t2"
    short = deployment_status(d, rs_status(4, 1), [], "t3")
    conditions = {c["type"]: c for c in short["conditions"]}
    assert conditions["Available"] == {**conditions["Available"], "status": "False",
                                       "reason": "MinimumReplicasUnavailable"}  # fmt: skip
    assert short["unavailableReplicas"] == 3


def test_new_replicaset_carries_the_hash_revision_and_owner() -> None:
    rs = new_replicaset(deployment(), "abc", 1, 3)
    assert rs["metadata"]["name"] == "web-abc"
    assert rs["metadata"]["labels"][HASH_LABEL] == "abc"
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", HASH_LABEL: "abc"}
    assert rs["spec"]["template"]["metadata"]["labels"][HASH_LABEL] == "abc"
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    ref = rs["metadata"]["ownerReferences"][0]
    assert ref["uid"] == "d-1" and ref["controller"] and ref["blockOwnerDeletion"]
    assert TEMPLATE["metadata"]["labels"] == {"app": "web"}  # not modified


def test_default_service_account_needed() -> None:
    active = {"metadata": {"name": "team"}, "status": {"phase": "Active"}}
    assert needs_default(active, set())
    assert not needs_default(active, {"default"})
    assert not needs_default({"metadata": {"name": "t"}, "status": {"phase": "Terminating"}}, set())
    assert not needs_default(None, set())


def test_a_paused_deployment_scales_its_one_active_set() -> None:
    new, old = RS("new", 2, 2, 2), RS("old", 0, 0, 0)
    assert paused_scale(5, new, [old]) == {"new": 5}
    assert paused_scale(2, new, [old]) == {}
    assert paused_scale(5, new, [RS("old", 1, 1, 1)]) == {}  # mid-rollout: wait
    assert paused_scale(3, RS("new", 0, 0, 0), []) == {"new": 3}
