"""Namespace deletion decisions: which resources are emptied (from discovery), the
status conditions, and the finalizers left after "kubernetes"."""

from __future__ import annotations

from typing import Any, cast

from control.controllers.base import Informer
from control.controllers.discovery import ApiResource, resources_of
from control.controllers.namespace import (
    Content,
    NamespaceController,
    deletable,
    deletion_conditions,
    merge_conditions,
    without_finalizer,
)
from kubeapi.client import Client

DISCOVERY: dict[str, Any] = {
    "kind": "APIResourceList", "groupVersion": "v1", "resources": [
        {"name": "pods", "namespaced": True, "kind": "Pod",
         "verbs": ["create", "delete", "deletecollection", "get", "list", "watch"]},
        {"name": "pods/status", "namespaced": True, "kind": "Pod", "verbs": ["get"]},
        {"name": "nodes", "namespaced": False, "kind": "Node", "verbs": ["delete", "list"]},
        {"name": "bindings", "namespaced": True, "kind": "Binding", "verbs": ["create"]},
        {"name": "events", "namespaced": True, "kind": "Event", "verbs": ["delete", "list"]},
    ],
}  # fmt: skip


def test_resources_of_and_deletable() -> None:
    resources = resources_of("", "v1", DISCOVERY)
    assert [r.plural for r in resources] == ["pods", "nodes", "bindings", "events"]
    pods = resources[0]
    assert pods.path("team") == "/api/v1/namespaces/team/pods"
    assert pods.path("team", "web") == "/api/v1/namespaces/team/pods/web"
    assert pods.path() == "/api/v1/pods"
    assert [r.plural for r in deletable(resources)] == ["pods", "events"]
    apps = ApiResource("apps", "v1", "deployments", "Deployment", True, frozenset({"list"}))
    assert apps.path("x") == "/apis/apps/v1/namespaces/x/deployments"
    assert apps.api_version == "apps/v1"


def test_conditions_when_empty() -> None:
    content = Content()
    assert content.empty
    conditions = {c["type"]: c for c in deletion_conditions(content)}
    assert set(conditions) == {"NamespaceDeletionDiscoveryFailure",
                               "NamespaceDeletionContentFailure", "NamespaceContentRemaining",
                               "NamespaceFinalizersRemaining"}  # fmt: skip
    assert all(c["status"] == "False" for c in conditions.values())
    assert conditions["NamespaceContentRemaining"]["reason"] == "ContentRemoved"
    assert conditions["NamespaceFinalizersRemaining"]["reason"] == "ContentHasNoFinalizers"


def test_conditions_with_content_left() -> None:
    content = Content(remaining={"pods.": 2, "configmaps.": 1},
                      finalizers={"example.com/hold": 1})  # fmt: skip
    assert not content.empty
    conditions = {c["type"]: c for c in deletion_conditions(content)}
    remaining = conditions["NamespaceContentRemaining"]
    assert remaining["status"] == "True" and remaining["reason"] == "SomeResourcesRemain"
    assert remaining["message"] == ("Some resources are remaining: configmaps. has 1 resource "
                                    "instances, pods. has 2 resource instances")  # fmt: skip
    finalizers = conditions["NamespaceFinalizersRemaining"]
    assert finalizers["reason"] == "SomeFinalizersRemain"
    assert finalizers["message"] == ("Some content in the namespace has finalizers remaining: "
                                     "example.com/hold in 1 resource instances")  # fmt: skip


def test_conditions_on_failures() -> None:
    failed = Content(failures=["pods: 500 boom"], discovery_error="timed out")
    assert not failed.empty
    conditions = {c["type"]: c for c in deletion_conditions(failed)}
    assert conditions["NamespaceDeletionContentFailure"]["status"] == "True"
    assert "pods: 500 boom" in conditions["NamespaceDeletionContentFailure"]["message"]
    assert conditions["NamespaceDeletionDiscoveryFailure"]["reason"] == "DiscoveryFailed"


def test_merge_conditions_keeps_transition_times() -> None:
    first = merge_conditions([], deletion_conditions(Content(remaining={"pods.": 1})), "t1")
    assert {c["lastTransitionTime"] for c in first} == {"t1"}
    again = merge_conditions(first, deletion_conditions(Content(remaining={"pods.": 1})), "t2")
    assert again == first  # nothing changed: nothing to write
    done = {c["type"]: c for c in merge_conditions(first, deletion_conditions(Content()), "t3")}
    assert done["NamespaceContentRemaining"]["lastTransitionTime"] == "t3"
    assert done["NamespaceDeletionContentFailure"]["lastTransitionTime"] == "t1"


