"""One scheduling decision, pure: a pod and the nodes as the cache sees them in,
`Bind(node)` or `Unschedulable(message)` out (STYLE §7). scheduler.py acts on it."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from control.scheduler import messages
from control.scheduler.filters import Failure, run_filters
from control.scheduler.model import NodeInfo, Object, nonzero_requests, pod_requests
from control.scheduler.scores import score_nodes, select_host


@dataclass(frozen=True, slots=True)
class Bind:
    node: str


@dataclass(frozen=True, slots=True)
class Unschedulable:
    message: str


Decision = Bind | Unschedulable


def schedule(pod: Object, nodes: Sequence[NodeInfo], rng: random.Random) -> Decision:
    """Filter every node, score the feasible ones, pick the best (ties at random)."""
    requests = pod_requests(pod)
    feasible: list[NodeInfo] = []
    failures: dict[str, Failure] = {}
    for info in nodes:
        failure = run_filters(pod, info, requests)
        if failure is None:
            feasible.append(info)
        else:
            failures[info.name] = failure
    if not feasible:
        policy = str((pod.get("spec") or {}).get("preemptionPolicy") or "")
        return Unschedulable(messages.fit_error(len(nodes), failures, preemption_policy=policy))
    if len(feasible) == 1:
        return Bind(feasible[0].name)
    scores = score_nodes(pod, feasible, requests=requests, nonzero=nonzero_requests(pod))
    return Bind(select_host(scores, rng))
