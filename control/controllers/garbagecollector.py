"""The garbage collector: objects whose owners are gone are deleted; owners deleted
in the foreground wait for their dependents; orphaning owners let them go.

The graph (`Graph`) holds every object of every kind the API serves with list,
watch and delete (found by discovery.py when the collector starts; its own
informer per kind), indexed by uid, and the reverse index owner uid -> dependents
from metadata.ownerReferences. The queue is keyed by uid. A sync of an object:

1. being deleted with the `orphan` finalizer: remove its ownerReference from each
   dependent, then the finalizer (the API server then deletes the object);
2. being deleted with `foregroundDeletion`: its dependents are queued (they see an
   owner waiting for them, step 3, and are deleted); once no dependent that has
   `blockOwnerDeletion` on its reference to it is left, remove the finalizer;
3. otherwise, with ownerReferences (`dependent_action`, pure): each owner is
   solid, dangling (absent, or a different uid under that name: looked up live
   when not in the graph, as kube's collector does, so a lagging watch never
   deletes anything) or waiting for its dependents (foreground). With a solid
   owner, references to the others are removed; without one, the object is
   deleted — in the foreground when an owner waits and it has dependents of its
   own, else by the policy its own finalizers ask (background by default).

Deletions and finalizer removals are compare-and-swap (uid precondition,
resourceVersion), so a stale graph fails them instead of doing harm. Kinds are
discovered once at start (this control plane has no CustomResourceDefinitions).
"""

from __future__ import annotations

import enum
import functools
import logging
import threading
from dataclasses import dataclass, field

from control.controllers.base import Controller, Informer, Object, terminating
from control.controllers.discovery import ApiResource, discover
from kubeapi.client import ApiError, Client

log = logging.getLogger(__name__)

ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"
RECHECK = 5.0  # an owner waiting in the foreground looks again (events wake it sooner)


def uid_of(obj: Object) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")


def owner_refs(obj: Object) -> list[Object]:
    return [r for r in (obj.get("metadata") or {}).get("ownerReferences") or [] if r.get("uid")]


def finalizers_of(obj: Object) -> list[str]:
    return list((obj.get("metadata") or {}).get("finalizers") or [])


def group_of(api_version: str) -> str:
    group, _, _version = str(api_version).rpartition("/")
    return group


# -- pure decisions --------------------------------------------------------------------


class OwnerState(enum.Enum):
    SOLID = "solid"
    DANGLING = "dangling"  # gone, or another object under its name
    WAITING = "waiting"  # being deleted in the foreground: its dependents go first


def owner_state(ref: Object, owner: Object | None) -> OwnerState:
    """What the object found under a reference's name (None: nothing) means for it."""
    if owner is None or uid_of(owner) != ref.get("uid"):
        return OwnerState.DANGLING
    if terminating(owner) and FOREGROUND in finalizers_of(owner):
        return OwnerState.WAITING
    return OwnerState.SOLID


class Verdict(enum.Enum):
    KEEP = "keep"
    REMOVE_REFERENCES = "remove-references"
    DELETE = "delete"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    references: tuple[str, ...] = ()  # uids whose references to remove
    policy: str = ""  # of the delete: Background, Foreground or Orphan


def deletion_policy(obj: Object) -> str:
    """The propagation an object's own finalizers ask for (kube's GC keeps them)."""
    finalizers = finalizers_of(obj)
    if ORPHAN in finalizers:
        return "Orphan"
    if FOREGROUND in finalizers:
        return "Foreground"
    return "Background"


def dependent_action(
    obj: Object, states: dict[str, OwnerState], *, has_dependents: bool
) -> Decision:
    """What to do with an object given its owners' states (uid -> state)."""
    if not states:
        return Decision(Verdict.KEEP)
    solid = [u for u, s in states.items() if s is OwnerState.SOLID]
    others = tuple(u for u, s in states.items() if s is not OwnerState.SOLID)
    if solid:
        return Decision(Verdict.REMOVE_REFERENCES, others) if others else Decision(Verdict.KEEP)
    waiting = any(s is OwnerState.WAITING for s in states.values())
    if waiting and has_dependents:
        return Decision(Verdict.DELETE, policy="Foreground")
    return Decision(Verdict.DELETE, policy=deletion_policy(obj))


def blocks(dependent: Object, owner_uid: str) -> bool:
    """Whether `dependent` holds up its owner's foreground deletion."""
    return any(r.get("uid") == owner_uid and r.get("blockOwnerDeletion")
               for r in owner_refs(dependent))  # fmt: skip


# -- the graph -------------------------------------------------------------------------


@dataclass
class Node:
    resource: ApiResource
    obj: Object


