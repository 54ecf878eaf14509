"""The API server over HTTP (control/apiserver/server.py) as a client meets it, on the
in-memory store without TLS: discovery, authentication and authorization, the verbs,
Table output, the three patch types, errors as `Status` objects, and watch streams
read line by line from the chunked response."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from control.apiserver.auth import ADMIN_GROUP, Authenticator, Rule, User
from control.apiserver.objects import Registry
from control.apiserver.resources import lookup
from control.apiserver.server import MAX_BODY, ApiServer
from control.storage import MemoryBackend

ADMIN = "admin-token"
READER = "reader-token"
PODS_PATH = "/api/v1/namespaces/default/pods"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"

Object = dict[str, Any]


@dataclass
class Api:
    server: ApiServer
    registry: Registry
    backend: MemoryBackend


def authenticator() -> Authenticator:
    """An admin (system:masters) and a user who may only get and list pods."""
    return Authenticator(
        tokens={
            ADMIN: User("admin", "uid-admin", (ADMIN_GROUP,)),
            READER: User("reader", "uid-reader"),
        },
        rules=(
            Rule(
                groups=frozenset({ADMIN_GROUP}), verbs=frozenset({"*"}), resources=frozenset({"*"})
            ),
            Rule(
                users=frozenset({"reader"}),
                verbs=frozenset({"get", "list"}),
                resources=frozenset({"pods"}),
            ),
        ),
    )


def fresh_registry() -> tuple[Registry, MemoryBackend]:
    backend = MemoryBackend()
    registry = Registry(backend, clock=lambda: 1_700_000_000.0)
    namespaces = lookup("", "v1", "namespaces")
    assert namespaces is not None
    registry.create(namespaces, "", {"metadata": {"name": "default"}})
    return registry, backend


@pytest.fixture(scope="module")
def server() -> Iterator[ApiServer]:
    """One server for the module (stopping one takes up to half a second); each test
    gets a store of its own (the `api` fixture)."""
    registry, backend = fresh_registry()
    started = ApiServer(registry, authenticator(), host="127.0.0.1", port=0)
    started.start()
    try:
        yield started
    finally:
        started.stop()
        backend.close()


@pytest.fixture
def api(server: ApiServer) -> Iterator[Api]:
    registry, backend = fresh_registry()
    server.registry = registry
    try:
        yield Api(server, registry, backend)
    finally:
        backend.close()  # ends the watches still open on it


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        return str(self.headers.get("Content-Type", ""))


def call(
    api: Api,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = ADMIN,
    headers: dict[str, str] | None = None,
) -> Response:
    sent: dict[str, str] = {}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    data: bytes | None = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent["Content-Type"] = "application/json"
    sent.update(headers or {})
    connection = http.client.HTTPConnection(api.server.host, api.server.port, timeout=10)
    try:
        connection.request(method, path, body=data, headers=sent)
        response = connection.getresponse()
        return Response(response.status, response.headers, response.read())
    finally:
        connection.close()


def pod(name: str = "web", **labels: str) -> Object:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {"app": name}},
        "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]},
    }


def create_pod(api: Api, name: str = "web", **labels: str) -> Object:
    response = call(api, "POST", PODS_PATH, pod(name, **labels))
    assert response.status == 201, response.body
    created: Object = response.json()
    return created


def assert_status(response: Response, code: int, reason: str, message: str | None = None) -> Object:
    """An error as the real API sends it: a Status, always as JSON."""
    assert response.status == code, response.body
    assert response.content_type == "application/json"
    status: Object = response.json()
    assert status["kind"] == "Status"
    assert status["apiVersion"] == "v1"
    assert status["status"] == "Failure"
    assert status["metadata"] == {}
    assert (status["code"], status["reason"]) == (code, reason)
    if message is not None:
        assert status["message"] == message
    return status


# -- discovery, version, health ------------------------------------------------------------


def test_api_versions(api: Api) -> None:
    response = call(api, "GET", "/api")
    assert response.status == 200
    assert response.content_type == "application/json"
    document = response.json()
    assert document["kind"] == "APIVersions"
    assert document["versions"] == ["v1"]


def test_core_resources(api: Api) -> None:
    document = call(api, "GET", "/api/v1").json()
    assert (document["kind"], document["groupVersion"]) == ("APIResourceList", "v1")
    resources = {r["name"]: r for r in document["resources"]}
    pods = resources["pods"]
    assert pods["shortNames"] == ["po"]
    assert pods["singularName"] == "pod"
    assert pods["namespaced"] is True
    assert pods["kind"] == "Pod"
    assert pods["categories"] == ["all"]
    assert set(pods["verbs"]) == {
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    }
    assert set(resources["pods/status"]["verbs"]) == {"get", "patch", "update"}
    assert resources["pods/binding"]["verbs"] == ["create"]
    assert resources["pods/eviction"]["verbs"] == ["create"]
    assert resources["pods/log"]["verbs"] == ["get"]
    assert set(resources["pods/exec"]["verbs"]) == {"create", "get"}
    assert resources["namespaces"]["namespaced"] is False
    assert resources["namespaces"]["shortNames"] == ["ns"]
    assert resources["services"]["shortNames"] == ["svc"]
    assert resources["configmaps"]["shortNames"] == ["cm"]
    assert resources["nodes"]["namespaced"] is False


def test_api_groups(api: Api) -> None:
    document = call(api, "GET", "/apis").json()
    assert document["kind"] == "APIGroupList"
    groups = {g["name"]: g for g in document["groups"]}
    assert groups["apps"]["versions"] == [{"groupVersion": "apps/v1", "version": "v1"}]
    assert groups["apps"]["preferredVersion"] == {"groupVersion": "apps/v1", "version": "v1"}
    assert "coordination.k8s.io" in groups
    assert "" not in groups
    group = call(api, "GET", "/apis/apps").json()
    assert (group["kind"], group["name"]) == ("APIGroup", "apps")


def test_apps_resources(api: Api) -> None:
    document = call(api, "GET", "/apis/apps/v1").json()
    assert (document["kind"], document["groupVersion"]) == ("APIResourceList", "apps/v1")
    resources = {r["name"]: r for r in document["resources"]}
    assert resources["deployments"]["shortNames"] == ["deploy"]
    assert resources["deployments"]["kind"] == "Deployment"
    assert resources["replicasets"]["shortNames"] == ["rs"]
    assert resources["deployments/scale"]["kind"] == "Scale"


@pytest.mark.parametrize("path", ["/api/v2", "/apis/apps/v2", "/apis/nothing", "/apis/nothing/v1"])
def test_unknown_group_versions(api: Api, path: str) -> None:
    assert_status(call(api, "GET", path), 404, "NotFound")


def test_version(api: Api) -> None:
    response = call(api, "GET", "/version")
    assert response.status == 200
    assert response.content_type == "application/json"
    version = response.json()
    assert version["major"] == "1"
    assert version["gitVersion"].startswith("v1.")


@pytest.mark.parametrize("path", ["/healthz", "/livez", "/readyz"])
def test_health(api: Api, path: str) -> None:
    response = call(api, "GET", path)
    assert (response.status, response.body) == (200, b"ok")


# -- authentication and authorization -------------------------------------------------------


@pytest.mark.parametrize("path", [PODS_PATH, "/api", "/version", "/api/v1/nodes"])
def test_no_token_is_unauthorized(api: Api, path: str) -> None:
    assert_status(call(api, "GET", path, token=None), 401, "Unauthorized", "Unauthorized")


@pytest.mark.parametrize(
    "authorization", ["Bearer wrong", "Bearer ", "Basic YWRtaW46YWRtaW4=", ADMIN, "Bearer"]
)
def test_bad_credentials_are_unauthorized(api: Api, authorization: str) -> None:
    response = call(api, "GET", PODS_PATH, token=None, headers={"Authorization": authorization})
    assert_status(response, 401, "Unauthorized")


def test_the_bearer_scheme_is_case_insensitive(api: Api) -> None:
    response = call(api, "GET", PODS_PATH, token=None, headers={"Authorization": f"bearer {ADMIN}"})
    assert response.status == 200


def test_forbidden_create(api: Api) -> None:
    before = api.backend.current_revision()
    response = call(api, "POST", PODS_PATH, pod(), token=READER)
    status = assert_status(
        response,
        403,
        "Forbidden",
        'pods is forbidden: User "reader" cannot create resource "pods" in API group "" in the '
        'namespace "default"',
    )
    assert status["details"] == {"kind": "pods"}
    assert api.backend.current_revision() == before


def test_the_limited_user_may_read_pods(api: Api) -> None:
    create_pod(api)
    assert call(api, "GET", PODS_PATH, token=READER).status == 200
    assert call(api, "GET", f"{PODS_PATH}/web", token=READER).json()["metadata"]["name"] == "web"
    assert call(api, "GET", "/api/v1/pods", token=READER).status == 200  # every namespace


# (method, path, the message of the 403)
FORBIDDEN = [
    (
        "GET",
        "/api/v1/namespaces/default/configmaps/settings",
        'configmaps "settings" is forbidden: User "reader" cannot get resource "configmaps" in '
        'API group "" in the namespace "default"',
    ),
    (
        "GET",
        "/apis/apps/v1/namespaces/default/deployments",
        'deployments.apps is forbidden: User "reader" cannot list resource "deployments" in API '
        'group "apps" in the namespace "default"',
    ),
    (
        "GET",
        "/api/v1/nodes",
        'nodes is forbidden: User "reader" cannot list resource "nodes" in API group "" at the '
        "cluster scope",
    ),
    (
        "GET",
        f"{PODS_PATH}?watch=1",
        'pods is forbidden: User "reader" cannot watch resource "pods" in API group "" in the '
        'namespace "default"',
    ),
    (
        "DELETE",
        f"{PODS_PATH}/web",
        'pods "web" is forbidden: User "reader" cannot delete resource "pods" in API group "" in '
        'the namespace "default"',
    ),
    # a subresource is authorized on its own, as RBAC does
    (
        "GET",
        f"{PODS_PATH}/web/status",
        'pods "web" is forbidden: User "reader" cannot get resource "pods/status" in API group '
        '"" in the namespace "default"',
    ),
]


@pytest.mark.parametrize(("method", "path", "message"), FORBIDDEN)
def test_forbidden(api: Api, method: str, path: str, message: str) -> None:
    create_pod(api)
    assert_status(call(api, method, path, token=READER), 403, "Forbidden", message)


# -- the verbs ----------------------------------------------------------------------------


def test_create_get_list_delete(api: Api) -> None:
    created = create_pod(api)
    assert created["metadata"]["namespace"] == "default"
    assert created["metadata"]["resourceVersion"] == str(api.backend.current_revision())
    assert created["spec"]["restartPolicy"] == "Always"
    assert created["status"] == {"phase": "Pending"}

    got = call(api, "GET", f"{PODS_PATH}/web")
    assert got.status == 200
    assert got.content_type == "application/json"
    assert got.json() == created

    listed = call(api, "GET", PODS_PATH).json()
    assert (listed["kind"], listed["apiVersion"]) == ("PodList", "v1")
    assert [item["metadata"]["name"] for item in listed["items"]] == ["web"]
    assert listed["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    everywhere = call(api, "GET", "/api/v1/pods").json()
    assert [item["metadata"]["name"] for item in everywhere["items"]] == ["web"]

    deleted = call(api, "DELETE", f"{PODS_PATH}/web")
    assert deleted.status == 200
    assert deleted.json()["metadata"]["uid"] == created["metadata"]["uid"]
    assert_status(call(api, "GET", f"{PODS_PATH}/web"), 404, "NotFound", 'pods "web" not found')
    assert call(api, "GET", PODS_PATH).json()["items"] == []


def test_create_errors(api: Api) -> None:
    create_pod(api)
    assert_status(
        call(api, "POST", PODS_PATH, pod()), 409, "AlreadyExists", 'pods "web" already exists'
    )
    bad = pod("Bad_Name")
    status = assert_status(call(api, "POST", PODS_PATH, bad), 422, "Invalid")
    assert status["message"].startswith('Pod "Bad_Name" is invalid: metadata.name: Invalid value')
    assert status["details"]["causes"][0]["field"] == "metadata.name"
    assert_status(
        call(api, "POST", "/api/v1/namespaces/nope/pods", pod()),
        404,
        "NotFound",
        'namespaces "nope" not found',
    )


def test_update_through_http(api: Api) -> None:
    created = create_pod(api)
    created["metadata"]["labels"]["tier"] = "front"
    updated = call(api, "PUT", f"{PODS_PATH}/web", created)
    assert updated.status == 200
    assert int(updated.json()["metadata"]["resourceVersion"]) > int(
        created["metadata"]["resourceVersion"]
    )
    status = assert_status(call(api, "PUT", f"{PODS_PATH}/web", created), 409, "Conflict")
    assert status["details"] == {"name": "web", "kind": "pods"}


def test_status_subresource(api: Api) -> None:
    created = create_pod(api)
    created["status"] = {"phase": "Running"}
    response = call(api, "PUT", f"{PODS_PATH}/web/status", created)
    assert response.status == 200
    assert response.json()["status"] == {"phase": "Running"}
    assert call(api, "GET", f"{PODS_PATH}/web/status").json()["status"] == {"phase": "Running"}


def test_list_with_selectors_and_pages(api: Api) -> None:
    for name in ("a", "b", "c"):
        create_pod(api, name, app="web" if name != "b" else "db")
    selected = call(api, "GET", f"{PODS_PATH}?labelSelector=" + urllib.parse.quote("app in (web)"))
    assert [i["metadata"]["name"] for i in selected.json()["items"]] == ["a", "c"]
    by_field = call(api, "GET", f"{PODS_PATH}?fieldSelector=metadata.name%3Db").json()
    assert [i["metadata"]["name"] for i in by_field["items"]] == ["b"]
    first = call(api, "GET", f"{PODS_PATH}?limit=2").json()
    assert [i["metadata"]["name"] for i in first["items"]] == ["a", "b"]
    token = urllib.parse.quote(first["metadata"]["continue"])
    second = call(api, "GET", f"{PODS_PATH}?limit=2&continue={token}").json()
    assert [i["metadata"]["name"] for i in second["items"]] == ["c"]
    assert "continue" not in second["metadata"]
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


# (query, the message of the 400)
BAD_QUERIES = [
    ("labelSelector=app%20in%20()", None),
    ("fieldSelector=spec.foo%3Dx", "field label not supported: spec.foo"),
    ("limit=many", None),
    ("continue=garbage", "invalid continue token"),
]


@pytest.mark.parametrize(("query", "message"), BAD_QUERIES)
def test_bad_list_queries(api: Api, query: str, message: str | None) -> None:
    assert_status(call(api, "GET", f"{PODS_PATH}?{query}"), 400, "BadRequest", message)


def test_namespace_status_path(api: Api) -> None:
    response = call(api, "GET", "/api/v1/namespaces/default/status")
    assert response.status == 200
    assert response.json()["kind"] == "Namespace"
    assert response.json()["status"] == {"phase": "Active"}


# (method, path): verbs a path does not serve
NOT_ALLOWED = [
    ("POST", f"{PODS_PATH}/web"),  # create names no object
    ("POST", f"{PODS_PATH}/web/status"),
    ("PUT", PODS_PATH),  # update and patch name one
    ("PATCH", PODS_PATH),
    ("DELETE", f"{PODS_PATH}/web/status"),
    ("POST", "/api/v1/pods"),  # a namespaced resource is created in a namespace
    ("POST", "/api"),
]


@pytest.mark.parametrize(("method", "path"), NOT_ALLOWED)
def test_method_not_allowed(api: Api, method: str, path: str) -> None:
    create_pod(api)
    before = api.backend.current_revision()
    response = call(api, method, path, pod(), headers={"Content-Type": MERGE_PATCH})
    assert_status(response, 405, "MethodNotAllowed")
    assert api.backend.current_revision() == before
    assert call(api, "GET", f"{PODS_PATH}/web").status == 200


def test_a_negative_limit_is_no_limit(api: Api) -> None:
    create_pod(api)
    listed = call(api, "GET", f"{PODS_PATH}?limit=-1").json()
    assert [i["metadata"]["name"] for i in listed["items"]] == ["web"]


def test_a_field_of_the_wrong_type(api: Api) -> None:
    body = pod()
    body["spec"]["containers"] = True
    status = assert_status(call(api, "POST", PODS_PATH, body), 400, "BadRequest")
    assert status["message"].startswith('Pod in version "v1" cannot be handled as a Pod')


# (what an authorization rule allows, the resource asked for, allowed?)
RULES: list[tuple[frozenset[str], str, bool]] = [
    (frozenset({"pods"}), "pods", True),
    (frozenset({"pods"}), "pods/status", False),
    (frozenset({"pods/status"}), "pods/status", True),
    (frozenset({"pods/status"}), "pods", False),
    (frozenset({"pods/*"}), "pods/log", True),
    (frozenset({"pods/*"}), "pods", False),
    (frozenset({"*"}), "pods/status", True),
    (frozenset({"configmaps"}), "pods", False),
]


@pytest.mark.parametrize(("resources", "asked", "allowed"), RULES)
def test_rule_resources(resources: frozenset[str], asked: str, allowed: bool) -> None:
    rule = Rule(users=frozenset({"u"}), verbs=frozenset({"get"}), resources=resources)
    assert rule.allows(User("u"), "get", asked, "default") is allowed
    assert not rule.allows(User("v"), "get", asked, "default")
    assert not rule.allows(User("u"), "list", asked, "default")


def test_rule_namespaces() -> None:
    rule = Rule(
        groups=frozenset({"team"}),
        verbs=frozenset({"*"}),
        resources=frozenset({"*"}),
        namespaces=frozenset({"team-a"}),
    )
    member = User("someone", groups=("team",))
    assert rule.allows(member, "create", "pods", "team-a")
    assert not rule.allows(member, "create", "pods", "team-b")
    assert not rule.allows(member, "list", "pods", "")  # every namespace: the cluster scope


# -- tables --------------------------------------------------------------------------------


def test_list_as_a_table(api: Api) -> None:
    for name in ("a", "b"):
        create_pod(api, name)
    response = call(api, "GET", PODS_PATH, headers={"Accept": TABLE})
    assert response.status == 200
    table = response.json()
    assert (table["kind"], table["apiVersion"]) == ("Table", "meta.k8s.io/v1")
    columns = table["columnDefinitions"]
    assert columns[0]["name"] == "Name"
    assert columns[0]["format"] == "name"
    assert columns[0]["type"] == "string"
    assert [c["name"] for c in columns if c["priority"] == 0] == [
        "Name",
        "Ready",
        "Status",
        "Restarts",
        "Age",
    ]
    assert [row["cells"][:4] for row in table["rows"]] == [
        ["a", "0/1", "Pending", "0"],
        ["b", "0/1", "Pending", "0"],
    ]
    for row, name in zip(table["rows"], ("a", "b"), strict=True):
        assert len(row["cells"]) == len(columns)
        obj = row["object"]
        assert (obj["kind"], obj["apiVersion"]) == ("PartialObjectMetadata", "meta.k8s.io/v1")
        assert obj["metadata"]["name"] == name
        assert obj["metadata"]["namespace"] == "default"
        assert obj["metadata"]["uid"]
    assert table["metadata"]["resourceVersion"] == str(api.backend.current_revision())


def test_kubectl_accept_header(api: Api) -> None:
    create_pod(api)
    accept = f"{TABLE},application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
    table = call(api, "GET", f"{PODS_PATH}/web", headers={"Accept": accept}).json()
    assert table["kind"] == "Table"
    assert [row["cells"][0] for row in table["rows"]] == ["web"]


def test_other_kinds_as_tables(api: Api) -> None:
    table = call(api, "GET", "/api/v1/namespaces", headers={"Accept": TABLE}).json()
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Status", "Age"]
    assert [row["cells"][:2] for row in table["rows"]] == [["default", "Active"]]
    call(api, "POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "cm"}})
    table = call(
        api, "GET", "/api/v1/namespaces/default/configmaps", headers={"Accept": TABLE}
    ).json()
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Age"]
    assert [row["cells"][0] for row in table["rows"]] == ["cm"]


# -- patch ---------------------------------------------------------------------------------


# (content type, the patch, a check of the result)
PATCHES: list[tuple[str, Any, Any]] = [
    (
        JSON_PATCH,
        [{"op": "add", "path": "/metadata/labels/tier", "value": "front"}],
        lambda p: p["metadata"]["labels"] == {"app": "web", "tier": "front"},
    ),
    (
        JSON_PATCH,
        [{"op": "replace", "path": "/spec/containers/0/image", "value": "nginx:1.28"}],
        lambda p: p["spec"]["containers"][0]["image"] == "nginx:1.28",
    ),
    (
        MERGE_PATCH,
        {"metadata": {"labels": {"app": None, "tier": "back"}}},
        lambda p: p["metadata"]["labels"] == {"tier": "back"},
    ),
    (
        STRATEGIC,
        {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}},
        # merged by name: the defaulted fields stay
        lambda p: (
            p["spec"]["containers"][0]["image"] == "nginx:2"
            and p["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
        ),
    ),
    (
        f"{MERGE_PATCH}; charset=utf-8",
        {"metadata": {"annotations": {"a": "b"}}},
        lambda p: p["metadata"]["annotations"] == {"a": "b"},
    ),
]


@pytest.mark.parametrize(("content_type", "patch", "check"), PATCHES)
def test_patch(api: Api, content_type: str, patch: Any, check: Any) -> None:
    created = create_pod(api)
    response = call(api, "PATCH", f"{PODS_PATH}/web", patch, headers={"Content-Type": content_type})
    assert response.status == 200, response.body
    patched = response.json()
    assert check(patched)
    assert int(patched["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    assert call(api, "GET", f"{PODS_PATH}/web").json() == patched


@pytest.mark.parametrize(
    "content_type",
    ["application/xml", "application/apply-patch+yaml", "text/plain", "application/json"],
)
def test_patch_unsupported_media_type(api: Api, content_type: str) -> None:
    create_pod(api)
    response = call(api, "PATCH", f"{PODS_PATH}/web", {}, headers={"Content-Type": content_type})
    status = assert_status(response, 415, "UnsupportedMediaType")
    assert "the body of the request was in an unknown format" in status["message"]


@pytest.mark.parametrize("content_type", [JSON_PATCH, MERGE_PATCH, STRATEGIC])
def test_patch_malformed_json(api: Api, content_type: str) -> None:
    create_pod(api)
    response = call(
        api, "PATCH", f"{PODS_PATH}/web", b"{not json", headers={"Content-Type": content_type}
    )
    assert_status(response, 400, "BadRequest")


def test_patch_errors(api: Api) -> None:
    create_pod(api)
    missing = call(api, "PATCH", f"{PODS_PATH}/nope", {}, headers={"Content-Type": MERGE_PATCH})
    assert_status(missing, 404, "NotFound", 'pods "nope" not found')
    failed_test = [{"op": "test", "path": "/metadata/name", "value": "other"}]
    response = call(
        api, "PATCH", f"{PODS_PATH}/web", failed_test, headers={"Content-Type": JSON_PATCH}
    )
    assert_status(response, 422, "Invalid")
    immutable = {"spec": {"restartPolicy": "Never"}}
    response = call(
        api, "PATCH", f"{PODS_PATH}/web", immutable, headers={"Content-Type": MERGE_PATCH}
    )
    status = assert_status(response, 422, "Invalid")
    assert status["details"]["causes"][0]["field"] == "spec"
    stale = {"metadata": {"resourceVersion": "1", "labels": {"x": "y"}}}
    response = call(api, "PATCH", f"{PODS_PATH}/web", stale, headers={"Content-Type": MERGE_PATCH})
    assert_status(response, 409, "Conflict")


# -- bodies and paths ---------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"{not json", b'{"metadata": ', b"\xff\xfe"])
def test_malformed_json_body(api: Api, body: bytes) -> None:
    status = assert_status(call(api, "POST", PODS_PATH, body), 400, "BadRequest")
    assert "not valid JSON" in status["message"]


@pytest.mark.parametrize("body", [b"[]", b'"pod"', b"null", b""])
def test_a_body_that_is_not_an_object(api: Api, body: bytes) -> None:
    response = call(api, "POST", PODS_PATH, body, headers={"Content-Type": "application/json"})
    assert_status(response, 400, "BadRequest")


def test_oversize_body(api: Api) -> None:
    connection = http.client.HTTPConnection(api.server.host, api.server.port, timeout=10)
    try:
        connection.putrequest("POST", PODS_PATH)
        connection.putheader("Authorization", f"Bearer {ADMIN}")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(MAX_BODY + 1))
        connection.endheaders(b'{"metadata": {"name": "big"}, "data": "')
        response = connection.getresponse()
        got = Response(response.status, response.headers, response.read())
    finally:
        connection.close()
    status = assert_status(got, 413, "RequestEntityTooLarge")
    assert str(MAX_BODY) in status["message"]


def test_a_body_at_the_limit_is_read(api: Api) -> None:
    body = {"metadata": {"name": "big"}, "data": {"x": "y" * (MAX_BODY - 100)}}
    data = json.dumps(body).encode()
    assert len(data) <= MAX_BODY
    response = call(api, "POST", "/api/v1/namespaces/default/configmaps", data)
    # too big for a config map, but read and judged: 422, not 413
    assert_status(response, 422, "Invalid")


@pytest.mark.parametrize("length", ["-1", "many"])
def test_a_bad_content_length(api: Api, length: str) -> None:
    connection = http.client.HTTPConnection(api.server.host, api.server.port, timeout=10)
    try:
        connection.putrequest("POST", PODS_PATH)
        connection.putheader("Authorization", f"Bearer {ADMIN}")
        connection.putheader("Content-Length", length)
        connection.endheaders()
        response = connection.getresponse()
        got = Response(response.status, response.headers, response.read())
    finally:
        connection.close()
    assert_status(got, 400, "BadRequest")


@pytest.mark.parametrize(
    "path",
    [
        "/nothing",
        "/api/v1/widgets",
        "/api/v1/namespaces/default/widgets",
        "/apis/apps/v1/namespaces/default/pods",
        "/api/v1/namespaces/default/pods/web/status/more",
        "/api/v1/namespaces/default/pods/web/nosuch",
        "/api/v1/namespaces/default/nodes",  # nodes have no namespace
        "/api/v1/pods/web",  # pods have one
    ],
)
def test_unknown_paths(api: Api, path: str) -> None:
    assert_status(
        call(api, "GET", path), 404, "NotFound", "the server could not find the requested resource"
    )


def raw(api: Api, data: bytes) -> Response:
    """What the server answers to bytes that are not a proper request."""
    with socket.create_connection((api.server.host, api.server.port), timeout=10) as sock:
        sock.sendall(data)
        response = http.client.HTTPResponse(sock)
        response.begin()
        try:
            return Response(response.status, response.headers, response.read())
        finally:
            response.close()


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"GET /api HTTP/1.1\r\n" + b"X-Many: 1\r\n" * 101 + b"\r\n", 431),
        (b"BREW /api/v1/pods HTTP/1.1\r\nHost: x\r\n\r\n", 501),
    ],
)
def test_http_errors_are_json_status(api: Api, data: bytes, code: int) -> None:
    response = raw(api, data)
    assert response.status == code
    assert response.content_type == "application/json"
    status = response.json()
    assert (status["kind"], status["code"]) == ("Status", code)


# Every kind of failure, each a Status with Content-Type application/json.
ERRORS: list[tuple[str, str, Any, dict[str, str], str | None, int]] = [
    ("GET", PODS_PATH, None, {}, None, 401),
    ("POST", PODS_PATH, pod("x"), {}, READER, 403),
    ("GET", "/nothing", None, {}, ADMIN, 404),
    ("GET", f"{PODS_PATH}/nope", None, {}, ADMIN, 404),
    ("POST", PODS_PATH, pod(), {}, ADMIN, 409),
    ("POST", PODS_PATH, pod("Bad"), {}, ADMIN, 422),
    ("POST", PODS_PATH, b"{", {}, ADMIN, 400),
    ("PATCH", f"{PODS_PATH}/web", {}, {"Content-Type": "application/xml"}, ADMIN, 415),
    ("PUT", "/api", {}, {}, ADMIN, 405),
    ("GET", f"{PODS_PATH}?watch=1&resourceVersion=abc", None, {}, ADMIN, 400),
    ("GET", f"{PODS_PATH}?watch=1&resourceVersion=abc", None, {"Accept": TABLE}, ADMIN, 400),
    ("GET", f"{PODS_PATH}/nope", None, {"Accept": TABLE}, ADMIN, 404),
]


@pytest.mark.parametrize(("method", "path", "body", "headers", "token", "code"), ERRORS)
def test_errors_are_json_status(
    api: Api,
    method: str,
    path: str,
    body: Any,
    headers: dict[str, str],
    token: str | None,
    code: int,
) -> None:
    create_pod(api)
    response = call(api, method, path, body, token=token, headers=headers)
    assert response.status == code
    assert response.content_type == "application/json"
    status = response.json()
    assert (status["kind"], status["code"], status["status"]) == ("Status", code, "Failure")
    assert status["reason"] and status["message"]


# -- watch ---------------------------------------------------------------------------------


class Stream:
    """A watch request whose response is read line by line."""

    def __init__(self, api: Api, path: str, headers: dict[str, str] | None = None) -> None:
        self.connection = http.client.HTTPConnection(api.server.host, api.server.port, timeout=10)
        self.connection.request(
            "GET", path, headers={"Authorization": f"Bearer {ADMIN}", **(headers or {})}
        )
        self.response = self.connection.getresponse()

    def event(self) -> Object:
        line = self.response.readline()
        assert line.endswith(b"\n"), f"the watch ended: {line!r}"
        event: Object = json.loads(line)
        return event

    def rest(self) -> bytes:
        return self.response.read()

    def close(self) -> None:
        self.response.close()
        self.connection.close()


@pytest.fixture
def streams() -> Iterator[list[Stream]]:
    opened: list[Stream] = []
    yield opened
    for stream in opened:
        stream.close()


def open_stream(streams: list[Stream], api: Api, path: str, **headers: str) -> Stream:
    stream = Stream(api, path, headers)
    streams.append(stream)
    return stream


def in_thread(work: Any) -> threading.Thread:
    thread = threading.Thread(target=work)
    thread.start()
    return thread


def test_watch(api: Api, streams: list[Stream]) -> None:
    version = api.backend.current_revision()
    started = time.monotonic()
    stream = open_stream(streams, api, f"{PODS_PATH}?watch=1&resourceVersion={version}")
    # the response starts at once, before any event
    assert time.monotonic() - started < 0.9
    assert stream.response.status == 200
    assert stream.response.getheader("Content-Type") == "application/json"
    assert stream.response.getheader("Transfer-Encoding") == "chunked"

    created: list[Object] = []

    def writer() -> None:
        created.append(create_pod(api))
        assert call(api, "DELETE", f"{PODS_PATH}/web").status == 200

    thread = in_thread(writer)
    added, deleted = stream.event(), stream.event()
    thread.join()
    assert added["type"] == "ADDED"
    assert added["object"] == created[0]
    assert deleted["type"] == "DELETED"
    assert deleted["object"]["metadata"]["name"] == "web"
    assert deleted["object"]["metadata"]["resourceVersion"] == str(api.backend.current_revision())


def test_watch_from_zero_lists_first(api: Api, streams: list[Stream]) -> None:
    create_pod(api, "a")
    stream = open_stream(streams, api, f"{PODS_PATH}?watch=true&resourceVersion=0")
    first = stream.event()
    assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "a")
    thread = in_thread(lambda: create_pod(api, "b"))
    second = stream.event()
    thread.join()
    assert (second["type"], second["object"]["metadata"]["name"]) == ("ADDED", "b")


def test_watch_with_a_label_selector(api: Api, streams: list[Stream]) -> None:
    version = api.backend.current_revision()
    selector = urllib.parse.quote("app=web")
    stream = open_stream(
        streams, api, f"{PODS_PATH}?watch=1&resourceVersion={version}&labelSelector={selector}"
    )
    create_pod(api, "db")
    create_pod(api, "web")
    event = stream.event()
    assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "web")


def test_watch_timeout_seconds_ends_it(api: Api, streams: list[Stream]) -> None:
    started = time.monotonic()
    stream = open_stream(streams, api, f"{PODS_PATH}?watch=1&resourceVersion=1&timeoutSeconds=1")
    assert stream.response.status == 200
    assert stream.rest() == b""  # the stream ends, cleanly, without an event
    assert 0.9 < time.monotonic() - started < 4


def test_watch_of_one_object_keeps_the_field_selector(api: Api, streams: list[Stream]) -> None:
    create_pod(api)
    stream = open_stream(
        streams,
        api,
        f"{PODS_PATH}/web?watch=1&resourceVersion=0&timeoutSeconds=1"
        "&fieldSelector=status.phase%3DRunning",
    )
    assert stream.rest() == b""  # web is Pending: nothing to send


def test_watch_as_table(api: Api, streams: list[Stream]) -> None:
    create_pod(api)
    stream = open_stream(streams, api, f"{PODS_PATH}?watch=1&resourceVersion=0", Accept=TABLE)
    event = stream.event()
    assert event["type"] == "ADDED"
    assert event["object"]["kind"] == "Table"
    assert event["object"]["rows"][0]["cells"][:3] == ["web", "0/1", "Pending"]


def test_watch_from_a_compacted_version(api: Api) -> None:
    create_pod(api, "a")
    create_pod(api, "b")
    api.backend.compact(api.backend.current_revision())
    response = call(api, "GET", f"{PODS_PATH}?watch=1&resourceVersion=1")
    status = assert_status(response, 410, "Expired")
    assert "too old resource version" in status["message"]


def test_stopping_the_server_ends_watches(streams: list[Stream]) -> None:
    registry, backend = fresh_registry()
    own = Api(ApiServer(registry, authenticator(), host="127.0.0.1", port=0), registry, backend)
    own.server.start()
    try:
        stream = open_stream(streams, own, f"{PODS_PATH}?watch=1&resourceVersion=1")
        assert stream.response.status == 200
        started = time.monotonic()
        own.server.stop()
        assert stream.rest() == b""
        assert time.monotonic() - started < 4
    finally:
        own.server.stop()
        backend.close()
