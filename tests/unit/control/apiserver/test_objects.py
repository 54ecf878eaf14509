"""The generic registry (control/apiserver/objects.py) over the in-memory store, with a
fake clock: what a client sees of create, get, list, update, delete and watch --
server-owned metadata, defaults, errors as the real API words them, resource
versions, paging, graceful deletion and finalizers, watch events and selectors."""

from __future__ import annotations

import copy
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from control.apiserver.errors import ApiError
from control.apiserver.objects import Registry, Selectors, WatchEvent, _SharedDecodes
from control.apiserver.resources import ResourceType, lookup
from control.apiserver.selectors import parse_field_selector, parse_label_selector
from control.storage import KeyValue, MemoryBackend

Object = dict[str, Any]

START = 1_700_000_000.0  # 2023-11-14T22:13:20Z
START_TEXT = "2023-11-14T22:13:20Z"


def resource(group: str, plural: str) -> ResourceType:
    found = lookup(group, "v1", plural)
    assert found is not None
    return found


NAMESPACES = resource("", "namespaces")
PODS = resource("", "pods")
NODES = resource("", "nodes")
SERVICES = resource("", "services")
CONFIGMAPS = resource("", "configmaps")
DEPLOYMENTS = resource("apps", "deployments")


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def backend() -> Iterator[MemoryBackend]:
    with MemoryBackend() as store:
        yield store


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def registry(backend: MemoryBackend, clock: Clock) -> Registry:
    made = Registry(backend, clock=clock)
    for name in ("default", "other"):
        made.create(NAMESPACES, "", {"metadata": {"name": name}})
    return made


def pod(name: str = "web", image: str = "nginx:1.27", **spec: Any) -> Object:
    labels = spec.pop("labels", {"app": name})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": image}], **spec},
    }


def configmap(name: str, labels: dict[str, str] | None = None, **data: str) -> Object:
    return {"metadata": {"name": name, "labels": labels or {}}, "data": data}


def deployment(name: str = "web") -> Object:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            },
        },
    }


def rv(obj: Object) -> int:
    return int(obj["metadata"]["resourceVersion"])


def raises(call: Callable[[], Any]) -> ApiError:
    with pytest.raises(ApiError) as raised:
        call()
    return raised.value


def names(listed: Object) -> list[str]:
    return [item["metadata"]["name"] for item in listed["items"]]


NONE = Selectors()


# -- create ------------------------------------------------------------------------------


def test_create_fills_server_owned_metadata(registry: Registry, backend: MemoryBackend) -> None:
    created = registry.create(PODS, "default", pod())
    meta = created["metadata"]
    assert uuid.UUID(meta["uid"]).version == 4
    assert meta["creationTimestamp"] == START_TEXT
    assert meta["generation"] == 1
    assert meta["namespace"] == "default"
    assert meta["resourceVersion"] == str(backend.current_revision())
    assert (created["apiVersion"], created["kind"]) == ("v1", "Pod")
    assert registry.get(PODS, "default", "web") == created


def test_create_replaces_what_the_client_may_not_set(registry: Registry) -> None:
    body = pod()
    body["metadata"].update(
        uid="mine",
        resourceVersion="12345",
        creationTimestamp="2000-01-01T00:00:00Z",
        deletionTimestamp="2000-01-01T00:00:00Z",
        deletionGracePeriodSeconds=5,
        namespace="default",
        generation=7,
    )
    body["status"] = {"phase": "Running", "podIP": "10.0.0.1"}
    meta = registry.create(PODS, "default", body)["metadata"]
    assert meta["uid"] != "mine"
    assert meta["creationTimestamp"] == START_TEXT
    assert meta["generation"] == 1
    assert "deletionTimestamp" not in meta and "deletionGracePeriodSeconds" not in meta
    assert registry.get(PODS, "default", "web")["status"] == {"phase": "Pending"}


def test_resource_versions_follow_the_store(registry: Registry, backend: MemoryBackend) -> None:
    first = registry.create(CONFIGMAPS, "default", configmap("a"))
    second = registry.create(CONFIGMAPS, "default", configmap("b"))
    assert rv(second) == rv(first) + 1 == backend.current_revision()
    assert registry.get(CONFIGMAPS, "default", "a")["metadata"]["resourceVersion"] == str(rv(first))


def test_uids_differ(registry: Registry) -> None:
    a = registry.create(CONFIGMAPS, "default", configmap("a"))
    b = registry.create(CONFIGMAPS, "default", configmap("b"))
    assert a["metadata"]["uid"] != b["metadata"]["uid"]


def test_generate_name(registry: Registry) -> None:
    made = {
        registry.create(PODS, "default", {**pod(""), "metadata": {"generateName": "web-"}})[
            "metadata"
        ]["name"]
        for _ in range(5)
    }
    assert len(made) == 5
    for name in made:
        assert re.fullmatch(r"web-[bcdfghjklmnpqrstvwxz2456789]{5}", name), name
        assert registry.get(PODS, "default", name)["metadata"]["generateName"] == "web-"


def test_generate_name_is_cut_to_leave_a_valid_name(registry: Registry) -> None:
    # as upstream: at most 58 characters of the prefix, then the 5 random ones
    made = registry.create(NAMESPACES, "", {"metadata": {"generateName": "n" * 62 + "-"}})
    assert made["metadata"]["name"].startswith("n" * 58)
    assert len(made["metadata"]["name"]) == 63
    made = registry.create(CONFIGMAPS, "default", {"metadata": {"generateName": "c" * 200}})
    assert len(made["metadata"]["name"]) == 63


def test_a_name_wins_over_generate_name(registry: Registry) -> None:
    body = configmap("fixed")
    body["metadata"]["generateName"] = "gen-"
    assert registry.create(CONFIGMAPS, "default", body)["metadata"]["name"] == "fixed"


def test_bad_generate_name_is_invalid(registry: Registry) -> None:
    error = raises(
        lambda: registry.create(CONFIGMAPS, "default", {"metadata": {"generateName": "Bad-"}})
    )
    assert error.code == 422
    assert ("FieldValueInvalid", "metadata.generateName") in [
        (c.type, c.field) for c in error.causes
    ]
    assert 'metadata.generateName: Invalid value: "Bad-"' in error.message


# (image, imagePullPolicy the server fills in)
PULL_POLICIES = [
    ("nginx", "Always"),
    ("nginx:latest", "Always"),
    ("nginx:1.27", "IfNotPresent"),
    ("docker.io/library/nginx:1.27", "IfNotPresent"),
    ("registry.local:5000/nginx", "Always"),
    ("registry.local:5000/nginx:v2", "IfNotPresent"),
    ("registry.local:5000/team/nginx:latest", "Always"),
    ("nginx@sha256:" + "a" * 64, "IfNotPresent"),
    ("nginx:1.27@sha256:" + "a" * 64, "IfNotPresent"),
    ("nginx:latest@sha256:" + "a" * 64, "Always"),
]