@dataclass
class Graph:
    """Objects by uid and dependents by owner uid (thread-safe)."""

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _nodes: dict[str, Node] = field(default_factory=dict)
    _dependents: dict[str, set[str]] = field(default_factory=dict)

    def upsert(self, resource: ApiResource, obj: Object) -> set[str]:
        """Store `obj`; the owner uids it no longer references."""
        uid = uid_of(obj)
        with self._lock:
            old = self._nodes.get(uid)
            before = {str(r["uid"]) for r in owner_refs(old.obj)} if old else set()
            after = {str(r["uid"]) for r in owner_refs(obj)}
            self._nodes[uid] = Node(resource, obj)
            for owner in before - after:
                self._unlink(owner, uid)
            for owner in after:
                self._dependents.setdefault(owner, set()).add(uid)
        return before - after

    def remove(self, uid: str) -> Node | None:
        with self._lock:
            node = self._nodes.pop(uid, None)
            if node is not None:
                for ref in owner_refs(node.obj):
                    self._unlink(str(ref["uid"]), uid)
            return node

    def _unlink(self, owner: str, dependent: str) -> None:
        dependents = self._dependents.get(owner)
        if dependents is not None:
            dependents.discard(dependent)
            if not dependents:
                del self._dependents[owner]

    def get(self, uid: str) -> Node | None:
        with self._lock:
            return self._nodes.get(uid)

    def dependents(self, uid: str) -> list[Node]:
        with self._lock:
            return [self._nodes[d] for d in self._dependents.get(uid, ()) if d in self._nodes]

    def __len__(self) -> int:
        with self._lock:
            return len(self._nodes)


# -- acting ----------------------------------------------------------------------------


