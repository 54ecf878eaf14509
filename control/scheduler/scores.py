"""Scores: how good a feasible node is for a pod, each 0..100 (MAX_SCORE), summed with
the kube-scheduler's default weights. Pure functions, like filters.py.

    least_allocated       NodeResourcesFit (LeastAllocated, cpu and memory)   weight 1
    balanced_allocation   NodeResourcesBalancedAllocation                     weight 1
    preferred_affinity    NodeAffinity (preferred terms, normalized)          weight 2
    prefer_no_schedule    TaintToleration (PreferNoSchedule, normalized)      weight 3

`select_host` takes the best total and breaks ties at random with the rng given.
Not yet: pod topology spread and inter-pod affinity (spreading by owner).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from control.scheduler.filters import _node_affinity, effective_taints, term_matches
from control.scheduler.model import NodeInfo, Object, Resources
from kubeapi.tolerations import tolerates

MAX_SCORE = 100
WEIGHT_LEAST_ALLOCATED = 1
WEIGHT_BALANCED = 1
WEIGHT_AFFINITY = 2
WEIGHT_TAINTS = 3


def _free_fraction(requested: int, allocatable: int) -> float:
    if allocatable <= 0 or requested > allocatable:
        return 0.0
    return (allocatable - requested) / allocatable


def least_allocated(nonzero: Resources, info: NodeInfo) -> int:
    """The mean share of cpu and memory left free once the pod is placed, 0..100."""
    cpu = _free_fraction(info.nonzero_requested.milli_cpu + nonzero.milli_cpu,
                         info.allocatable.milli_cpu)  # fmt: skip
    memory = _free_fraction(info.nonzero_requested.memory + nonzero.memory,
                            info.allocatable.memory)  # fmt: skip
    return int((cpu + memory) * MAX_SCORE / 2)


def balanced_allocation(requests: Resources, info: NodeInfo) -> int:
    """100 when cpu and memory would be equally used; less as they diverge."""
    fractions = []
    for used, total in (
        (info.requested.milli_cpu + requests.milli_cpu, info.allocatable.milli_cpu),
        (info.requested.memory + requests.memory, info.allocatable.memory),
    ):
        fractions.append(min(used / total, 1.0) if total > 0 else 1.0)
    deviation = abs(fractions[0] - fractions[1]) / 2  # the std dev of two values
    return int((1 - deviation) * MAX_SCORE)


def preferred_affinity_weight(pod: Object, node: Object) -> int:
    """The sum of the weights of the preferred node-affinity terms the node matches."""
    preferred = _node_affinity(pod).get("preferredDuringSchedulingIgnoredDuringExecution") or []
    return sum(
        int(item.get("weight") or 0)
        for item in preferred
        if term_matches(item.get("preference") or {}, node)
    )


def prefer_no_schedule_count(pod: Object, node: Object) -> int:
    tolerations = [
        t for t in (pod.get("spec") or {}).get("tolerations") or []
        if not t.get("effect") or t.get("effect") == "PreferNoSchedule"
    ]  # fmt: skip
    return sum(
        1
        for taint in effective_taints(node)
        if taint.get("effect") == "PreferNoSchedule"
        and not any(tolerates(t, taint) for t in tolerations)
    )


def normalize(raw: Mapping[str, int], *, reverse: bool = False) -> dict[str, int]:
    """DefaultNormalizeScore: scale to 0..100 by the maximum; reversed, 100 is the least."""
    top = max(raw.values(), default=0)
    if top == 0:
        return {name: MAX_SCORE if reverse else 0 for name in raw}
    scaled = {name: MAX_SCORE * value // top for name, value in raw.items()}
    return {n: MAX_SCORE - v for n, v in scaled.items()} if reverse else scaled


def score_nodes(
    pod: Object, nodes: Sequence[NodeInfo], *, requests: Resources, nonzero: Resources
) -> dict[str, int]:
    """The weighted total of every score, per node name."""
    affinity = normalize({n.name: preferred_affinity_weight(pod, n.node) for n in nodes})
    taints = normalize({n.name: prefer_no_schedule_count(pod, n.node) for n in nodes},
                       reverse=True)  # fmt: skip
    return {
        n.name: WEIGHT_LEAST_ALLOCATED * least_allocated(nonzero, n)
        + WEIGHT_BALANCED * balanced_allocation(requests, n)
        + WEIGHT_AFFINITY * affinity[n.name]
        + WEIGHT_TAINTS * taints[n.name]
        for n in nodes
    }


def select_host(scores: Mapping[str, int], rng: random.Random) -> str:
    """The best-scored node; ties broken at random."""
    top = max(scores.values())
    return rng.choice(sorted(name for name, score in scores.items() if score == top))