@pytest.mark.parametrize(("image", "policy"), PULL_POLICIES)
def test_image_pull_policy_default(registry: Registry, image: str, policy: str) -> None:
    created = registry.create(PODS, "default", pod(image=image))
    assert created["spec"]["containers"][0]["imagePullPolicy"] == policy


def test_explicit_image_pull_policy_is_kept(registry: Registry) -> None:
    body = pod(image="nginx")
    body["spec"]["containers"][0]["imagePullPolicy"] = "Never"
    created = registry.create(PODS, "default", body)
    assert created["spec"]["containers"][0]["imagePullPolicy"] == "Never"


def test_pod_defaults(registry: Registry) -> None:
    body = pod(volumes=[{"name": "scratch"}])
    body["spec"]["containers"][0]["ports"] = [{"containerPort": 80}]
    body["spec"]["initContainers"] = [{"name": "init", "image": "busybox"}]
    created = registry.create(PODS, "default", body)
    spec = created["spec"]
    assert spec["restartPolicy"] == "Always"
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["dnsPolicy"] == "ClusterFirst"
    assert spec["schedulerName"] == "default-scheduler"
    assert spec["enableServiceLinks"] is True
    assert spec["volumes"] == [{"name": "scratch", "emptyDir": {}}]
    container = spec["containers"][0]
    assert container["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["terminationMessagePolicy"] == "File"
    assert spec["initContainers"][0]["imagePullPolicy"] == "Always"
    assert created["status"] == {"phase": "Pending"}


def test_given_values_are_not_defaulted_over(registry: Registry) -> None:
    created = registry.create(
        PODS, "default", pod(restartPolicy="Never", terminationGracePeriodSeconds=5)
    )
    assert created["spec"]["restartPolicy"] == "Never"
    assert created["spec"]["terminationGracePeriodSeconds"] == 5


def test_deployment_defaults(registry: Registry) -> None:
    created = registry.create(DEPLOYMENTS, "default", deployment())
    spec = created["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
    }
    assert spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    template = spec["template"]["spec"]
    assert template["restartPolicy"] == "Always"
    assert template["containers"][0]["imagePullPolicy"] == "Always"
    assert created["metadata"]["generation"] == 1
    assert created["status"] == {}


def test_service_defaults(registry: Registry) -> None:
    body = {
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
    }
    spec = registry.create(SERVICES, "default", body)["spec"]
    assert spec["type"] == "ClusterIP"
    assert spec["sessionAffinity"] == "None"
    assert spec["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]


def test_namespace_defaults(registry: Registry) -> None:
    created = registry.create(NAMESPACES, "", {"metadata": {"name": "team", "namespace": "x"}})
    assert created["spec"] == {"finalizers": ["kubernetes"]}
    assert created["status"] == {"phase": "Active"}
    assert "namespace" not in created["metadata"]


def test_a_node_keeps_the_status_it_registers_with(registry: Registry) -> None:
    body = {"metadata": {"name": "n1"}, "status": {"capacity": {"cpu": "4"}}}
    assert registry.create(NODES, "", body)["status"] == {"capacity": {"cpu": "4"}}


def test_create_in_a_missing_namespace(registry: Registry) -> None:
    error = raises(lambda: registry.create(PODS, "nope", pod()))
    assert (error.code, error.reason, error.message) == (
        404,
        "NotFound",
        'namespaces "nope" not found',
    )
    assert error.status()["details"] == {"name": "nope", "kind": "namespaces"}


def test_create_in_a_terminating_namespace(registry: Registry) -> None:
    registry.create(NAMESPACES, "", {"metadata": {"name": "going", "finalizers": ["x.io/hold"]}})
    registry.delete(NAMESPACES, "", "going")
    error = raises(lambda: registry.create(CONFIGMAPS, "going", configmap("a")))
    assert (error.code, error.reason) == (403, "Forbidden")
    assert "because it is being terminated" in error.message


# (resource, namespace, the object, the message)
ALREADY_EXISTS: list[tuple[ResourceType, str, Object, str]] = [
    (PODS, "default", pod(), 'pods "web" already exists'),
    (DEPLOYMENTS, "default", deployment(), 'deployments.apps "web" already exists'),
    (NAMESPACES, "", {"metadata": {"name": "default"}}, 'namespaces "default" already exists'),
]


@pytest.mark.parametrize(("kind", "namespace", "obj", "message"), ALREADY_EXISTS)
def test_already_exists(
    registry: Registry, kind: ResourceType, namespace: str, obj: Object, message: str
) -> None:
    if kind is not NAMESPACES:
        registry.create(kind, namespace, copy.deepcopy(obj))
    error = raises(lambda: registry.create(kind, namespace, copy.deepcopy(obj)))
    assert (error.code, error.reason, error.message) == (409, "AlreadyExists", message)
    status = error.status()
    assert status["details"]["name"] == obj["metadata"]["name"]
    assert status["details"]["kind"] == kind.plural


def test_the_same_name_in_another_namespace(registry: Registry) -> None:
    registry.create(PODS, "default", pod())
    assert registry.create(PODS, "other", pod())["metadata"]["namespace"] == "other"


def test_invalid_with_one_cause(registry: Registry) -> None:
    body = pod()
    del body["spec"]["containers"]
    error = raises(lambda: registry.create(PODS, "default", body))
    assert (error.code, error.reason) == (422, "Invalid")
    assert error.message == 'Pod "web" is invalid: spec.containers: Required value'
    status = error.status()
    assert status["status"] == "Failure"
    assert status["details"] == {
        "name": "web",
        "kind": "Pod",
        "causes": [
            {
                "reason": "FieldValueRequired",
                "message": "Required value",
                "field": "spec.containers",
            }
        ],
    }


def test_invalid_with_several_causes(registry: Registry) -> None:
    body = pod("Bad_Name")
    del body["spec"]["containers"][0]["image"]
    error = raises(lambda: registry.create(PODS, "default", body))
    assert error.message.startswith('Pod "Bad_Name" is invalid: [metadata.name: Invalid value: ')
    assert error.message.endswith(", spec.containers[0].image: Required value]")
    assert [c["field"] for c in error.status()["details"]["causes"]] == [
        "metadata.name",
        "spec.containers[0].image",
    ]


def test_invalid_deployment_names_the_group(registry: Registry) -> None:
    body = deployment()
    body["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    status = raises(lambda: registry.create(DEPLOYMENTS, "default", body)).status()
    assert status["details"]["kind"] == "Deployment"
    assert status["details"]["group"] == "apps"
    assert status["message"].startswith(
        'Deployment "web" is invalid: spec.template.metadata.labels'
    )


def test_nothing_is_stored_when_create_fails(registry: Registry, backend: MemoryBackend) -> None:
    before = backend.current_revision()
    raises(lambda: registry.create(PODS, "default", pod("Bad_Name")))
    raises(lambda: registry.create(PODS, "nope", pod()))
    assert backend.current_revision() == before


# (the object, the message)
BAD_REQUESTS: list[tuple[Object, str]] = [
    (
        {**pod(), "apiVersion": "apps/v1"},
        "the API version in the data (apps/v1) does not match the expected API version (v1)",
    ),
    (
        {**pod(), "kind": "Service"},
        "the kind in the data (Service) does not match the expected kind (Pod)",
    ),
    (
        {**pod(), "apiVersion": None, "kind": "Service"},
        "the kind in the data (Service) does not match the expected kind (Pod)",
    ),
    (
        {**pod(), "metadata": {"name": "web", "namespace": "other"}},
        "the namespace of the provided object does not match the namespace sent on the request",
    ),
    ({**pod(), "metadata": "web"}, "metadata must be an object"),
]


@pytest.mark.parametrize(("obj", "message"), BAD_REQUESTS)
def test_create_bad_requests(registry: Registry, obj: Object, message: str) -> None:
    error = raises(lambda: registry.create(PODS, "default", obj))
    assert (error.code, error.reason, error.message) == (400, "BadRequest", message)


# (the resource, the object with a field of the wrong type)
WRONG_TYPES: list[tuple[ResourceType, Object]] = [
    (PODS, {"metadata": {"name": "p"}, "spec": {"containers": True}}),
    (
        PODS,
        {
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i"}], "volumes": 1},
        },
    ),
    (DEPLOYMENTS, {**deployment(), "spec": {**deployment()["spec"], "strategy": "fast"}}),
    (DEPLOYMENTS, {**deployment(), "spec": {**deployment()["spec"], "template": {"metadata": 1}}}),
    (SERVICES, {"metadata": {"name": "s"}, "spec": {"ports": 80}}),
]


@pytest.mark.parametrize(("kind", "obj"), WRONG_TYPES)
def test_a_field_of_the_wrong_type_is_a_bad_request(
    registry: Registry, kind: ResourceType, obj: Object
) -> None:
    error = raises(lambda: registry.create(kind, "default", copy.deepcopy(obj)))
    assert (error.code, error.reason) == (400, "BadRequest")
    assert error.message.startswith(
        f'{kind.kind} in version "v1" cannot be handled as a {kind.kind}'
    )


# -- get and list --------------------------------------------------------------------------


def test_get_missing(registry: Registry) -> None:
    error = raises(lambda: registry.get(PODS, "default", "nope"))
    assert (error.code, error.reason, error.message) == (404, "NotFound", 'pods "nope" not found')
    assert error.status()["details"] == {"name": "nope", "kind": "pods"}
    error = raises(lambda: registry.get(DEPLOYMENTS, "default", "nope"))
    assert error.message == 'deployments.apps "nope" not found'
    assert error.status()["details"] == {"name": "nope", "group": "apps", "kind": "deployments"}


def test_get_in_another_namespace_is_not_found(registry: Registry) -> None:
    registry.create(PODS, "default", pod())
    assert raises(lambda: registry.get(PODS, "other", "web")).code == 404


def test_list(registry: Registry, backend: MemoryBackend) -> None:
    for name in ("c", "a", "b"):
        registry.create(PODS, "default", pod(name))
    registry.create(PODS, "other", pod("z"))
    listed = registry.list(PODS, "default", selectors=NONE)
    assert (listed["kind"], listed["apiVersion"]) == ("PodList", "v1")
    assert listed["metadata"] == {"resourceVersion": str(backend.current_revision())}
    assert names(listed) == ["a", "b", "c"]
    assert all(item["metadata"]["resourceVersion"].isdigit() for item in listed["items"])
    assert names(registry.list(PODS, "", selectors=NONE)) == ["a", "b", "c", "z"]
    assert registry.list(PODS, "kube-system", selectors=NONE)["items"] == []
    assert registry.list(DEPLOYMENTS, "default", selectors=NONE)["kind"] == "DeploymentList"


def test_list_of_nothing_has_a_resource_version(registry: Registry, backend: MemoryBackend) -> None:
    listed = registry.list(CONFIGMAPS, "default", selectors=NONE)
    assert listed["items"] == []
    assert listed["metadata"]["resourceVersion"] == str(backend.current_revision())


@pytest.fixture
def pods(registry: Registry) -> Registry:
    """web (app=web, on n1, Running), db (app=db, tier=back), job (no labels, on n2)."""
    registry.create(
        PODS, "default", pod("web", nodeName="n1", labels={"app": "web", "tier": "front"})
    )
    registry.update(
        PODS,
        "default",
        "web",
        {"metadata": {}, "status": {"phase": "Running"}},
        subresource="status",
    )
    registry.create(PODS, "default", pod("db", labels={"app": "db", "tier": "back"}))
    registry.create(PODS, "default", pod("job", nodeName="n2", labels={}))
    return registry


# (labelSelector, fieldSelector, the pods listed)
LIST_SELECTORS = [
    ("app=web", "", ["web"]),
    ("app!=web", "", ["db", "job"]),
    ("app", "", ["db", "web"]),
    ("!app", "", ["job"]),
    ("tier in (front,back)", "", ["db", "web"]),
    ("tier notin (front)", "", ["db", "job"]),
    ("", "spec.nodeName=n1", ["web"]),
    ("", "spec.nodeName=", ["db"]),
    ("", "spec.nodeName!=", ["job", "web"]),
    ("", "status.phase=Running", ["web"]),
    ("", "status.phase=Pending", ["db", "job"]),
    ("", "metadata.name=db", ["db"]),
    ("tier", "spec.nodeName!=n1", ["db"]),
    ("app=web", "status.phase=Pending", []),
]


@pytest.mark.parametrize(("labels", "fields", "expected"), LIST_SELECTORS)
def test_list_with_selectors(pods: Registry, labels: str, fields: str, expected: list[str]) -> None:
    selectors = Selectors(
        parse_label_selector(labels) if labels else None,
        parse_field_selector(fields, "Pod") if fields else None,
    )
    assert names(pods.list(PODS, "default", selectors=selectors)) == expected


def test_list_pages(registry: Registry, backend: MemoryBackend) -> None:
    for i in range(7):
        registry.create(CONFIGMAPS, "default", configmap(f"cm-{i}"))
    first = registry.list(CONFIGMAPS, "default", selectors=NONE, limit=3)
    version = first["metadata"]["resourceVersion"]
    assert names(first) == ["cm-0", "cm-1", "cm-2"]
    assert version == str(backend.current_revision())
    # Later pages are of the same snapshot: what changes meanwhile does not show.
    registry.delete(CONFIGMAPS, "default", "cm-4")
    registry.create(CONFIGMAPS, "default", configmap("cm-9"))
    second = registry.list(
        CONFIGMAPS, "default", selectors=NONE, limit=3, continue_token=first["metadata"]["continue"]
    )
    assert names(second) == ["cm-3", "cm-4", "cm-5"]
    assert second["metadata"]["resourceVersion"] == version
    third = registry.list(
        CONFIGMAPS,
        "default",
        selectors=NONE,
        limit=3,
        continue_token=second["metadata"]["continue"],
    )
    assert names(third) == ["cm-6"]
    assert third["metadata"] == {"resourceVersion": version}


def test_list_exactly_one_page(registry: Registry) -> None:
    for i in range(3):
        registry.create(CONFIGMAPS, "default", configmap(f"cm-{i}"))
    listed = registry.list(CONFIGMAPS, "default", selectors=NONE, limit=3)
    assert names(listed) == ["cm-0", "cm-1", "cm-2"]
    assert "continue" not in listed["metadata"]
    assert names(registry.list(CONFIGMAPS, "default", selectors=NONE, limit=10)) == names(listed)


def test_list_pages_with_a_selector_are_full(registry: Registry) -> None:
    for i in range(9):
        registry.create(
            CONFIGMAPS, "default", configmap(f"cm-{i}", {"odd": str(i % 2 == 1).lower()})
        )
    selectors = Selectors(parse_label_selector("odd=true"))
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = registry.list(
            CONFIGMAPS, "default", selectors=selectors, limit=2, continue_token=token
        )
        assert len(page["items"]) <= 2
        seen += names(page)
        pages += 1
        token = page["metadata"].get("continue", "")
        if not token:
            break
    assert seen == ["cm-1", "cm-3", "cm-5", "cm-7"]
    assert pages in (2, 3)  # a last, empty page is allowed, as upstream


def test_list_bad_continue_token(registry: Registry) -> None:
    error = raises(
        lambda: registry.list(CONFIGMAPS, "default", selectors=NONE, continue_token="!!")
    )
    assert (error.code, error.reason) == (400, "BadRequest")


def test_list_continue_after_compaction(registry: Registry, backend: MemoryBackend) -> None:
    for i in range(3):
        registry.create(CONFIGMAPS, "default", configmap(f"cm-{i}"))
    first = registry.list(CONFIGMAPS, "default", selectors=NONE, limit=1)
    registry.create(CONFIGMAPS, "default", configmap("later"))
    backend.compact(backend.current_revision())
    error = raises(
        lambda: registry.list(
            CONFIGMAPS,
            "default",
            selectors=NONE,
            limit=1,
            continue_token=first["metadata"]["continue"],
        )
    )
    assert (error.code, error.reason) == (410, "Expired")


# -- update ---------------------------------------------------------------------------------


def test_update_with_the_current_resource_version(
    registry: Registry, backend: MemoryBackend
) -> None:
    created = registry.create(CONFIGMAPS, "default", configmap("a", x="1"))
    created["data"] = {"x": "2"}
    updated = registry.update(CONFIGMAPS, "default", "a", created)
    assert rv(updated) > rv(created)
    assert rv(updated) == backend.current_revision()
    assert registry.get(CONFIGMAPS, "default", "a") == updated
    assert updated["metadata"]["uid"] == created["metadata"]["uid"]
    assert updated["metadata"]["creationTimestamp"] == created["metadata"]["creationTimestamp"]


def test_update_with_a_stale_resource_version(registry: Registry) -> None:
    created = registry.create(CONFIGMAPS, "default", configmap("a", x="1"))
    fresh = copy.deepcopy(created)
    fresh["data"] = {"x": "2"}
    registry.update(CONFIGMAPS, "default", "a", fresh)
    created["data"] = {"x": "3"}
    error = raises(lambda: registry.update(CONFIGMAPS, "default", "a", created))
    assert (error.code, error.reason) == (409, "Conflict")
    assert error.message == (
        'Operation cannot be fulfilled on configmaps "a": the object has been modified; please '
        "apply your changes to the latest version and try again"
    )
    assert registry.get(CONFIGMAPS, "default", "a")["data"] == {"x": "2"}


def test_update_without_a_resource_version_is_unconditional(registry: Registry) -> None:
    registry.create(CONFIGMAPS, "default", configmap("a", x="1"))
    updated = registry.update(CONFIGMAPS, "default", "a", configmap("a", x="2"))
    assert updated["data"] == {"x": "2"}


def test_update_errors(registry: Registry) -> None:
    registry.create(CONFIGMAPS, "default", configmap("a"))
    missing = raises(lambda: registry.update(CONFIGMAPS, "default", "b", configmap("b")))
    assert (missing.code, missing.message) == (404, 'configmaps "b" not found')
    renamed = raises(lambda: registry.update(CONFIGMAPS, "default", "a", configmap("b")))
    assert renamed.code == 400
    body = configmap("a")
    body["metadata"]["resourceVersion"] = "abc"
    assert raises(lambda: registry.update(CONFIGMAPS, "default", "a", body)).code == 400


def test_update_keeps_server_owned_metadata(registry: Registry) -> None:
    created = registry.create(CONFIGMAPS, "default", configmap("a"))
    body = copy.deepcopy(created)
    body["metadata"].update(uid="other", creationTimestamp="2000-01-01T00:00:00Z")
    body["metadata"]["labels"] = {"new": "label"}
    updated = registry.update(CONFIGMAPS, "default", "a", body)
    assert updated["metadata"]["uid"] == created["metadata"]["uid"]
    assert updated["metadata"]["creationTimestamp"] == START_TEXT
    assert updated["metadata"]["labels"] == {"new": "label"}


def test_no_op_update_keeps_the_resource_version(
    registry: Registry, backend: MemoryBackend
) -> None:
    created = registry.create(DEPLOYMENTS, "default", deployment())
    before = backend.current_revision()
    same = registry.update(DEPLOYMENTS, "default", "web", copy.deepcopy(created))
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    # ... also when a client sends the fields in another order (Go clients do)
    reordered = {key: created[key] for key in reversed(list(created))}
    reordered["metadata"] = {
        key: created["metadata"][key] for key in reversed(list(created["metadata"]))
    }
    same = registry.update(DEPLOYMENTS, "default", "web", reordered)
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    # ... and when it leaves out what the server defaults
    bare = deployment()
    bare["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"]
    same = registry.update(DEPLOYMENTS, "default", "web", bare)
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert backend.current_revision() == before


# (a change to a deployment, generation afterwards)
GENERATIONS: list[tuple[Callable[[Object], Any], int]] = [
    (lambda d: d["spec"].update(replicas=3), 2),
    (lambda d: d["spec"]["template"]["spec"]["containers"][0].update(image="nginx:2"), 2),
    (lambda d: d["metadata"].update(labels={"a": "b"}), 1),
    (lambda d: d["metadata"].update(annotations={"a": "b"}), 1),
    (lambda d: d.update(status={"replicas": 5}), 1),  # ignored: status is a subresource
    (lambda d: d["metadata"].update(generation=10), 1),  # the server's
]


@pytest.mark.parametrize(("change", "generation"), GENERATIONS)
def test_generation_counts_spec_changes(
    registry: Registry, change: Callable[[Object], Any], generation: int
) -> None:
    created = registry.create(DEPLOYMENTS, "default", deployment())
    change(created)
    assert (
        registry.update(DEPLOYMENTS, "default", "web", created)["metadata"]["generation"]
        == generation
    )


def test_generation_after_several_spec_changes(registry: Registry) -> None:
    current = registry.create(DEPLOYMENTS, "default", deployment())
    for replicas in (2, 3, 4):
        current["spec"]["replicas"] = replicas
        current = registry.update(DEPLOYMENTS, "default", "web", current)
    assert current["metadata"]["generation"] == 4


def test_put_on_the_object_keeps_the_status(registry: Registry) -> None:
    registry.create(DEPLOYMENTS, "default", deployment())
    registry.update(
        DEPLOYMENTS,
        "default",
        "web",
        {"metadata": {}, "status": {"replicas": 1}},
        subresource="status",
    )
    current = registry.get(DEPLOYMENTS, "default", "web")
    current["status"] = {"replicas": 99}
    current["spec"]["replicas"] = 2
    updated = registry.update(DEPLOYMENTS, "default", "web", current)
    assert updated["status"] == {"replicas": 1}
    assert updated["spec"]["replicas"] == 2
    del updated["status"]
    assert registry.update(DEPLOYMENTS, "default", "web", updated)["status"] == {"replicas": 1}


def test_put_on_status_changes_only_the_status(registry: Registry) -> None:
    created = registry.create(DEPLOYMENTS, "default", deployment())
    body = copy.deepcopy(created)
    body["spec"]["replicas"] = 7
    body["metadata"]["labels"] = {"changed": "yes"}
    body["status"] = {"replicas": 1, "readyReplicas": 1}
    updated = registry.update(DEPLOYMENTS, "default", "web", body, subresource="status")
    assert updated["status"] == {"replicas": 1, "readyReplicas": 1}
    assert updated["spec"] == created["spec"]
    assert "labels" not in updated["metadata"]
    assert updated["metadata"]["generation"] == 1
    assert rv(updated) > rv(created)
    assert registry.get(DEPLOYMENTS, "default", "web") == updated


def test_put_on_status_with_a_stale_resource_version(registry: Registry) -> None:
    created = registry.create(PODS, "default", pod())
    registry.update(
        PODS,
        "default",
        "web",
        {"metadata": {}, "status": {"phase": "Running"}},
        subresource="status",
    )
    created["status"] = {"phase": "Failed"}
    error = raises(lambda: registry.update(PODS, "default", "web", created, subresource="status"))
    assert (error.code, error.reason) == (409, "Conflict")


# (a change to a running pod, allowed?)
POD_UPDATES: list[tuple[Callable[[Object], Any], bool]] = [
    (lambda p: p["spec"]["containers"][0].update(image="nginx:1.28"), True),
    (lambda p: p["metadata"]["labels"].update(tier="front"), True),
    (lambda p: p["spec"].update(activeDeadlineSeconds=30), True),
    (lambda p: p["spec"].update(restartPolicy="Never"), False),
    (lambda p: p["spec"]["containers"].append({"name": "d", "image": "x"}), False),
    (lambda p: p["spec"].update(nodeName="n2"), False),
]


@pytest.mark.parametrize(("change", "allowed"), POD_UPDATES)
def test_pod_update_immutability(
    registry: Registry, change: Callable[[Object], Any], allowed: bool
) -> None:
    created = registry.create(PODS, "default", pod(nodeName="n1"))
    change(created)
    if allowed:
        registry.update(PODS, "default", "web", created)
        return
    error = raises(lambda: registry.update(PODS, "default", "web", created))
    assert (error.code, error.reason) == (422, "Invalid")
    assert [(c.type, c.field) for c in error.causes] == [("FieldValueForbidden", "spec")]
    assert error.message.startswith('Pod "web" is invalid: spec: Forbidden: pod updates may not')


def test_deployment_selector_is_immutable(registry: Registry) -> None:
    created = registry.create(DEPLOYMENTS, "default", deployment())
    created["spec"]["selector"] = {"matchLabels": {"app": "web", "x": "y"}}
    created["spec"]["template"]["metadata"]["labels"]["x"] = "y"
    error = raises(lambda: registry.update(DEPLOYMENTS, "default", "web", created))
    assert error.code == 422
    assert [(c.type, c.field) for c in error.causes] == [("FieldValueInvalid", "spec.selector")]
    assert "field is immutable" in error.message


def test_guaranteed_update_retries_on_a_concurrent_write(registry: Registry) -> None:
    registry.create(CONFIGMAPS, "default", configmap("a", n="0"))
    calls = 0

    def bump(current: Object) -> Object:
        nonlocal calls
        calls += 1
        if calls == 1:  # someone else writes in between
            registry.update(CONFIGMAPS, "default", "a", configmap("a", n="other"))
        current["data"]["seen"] = current["data"]["n"]
        return current

    updated = registry.guaranteed_update(CONFIGMAPS, "default", "a", bump)
    assert calls == 2
    assert updated["data"] == {"n": "other", "seen": "other"}


# -- delete ---------------------------------------------------------------------------------


def test_delete(registry: Registry, backend: MemoryBackend) -> None:
    created = registry.create(CONFIGMAPS, "default", configmap("a"))
    deleted = registry.delete(CONFIGMAPS, "default", "a")
    assert deleted["metadata"]["name"] == "a"
    assert deleted["metadata"]["uid"] == created["metadata"]["uid"]
    assert rv(deleted) == backend.current_revision()
    assert raises(lambda: registry.get(CONFIGMAPS, "default", "a")).code == 404
    assert registry.list(CONFIGMAPS, "default", selectors=NONE)["items"] == []
    again = raises(lambda: registry.delete(CONFIGMAPS, "default", "a"))
    assert (again.code, again.message) == (404, 'configmaps "a" not found')
    # the name is free again
    assert (
        registry.create(CONFIGMAPS, "default", configmap("a"))["metadata"]["uid"]
        != (created["metadata"]["uid"])
    )


def test_delete_waits_for_finalizers(registry: Registry, clock: Clock) -> None:
    body = configmap("a")
    body["metadata"]["finalizers"] = ["example.com/one", "example.com/two"]
    registry.create(CONFIGMAPS, "default", body)
    clock.now += 60
    marked = registry.delete(CONFIGMAPS, "default", "a")
    meta = marked["metadata"]
    assert meta["deletionTimestamp"] == "2023-11-14T22:14:20Z"
    assert meta["deletionGracePeriodSeconds"] == 0
    assert meta["finalizers"] == ["example.com/one", "example.com/two"]
    assert registry.get(CONFIGMAPS, "default", "a") == marked
    # deleting again changes nothing
    clock.now += 60
    assert registry.delete(CONFIGMAPS, "default", "a") == marked
    # an update that leaves a finalizer keeps it; one that removes the last deletes it
    current = registry.get(CONFIGMAPS, "default", "a")
    current["metadata"]["finalizers"] = ["example.com/two"]
    current["data"] = {"still": "here"}
    current = registry.update(CONFIGMAPS, "default", "a", current)
    assert current["metadata"]["deletionTimestamp"] == "2023-11-14T22:14:20Z"
    assert registry.get(CONFIGMAPS, "default", "a")["data"] == {"still": "here"}
    current["metadata"]["finalizers"] = []
    registry.update(CONFIGMAPS, "default", "a", current)
    assert raises(lambda: registry.get(CONFIGMAPS, "default", "a")).code == 404


def test_an_update_cannot_clear_the_deletion_timestamp(registry: Registry) -> None:
    body = configmap("a")
    body["metadata"]["finalizers"] = ["example.com/one"]
    registry.create(CONFIGMAPS, "default", body)
    marked = registry.delete(CONFIGMAPS, "default", "a")
    del marked["metadata"]["deletionTimestamp"]
    updated = registry.update(CONFIGMAPS, "default", "a", marked)
    assert updated["metadata"]["deletionTimestamp"] == START_TEXT


def test_delete_a_bound_pod_gracefully(registry: Registry, clock: Clock) -> None:
    registry.create(PODS, "default", pod(nodeName="n1"))
    marked = registry.delete(PODS, "default", "web")
    assert marked["metadata"]["deletionTimestamp"] == "2023-11-14T22:13:50Z"  # now + 30s
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 30
    assert registry.get(PODS, "default", "web") == marked
    # the kubelet reports while the containers stop: the pod stays
    clock.now += 10
    status = registry.update(
        PODS,
        "default",
        "web",
        {"metadata": {}, "status": {"phase": "Running"}},
        subresource="status",
    )
    assert status["metadata"]["deletionGracePeriodSeconds"] == 30
    assert registry.get(PODS, "default", "web")["status"] == {"phase": "Running"}
    # ... and deletes it with grace 0 once they have
    gone = registry.delete(PODS, "default", "web", grace_period=0)
    assert gone["metadata"]["deletionGracePeriodSeconds"] == 0
    assert raises(lambda: registry.get(PODS, "default", "web")).code == 404


# (the pod's spec and status, the grace period asked for, seconds it is kept for or None: gone)
POD_DELETES: list[tuple[Object, Object, int | None, int | None]] = [
    ({"nodeName": "n1"}, {}, None, 30),
    ({"nodeName": "n1", "terminationGracePeriodSeconds": 5}, {}, None, 5),
    ({"nodeName": "n1"}, {}, 10, 10),
    ({"nodeName": "n1"}, {}, 0, None),
    ({"nodeName": "n1", "terminationGracePeriodSeconds": 0}, {}, None, None),
    ({}, {}, None, None),  # no kubelet runs it
    ({}, {}, 60, None),
    ({"nodeName": "n1"}, {"phase": "Succeeded"}, None, None),  # nothing left to stop
    ({"nodeName": "n1"}, {"phase": "Failed"}, 30, None),
    ({"nodeName": "n1"}, {"phase": "Running"}, None, 30),
]


@pytest.mark.parametrize(("spec", "status", "grace", "kept"), POD_DELETES)
def test_pod_grace_periods(
    registry: Registry, spec: Object, status: Object, grace: int | None, kept: int | None
) -> None:
    registry.create(PODS, "default", pod(**spec))
    if status:
        registry.update(
            PODS, "default", "web", {"metadata": {}, "status": status}, subresource="status"
        )
    deleted = registry.delete(PODS, "default", "web", grace_period=grace)
    if kept is None:
        assert raises(lambda: registry.get(PODS, "default", "web")).code == 404
    else:
        assert deleted["metadata"]["deletionGracePeriodSeconds"] == kept
        assert (
            registry.get(PODS, "default", "web")["metadata"]["deletionGracePeriodSeconds"] == kept
        )


def test_a_second_delete_may_only_shorten_the_grace_period(
    registry: Registry, clock: Clock
) -> None:
    registry.create(PODS, "default", pod(nodeName="n1"))
    first = registry.delete(PODS, "default", "web", grace_period=20)
    clock.now += 5
    longer = registry.delete(PODS, "default", "web", grace_period=60)
    assert longer["metadata"]["deletionGracePeriodSeconds"] == 20
    assert longer["metadata"]["deletionTimestamp"] == first["metadata"]["deletionTimestamp"]
    shorter = registry.delete(PODS, "default", "web", grace_period=3)
    assert shorter["metadata"]["deletionGracePeriodSeconds"] == 3
    assert shorter["metadata"]["deletionTimestamp"] == "2023-11-14T22:13:28Z"  # now + 3s


def test_a_bound_pod_with_finalizers(registry: Registry) -> None:
    body = pod(nodeName="n1")
    body["metadata"]["finalizers"] = ["example.com/keep"]
    registry.create(PODS, "default", body)
    registry.delete(PODS, "default", "web")
    gone_by_kubelet = registry.delete(PODS, "default", "web", grace_period=0)
    assert gone_by_kubelet["metadata"]["deletionGracePeriodSeconds"] == 0
    current = registry.get(PODS, "default", "web")
    current["metadata"]["finalizers"] = []
    registry.update(PODS, "default", "web", current)
    assert raises(lambda: registry.get(PODS, "default", "web")).code == 404


# (propagationPolicy, the finalizers it adds)
PROPAGATION = [("Foreground", ["foregroundDeletion"]), ("Orphan", ["orphan"])]


@pytest.mark.parametrize(("policy", "finalizers"), PROPAGATION)
def test_propagation_policy_finalizers(
    registry: Registry, policy: str, finalizers: list[str]
) -> None:
    registry.create(DEPLOYMENTS, "default", deployment())
    marked = registry.delete(DEPLOYMENTS, "default", "web", propagation=policy)
    assert marked["metadata"]["finalizers"] == finalizers
    assert marked["metadata"]["deletionTimestamp"] == START_TEXT
    assert registry.get(DEPLOYMENTS, "default", "web")["metadata"]["finalizers"] == finalizers


def test_background_propagation_deletes_at_once(registry: Registry) -> None:
    registry.create(DEPLOYMENTS, "default", deployment())
    registry.delete(DEPLOYMENTS, "default", "web", propagation="Background")
    assert raises(lambda: registry.get(DEPLOYMENTS, "default", "web")).code == 404


def test_delete_preconditions(registry: Registry) -> None:
    created = registry.create(CONFIGMAPS, "default", configmap("a"))
    uid, version = created["metadata"]["uid"], created["metadata"]["resourceVersion"]
    wrong_uid = raises(
        lambda: registry.delete(CONFIGMAPS, "default", "a", preconditions={"uid": "x"})
    )
    assert (wrong_uid.code, wrong_uid.reason) == (409, "Conflict")
    assert "Precondition failed: UID in precondition: x" in wrong_uid.message
    stale = raises(
        lambda: registry.delete(CONFIGMAPS, "default", "a", preconditions={"resourceVersion": "1"})
    )
    assert (stale.code, stale.reason) == (409, "Conflict")
    registry.delete(
        CONFIGMAPS, "default", "a", preconditions={"uid": uid, "resourceVersion": version}
    )
    assert raises(lambda: registry.get(CONFIGMAPS, "default", "a")).code == 404


# -- watch ---------------------------------------------------------------------------------


class Watching:
    """A registry watch read in the test's thread; it ends by itself after a few
    seconds so that a missing event fails the test instead of hanging it."""

    def __init__(
        self,
        registry: Registry,
        kind: ResourceType,
        namespace: str = "default",
        resource_version: str = "",
        selectors: Selectors = NONE,
        bookmark_every: float = 0.0,
    ) -> None:
        self.stopped = False
        deadline = time.monotonic() + 5
        self.events = registry.watch(
            kind,
            namespace,
            resource_version=resource_version,
            selectors=selectors,
            stop=lambda: self.stopped or time.monotonic() > deadline,
            bookmark_every=bookmark_every,
        )

    def take(self, count: int) -> list[tuple[str, str]]:
        return [(e.type, e.object["metadata"]["name"]) for e in self.take_events(count)]

    def take_events(self, count: int) -> list[WatchEvent]:
        taken = []
        for _ in range(count):
            event = next(self.events, None)
            assert event is not None, f"the watch ended after {taken}"
            taken.append(event)
        return taken

    def close(self) -> None:
        self.events.close()


@pytest.fixture
def watches() -> Iterator[list[Watching]]:
    opened: list[Watching] = []
    yield opened
    for watch in opened:
        watch.close()


def watch(
    watches: list[Watching], registry: Registry, kind: ResourceType, **options: Any
) -> Watching:
    opened = Watching(registry, kind, **options)
    watches.append(opened)
    return opened


@pytest.mark.parametrize("version", ["", "0"])
def test_watch_from_now_sends_what_exists_first(
    registry: Registry, watches: list[Watching], version: str
) -> None:
    for name in ("b", "a"):
        registry.create(CONFIGMAPS, "default", configmap(name))
    registry.create(CONFIGMAPS, "other", configmap("elsewhere"))
    watching = watch(watches, registry, CONFIGMAPS, resource_version=version)
    registry.create(CONFIGMAPS, "default", configmap("c"))
    registry.update(CONFIGMAPS, "default", "a", configmap("a", x="1"))
    registry.delete(CONFIGMAPS, "default", "b")
    assert watching.take(5) == [
        ("ADDED", "a"),
        ("ADDED", "b"),
        ("ADDED", "c"),
        ("MODIFIED", "a"),
        ("DELETED", "b"),
    ]


def test_watch_events_carry_the_object(
    registry: Registry, backend: MemoryBackend, watches: list[Watching]
) -> None:
    watching = watch(
        watches, registry, CONFIGMAPS, resource_version=str(backend.current_revision())
    )
    created = registry.create(CONFIGMAPS, "default", configmap("a", x="1"))
    modified = registry.update(CONFIGMAPS, "default", "a", configmap("a", x="2"))
    deleted = registry.delete(CONFIGMAPS, "default", "a")
    added, changed, removed = watching.take_events(3)
    assert (added.type, added.object) == ("ADDED", created)
    assert (changed.type, changed.object) == ("MODIFIED", modified)
    assert removed.type == "DELETED"
    assert removed.object["data"] == {"x": "2"}
    assert removed.object["metadata"]["uid"] == created["metadata"]["uid"]
    assert rv(removed.object) == rv(deleted) == backend.current_revision()


def test_watch_from_a_version_replays_only_later_events(
    registry: Registry, watches: list[Watching]
) -> None:
    a = registry.create(CONFIGMAPS, "default", configmap("a"))
    registry.create(CONFIGMAPS, "default", configmap("b"))
    registry.update(CONFIGMAPS, "default", "a", configmap("a", x="1"))
    registry.delete(CONFIGMAPS, "default", "b")
    watching = watch(watches, registry, CONFIGMAPS, resource_version=str(rv(a)))
    registry.create(CONFIGMAPS, "default", configmap("c"))
    assert watching.take(4) == [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b"), ("ADDED", "c")]


def test_watch_resource_versions_increase(registry: Registry, watches: list[Watching]) -> None:
    watching = watch(watches, registry, CONFIGMAPS, resource_version="1")
    for i in range(5):
        registry.create(CONFIGMAPS, "default", configmap(f"cm-{i}"))
    versions = [rv(e.object) for e in watching.take_events(5)]
    assert versions == sorted(versions) and len(set(versions)) == 5


def test_watch_one_namespace_or_all(
    registry: Registry, backend: MemoryBackend, watches: list[Watching]
) -> None:
    now = str(backend.current_revision())
    one = watch(watches, registry, CONFIGMAPS, namespace="other", resource_version=now)
    every = watch(watches, registry, CONFIGMAPS, namespace="", resource_version=now)
    registry.create(CONFIGMAPS, "default", configmap("a"))
    registry.create(CONFIGMAPS, "other", configmap("b"))
    registry.create(PODS, "other", pod("not-a-configmap"))
    assert one.take(1) == [("ADDED", "b")]
    assert every.take(2) == [("ADDED", "a"), ("ADDED", "b")]


def test_watch_with_a_label_selector(
    registry: Registry, backend: MemoryBackend, watches: list[Watching]
) -> None:
    watching = watch(
        watches,
        registry,
        CONFIGMAPS,
        resource_version=str(backend.current_revision()),
        selectors=Selectors(parse_label_selector("app=web")),
    )
    registry.create(CONFIGMAPS, "default", configmap("db", {"app": "db"}))  # never matches
    registry.create(CONFIGMAPS, "default", configmap("web", {"app": "web"}))
    registry.update(CONFIGMAPS, "default", "web", configmap("web", {"app": "web"}, x="1"))
    moved = registry.update(CONFIGMAPS, "default", "web", configmap("web", {"app": "api"}))
    registry.update(CONFIGMAPS, "default", "db", configmap("db", {"app": "web"}))  # starts
    registry.delete(CONFIGMAPS, "default", "db")
    registry.delete(CONFIGMAPS, "default", "web")  # no longer matched: no event
    registry.create(CONFIGMAPS, "default", configmap("last", {"app": "web"}))
    events = watching.take_events(6)
    assert [(e.type, e.object["metadata"]["name"]) for e in events] == [
        ("ADDED", "web"),
        ("MODIFIED", "web"),
        ("DELETED", "web"),
        ("ADDED", "db"),
        ("DELETED", "db"),
        ("ADDED", "last"),
    ]
    # An object that stops matching goes as it last matched, at the version of the change.
    stopped = events[2].object
    assert stopped["metadata"]["labels"] == {"app": "web"}
    assert stopped["data"] == {"x": "1"}
    assert rv(stopped) == rv(moved)


def test_watch_with_a_field_selector(
    registry: Registry, backend: MemoryBackend, watches: list[Watching]
) -> None:
    registry.create(PODS, "default", pod("a"))
    registry.create(PODS, "default", pod("b", nodeName="n1"))
    watching = watch(
        watches,
        registry,
        PODS,
        resource_version="0",
        selectors=Selectors(fields=parse_field_selector("spec.nodeName=n1", "Pod")),
    )
    bound = registry.get(PODS, "default", "a")
    bound["spec"]["nodeName"] = "n1"
    registry.update(PODS, "default", "a", bound)
    registry.update(
        PODS, "default", "b", {"metadata": {}, "status": {"phase": "Running"}}, subresource="status"
    )
    assert watching.take(3) == [("ADDED", "b"), ("ADDED", "a"), ("MODIFIED", "b")]


def test_watch_sees_graceful_deletion(
    registry: Registry, backend: MemoryBackend, watches: list[Watching]
) -> None:
    registry.create(PODS, "default", pod(nodeName="n1"))
    watching = watch(watches, registry, PODS, resource_version=str(backend.current_revision()))
    registry.delete(PODS, "default", "web")
    registry.delete(PODS, "default", "web", grace_period=0)
    marked, deleted = watching.take_events(2)
    assert marked.type == "MODIFIED"
    assert marked.object["metadata"]["deletionGracePeriodSeconds"] == 30
    assert deleted.type == "DELETED"


def test_stop_ends_the_watch(registry: Registry, watches: list[Watching]) -> None:
    watching = watch(watches, registry, CONFIGMAPS, resource_version="0")
    registry.create(CONFIGMAPS, "default", configmap("a"))
    assert watching.take(1) == [("ADDED", "a")]
    watching.stopped = True
    started = time.monotonic()
    assert list(watching.events) == []
    assert time.monotonic() - started < 3


def test_closing_the_watch_ends_it(registry: Registry, watches: list[Watching]) -> None:
    watching = watch(watches, registry, CONFIGMAPS, resource_version="0")
    watching.close()
    registry.create(CONFIGMAPS, "default", configmap("a"))
    assert next(watching.events, None) is None


def test_watch_bookmarks(
    registry: Registry, backend: MemoryBackend, clock: Clock, watches: list[Watching]
) -> None:
    now = backend.current_revision()
    watching = watch(watches, registry, CONFIGMAPS, resource_version=str(now), bookmark_every=10)
    clock.now += 11
    [bookmark] = watching.take_events(1)
    assert bookmark.type == "BOOKMARK"
    assert bookmark.object == {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": str(now)},
    }


def test_watch_from_a_compacted_version(registry: Registry, backend: MemoryBackend) -> None:
    created = registry.create(CONFIGMAPS, "default", configmap("a"))
    registry.update(CONFIGMAPS, "default", "a", configmap("a", x="1"))
    backend.compact(backend.current_revision())
    # The error comes when the watch is set up, before any event: the server answers
    # it as a plain 410 and clients re-list.
    error = raises(
        lambda: registry.watch(
            CONFIGMAPS,
            "default",
            resource_version=str(rv(created)),
            selectors=NONE,
            stop=lambda: True,
        )
    )
    assert (error.code, error.reason) == (410, "Expired")
    assert error.status()["code"] == 410
    assert "too old resource version" in error.message


def test_watch_from_the_compacted_version_itself(
    registry: Registry, backend: MemoryBackend, watches: list[Watching]
) -> None:
    registry.create(CONFIGMAPS, "default", configmap("a"))
    compacted = backend.current_revision()
    backend.compact(compacted)
    watching = watch(watches, registry, CONFIGMAPS, resource_version=str(compacted))
    registry.create(CONFIGMAPS, "default", configmap("b"))
    assert watching.take(1) == [("ADDED", "b")]


@pytest.mark.parametrize("version", ["abc", "-1", "1.5"])
def test_watch_from_a_bad_version(registry: Registry, version: str) -> None:
    error = raises(
        lambda: registry.watch(
            CONFIGMAPS, "default", resource_version=version, selectors=NONE, stop=lambda: True
        )
    )
    assert (error.code, error.reason) == (400, "BadRequest")


def test_watches_share_each_change_decoded_and_encoded_once() -> None:
    shared = _SharedDecodes(size=2)
    stored = json.dumps({"kind": "Pod", "metadata": {"name": "a"}}).encode()
    first = KeyValue("/pods/default/a", stored, 5, 7, 2)
    obj, encoded = shared.get(first)
    assert obj["metadata"]["resourceVersion"] == "7"
    assert json.loads(encoded) == obj
    assert shared.get(KeyValue("/pods/default/a", stored, 5, 7, 2))[0] is obj  # once
    shared.get(KeyValue("/pods/default/a", stored, 5, 8, 3))
    shared.get(KeyValue("/pods/default/a", stored, 5, 9, 4))
    again, _ = shared.get(first)  # fell out (size 2): decoded anew, same content
    assert again is not obj and again == obj