class GarbageCollector(Controller):
    name = "garbagecollector"

    def __init__(self, client: Client, *, workers: int = 2) -> None:
        super().__init__(client, workers=workers)
        self.graph = Graph()
        self.informers: dict[str, Informer] = {}
        self.kinds: dict[tuple[str, str], ApiResource] = {}  # (group, kind) -> resource
        self.ready = threading.Event()  # every informer has synced

    # -- informers ----------------------------------------------------------------

    def _watched(self, resources: list[ApiResource]) -> None:
        for resource in resources:
            self.kinds.setdefault((resource.group, resource.kind), resource)
            if not resource.can("list", "watch", "delete"):
                continue
            informer = Informer(self.client, resource.path())
            informer.add_handler(functools.partial(self._on_change, resource))
            self.informers[resource.path()] = informer

    def _on_change(self, resource: ApiResource, old: Object | None, new: Object | None) -> None:
        if new is None:
            if old is None:
                return
            node = self.graph.remove(uid_of(old))
            gone = node.obj if node is not None else old
            for dependent in self.graph.dependents(uid_of(gone)):
                self.queue.add(uid_of(dependent.obj))  # now dangling
            for ref in owner_refs(gone):
                self.queue.add(str(ref["uid"]))  # an owner waiting for it may go on
            return
        released = self.graph.upsert(resource, new)
        for owner in released:
            self.queue.add(owner)
        finalizers = finalizers_of(new)
        if owner_refs(new) or (terminating(new) and (ORPHAN in finalizers
                                                     or FOREGROUND in finalizers)):  # fmt: skip
            self.queue.add(uid_of(new))

    def run(self, stop: threading.Event) -> list[threading.Thread]:
        """Discover, start the informers, and the workers once they have synced (on a
        thread of its own, so the other controllers start meanwhile)."""

        def start() -> None:
            delay = 0.5
            while not stop.is_set():
                try:
                    self._watched(discover(self.client))
                    break
                except (ApiError, OSError) as e:
                    log.warning("garbage collector: discovery failed: %s", e)
                    stop.wait(delay)
                    delay = min(delay * 2, 10.0)
            for path, informer in self.informers.items():
                thread = threading.Thread(target=informer.run, args=(stop,), name=f"gc {path}",
                                          daemon=True)  # fmt: skip
                thread.start()
            for informer in self.informers.values():
                while not stop.is_set() and not informer.synced.wait(0.2):
                    pass
            if stop.is_set():
                return
            log.info("garbage collector: %d kinds, %d objects", len(self.informers),
                     len(self.graph))  # fmt: skip
            self.ready.set()
            super(GarbageCollector, self).run(stop)

        thread = threading.Thread(target=start, name="gc-start", daemon=True)
        thread.start()
        return [thread]

    # -- sync ---------------------------------------------------------------------

    def sync(self, key: str) -> float | None:
        node = self.graph.get(key)
        if node is None:
            return None
        obj = node.obj
        if terminating(obj):
            finalizers = finalizers_of(obj)
            if ORPHAN in finalizers:
                self._orphan_dependents(node)
                return None
            if FOREGROUND in finalizers:
                return self._delete_dependents_first(node)
            return None  # being deleted already
        if not owner_refs(obj):
            return None
        decision = self._decide(obj)
        if decision.verdict is Verdict.KEEP:
            return None
        # The graph may lag (each kind has a watch of its own: an owner's orphaning
        # may show before its dependents' new references): decide on a fresh read.
        latest = self._latest(node)
        if latest is None:
            return None
        node = Node(node.resource, latest)
        decision = self._decide(latest)
        if decision.verdict is Verdict.REMOVE_REFERENCES:
            self._remove_references(node, set(decision.references))
        elif decision.verdict is Verdict.DELETE:
            self._delete(node, decision.policy)
        return None

    def _decide(self, obj: Object) -> Decision:
        states: dict[str, OwnerState] = {}
        for ref in owner_refs(obj):
            state = self._owner_state(obj, ref)
            if state is None:
                return Decision(Verdict.KEEP)  # an owner of a kind not served: leave it be
            states[str(ref["uid"])] = state
        has_dependents = bool(self.graph.dependents(uid_of(obj)))
        return dependent_action(obj, states, has_dependents=has_dependents)

    def _latest(self, node: Node) -> Object | None:
        """The object as stored now; None if it is gone or being deleted."""
        meta = node.obj["metadata"]
        path = node.resource.path(str(meta.get("namespace") or ""), str(meta["name"]))
        try:
            latest = self.client.get(path)
        except ApiError as e:
            if e.code != 404:
                raise
            return None
        if uid_of(latest) != uid_of(node.obj) or terminating(latest):
            return None
        return latest

    def _owner_state(self, dependent: Object, ref: Object) -> OwnerState | None:
        """The owner's state, from the graph or else a live read; None if its kind is
        not one the API serves."""
        cached = self.graph.get(str(ref["uid"]))
        if cached is not None and cached.obj["metadata"].get("name") == ref.get("name"):
            return owner_state(ref, cached.obj)
        resource = self.kinds.get((group_of(str(ref.get("apiVersion", ""))), str(ref.get("kind"))))
        if resource is None:
            log.warning("garbage collector: %s has an owner of unknown kind %s %s",
                        uid_of(dependent), ref.get("apiVersion"), ref.get("kind"))  # fmt: skip
            return None
        namespace = str(dependent["metadata"].get("namespace") or "")
        try:
            owner = self.client.get(resource.path(namespace, str(ref.get("name", ""))))
        except ApiError as e:
            if e.code != 404:
                raise
            owner = None
        return owner_state(ref, owner)

    def _patch_metadata(self, node: Node, changes: Object) -> None:
        meta = node.obj["metadata"]
        path = node.resource.path(str(meta.get("namespace") or ""), str(meta["name"]))
        body = {"metadata": {**changes, "resourceVersion": meta.get("resourceVersion")}}
        try:
            self.client.patch(path, body)
        except ApiError as e:
            if e.code != 404:  # 409: the graph was stale; the new version queues it again
                raise

    def _remove_references(self, node: Node, uids: set[str]) -> None:
        refs = [r for r in owner_refs(node.obj) if r.get("uid") not in uids]
        log.info("garbage collector: %s %s: removing owner references %s", node.resource.kind,
                 node.obj["metadata"].get("name"), sorted(uids))  # fmt: skip
        self._patch_metadata(node, {"ownerReferences": refs})

    def _delete(self, node: Node, policy: str) -> None:
        meta = node.obj["metadata"]
        path = node.resource.path(str(meta.get("namespace") or ""), str(meta["name"]))
        log.info("garbage collector: deleting %s %s (%s)", node.resource.kind, meta["name"], policy)
        try:
            self.client.delete(path, {
                "apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": policy,
                "preconditions": {"uid": meta.get("uid")},
            })  # fmt: skip
        except ApiError as e:
            if e.code not in (404, 409):  # gone, or another object under its name now
                raise

    def _remove_finalizer(self, node: Node, finalizer: str) -> None:
        left = [f for f in finalizers_of(node.obj) if f != finalizer]
        self._patch_metadata(node, {"finalizers": left})

    def _orphan_dependents(self, node: Node) -> None:
        uid = uid_of(node.obj)
        for dependent in self.graph.dependents(uid):
            self._remove_references(dependent, {uid})
        self._remove_finalizer(node, ORPHAN)

    def _delete_dependents_first(self, node: Node) -> float | None:
        uid = uid_of(node.obj)
        dependents = self.graph.dependents(uid)
        for dependent in dependents:
            self.queue.add(uid_of(dependent.obj))
        if any(blocks(d.obj, uid) for d in dependents):
            return RECHECK
        log.info("garbage collector: %s %s: dependents gone, removing %s", node.resource.kind,
                 node.obj["metadata"].get("name"), FOREGROUND)  # fmt: skip
        self._remove_finalizer(node, FOREGROUND)
        return None
