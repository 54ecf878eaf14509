"""The words of an unschedulable pod's condition and event, as the kube-scheduler's
FitError writes them (pkg/scheduler/framework/types.go) followed by the default
preemption plugin's PostFilter message:

    0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: db},
    2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not
    helpful for scheduling, 2 No preemption victims found for incoming pod.

(one line). Each reason is counted over nodes, "<count> <reason>", sorted as strings.
kubeling does not preempt: a node whose failure preemption could resolve (ports,
resources) is reported as having no victims, which is what the kube-scheduler says
when no lower-priority pod could be evicted; the others are "not helpful".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from control.scheduler.filters import Failure

NO_NODES = "no nodes available to schedule pods"
NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"


def _histogram(counts: Counter[str]) -> str:
    return ", ".join(sorted(f"{count} {reason}" for reason, count in counts.items()))


def fit_error(
    num_nodes: int, failures: Mapping[str, Failure], *, preemption_policy: str = ""
) -> str:
    """The message for a pod that fits none of `num_nodes` nodes."""
    if num_nodes == 0:
        return NO_NODES
    reasons: Counter[str] = Counter()
    for failure in failures.values():
        reasons.update(failure.reasons)
    message = f"0/{num_nodes} nodes are available: {_histogram(reasons)}."
    if preemption_policy == "Never":
        return f"{message} preemption: not eligible due to preemptionPolicy=Never."
    preemption: Counter[str] = Counter(
        NO_VICTIMS if failure.resolvable else NOT_HELPFUL for failure in failures.values()
    )
    return f"{message} preemption: 0/{num_nodes} nodes are available: {_histogram(preemption)}."
