"""The Deployment controller: ReplicaSets by pod-template hash, rolled out by
RollingUpdate (maxSurge, maxUnavailable) or Recreate, with revisions and history.

Pure: `template_hash` (fnv-32a of the template, kube's safe encoding), `scaled_value`
(ints or percentages: surge rounds up, unavailable down), `rolling_step` (kube's
reconcileNewReplicaSet, then reconcileOldReplicaSets: one change per sync),
`recreate_step`, `history_to_delete`, `deployment_status`. The acting layer
claims ReplicaSets (adopt/release), creates the new one, scales, deletes old history
and writes status. It acts only on ReplicaSets whose status has caught up with their
spec (observedGeneration), so counts it reads are never staler than its last write.
"""

from __future__ import annotations

import copy
import datetime
import json
import logging
from dataclasses import dataclass
from typing import Any

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

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
DESIRED = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


# -- pure decisions --------------------------------------------------------------------


def _fnv32a(data: bytes) -> int:
    value = 0x811C9DC5
    for byte in data:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def _without_nulls(value: Any) -> Any:
    """JSON null is a Go zero value: `creationTimestamp: null` equals no field."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def without_hash(template: Object) -> Object:
    """The template as compared and hashed: no hash label, no nulls."""
    copied: Object = _without_nulls(copy.deepcopy(template or {}))
    labels = (copied.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    return copied


def template_hash(template: Object, collision_count: int = 0) -> str:
    """A stable, label-safe hash of a pod template (its hash label ignored)."""
    canonical = json.dumps(without_hash(template), sort_keys=True, separators=(",", ":"))
    data = canonical.encode()
    if collision_count:
        data += collision_count.to_bytes(4, "little")
    return "".join(SAFE_ALPHABET[ord(c) % len(SAFE_ALPHABET)] for c in str(_fnv32a(data)))


def same_template(a: Object, b: Object) -> bool:
    return without_hash(a) == without_hash(b)


def scaled_value(value: int | str | None, total: int, *, round_up: bool) -> int:
    """An IntOrString against `total`: "25%" of 10 is 3 rounded up, 2 rounded down."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not text.endswith("%"):
        return int(text)
    percent = int(text[:-1])
    whole, rest = divmod(percent * total, 100)
    return whole + (1 if round_up and rest else 0)


