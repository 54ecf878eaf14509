"""Garbage-collector decisions: owner states, what happens to a dependent, what
blocks a foreground deletion, and the owner -> dependents graph."""

from __future__ import annotations

from typing import Any, cast

from control.controllers.discovery import ApiResource
from control.controllers.garbagecollector import (
    RECHECK,
    Decision,
    GarbageCollector,
    Graph,
    OwnerState,
    Verdict,
    blocks,
    deletion_policy,
    dependent_action,
    group_of,
    owner_state,
)
from kubeapi.client import ApiError, Client

RS = ApiResource("apps", "v1", "replicasets", "ReplicaSet", True, frozenset({"list"}))
PODS = ApiResource("", "v1", "pods", "Pod", True, frozenset({"list"}))


def obj(uid: str, *owners: str, finalizers: list[str] | None = None, deleting: bool = False,
        block: bool = True) -> dict[str, Any]:  # fmt: skip
    meta: dict[str, Any] = {"name": f"n-{uid}", "namespace": "default", "uid": uid}
    if owners:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                    "name": f"n-{o}", "uid": o, "blockOwnerDeletion": block}
                                   for o in owners]  # fmt: skip
    if finalizers:
        meta["finalizers"] = finalizers
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta}


def test_owner_state() -> None:
    ref = {"uid": "o1", "name": "n-o1"}
    assert owner_state(ref, None) is OwnerState.DANGLING
    assert owner_state(ref, obj("other")) is OwnerState.DANGLING  # another one, same name
    assert owner_state(ref, obj("o1")) is OwnerState.SOLID
    assert owner_state(ref, obj("o1", deleting=True)) is OwnerState.SOLID  # background
    waiting = obj("o1", deleting=True, finalizers=["foregroundDeletion"])
    assert owner_state(ref, waiting) is OwnerState.WAITING
    orphaning = obj("o1", deleting=True, finalizers=["orphan"])
    assert owner_state(ref, orphaning) is OwnerState.SOLID  # it lets them go itself


def test_dependent_action() -> None:
    d = obj("d", "o1", "o2")
    solid, dangling, waiting = OwnerState.SOLID, OwnerState.DANGLING, OwnerState.WAITING
    assert dependent_action(d, {}, has_dependents=False) == Decision(Verdict.KEEP)
    assert dependent_action(d, {"o1": solid, "o2": solid},
                            has_dependents=False) == Decision(Verdict.KEEP)  # fmt: skip
    assert dependent_action(d, {"o1": solid, "o2": dangling}, has_dependents=False) == Decision(
        Verdict.REMOVE_REFERENCES, ("o2",)
    )
    assert dependent_action(d, {"o1": solid, "o2": waiting}, has_dependents=True) == Decision(
        Verdict.REMOVE_REFERENCES, ("o2",)
    )
    assert dependent_action(d, {"o1": dangling, "o2": dangling}, has_dependents=True) == Decision(
        Verdict.DELETE, policy="Background"
    )
    assert dependent_action(d, {"o1": waiting}, has_dependents=True) == Decision(
        Verdict.DELETE, policy="Foreground"
    )  # its own dependents go first too
    assert dependent_action(d, {"o1": waiting}, has_dependents=False) == Decision(
        Verdict.DELETE, policy="Background"
    )
    held = obj("d", "o1", finalizers=["orphan"])
    assert dependent_action(held, {"o1": dangling}, has_dependents=True) == Decision(
        Verdict.DELETE, policy="Orphan"
    )


def test_deletion_policy_and_blocks() -> None:
    assert deletion_policy(obj("x")) == "Background"
    assert deletion_policy(obj("x", finalizers=["foregroundDeletion"])) == "Foreground"
    assert deletion_policy(obj("x", finalizers=["orphan", "foregroundDeletion"])) == "Orphan"
    assert blocks(obj("d", "o1"), "o1")
    assert not blocks(obj("d", "o1"), "o2")
    assert not blocks(obj("d", "o1", block=False), "o1")
    assert group_of("apps/v1") == "apps" and group_of("v1") == ""