def test_without_finalizer() -> None:
    assert without_finalizer({"spec": {"finalizers": ["kubernetes"]}}) == []
    assert without_finalizer({"spec": {"finalizers": ["kubernetes", "x/y"]}}) == ["x/y"]
    assert without_finalizer({}) == []


# -- the acting layer, against a fake API ----------------------------------------------


class FakeApi:
    """Discovery of DISCOVERY, collections of objects in "team", and the writes."""

    def __init__(self, objects: dict[str, list[dict[str, Any]]]) -> None:
        self.objects = objects  # collection path -> items
        self.writes: list[tuple[str, str, Any]] = []

    def get(self, path: str) -> dict[str, Any]:
        documents: dict[str, dict[str, Any]] = {
            "/api": {"versions": ["v1"]}, "/api/v1": DISCOVERY, "/apis": {"groups": []},
        }  # fmt: skip
        return documents[path]

    def list(self, path: str) -> dict[str, Any]:
        return {"items": list(self.objects.get(path, []))}

    def delete(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        self.writes.append(("delete", path, body))
        collection, _, name = path.rpartition("/")
        if path in self.objects:  # a collection: all but the finalized go
            self.objects[path] = [o for o in self.objects[path] if o["metadata"].get("finalizers")]
        elif collection in self.objects:
            self.objects[collection] = [
                o for o in self.objects[collection] if o["metadata"]["name"] != name
                or o["metadata"].get("finalizers")
            ]  # fmt: skip
        return {}

    def update(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.writes.append(("update", path, body))
        return body


TERMINATING = {
    "metadata": {"name": "team", "deletionTimestamp": "2026-01-01T00:00:00Z"},
    "spec": {"finalizers": ["kubernetes", "example.com/x"]},
    "status": {"phase": "Terminating"},
}  # fmt: skip


def controller(api: FakeApi, namespace: dict[str, Any]) -> NamespaceController:
    namespaces = Informer(cast(Client, None), "/unused")
    namespaces._apply({"type": "RELISTED", "object": {"items": [namespace]}})
    return NamespaceController(cast(Client, api), namespaces, recheck_period=0.5,
                               clock=lambda: 1_767_225_600.0)  # fmt: skip


def test_the_content_goes_then_the_finalizer() -> None:
    pods = "/api/v1/namespaces/team/pods"
    events = "/api/v1/namespaces/team/events"
    held = {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}
    api = FakeApi({pods: [{"metadata": {"name": "web"}}, held],
                   events: [{"metadata": {"name": "e1"}}]})  # fmt: skip
    namespaces = controller(api, TERMINATING)
    assert namespaces.sync("team") == 0.5  # the held pod is still there
    deletes = [(p, b["propagationPolicy"]) for v, p, b in api.writes if v == "delete"]
    assert deletes == [(pods, "Background"), (f"{events}/e1", "Background")]  # no collection
    status = next(b for v, p, b in api.writes if p == "/api/v1/namespaces/team/status")
    conditions = {c["type"]: c for c in status["status"]["conditions"]}
    assert conditions["NamespaceFinalizersRemaining"]["status"] == "True"
    assert status["status"]["phase"] == "Terminating"
    assert not any(p.endswith("/finalize") for _, p, _ in api.writes)
    api.objects[pods] = []
    assert namespaces.sync("team") is None
    verb, path, body = api.writes[-1]
    assert (verb, path) == ("update", "/api/v1/namespaces/team/finalize")
    assert body["spec"]["finalizers"] == ["example.com/x"]  # only "kubernetes" is ours


def test_an_active_or_finalized_namespace_is_left_alone() -> None:
    api = FakeApi({})
    active = {"metadata": {"name": "team"}, "spec": {"finalizers": ["kubernetes"]}}
    assert controller(api, active).sync("team") is None
    finalized = {**TERMINATING, "spec": {"finalizers": ["example.com/x"]}}
    assert controller(api, finalized).sync("team") is None
    assert api.writes == []
