"""The pure scores, the message, one decision."""

from __future__ import annotations

import random
from typing import Any

from control.scheduler import messages
from control.scheduler.decide import Bind, Unschedulable, schedule
from control.scheduler.filters import Failure
from control.scheduler.model import nonzero_requests, pod_requests
from control.scheduler.scores import (
    balanced_allocation,
    least_allocated,
    normalize,
    score_nodes,
    select_host,
)

from .test_filters import node, pod


def test_least_allocated_prefers_the_emptier_node() -> None:
    empty, busy = node("empty"), node("busy")
    busy.add_pod(pod(requests={"cpu": "1", "memory": "2Gi"}))
    p = pod(requests={"cpu": "500m", "memory": "1Gi"})
    assert least_allocated(nonzero_requests(p), empty) == 75  # 75% of cpu and of memory left
    assert least_allocated(nonzero_requests(p), busy) == 25
    # A pod asking for nothing still counts as 100m and 200Mi.
    assert nonzero_requests(pod()).milli_cpu == 100


def test_balanced_allocation() -> None:
    info = node(cpu="2", memory="4Gi")
    assert balanced_allocation(pod_requests(pod(requests={"cpu": "1", "memory": "2Gi"})),
                               info) == 100  # fmt: skip
    assert balanced_allocation(pod_requests(pod(requests={"cpu": "2"})), info) == 50


def test_preferred_affinity_and_prefer_no_schedule() -> None:
    ssd, hdd = node("ssd", labels={"disk": "ssd"}), node("hdd", labels={"disk": "hdd"})
    prefer = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 10, "preference": {"matchExpressions": [
            {"key": "disk", "operator": "In", "values": ["hdd"]}]}}]}}  # fmt: skip
    p = pod(affinity=prefer)
    scores = score_nodes(p, [ssd, hdd], requests=pod_requests(p), nonzero=nonzero_requests(p))
    assert scores["hdd"] - scores["ssd"] == 200  # weight 2 x 100
    soft = node("soft", taints=[{"key": "k", "effect": "PreferNoSchedule"}])
    q = pod()
    scores = score_nodes(q, [soft, ssd], requests=pod_requests(q), nonzero=nonzero_requests(q))
    assert scores["ssd"] - scores["soft"] == 300  # weight 3 x 100
    assert normalize({"a": 0, "b": 0}, reverse=True) == {"a": 100, "b": 100}


def test_ties_are_broken_at_random() -> None:
    picks = {select_host({"a": 5, "b": 5, "c": 1}, random.Random(seed)) for seed in range(20)}
    assert picks == {"a", "b"}


def test_fit_error_message_in_the_kube_schedulers_words() -> None:
    taint = Failure(("node(s) had untolerated taint {key: value}",), False)
    cpu = Failure(("Insufficient cpu",), True)
    both = Failure(("Insufficient cpu", "Insufficient memory"), True)
    message = messages.fit_error(4, {"a": cpu, "b": both, "c": taint, "d": cpu})
    assert message == (
        "0/4 nodes are available: 1 Insufficient memory, 1 node(s) had untolerated taint "
        "{key: value}, 3 Insufficient cpu. preemption: 0/4 nodes are available: "
        "1 Preemption is not helpful for scheduling, 3 No preemption victims found for "
        "incoming pod."
    )
    unresolvable = messages.fit_error(3, {n: taint for n in "abc"})
    assert unresolvable.endswith(
        "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    )
    never = messages.fit_error(1, {"a": cpu}, preemption_policy="Never")
    assert never == ("0/1 nodes are available: 1 Insufficient cpu. "
                     "preemption: not eligible due to preemptionPolicy=Never.")  # fmt: skip
    assert messages.fit_error(0, {}) == "no nodes available to schedule pods"


def test_schedule_binds_to_a_feasible_node_or_explains() -> None:
    nodes = [node("small", cpu="1"), node("big", cpu="4")]
    rng = random.Random(0)
    assert schedule(pod(requests={"cpu": "2"}), nodes, rng) == Bind("big")
    decision = schedule(pod(requests={"cpu": "8"}), nodes, rng)
    assert isinstance(decision, Unschedulable)
    assert decision.message.startswith("0/2 nodes are available: 2 Insufficient cpu.")
    spec: dict[str, Any] = {"preemptionPolicy": "Never"}
    assert "preemptionPolicy=Never" in str(schedule(pod(requests={"cpu": "8"}, **spec),
                                                    nodes, rng))  # fmt: skip
