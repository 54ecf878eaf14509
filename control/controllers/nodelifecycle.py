"""Node lifecycle: nodes that stop reporting become Unknown and tainted, and pods on
a NoExecute-tainted node are evicted once their tolerations run out.

`NodeLifecycleController` (keyed by node name, every `monitor_period`) tracks each
node's heartbeat: its kube-node-lease Lease's renewTime and its Ready condition's
lastHeartbeatTime. As kube's controller does, it times them on its own clock —
when it last *saw* the heartbeat change, not the time written in it — so clock
skew between machines does not matter. A node silent for longer than
`grace_period` gets Ready, MemoryPressure, DiskPressure and PIDPressure set to
Unknown (reason NodeStatusUnknown, "Kubelet stopped posting node status.") through
nodes/<name>/status, and its pods' Ready condition False. Its taints follow its
Ready condition (`condition_taints`, pure): Unknown → node.kubernetes.io/unreachable,
False → node.kubernetes.io/not-ready, each NoSchedule and NoExecute; True → none
of these. They come off when the kubelet reports Ready again.

`TaintEvictionController` (kube's taint manager; keyed by pod) deletes a pod bound
to a node with NoExecute taints: at once if some taint is not tolerated, else when
the shortest tolerationSeconds of the tolerations in use has passed since its
taint's timeAdded (`eviction_delay`, pure), after a DisruptionTarget condition
(DeletionByTaintManager) says why. A pod tolerating them all without
tolerationSeconds stays. Its controller (ReplicaSet, ...) then makes a new pod,
which the scheduler keeps off the tainted node.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from control.controllers.base import Controller, Informer, Object, key_of, terminating
from kubeapi.client import ApiError, Client
from kubeapi.tolerations import tolerates

log = logging.getLogger(__name__)

NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
CONDITION_TAINT_KEYS = (NOT_READY, UNREACHABLE)
WATCHED_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")
LEASE_NAMESPACE = "kube-node-lease"
UNKNOWN_REASON = "NodeStatusUnknown"
UNKNOWN_MESSAGE = "Kubelet stopped posting node status."
NEVER_REASON = "NodeStatusNeverUpdated"
NEVER_MESSAGE = "Kubelet never posted node status."


def rfc3339(moment: float) -> str:
    return datetime.datetime.fromtimestamp(int(moment), tz=datetime.UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def parse_time(text: str) -> float | None:
    """An RFC 3339 time (with or without fractions) as epoch seconds; None if not one."""
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return None


# -- pure decisions: node health -------------------------------------------------------


def ready_status(node: Object) -> str | None:
    """The Ready condition's status; None before the kubelet has posted one."""
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return str(condition.get("status") or "Unknown")
    return None


def heartbeat(node: Object, lease: Object | None) -> tuple[str, str]:
    """What changes while a kubelet is alive: the lease's renewTime and the Ready
    condition's lastHeartbeatTime."""
    renewed = str(((lease or {}).get("spec") or {}).get("renewTime") or "")
    beat = ""
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            beat = str(condition.get("lastHeartbeatTime") or "")
    return renewed, beat


def unknown_conditions(conditions: list[Object], now: str) -> list[Object] | None:
    """The node's conditions with the watched ones Unknown (added if missing, as
    never posted); None if they are Unknown already."""
    result: list[Object] = []
    changed = False
    seen: set[str] = set()
    for condition in conditions:
        kind = condition.get("type")
        if kind in WATCHED_CONDITIONS:
            seen.add(str(kind))
            if condition.get("status") != "Unknown":
                condition = {**condition, "status": "Unknown", "reason": UNKNOWN_REASON,
                             "message": UNKNOWN_MESSAGE, "lastTransitionTime": now}  # fmt: skip
                changed = True
        result.append(condition)
    for kind in WATCHED_CONDITIONS:
        if kind not in seen:
            result.append({"type": kind, "status": "Unknown", "reason": NEVER_REASON,
                           "message": NEVER_MESSAGE, "lastHeartbeatTime": now,
                           "lastTransitionTime": now})  # fmt: skip
            changed = True
    return result if changed else None


def condition_taints(taints: list[Object], ready: str, now: str) -> list[Object]:
    """The node's taints with the not-ready/unreachable ones as its Ready condition
    wants them (others kept; a taint already there keeps its timeAdded)."""
    key = {"False": NOT_READY, "Unknown": UNREACHABLE}.get(ready)
    kept = [t for t in taints if t.get("key") not in CONDITION_TAINT_KEYS or t.get("key") == key]
    if key is None:
        return kept
    for effect in ("NoSchedule", "NoExecute"):
        if not any(t.get("key") == key and t.get("effect") == effect for t in kept):
            taint: Object = {"key": key, "effect": effect}
            if effect == "NoExecute":
                taint["timeAdded"] = now
            kept.append(taint)
    return kept