def test_graph_indexes_dependents() -> None:
    graph = Graph()
    graph.upsert(RS, obj("rs"))
    graph.upsert(PODS, obj("p1", "rs"))
    graph.upsert(PODS, obj("p2", "rs", "other"))
    assert {n.obj["metadata"]["uid"] for n in graph.dependents("rs")} == {"p1", "p2"}
    assert [n.obj["metadata"]["uid"] for n in graph.dependents("other")] == ["p2"]
    # Orphaned: the references go, and the update says which owners it left.
    assert graph.upsert(PODS, obj("p2")) == {"rs", "other"}
    assert [n.obj["metadata"]["uid"] for n in graph.dependents("rs")] == ["p1"]
    assert graph.dependents("other") == []
    removed = graph.remove("p1")
    assert removed is not None and removed.resource is PODS
    assert graph.dependents("rs") == []
    assert graph.remove("p1") is None
    assert len(graph) == 2
    # A dependent seen before its owner is still found once the owner shows up.
    graph.upsert(PODS, obj("p3", "late"))
    graph.upsert(RS, obj("late"))
    node = graph.get("late")
    assert node is not None and node.resource is RS
    assert [n.obj["metadata"]["uid"] for n in graph.dependents("late")] == ["p3"]


# -- the acting layer, with a graph fed by hand and a fake API -------------------------


class FakeApi:
    """Objects by path; records writes."""

    def __init__(self, *stored: tuple[str, dict[str, Any]]) -> None:
        self.objects = dict(stored)
        self.calls: list[tuple[str, str, Any]] = []

    def get(self, path: str) -> dict[str, Any]:
        if path not in self.objects:
            raise ApiError("GET", path, 404, {"reason": "NotFound"})
        return self.objects[path]

    def patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("patch", path, body))
        return body

    def delete(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        self.calls.append(("delete", path, body))
        return {}


def collector(api: FakeApi, *nodes: tuple[ApiResource, dict[str, Any]]) -> GarbageCollector:
    gc = GarbageCollector(cast(Client, api))
    gc.kinds = {("apps", "ReplicaSet"): RS, ("", "Pod"): PODS}
    for resource, item in nodes:
        gc._on_change(resource, None, item)
    return gc


RS_PATH = "/apis/apps/v1/namespaces/default/replicasets/n-rs"
POD_PATH = "/api/v1/namespaces/default/pods/n-p"


def test_a_dependent_of_a_missing_owner_is_deleted_after_a_fresh_read() -> None:
    pod = obj("p", "rs")
    api = FakeApi((POD_PATH, pod))
    gc = collector(api, (PODS, pod))
    assert gc.queue.get(0) == "p"
    gc.sync("p")
    assert api.calls == [("delete", POD_PATH, {
        "apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background",
        "preconditions": {"uid": "p"}})]  # fmt: skip


def test_a_stale_graph_does_not_delete_an_orphaned_dependent() -> None:
    api = FakeApi((POD_PATH, obj("p")))  # stored: its references are gone already
    gc = collector(api, (PODS, obj("p", "rs")))
    gc.sync("p")
    assert api.calls == []


def test_a_dependent_keeps_a_solid_owner_and_drops_a_dangling_one() -> None:
    pod = obj("p", "rs", "gone")
    api = FakeApi((POD_PATH, pod), (RS_PATH, obj("rs")))
    gc = collector(api, (RS, obj("rs")), (PODS, pod))
    gc.sync("p")
    ((verb, path, body),) = api.calls
    assert (verb, path) == ("patch", POD_PATH)
    assert [r["uid"] for r in body["metadata"]["ownerReferences"]] == ["rs"]


def test_an_orphaning_owner_lets_its_dependents_go() -> None:
    owner = obj("rs", deleting=True, finalizers=["orphan"])
    api = FakeApi()
    gc = collector(api, (RS, owner), (PODS, obj("p", "rs")))
    gc.sync("rs")
    assert [(v, p) for v, p, _ in api.calls] == [("patch", POD_PATH), ("patch", RS_PATH)]
    assert api.calls[0][2]["metadata"]["ownerReferences"] == []
    assert api.calls[1][2]["metadata"]["finalizers"] == []


def test_a_foreground_owner_waits_for_blocking_dependents() -> None:
    owner = obj("rs", deleting=True, finalizers=["foregroundDeletion"])
    api = FakeApi()
    gc = collector(api, (RS, owner), (PODS, obj("p", "rs")), (PODS, obj("q", "rs", block=False)))
    while (key := gc.queue.get(0)) is not None:
        gc.queue.done(key)
    assert gc.sync("rs") == RECHECK  # p blocks it
    assert api.calls == []
    queued: set[str] = set()
    while (key := gc.queue.get(0)) is not None:
        queued.add(key)
        gc.queue.done(key)
    assert queued == {"p", "q"}  # both go; only p holds the owner up
    gc._on_change(PODS, obj("p", "rs"), None)
    assert gc.sync("rs") is None
    assert api.calls == [("patch", RS_PATH, {"metadata": {"finalizers": [],
                                                          "resourceVersion": None}})]  # fmt: skip