def fenceposts(deployment: Object) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) resolved; both zero would deadlock: unavailable 1."""
    spec = deployment.get("spec") or {}
    replicas = replicas_of(deployment)
    rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    surge = scaled_value(rolling.get("maxSurge", "25%"), replicas, round_up=True)
    unavailable = scaled_value(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


@dataclass(frozen=True)
class RS:
    """What the rollout needs of a ReplicaSet."""

    name: str
    replicas: int  # spec
    current: int  # status.replicas
    available: int
    created: str = ""
    revision: int = 0

    @classmethod
    def of(cls, rs: Object) -> RS:
        meta, status = rs.get("metadata") or {}, rs.get("status") or {}
        return cls(
            name=str(meta.get("name", "")),
            replicas=int((rs.get("spec") or {}).get("replicas") or 0),
            current=int(status.get("replicas") or 0),
            available=int(status.get("availableReplicas") or 0),
            created=str(meta.get("creationTimestamp") or ""),
            revision=revision_of(rs),
        )


def replicas_of(obj: Object) -> int:
    replicas = (obj.get("spec") or {}).get("replicas")
    return 1 if replicas is None else int(replicas)


def revision_of(obj: Object) -> int:
    try:
        return int(((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION) or 0)
    except ValueError:
        return 0


def rolling_step(replicas: int, surge: int, unavailable: int, new: RS,
                 olds: list[RS]) -> dict[str, int]:  # fmt: skip
    """One step of a rolling update: the ReplicaSets to scale, name -> replicas.
    Empty: nothing to do until counts change."""
    # Scale the new one up, never above replicas + maxSurge pods in all.
    if new.replicas > replicas:
        return {new.name: replicas}
    if new.replicas < replicas:
        pods = sum(max(r.replicas, r.current) for r in [new, *olds])
        room = replicas + surge - pods
        if room > 0:
            return {new.name: new.replicas + min(room, replicas - new.replicas)}
    # Scale old ones down, never below replicas - maxUnavailable available pods.
    if not any(r.replicas for r in olds):
        return {}
    everything = new.replicas + sum(r.replicas for r in olds)
    min_available = replicas - unavailable
    new_unavailable = max(new.replicas - new.available, 0)
    max_scaled_down = everything - min_available - new_unavailable
    if max_scaled_down <= 0:
        return {}
    changes: dict[str, int] = {}
    ordered = sorted(olds, key=lambda r: (r.created, r.name))
    # First the old pods that are not available anyway.
    scaled = 0
    counts = {r.name: r.replicas for r in ordered}
    for r in ordered:
        unhealthy = r.replicas - min(r.available, r.replicas)
        if scaled >= max_scaled_down or unhealthy <= 0:
            continue
        down = min(max_scaled_down - scaled, unhealthy)
        counts[r.name] -= down
        changes[r.name] = counts[r.name]
        scaled += down
    # Then available ones, down to minAvailable.
    available = min(new.available, new.replicas) + sum(
        min(r.available, counts[r.name]) for r in ordered
    )
    total_down = min(available - min_available, max_scaled_down - scaled)
    for r in ordered:
        if total_down <= 0:
            break
        if counts[r.name] == 0:
            continue
        down = min(counts[r.name], total_down)
        counts[r.name] -= down
        changes[r.name] = counts[r.name]
        total_down -= down
    return changes


def recreate_step(replicas: int, new: RS, olds: list[RS]) -> dict[str, int]:
    """Recreate: all old pods gone before the new ones are made."""
    running = [r for r in olds if r.replicas]
    if running:
        return {r.name: 0 for r in running}
    if any(r.current for r in olds):
        return {}  # wait for the old pods to go
    return {new.name: replicas} if new.replicas != replicas else {}


def paused_scale(replicas: int, new: RS | None, olds: list[RS]) -> dict[str, int]:
    """A paused deployment scaled: the one active set follows (several active sets
    would need kube's proportional scaling: left until resumed)."""
    running = [r for r in [*([new] if new else []), *olds] if r.replicas]
    if len(running) == 1 and running[0].replicas != replicas:
        return {running[0].name: replicas}
    if not running and new is not None and replicas:
        return {new.name: replicas}
    return {}


def history_to_delete(olds: list[RS], limit: int) -> list[str]:
    """Old, empty ReplicaSets beyond revisionHistoryLimit, oldest revisions first."""
    empty = sorted((r for r in olds if r.replicas == 0 and r.current == 0),
                   key=lambda r: (r.revision, r.created, r.name))  # fmt: skip
    extra = len(empty) - max(limit, 0)
    return [r.name for r in empty[:extra]] if extra > 0 else []


def _condition(kind: str, state: str, reason: str, message: str, now: str,
               previous: list[Object]) -> Object:  # fmt: skip
    old = next((c for c in previous if c.get("type") == kind), None)
    condition = {"type": kind, "status": state, "reason": reason, "message": message,
                 "lastUpdateTime": now, "lastTransitionTime": now}  # fmt: skip
    if old is not None and old.get("status") == state:
        condition["lastTransitionTime"] = old.get("lastTransitionTime", now)
        if old.get("reason") == reason and old.get("message") == message:
            condition["lastUpdateTime"] = old.get("lastUpdateTime", now)
    return condition


def deployment_status(deployment: Object, new: Object | None, olds: list[Object],
                      now: str) -> Object:  # fmt: skip
    """Status from the ReplicaSets' statuses, with Available and Progressing."""
    spec = deployment.get("spec") or {}
    replicas = replicas_of(deployment)
    every = [*([new] if new is not None else []), *olds]

    def total(field: str, items: list[Object]) -> int:
        return sum(int((r.get("status") or {}).get(field) or 0) for r in items)

    previous = dict(deployment.get("status") or {})
    status: Object = {
        "observedGeneration": generation_of(deployment),
        "replicas": total("replicas", every),
        "updatedReplicas": total("replicas", [new] if new is not None else []),
        "readyReplicas": total("readyReplicas", every),
        "availableReplicas": total("availableReplicas", every),
    }
    status["unavailableReplicas"] = max(replicas - status["availableReplicas"], 0)
    if previous.get("collisionCount"):
        status["collisionCount"] = previous["collisionCount"]
    conditions = list(previous.get("conditions") or [])
    _, unavailable = fenceposts(deployment)
    strategy = (spec.get("strategy") or {}).get("type", "RollingUpdate")
    minimum = replicas - (unavailable if strategy == "RollingUpdate" else replicas)
    if status["availableReplicas"] >= minimum:
        available = _condition(
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            now,
            conditions,
        )
    else:
        available = _condition("Available", "False", "MinimumReplicasUnavailable",
                               "Deployment does not have minimum availability.", now,
                               conditions)  # fmt: skip
    name = (new or {}).get("metadata", {}).get("name", "")
    complete = (
        new is not None and status["updatedReplicas"] == replicas
        and status["replicas"] == replicas and status["availableReplicas"] == replicas
    )  # fmt: skip
    if spec.get("paused"):
        progressing = _condition(
            "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused", now, conditions
        )
    elif complete:
        progressing = _condition("Progressing", "True", "NewReplicaSetAvailable",
                                 f'ReplicaSet "{name}" has successfully progressed.', now,
                                 conditions)  # fmt: skip
    else:
        progressing = _condition(
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            f'ReplicaSet "{name}" is progressing.',
            now,
            conditions,
        )
    status["conditions"] = [available, progressing] + [
        c for c in conditions if c.get("type") not in ("Available", "Progressing")
    ]
    return status


def new_replicaset(deployment: Object, hash_value: str, replicas: int, revision: int) -> Object:
    meta, spec = deployment["metadata"], deployment.get("spec") or {}
    template = copy.deepcopy(spec.get("template") or {})
    template.setdefault("metadata", {})
    template["metadata"]["labels"] = {**(template["metadata"].get("labels") or {}),
                                      HASH_LABEL: hash_value}  # fmt: skip
    selector = copy.deepcopy(spec.get("selector") or {})
    selector["matchLabels"] = {**(selector.get("matchLabels") or {}), HASH_LABEL: hash_value}
    surge, _ = fenceposts(deployment)
    return {
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {
            "name": f"{meta['name']}-{hash_value}", "namespace": meta.get("namespace"),
            "labels": dict(template["metadata"]["labels"]),
            "annotations": {REVISION: str(revision), DESIRED: str(spec.get("replicas", 1)),
                            MAX_REPLICAS: str(int(spec.get("replicas", 1)) + surge)},
            "ownerReferences": [owner_reference(
                {"apiVersion": "apps/v1", "kind": "Deployment", **deployment})],
        },
        "spec": {"replicas": replicas, "selector": selector, "template": template,
                 "minReadySeconds": int(spec.get("minReadySeconds") or 0)},
    }  # fmt: skip


def now_rfc3339() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- acting ----------------------------------------------------------------------------


def _path(kind: str, namespace: str, name: str = "") -> str:
    base = f"/apis/apps/v1/namespaces/{namespace}/{kind}"
    return f"{base}/{name}" if name else base


class DeploymentController(Controller):
    name = "deployment"

    def __init__(
        self, client: Client, deployments: Informer, replicasets: Informer, *, workers: int = 2
    ) -> None:
        super().__init__(client, workers=workers)
        self.deployments = deployments
        self.replicasets = replicasets
        deployments.add_handler(lambda old, new: self.enqueue(new or old))
        replicasets.add_handler(self._on_replicaset)

    def _on_replicaset(self, old: Object | None, new: Object | None) -> None:
        keys: set[str] = set()
        for rs in (old, new):
            if rs is None:
                continue
            namespace = rs["metadata"].get("namespace", "")
            ref = controller_ref(rs)
            if ref is not None:
                if ref.get("kind") == "Deployment":
                    keys.add(f"{namespace}/{ref.get('name')}")
                continue
            for d in self.deployments.list(namespace):
                if selector_matches((d.get("spec") or {}).get("selector"), labels_of(rs)):
                    keys.add(key_of(d))
        for key in keys:
            self.queue.add(key)

    def _claim(self, deployment: Object) -> list[Object]:
        namespace = deployment["metadata"].get("namespace", "")
        uid = deployment["metadata"].get("uid")
        selector = (deployment.get("spec") or {}).get("selector")
        owned = []
        for rs in self.replicasets.list(namespace):
            if terminating(rs):
                continue
            ref = controller_ref(rs)
            matches = selector_matches(selector, labels_of(rs))
            meta = rs["metadata"]
            if ref is not None and ref.get("uid") == uid:
                if matches:
                    owned.append(rs)
                else:
                    refs = [r for r in meta.get("ownerReferences") or [] if r.get("uid") != uid]
                    self.client.patch(_path("replicasets", namespace, meta["name"]), {
                        "metadata": {"ownerReferences": refs,
                                     "resourceVersion": meta.get("resourceVersion")}})  # fmt: skip
            elif ref is None and matches and not terminating(deployment):
                ref_new = owner_reference({"apiVersion": "apps/v1", "kind": "Deployment",
                                           **deployment})  # fmt: skip
                adopted = self.client.patch(_path("replicasets", namespace, meta["name"]), {
                    "metadata": {"ownerReferences": [*(meta.get("ownerReferences") or []),
                                                     ref_new],
                                 "resourceVersion": meta.get("resourceVersion")}})  # fmt: skip
                owned.append(adopted)
        return owned

    def sync(self, key: str) -> float | None:
        deployment = self.deployments.get(key)
        if deployment is None:
            return None
        namespace, _ = split_key(key)
        owned = self._claim(deployment)
        if any(int((r.get("status") or {}).get("observedGeneration") or 0) < generation_of(r)
               for r in owned):  # fmt: skip
            return None  # their controller has not caught up: its status update wakes us
        spec = deployment.get("spec") or {}
        template = spec.get("template") or {}
        new = next((r for r in owned
                    if same_template((r.get("spec") or {}).get("template") or {}, template)),
                   None)  # fmt: skip
        olds = [r for r in owned if r is not new]
        replicas = replicas_of(deployment)
        strategy = (spec.get("strategy") or {}).get("type", "RollingUpdate")
        surge, unavailable = fenceposts(deployment)
        max_revision = max((revision_of(r) for r in olds), default=0)
        if spec.get("paused") or terminating(deployment):
            # No rollout; a paused deployment still scales when only one set runs.
            changes = paused_scale(replicas, RS.of(new) if new else None, [RS.of(r) for r in olds])
            for rs_name, count in changes.items():
                self._scale(namespace, rs_name, count, replicas, surge)
            if not changes:
                self._write_status(deployment, new, olds)
            return None
        if new is None:
            new = self._create(deployment, olds, strategy, replicas, surge, max_revision + 1)
            if new is None:
                return 0.1  # a hash collision: try again with the next collisionCount
            self._annotate_deployment(deployment, max_revision + 1)
            self._write_status(deployment, new, olds)
            return None
        if revision_of(new) <= max_revision:  # rolled back to an old template
            new = self._set_revision(new, max_revision + 1)
        if revision_of(deployment) != revision_of(new):
            self._annotate_deployment(deployment, revision_of(new))
        states = [RS.of(r) for r in olds]
        if strategy == "Recreate":
            changes = recreate_step(replicas, RS.of(new), states)
        else:
            changes = rolling_step(replicas, surge, unavailable, RS.of(new), states)
        for rs_name, count in changes.items():
            self._scale(namespace, rs_name, count, replicas, surge)
        if not changes:
            limit = int(spec.get("revisionHistoryLimit", 10))
            for rs_name in history_to_delete(states, limit):
                log.info("deployment %s: delete old replicaset %s", key, rs_name)
                try:
                    self.client.delete(_path("replicasets", namespace, rs_name))
                except ApiError as e:
                    if e.code != 404:
                        raise
                olds = [r for r in olds if r["metadata"]["name"] != rs_name]
        self._write_status(deployment, new, olds)
        return None

    def _create(self, deployment: Object, olds: list[Object], strategy: str, replicas: int,
                surge: int, revision: int) -> Object | None:  # fmt: skip
        namespace = deployment["metadata"].get("namespace", "")
        collisions = int((deployment.get("status") or {}).get("collisionCount") or 0)
        template = (deployment.get("spec") or {}).get("template") or {}
        hash_value = template_hash(template, collisions)
        if strategy == "Recreate":
            count = replicas if not any(RS.of(r).replicas or RS.of(r).current for r in olds) else 0
        else:
            placeholder = RS(name="", replicas=0, current=0, available=0)
            count = rolling_step(replicas, surge, 0, placeholder,
                                 [RS.of(r) for r in olds]).get("", 0)  # fmt: skip
        body = new_replicaset(deployment, hash_value, count, revision)
        try:
            created = self.client.create(_path("replicasets", namespace), body)
            log.info("deployment %s: created replicaset %s (%d replicas)", key_of(deployment),
                     created["metadata"]["name"], count)  # fmt: skip
            return created
        except ApiError as e:
            if e.code != 409:
                raise
        existing = self.client.get(_path("replicasets", namespace, body["metadata"]["name"]))
        ref = controller_ref(existing)
        if (ref is None or ref.get("uid") == deployment["metadata"].get("uid")) and same_template(
            (existing.get("spec") or {}).get("template") or {}, template
        ):
            return existing  # ours already (the cache had not shown it yet)
        status = {**(deployment.get("status") or {}), "collisionCount": collisions + 1}
        self.client.update(
            _path("deployments", namespace, deployment["metadata"]["name"]) + "/status",
            {**deployment, "status": status},
        )
        return None

    def _scale(self, namespace: str, name: str, count: int, replicas: int, surge: int) -> None:
        log.info("deployment %s/%s: scale %s to %d", namespace, name.rsplit("-", 1)[0], name,
                 count)  # fmt: skip
        self.client.patch(_path("replicasets", namespace, name), {
            "metadata": {"annotations": {DESIRED: str(replicas),
                                         MAX_REPLICAS: str(replicas + surge)}},
            "spec": {"replicas": count}})  # fmt: skip

    def _set_revision(self, rs: Object, revision: int) -> Object:
        meta = rs["metadata"]
        return self.client.patch(
            _path("replicasets", meta.get("namespace", ""), meta["name"]),
            {"metadata": {"annotations": {REVISION: str(revision)}}},
        )

    def _annotate_deployment(self, deployment: Object, revision: int) -> None:
        meta = deployment["metadata"]
        self.client.patch(
            _path("deployments", meta.get("namespace", ""), meta["name"]),
            {"metadata": {"annotations": {REVISION: str(revision)}}},
        )

    def _write_status(self, deployment: Object, new: Object | None, olds: list[Object]) -> None:
        meta = deployment["metadata"]
        status = deployment_status(deployment, new, olds, now_rfc3339())
        if status == (deployment.get("status") or {}):
            return
        self.client.patch(
            _path("deployments", meta.get("namespace", ""), meta["name"]) + "/status",
            {"status": status},
        )