def not_ready_pod_status(pod: Object, now: str) -> Object | None:
    """The pod's status with Ready False, or None if it is not Ready now."""
    status = dict(pod.get("status") or {})
    conditions = [dict(c) for c in status.get("conditions") or []]
    for condition in conditions:
        if condition.get("type") == "Ready" and condition.get("status") == "True":
            condition.update(status="False", lastTransitionTime=now)
            status["conditions"] = conditions
            return status
    return None


# -- pure decisions: taint eviction ----------------------------------------------------

DISRUPTION_REASON = "DeletionByTaintManager"
DISRUPTION_MESSAGE = "Taint manager: deleting due to NoExecute taint"


def disruption_status(pod: Object, now: str) -> Object | None:
    """The pod's status with the DisruptionTarget condition an eviction adds; None if
    it has it already."""
    status = dict(pod.get("status") or {})
    conditions = [c for c in status.get("conditions") or [] if isinstance(c, dict)]
    if any(c.get("type") == "DisruptionTarget" and c.get("status") == "True" for c in conditions):
        return None
    kept = [c for c in conditions if c.get("type") != "DisruptionTarget"]
    status["conditions"] = [*kept, {"type": "DisruptionTarget", "status": "True",
                                    "reason": DISRUPTION_REASON, "message": DISRUPTION_MESSAGE,
                                    "lastTransitionTime": now}]  # fmt: skip
    return status


@dataclass(frozen=True)
class Tainted:
    """A NoExecute taint and when it was added (epoch seconds)."""

    taint: Object
    added: float


def eviction_delay(tolerations: Sequence[Object], taints: Sequence[Tainted],
                   now: float) -> float | None:  # fmt: skip
    """Seconds until the pod must go (0: now); None: it may stay."""
    deadline: float | None = None
    for tainted in taints:
        used = [t for t in tolerations if tolerates(t, tainted.taint)]
        if not used:
            return 0.0
        limits = [t["tolerationSeconds"] for t in used if t.get("tolerationSeconds") is not None]
        if not limits:
            continue  # tolerated for as long as it lasts
        at = tainted.added + max(int(min(limits)), 0)
        deadline = at if deadline is None else min(deadline, at)
    if deadline is None:
        return None
    return max(deadline - now, 0.0)


def no_execute_taints(node: Object) -> list[Object]:
    return [t for t in (node.get("spec") or {}).get("taints") or []
            if isinstance(t, dict) and t.get("effect") == "NoExecute"]  # fmt: skip


# -- acting ----------------------------------------------------------------------------


@dataclass
class Observed:
    heartbeat: tuple[str, str]
    at: float  # monotonic: when this heartbeat was first seen


