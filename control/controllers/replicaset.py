"""The ReplicaSet controller: `spec.replicas` active pods matching the selector.

`claim` sorts the namespace's pods into owned / to adopt / to release; `plan`
decides what to create and which to delete (kube's order: unscheduled, then
pending before running, not ready before ready, newest first); `status` counts.
All three are pure. `ReplicaSetController.sync` performs them, then writes status.

Pods being deleted (deletionTimestamp) or finished (Succeeded/Failed) are ignored:
they are neither counted nor adopted. Expectations (as kube's): after creating or
deleting pods, the set is not managed again until the pod watch has shown those
changes (or EXPECTATION_TIMEOUT passed), so a stale cache never doubles the pods.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from control.controllers.base import (
    Controller,
    Informer,
    Object,
    controller_ref,
    generation_of,
    key_of,
    labels_of,
    owner_reference,
    selector_matches,
    split_key,
    terminating,
)  # fmt: skip
from kubeapi.client import ApiError, Client

log = logging.getLogger(__name__)

BURST = 500  # most pods created or deleted in one sync
EXPECTATION_TIMEOUT = 30.0
PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


# -- pure decisions --------------------------------------------------------------------


def active(pod: Object) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    return not terminating(pod) and phase not in ("Succeeded", "Failed")


def pod_ready(pod: Object) -> bool:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False


@dataclass
class Claim:
    owned: list[Object] = field(default_factory=list)  # includes those to adopt
    adopt: list[Object] = field(default_factory=list)
    release: list[Object] = field(default_factory=list)


def claim(owner: Object, pods: list[Object]) -> Claim:
    """Which of `pods` (one namespace) `owner` controls, adopts and releases."""
    uid = owner["metadata"].get("uid")
    selector = (owner.get("spec") or {}).get("selector")
    result = Claim()
    for pod in pods:
        if not active(pod):
            continue
        ref = controller_ref(pod)
        matches = selector_matches(selector, labels_of(pod))
        if ref is not None and ref.get("uid") == uid:
            (result.owned if matches else result.release).append(pod)
        elif ref is None and matches and not terminating(owner):
            result.owned.append(pod)
            result.adopt.append(pod)
    return result


def deletion_rank(pod: Object) -> tuple[int, int, int, str, str]:
    """Sorts pods to delete first: unscheduled, pending, not ready, newest."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    created = str((pod.get("metadata") or {}).get("creationTimestamp") or "")
    inverted = "".join(chr(0x10FFFF - ord(c)) for c in created)  # newest first
    return (
        1 if spec.get("nodeName") else 0,
        PHASE_RANK.get(str(status.get("phase") or "Pending"), 0),
        1 if pod_ready(pod) else 0,
        inverted,
        str(pod["metadata"].get("name", "")),
    )


@dataclass(frozen=True)
class Plan:
    create: int = 0
    delete: tuple[Object, ...] = ()


def plan(replicas: int, owned: list[Object]) -> Plan:
    diff = len(owned) - replicas
    if diff < 0:
        return Plan(create=min(-diff, BURST))
    if diff > 0:
        return Plan(delete=tuple(sorted(owned, key=deletion_rank)[: min(diff, BURST)]))
    return Plan()


def status(rs: Object, pods: list[Object]) -> Object:
    """The RS status for these owned, active pods."""
    template_labels = labels_of((rs.get("spec") or {}).get("template") or {})
    ready = [p for p in pods if pod_ready(p)]
    fully = [p for p in pods if template_labels.items() <= labels_of(p).items()]
    result: Object = {
        "replicas": len(pods),
        "fullyLabeledReplicas": len(fully),
        "readyReplicas": len(ready),
        "availableReplicas": len(ready),  # minReadySeconds: not yet; ready is available
        "observedGeneration": generation_of(rs),
    }
    previous = rs.get("status") or {}
    if previous.get("conditions"):
        result["conditions"] = previous["conditions"]
    return result


def pod_from_template(rs: Object) -> Object:
    template = (rs.get("spec") or {}).get("template") or {}
    meta = template.get("metadata") or {}
    name = rs["metadata"]["name"]
    pod_meta: Object = {
        "generateName": f"{name}-", "namespace": rs["metadata"].get("namespace"),
        "labels": dict(meta.get("labels") or {}),
        "ownerReferences": [owner_reference({"apiVersion": "apps/v1", "kind": "ReplicaSet", **rs})],
    }  # fmt: skip
    if meta.get("annotations"):
        pod_meta["annotations"] = dict(meta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta,
            "spec": dict(template.get("spec") or {})}  # fmt: skip


# -- expectations ----------------------------------------------------------------------


@dataclass
class Expectation:
    created: set[str]  # pod keys created, not yet seen
    deleted: dict[str, str]  # pod key -> uid deleted, still seen
    at: float


