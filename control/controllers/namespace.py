"""The Namespace controller: a deleted namespace (deletionTimestamp, phase
Terminating, held by its spec.finalizers "kubernetes") is emptied, then let go.

Each sync of a terminating namespace: discover the namespaced resources the API
serves (discovery.py, no list of kinds here), delete their objects in it
(deletecollection where served, else one by one; background propagation), count
what is left and what of that waits on finalizers, and write the status
conditions kube's namespace controller writes (NamespaceDeletionDiscoveryFailure,
NamespaceDeletionContentFailure, NamespaceContentRemaining,
NamespaceFinalizersRemaining). Once nothing is left it removes "kubernetes" with
PUT namespaces/<name>/finalize, and the API server deletes the namespace (once its
metadata.finalizers are gone too). Until then it looks again every
`recheck_period` (pods stopping, finalizers being removed).
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from control.controllers.base import Controller, Informer, Object, terminating
from control.controllers.discovery import ApiResource, discover
from kubeapi.client import ApiError, Client

log = logging.getLogger(__name__)

FINALIZER = "kubernetes"


# -- pure decisions --------------------------------------------------------------------


@dataclass
class Content:
    """What one pass over a namespace found."""

    remaining: dict[str, int] = field(default_factory=dict)  # resource -> objects left
    finalizers: dict[str, int] = field(default_factory=dict)  # finalizer -> objects it holds
    failures: list[str] = field(default_factory=list)  # deletions that failed
    discovery_error: str = ""

    @property
    def empty(self) -> bool:
        return not self.remaining and not self.failures and not self.discovery_error


def _condition(kind: str, failed: bool, reason: str, message: str) -> Object:
    return {"type": kind, "status": "True" if failed else "False", "reason": reason,
            "message": message}  # fmt: skip


def deletion_conditions(content: Content) -> list[Object]:
    """The namespace's status conditions for what a pass found (without times)."""
    remaining = ", ".join(f"{r} has {n} resource instances" for r, n in
                          sorted(content.remaining.items()))  # fmt: skip
    finalizers = ", ".join(f"{f} in {n} resource instances" for f, n in
                           sorted(content.finalizers.items()))  # fmt: skip
    return [
        _condition("NamespaceDeletionDiscoveryFailure", bool(content.discovery_error),
                   "DiscoveryFailed" if content.discovery_error else "ResourcesDiscovered",
                   f"Discovery failed: {content.discovery_error}" if content.discovery_error
                   else "All resources successfully discovered"),
        _condition("NamespaceDeletionContentFailure", bool(content.failures),
                   "ContentDeletionFailed" if content.failures else "ContentDeleted",
                   "Failed to delete all resource types, " + "; ".join(content.failures)
                   if content.failures
                   else "All content successfully deleted, may be waiting on finalization"),
        _condition("NamespaceContentRemaining", bool(content.remaining),
                   "SomeResourcesRemain" if content.remaining else "ContentRemoved",
                   f"Some resources are remaining: {remaining}" if remaining
                   else "All content successfully removed"),
        _condition("NamespaceFinalizersRemaining", bool(content.finalizers),
                   "SomeFinalizersRemain" if content.finalizers else "ContentHasNoFinalizers",
                   f"Some content in the namespace has finalizers remaining: {finalizers}"
                   if finalizers else "All content-preserving finalizers finished"),
    ]  # fmt: skip


def merge_conditions(previous: list[Object], wanted: list[Object], now: str) -> list[Object]:
    """`wanted` with each condition's lastTransitionTime kept while its status holds."""
    before = {c.get("type"): c for c in previous}
    merged = []
    for condition in wanted:
        old = before.get(condition["type"])
        same = old is not None and old.get("status") == condition["status"]
        time_ = old.get("lastTransitionTime") if same and old else now
        merged.append({**condition, "lastTransitionTime": time_})
    return merged


def without_finalizer(namespace: Object) -> list[str]:
    return [f for f in (namespace.get("spec") or {}).get("finalizers") or [] if f != FINALIZER]


def deletable(resources: list[ApiResource]) -> list[ApiResource]:
    """The namespaced resources whose objects a namespace's deletion removes."""
    return [r for r in resources if r.namespaced and r.can("list", "delete")]


# -- acting ----------------------------------------------------------------------------


def _now(clock: Callable[[], float]) -> str:
    moment = datetime.datetime.fromtimestamp(int(clock()), tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class NamespaceController(Controller):
    name = "namespace"

    def __init__(
        self, client: Client, namespaces: Informer, *, workers: int = 2,
        recheck_period: float = 1.0, clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        super().__init__(client, workers=workers)
        self.namespaces = namespaces
        self.recheck_period = recheck_period
        self.clock = clock
        namespaces.add_handler(lambda old, new: self.enqueue(new))

    def sync(self, key: str) -> float | None:
        namespace = self.namespaces.get(key)
        if namespace is None or not terminating(namespace):
            return None
        if FINALIZER not in ((namespace.get("spec") or {}).get("finalizers") or []):
            return None  # emptied already; the API server lets it go
        content = self._delete_content(key)
        self._write_conditions(namespace, content)
        if not content.empty:
            log.debug("namespace %s: waiting for %s", key, content.remaining or content.failures)
            return self.recheck_period
        try:
            self.client.update(f"/api/v1/namespaces/{key}/finalize", {
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": key},
                "spec": {"finalizers": without_finalizer(namespace)},
            })  # fmt: skip
        except ApiError as e:
            if e.code != 404:
                raise
        log.info("namespace %s: emptied, finalized", key)
        return None

    def _delete_content(self, namespace: str) -> Content:
        content = Content()
        try:
            resources = deletable(discover(self.client))
        except (ApiError, OSError) as e:
            content.discovery_error = str(e)
            return content
        for resource in resources:
            try:
                self._delete_all(resource, namespace)
            except ApiError as e:
                if e.code not in (404, 405):
                    content.failures.append(f"{resource.plural}: {e}")
            try:
                left = self.client.list(resource.path(namespace))["items"]
            except ApiError as e:
                content.failures.append(f"{resource.plural}: {e}")
                continue
            if left:
                content.remaining[f"{resource.plural}.{resource.group}"] = len(left)
            for obj in left:
                for finalizer in (obj.get("metadata") or {}).get("finalizers") or []:
                    content.finalizers[finalizer] = content.finalizers.get(finalizer, 0) + 1
        return content

    def _delete_all(self, resource: ApiResource, namespace: str) -> None:
        options = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        if resource.can("deletecollection"):
            self.client.delete(resource.path(namespace), options)
            return
        for obj in self.client.list(resource.path(namespace))["items"]:
            if terminating(obj):
                continue
            try:
                self.client.delete(resource.path(namespace, obj["metadata"]["name"]), options)
            except ApiError as e:
                if e.code != 404:
                    raise

    def _write_conditions(self, namespace: Object, content: Content) -> None:
        status = namespace.get("status") or {}
        previous = status.get("conditions") or []
        conditions = merge_conditions(previous, deletion_conditions(content), _now(self.clock))
        if conditions == previous and status.get("phase") == "Terminating":
            return
        name = namespace["metadata"]["name"]
        body = {**namespace, "status": {**status, "phase": "Terminating",
                                        "conditions": conditions}}  # fmt: skip
        try:
            self.client.update(f"/api/v1/namespaces/{name}/status", body)
        except ApiError as e:
            if e.code not in (404, 409):  # gone, or changed: the next sync writes them
                raise