class NodeLifecycleController(Controller):
    name = "nodelifecycle"

    def __init__(
        self, client: Client, nodes: Informer, leases: Informer, pods: Informer, *,
        grace_period: float = 40.0, monitor_period: float = 5.0, workers: int = 1,
        clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        super().__init__(client, workers=workers)
        self.nodes = nodes
        self.leases = leases
        self.pods = pods
        self.grace_period = grace_period
        self.monitor_period = monitor_period
        self.clock = clock
        self.wall = wall
        self._observed: dict[str, Observed] = {}
        self._lock = threading.Lock()
        nodes.add_handler(lambda old, new: self.enqueue(new))
        leases.add_handler(self._on_lease)

    def _on_lease(self, old: Object | None, new: Object | None) -> None:
        lease = new or old
        if lease is not None and lease["metadata"].get("namespace") == LEASE_NAMESPACE:
            self.queue.add(str(lease["metadata"].get("name", "")))

    def observe(self, name: str, node: Object) -> Observed:
        """The node's heartbeat, and when this controller first saw it."""
        beat = heartbeat(node, self.leases.get(f"{LEASE_NAMESPACE}/{name}"))
        now = self.clock()
        with self._lock:
            seen = self._observed.get(name)
            if seen is None or seen.heartbeat != beat:
                seen = self._observed[name] = Observed(beat, now)
            return seen

    def sync(self, key: str) -> float | None:
        node = self.nodes.get(key)
        if node is None:
            with self._lock:
                self._observed.pop(key, None)
            return None
        seen = self.observe(key, node)
        now = rfc3339(self.wall())
        if self.clock() - seen.at > self.grace_period:
            conditions = unknown_conditions((node.get("status") or {}).get("conditions") or [], now)
            if conditions is not None:
                log.warning("node %s: no heartbeat for %.0fs, status Unknown", key,
                            self.clock() - seen.at)  # fmt: skip
                node = self.client.update(f"/api/v1/nodes/{key}/status", {
                    **node, "status": {**(node.get("status") or {}), "conditions": conditions},
                })  # fmt: skip
        ready = ready_status(node)
        if ready is None:
            return self.monitor_period  # nothing posted yet: Unknown after the grace period
        taints = list((node.get("spec") or {}).get("taints") or [])
        wanted = condition_taints(taints, ready, now)
        if wanted != taints:
            log.info("node %s: Ready %s, taints %s", key, ready,
                     [f"{t.get('key')}:{t.get('effect')}" for t in wanted])  # fmt: skip
            self.client.patch(f"/api/v1/nodes/{key}", {"metadata": {
                "resourceVersion": node["metadata"].get("resourceVersion")},
                "spec": {"taints": wanted}})  # fmt: skip
        if ready != "True":
            self._mark_pods_not_ready(key, now)
        return self.monitor_period

    def _mark_pods_not_ready(self, node_name: str, now: str) -> None:
        for pod in self.pods.list():
            if (pod.get("spec") or {}).get("nodeName") != node_name:
                continue
            status = not_ready_pod_status(pod, now)
            if status is None:
                continue
            meta = pod["metadata"]
            try:
                self.client.update(
                    f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
                    {**pod, "status": status},
                )
                log.info("pod %s: not ready (node %s)", key_of(pod), node_name)
            except ApiError as e:
                if e.code not in (404, 409):  # gone, or changed: the next pass sees it
                    raise


class TaintEvictionController(Controller):
    name = "taint-eviction-controller"  # as kube-controller-manager --controllers names it

    def __init__(
        self, client: Client, nodes: Informer, pods: Informer, *, workers: int = 1,
        wall: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        super().__init__(client, workers=workers)
        self.nodes = nodes
        self.pods = pods
        self.wall = wall
        self._first_seen: dict[tuple[str, str, str], float] = {}  # taints without timeAdded
        self._lock = threading.Lock()
        nodes.add_handler(self._on_node)
        pods.add_handler(lambda old, new: self.enqueue(new))

    def _on_node(self, old: Object | None, new: Object | None) -> None:
        node = new or old
        if node is None:
            return
        name = str(node["metadata"].get("name", ""))
        present = {self._taint_key(name, t) for t in no_execute_taints(new or {})}
        with self._lock:  # a taint that comes back later starts its time again
            for key in [k for k in self._first_seen if k[0] == name and k not in present]:
                del self._first_seen[key]
        if new is None or (old is not None and no_execute_taints(old) == no_execute_taints(new)):
            return
        for pod in self.pods.list():
            if (pod.get("spec") or {}).get("nodeName") == name:
                self.enqueue(pod)

    @staticmethod
    def _taint_key(node_name: str, taint: Object) -> tuple[str, str, str]:
        return (node_name, str(taint.get("key")), str(taint.get("value") or ""))

    def _added(self, node_name: str, taint: Object) -> float:
        added = parse_time(str(taint.get("timeAdded") or ""))
        if added is not None:
            return added
        key = self._taint_key(node_name, taint)
        with self._lock:
            return self._first_seen.setdefault(key, self.wall())

    def sync(self, key: str) -> float | None:
        pod = self.pods.get(key)
        if pod is None or terminating(pod):
            return None
        node_name = (pod.get("spec") or {}).get("nodeName")
        node = self.nodes.get(str(node_name)) if node_name else None
        if node is None:
            return None
        taints = [Tainted(t, self._added(str(node_name), t)) for t in no_execute_taints(node)]
        tolerations = [t for t in (pod.get("spec") or {}).get("tolerations") or []
                       if isinstance(t, dict)]  # fmt: skip
        delay = eviction_delay(tolerations, taints, self.wall())
        if delay is None:
            return None
        if delay > 0:
            return delay
        meta = pod["metadata"]
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
        log.info("pod %s: evicting from node %s (NoExecute taint)", key, node_name)
        status = disruption_status(pod, rfc3339(self.wall()))
        if status is not None:  # why it goes, as kube's taint manager records it
            try:
                self.client.update(f"{path}/status", {**pod, "status": status})
            except ApiError as e:
                if e.code == 404:
                    return None
                raise  # 409: stale; the retry reads the pod again
        try:
            self.client.delete(path, {
                "apiVersion": "v1", "kind": "DeleteOptions",
                "preconditions": {"uid": meta.get("uid")},
            })  # fmt: skip
        except ApiError as e:
            if e.code not in (404, 409):
                raise
        return None