class Expectations:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._by_rs: dict[str, Expectation] = {}
        self._clock = clock

    def expect(self, rs: str, created: set[str], deleted: dict[str, str]) -> None:
        with self._lock:
            self._by_rs[rs] = Expectation(created, deleted, self._clock())

    def satisfied(self, rs: str, pods: Informer) -> bool:
        with self._lock:
            expectation = self._by_rs.get(rs)
        if expectation is None:
            return True
        if self._clock() - expectation.at > EXPECTATION_TIMEOUT:
            log.warning("replicaset %s: expectations timed out", rs)
        else:
            if any(pods.get(k) is None for k in expectation.created):
                return False
            for key, uid in expectation.deleted.items():
                pod = pods.get(key)
                if pod is not None and pod["metadata"].get("uid") == uid and active(pod):
                    return False
        with self._lock:
            self._by_rs.pop(rs, None)
        return True

    def forget(self, rs: str) -> None:
        with self._lock:
            self._by_rs.pop(rs, None)


# -- acting ----------------------------------------------------------------------------


def _rs_path(namespace: str, name: str = "") -> str:
    base = f"/apis/apps/v1/namespaces/{namespace}/replicasets"
    return f"{base}/{name}" if name else base


def _pods_path(namespace: str, name: str = "") -> str:
    base = f"/api/v1/namespaces/{namespace}/pods"
    return f"{base}/{name}" if name else base


class ReplicaSetController(Controller):
    name = "replicaset"

    def __init__(
        self, client: Client, replicasets: Informer, pods: Informer, *, workers: int = 2
    ) -> None:
        super().__init__(client, workers=workers)
        self.replicasets = replicasets
        self.pods = pods
        self.expectations = Expectations()
        replicasets.add_handler(self._on_replicaset)
        pods.add_handler(self._on_pod)

    def _on_replicaset(self, old: Object | None, new: Object | None) -> None:
        if new is None and old is not None:
            self.expectations.forget(key_of(old))
        self.enqueue(new or old)

    def _on_pod(self, old: Object | None, new: Object | None) -> None:
        keys: set[str] = set()
        for pod in (old, new):
            if pod is None:
                continue
            namespace = pod["metadata"].get("namespace", "")
            ref = controller_ref(pod)
            if ref is not None:
                if ref.get("kind") == "ReplicaSet":
                    keys.add(f"{namespace}/{ref.get('name')}")
                continue
            for rs in self.replicasets.list(namespace):  # an orphan: who could adopt it
                if selector_matches((rs.get("spec") or {}).get("selector"), labels_of(pod)):
                    keys.add(key_of(rs))
        for key in keys:
            self.queue.add(key)

    def sync(self, key: str) -> float | None:
        rs = self.replicasets.get(key)
        if rs is None:
            return None
        if not self.expectations.satisfied(key, self.pods):
            return 1.0  # the pod watch will bring the changes (and wake it sooner)
        namespace, name = split_key(key)
        claimed = claim(rs, self.pods.list(namespace))
        ref = owner_reference({"apiVersion": "apps/v1", "kind": "ReplicaSet", **rs})
        for pod in claimed.adopt:
            self._adopt(pod, ref)
        for pod in claimed.release:
            self._release(pod, rs["metadata"].get("uid", ""))
        owned = claimed.owned
        created: set[str] = set()
        deleted: dict[str, str] = {}
        if not terminating(rs):
            decision = plan(int((rs.get("spec") or {}).get("replicas") or 0), owned)
            body = pod_from_template(rs)
            for _ in range(decision.create):
                pod = self.client.create(_pods_path(namespace), body)
                created.add(key_of(pod))
                owned = [*owned, pod]
            for pod in decision.delete:
                pod_name = pod["metadata"]["name"]
                try:
                    self.client.delete(_pods_path(namespace, pod_name))
                except ApiError as e:
                    if e.code != 404:
                        raise
                deleted[key_of(pod)] = pod["metadata"].get("uid", "")
            if decision.delete:
                gone = {id(p) for p in decision.delete}
                owned = [p for p in owned if id(p) not in gone]
            if created or deleted:
                self.expectations.expect(key, created, deleted)
                log.info("replicaset %s: created %d, deleted %d pods", key,
                         len(created), len(deleted))  # fmt: skip
        new_status = status(rs, owned)
        if new_status != (rs.get("status") or {}):
            self.client.update(_rs_path(namespace, name) + "/status", {**rs, "status": new_status})
        return None

    def _adopt(self, pod: Object, ref: Object) -> None:
        meta = pod["metadata"]
        refs = [*(meta.get("ownerReferences") or []), ref]
        self.client.patch(_pods_path(meta["namespace"], meta["name"]), {
            "metadata": {"ownerReferences": refs, "resourceVersion": meta.get("resourceVersion")},
        })  # fmt: skip

    def _release(self, pod: Object, uid: str) -> None:
        meta = pod["metadata"]
        refs = [r for r in meta.get("ownerReferences") or [] if r.get("uid") != uid]
        try:
            self.client.patch(_pods_path(meta["namespace"], meta["name"]), {
                "metadata": {"ownerReferences": refs,
                             "resourceVersion": meta.get("resourceVersion")},
            })  # fmt: skip
        except ApiError as e:
            if e.code != 404:
                raise
