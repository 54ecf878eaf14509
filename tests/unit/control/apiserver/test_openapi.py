"""OpenAPI (control/apiserver/openapi.py): the /openapi/v3 index and group/version
documents kubectl validates and explains with, the /openapi/v2 stub, and strict field
validation (fieldValidation=Strict|Warn|Ignore), on their own and through the server."""

from __future__ import annotations

import copy
import hashlib
import http.client
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from control.apiserver import openapi
from control.apiserver.auth import ADMIN_GROUP, Authenticator, User
from control.apiserver.errors import ApiError
from control.apiserver.objects import Registry
from control.apiserver.openapi import (
    V2_CONTENT_TYPE,
    OpenApi,
    check_fields,
    go_quote,
    unknown_fields,
    warning_header,
)
from control.apiserver.resources import RESOURCES, ResourceType, by_kind, groups
from control.apiserver.server import ApiServer
from control.storage import MemoryBackend

SCHEMAS = "#/components/schemas/"


@pytest.fixture(scope="module")
def api() -> OpenApi:
    return OpenApi(RESOURCES)


def _gv_path(group_version: str) -> str:
    return f"apis/{group_version}" if "/" in group_version else f"api/{group_version}"


def _resource(api_version: str, kind: str) -> ResourceType:
    found = by_kind(api_version, kind)
    assert found is not None
    return found


def _pod() -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "containers": [{
                "name": "nginx", "image": "nginx:1.27", "imagePullPolicyy": "Always",
                "ports": [{"containerPort": 80}],
            }],
            "foo": 1,
        },
    }  # fmt: skip


def _deployment() -> dict[str, Any]:
    """A Deployment using much of the pod template: resources, probes, env valueFrom,
    volumes, affinity, security contexts, a rolling update with IntOrStrings, status."""
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": "web", "namespace": "default", "labels": {"app": "web"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "x", "uid": "u"}],
            "managedFields": [{"manager": "kubectl", "operation": "Update",
                               "fieldsV1": {"f:spec": {"f:replicas": {}}}}],
            "finalizers": ["a/b"], "creationTimestamp": "2025-01-01T00:00:00Z",
        },
        "spec": {
            "replicas": 3, "revisionHistoryLimit": 5, "progressDeadlineSeconds": 600,
            "selector": {"matchLabels": {"app": "web"},
                         "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": "web"}, "annotations": {"a": "b"}},
                "spec": {
                    "serviceAccountName": "default", "terminationGracePeriodSeconds": 30,
                    "securityContext": {"runAsNonRoot": True, "fsGroup": 2000,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "affinity": {"podAntiAffinity": {
                        "preferredDuringSchedulingIgnoredDuringExecution": [{
                            "weight": 100,
                            "podAffinityTerm": {
                                "topologyKey": "kubernetes.io/hostname",
                                "labelSelector": {"matchLabels": {"app": "web"}},
                            },
                        }],
                    }},
                    "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
                    "initContainers": [{"name": "init", "image": "busybox",
                                        "command": ["sh", "-c", "true"]}],
                    "containers": [{
                        "name": "nginx", "image": "nginx:1.27", "imagePullPolicy": "Always",
                        "args": ["-g", "daemon off;"], "workingDir": "/",
                        "ports": [{"containerPort": 80, "name": "http", "protocol": "TCP"}],
                        "env": [
                            {"name": "A", "value": "1"},
                            {"name": "POD",
                             "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                            {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                            {"name": "C",
                             "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}},
                            {"name": "L", "valueFrom": {"resourceFieldRef": {
                                "resource": "limits.cpu", "divisor": "1m"}}},
                        ],
                        "envFrom": [{"configMapRef": {"name": "c"}, "prefix": "C_"}],
                        "resources": {"limits": {"cpu": "500m", "memory": "128Mi"},
                                      "requests": {"cpu": 0.25, "memory": "64Mi"}},
                        "livenessProbe": {"httpGet": {"path": "/", "port": "http",
                                                      "httpHeaders": [{"name": "X", "value": "y"}]},
                                          "initialDelaySeconds": 3, "periodSeconds": 10},
                        "readinessProbe": {"tcpSocket": {"port": 80}, "failureThreshold": 3},
                        "startupProbe": {"exec": {"command": ["true"]}},
                        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "1"]}}},
                        "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True}],
                        "securityContext": {"allowPrivilegeEscalation": False,
                                            "capabilities": {"drop": ["ALL"]}},
                    }],
                    "volumes": [
                        {"name": "data", "emptyDir": {"sizeLimit": "1Gi"}},
                        {"name": "cfg", "configMap": {"name": "c",
                                                      "items": [{"key": "k", "path": "p"}]}},
                        {"name": "sec", "secret": {"secretName": "s", "defaultMode": 420}},
                    ],
                },
            },
        },
        "status": {"replicas": 3, "readyReplicas": 3, "observedGeneration": 1,
                   "conditions": [{"type": "Available", "status": "True",
                                   "lastUpdateTime": "2025-01-01T00:00:00Z"}]},
    }  # fmt: skip


# -- the index and the documents --------------------------------------------------------


def test_the_index_lists_every_served_group_version_with_its_documents_hash(api: OpenApi) -> None:
    index = api.index()
    assert set(index["paths"]) == {_gv_path(gv) for gv in groups()}
    for gv, entry in index["paths"].items():
        url = entry["serverRelativeURL"]
        assert url.startswith(f"/openapi/v3/{gv}?hash=")
        found = api.document(f"/openapi/v3/{gv}", {})
        assert found is not None
        data, content_type, _headers = found
        assert content_type == "application/json"
        assert url.endswith("hash=" + hashlib.sha256(data).hexdigest().upper())


def test_documents_are_built_once_and_quickly(api: OpenApi) -> None:
    first = api.document("/openapi/v3/api/v1", {})
    assert first is not None
    assert api.document("/openapi/v3/api/v1", {}) == first
    assert api.build_seconds < 5  # about 0.35 s here


def test_cache_headers(api: OpenApi) -> None:
    index = api.document("/openapi/v3", {})
    assert index is not None
    assert index[2]["Cache-Control"] == "no-cache, private"
    assert json.loads(index[0]) == api.index()
    url = api.index()["paths"]["apis/apps/v1"]["serverRelativeURL"]
    digest = url.split("hash=")[1]
    hashed = api.document("/openapi/v3/apis/apps/v1", {"hash": digest})
    assert hashed is not None
    assert hashed[2]["Cache-Control"] == "public, immutable"
    assert "Expires" in hashed[2]
    for query in ({}, {"hash": "0123"}):  # none, or outdated: serve it, but not for keeps
        other = api.document("/openapi/v3/apis/apps/v1", query)
        assert other is not None
        assert other[0] == hashed[0]
        assert other[2]["Cache-Control"] == "no-cache, private"


def test_unknown_paths_and_the_v2_stub(api: OpenApi) -> None:
    assert api.document("/openapi/v3/apis/nope/v1", {}) is None
    assert api.document("/openapi/v4", {}) is None
    assert api.document("/api/v1", {}) is None
    assert api.group_version("apis/nope/v1") is None
    # An empty protobuf Document: kubectl's client-side fallback finds no schema.
    assert api.document("/openapi/v2", {}) == (
        b"",
        V2_CONTENT_TYPE,
        {"Cache-Control": "no-cache, private"},
    )
    assert "@" not in V2_CONTENT_TYPE


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method != "parameters":
                yield path, method, operation


def test_every_kind_has_the_patch_operation_kubectl_looks_for(api: OpenApi) -> None:
    """kubectl's fieldValidation check: a PATCH op whose GVK is the object's and whose
    own `parameters` hold {name: fieldValidation, in: query}; no strategic merge patch
    in its request body (kubectl then uses its built-in patch metadata)."""
    for gv, types in groups().items():
        document = api.group_version(_gv_path(gv))
        assert document is not None
        assert document["openapi"].startswith("3.")
        for resource in types:
            gvk = {"group": resource.group, "version": resource.version, "kind": resource.kind}
            patches = [
                op for _path, method, op in _operations(document)
                if method == "patch" and op["x-kubernetes-group-version-kind"] == gvk
            ]  # fmt: skip
            assert patches, resource.kind
            for op in patches:
                assert {"name": "fieldValidation", "in": "query"}.items() <= next(
                    p for p in op["parameters"] if p["name"] == "fieldValidation"
                ).items()
                content = op["requestBody"]["content"]
                assert "application/strategic-merge-patch+json" not in content
                assert "application/merge-patch+json" in content


def test_paths_of_namespaced_and_cluster_kinds(api: OpenApi) -> None:
    core = api.group_version("api/v1")
    assert core is not None
    pod = core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]
    assert set(pod) == {"get", "put", "patch", "delete", "parameters"}
    assert pod["get"]["operationId"] == "readCoreV1NamespacedPod"
    assert {p["name"] for p in pod["parameters"]} >= {"name", "namespace"}
    assert set(core["paths"]["/api/v1/namespaces/{namespace}/pods"]) >= {"get", "post"}
    assert core["paths"]["/api/v1/pods"]["get"]["operationId"] == "listCoreV1PodForAllNamespaces"
    assert "/api/v1/namespaces/{namespace}/pods/{name}/status" in core["paths"]
    assert set(core["paths"]["/api/v1/nodes/{name}"]) >= {"get", "put", "patch", "delete"}
    assert "/api/v1/namespaces/{name}" in core["paths"]
    for _path, method, op in _operations(core):
        assert "x-kubernetes-group-version-kind" in op
        if method in ("post", "put", "patch"):
            assert "fieldValidation" in {p["name"] for p in op["parameters"]}
    apps = api.group_version("apis/apps/v1")
    assert apps is not None
    assert "/apis/apps/v1/namespaces/{namespace}/deployments/{name}" in apps["paths"]


def test_kind_schemas_carry_their_gvk_as_a_list(api: OpenApi) -> None:
    for gv, types in groups().items():
        document = api.group_version(_gv_path(gv))
        assert document is not None
        schemas = document["components"]["schemas"]
        for resource in types:
            gvk = {"group": resource.group, "version": resource.version, "kind": resource.kind}
            tagged = [
                s for s in schemas.values() if gvk in s.get("x-kubernetes-group-version-kind", [])
            ]
            assert len(tagged) == 1, resource.kind
            assert tagged[0]["properties"].keys() >= {"apiVersion", "kind", "metadata"}
            assert tagged[0]["description"]


def test_every_reference_resolves_in_its_document(api: OpenApi) -> None:
    def refs(value: Any) -> Iterator[str]:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "$ref":
                    yield item
                else:
                    yield from refs(item)
        elif isinstance(value, list):
            for item in value:
                yield from refs(item)

    for gv in api.index()["paths"]:
        document = api.group_version(gv)
        assert document is not None
        names = set(document["components"]["schemas"])
        targets = set(refs(document))
        assert targets, gv
        for target in targets:
            assert target.startswith(SCHEMAS)
            assert target[len(SCHEMAS) :] in names, (gv, target)


def test_pod_schema(api: OpenApi) -> None:
    document = api.group_version("api/v1")
    assert document is not None
    schemas = document["components"]["schemas"]
    pod = schemas["io.k8s.api.core.v1.Pod"]
    gvk = {"group": "", "version": "v1", "kind": "Pod"}
    assert pod["x-kubernetes-group-version-kind"] == [gvk]
    assert pod["properties"]["spec"]["allOf"] == [{"$ref": SCHEMAS + "io.k8s.api.core.v1.PodSpec"}]
    assert pod["properties"]["spec"]["description"]
    assert pod["properties"]["metadata"]["allOf"] == [
        {"$ref": SCHEMAS + "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    ]
    spec = schemas["io.k8s.api.core.v1.PodSpec"]
    containers = spec["properties"]["containers"]
    assert containers["type"] == "array"
    assert containers["items"] == {"$ref": SCHEMAS + "io.k8s.api.core.v1.Container"}
    assert "containers" in spec["required"]
    assert spec["properties"]["restartPolicy"]["type"] == "string"
    assert spec["properties"]["restartPolicy"]["description"].startswith("Restart policy")
    assert spec["properties"]["terminationGracePeriodSeconds"]["type"] == "integer"
    container = schemas["io.k8s.api.core.v1.Container"]
    assert container["required"] == ["name"]
    assert "imagePullPolicy" in container["properties"]
    limits = schemas["io.k8s.api.core.v1.ResourceRequirements"]["properties"]["limits"]
    assert limits["additionalProperties"] == {"$ref": SCHEMAS + openapi.QUANTITY}
    assert {"type": "string"} in schemas[openapi.QUANTITY]["oneOf"]
    port = schemas["io.k8s.api.core.v1.HTTPGetAction"]["properties"]["port"]
    assert port["allOf"] == [{"$ref": SCHEMAS + openapi.INT_OR_STRING}]
    assert schemas[openapi.INT_OR_STRING]["format"] == "int-or-string"
    meta = schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]
    assert meta["labels"] == {
        "type": "object", "additionalProperties": {"type": "string"},
        "description": meta["labels"]["description"],
    }  # fmt: skip
    assert meta["creationTimestamp"]["allOf"] == [{"$ref": SCHEMAS + openapi.TIME}]
    assert schemas[openapi.TIME]["type"] == "string"
    assert schemas[openapi.TIME]["format"] == "date-time"
    fields_v1 = schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ManagedFieldsEntry"]["properties"]
    assert fields_v1["fieldsV1"]["x-kubernetes-preserve-unknown-fields"] is True
    assert schemas["io.k8s.api.core.v1.PodList"]["x-kubernetes-group-version-kind"] == [
        {"group": "", "version": "v1", "kind": "PodList"}
    ]


def test_apps_schemas_use_the_core_names_of_core_types(api: OpenApi) -> None:
    document = api.group_version("apis/apps/v1")
    assert document is not None
    schemas = document["components"]["schemas"]
    spec = schemas["io.k8s.api.apps.v1.DeploymentSpec"]
    assert spec["properties"]["template"]["allOf"] == [
        {"$ref": SCHEMAS + "io.k8s.api.core.v1.PodTemplateSpec"}
    ]
    assert set(spec["required"]) == {"selector", "template"}
    rolling = schemas["io.k8s.api.apps.v1.RollingUpdateDeployment"]["properties"]
    assert rolling["maxSurge"]["allOf"] == [{"$ref": SCHEMAS + openapi.INT_OR_STRING}]
    assert "io.k8s.api.core.v1.Container" in schemas
    lease = api.group_version("apis/coordination.k8s.io/v1")
    assert lease is not None
    lease_spec = lease["components"]["schemas"]["io.k8s.api.coordination.v1.LeaseSpec"]
    renew_time = lease_spec["properties"]["renewTime"]
    assert renew_time["allOf"] == [{"$ref": SCHEMAS + openapi.MICRO_TIME}]


# -- unknown fields ---------------------------------------------------------------------


def test_unknown_fields_of_a_pod() -> None:
    assert unknown_fields("v1", "Pod", _pod()) == [
        "spec.containers[0].imagePullPolicyy",
        "spec.foo",
    ]


def test_unknown_fields_of_a_deployment() -> None:
    deployment = _deployment()
    assert unknown_fields("apps/v1", "Deployment", deployment) == []
    spec = deployment["spec"]
    spec["replicaz"] = 2
    deployment["metadata"]["labelz"] = {}
    deployment["status"]["foo"] = 1
    pod = spec["template"]["spec"]
    pod["containers"][0]["resources"]["limitz"] = {}
    pod["containers"][0]["env"][2]["valueFrom"]["secretKeyReff"] = {}
    pod["containers"][0]["livenessProbe"]["httpGet"]["httpHeaders"][0]["x"] = 1
    pod["volumes"][1]["configMap"]["items"][0]["mode "] = 1
    spec["strategy"]["rollingUpdate"]["maxSurge"] = {"odd": 1}  # a wrong type: not a field
    assert unknown_fields("apps/v1", "Deployment", deployment) == [
        "metadata.labelz",
        "spec.template.spec.containers[0].env[2].valueFrom.secretKeyReff",
        "spec.template.spec.containers[0].resources.limitz",
        "spec.template.spec.containers[0].livenessProbe.httpGet.httpHeaders[0].x",
        "spec.template.spec.volumes[1].configMap.items[0].mode ",
        "spec.replicaz",
        "status.foo",
    ]


def test_unknown_fields_are_case_sensitive_and_keys_of_maps_are_free() -> None:
    pod = {"metadata": {"Name": "x", "labels": {"anything": "goes"}},
           "spec": {"containers": [{"name": "c", "Image": "x",
                                    "resources": {"limits": {"example.com/gpu": 1}}}],
                    "nodeSelector": {"any": "key"}}}  # fmt: skip
    assert unknown_fields("v1", "Pod", pod) == ["metadata.Name", "spec.containers[0].Image"]


def test_unknown_fields_of_other_kinds() -> None:
    assert unknown_fields("v1", "ConfigMap", {"data": {"k": "v"}, "datta": {}}) == ["datta"]
    assert unknown_fields("v1", "Event", {"eventTime": None, "involvedObject": {"x": 1}}) == [
        "involvedObject.x"
    ]
    assert unknown_fields("coordination.k8s.io/v1", "Lease", {"spec": {"holder": "a"}}) == [
        "spec.holder"
    ]
    service = {"spec": {"ports": [{"port": 80, "targetPort": "http"}]}}
    assert unknown_fields("v1", "Service", service) == []
    assert unknown_fields("example.com/v1", "Widget", {"anything": 1}) == []


def test_the_objects_given_are_left_alone_by_unknown_fields() -> None:
    deployment = _deployment()
    deployment["spec"]["x"] = 1
    before = copy.deepcopy(deployment)
    unknown_fields("apps/v1", "Deployment", deployment)
    assert deployment == before


# -- check_fields -----------------------------------------------------------------------


POD = _resource("v1", "Pod")
STRICT_MESSAGE = (
    'Pod in version "v1" cannot be handled as a Pod: strict decoding error: '
    'unknown field "spec.containers[0].imagePullPolicyy", unknown field "spec.foo"'
)


def test_strict_is_a_bad_request_naming_every_unknown_field() -> None:
    pod = _pod()
    with pytest.raises(ApiError) as caught:
        check_fields("Strict", POD, pod)
    assert (caught.value.code, caught.value.reason) == (400, "BadRequest")
    assert caught.value.message == STRICT_MESSAGE
    assert pod == _pod()  # untouched
    deployment = _deployment()
    deployment["spec"]["foo"] = 1
    message = (
        '^Deployment in version "v1" cannot be handled as a Deployment: strict decoding '
        'error: unknown field "spec.foo"$'
    )
    with pytest.raises(ApiError, match=message):
        check_fields("Strict", _resource("apps/v1", "Deployment"), deployment)


def test_strict_accepts_a_correct_object_unchanged() -> None:
    deployment = _deployment()
    assert check_fields("Strict", _resource("apps/v1", "Deployment"), deployment) == []
    assert deployment == _deployment()


def test_warn_drops_the_unknown_fields_with_one_warning_each() -> None:
    pod = _pod()
    warnings = check_fields("Warn", POD, pod)
    assert warnings == [
        'unknown field "spec.containers[0].imagePullPolicyy"',
        'unknown field "spec.foo"',
    ]
    expected = _pod()
    del expected["spec"]["foo"], expected["spec"]["containers"][0]["imagePullPolicyy"]
    assert pod == expected
    assert [warning_header(w) for w in warnings] == [
        '299 - "unknown field \\"spec.containers[0].imagePullPolicyy\\""',
        '299 - "unknown field \\"spec.foo\\""',
    ]


def test_no_parameter_means_warn() -> None:
    assert openapi.DEFAULT_FIELD_VALIDATION == "Warn"
    pod = _pod()
    assert len(check_fields("", POD, pod)) == 2
    assert "foo" not in pod["spec"]


def test_ignore_drops_them_silently() -> None:
    pod = _pod()
    assert check_fields("Ignore", POD, pod) == []
    assert unknown_fields("v1", "Pod", pod) == []
    assert pod["spec"]["containers"][0]["image"] == "nginx:1.27"


@pytest.mark.parametrize("mode", ["strict", "warn", "IGNORE", "None", "Strict "])
def test_other_modes_are_invalid_options(mode: str) -> None:
    with pytest.raises(ApiError) as caught:
        check_fields(mode, POD, {"spec": {}}, verb="update")
    error = caught.value
    assert (error.code, error.reason) == (422, "Invalid")
    assert error.message == (
        f'UpdateOptions.meta.k8s.io "" is invalid: fieldValidation: Unsupported value: '
        f'"{mode}": supported values: "", "Ignore", "Strict", "Warn"'
    )
    assert error.status()["details"]["kind"] == "UpdateOptions"
    with pytest.raises(ApiError, match="^CreateOptions.meta.k8s.io"):
        check_fields(mode, POD, {})
    with pytest.raises(ApiError, match="^PatchOptions.meta.k8s.io"):
        check_fields(mode, POD, {}, verb="patch")


def test_strict_reports_at_most_a_hundred() -> None:
    obj: dict[str, Any] = {"spec": {f"f{i}": i for i in range(150)}}
    with pytest.raises(ApiError) as caught:
        check_fields("Strict", POD, obj)
    assert caught.value.message.count("unknown field") == 100


def test_quoting_as_go_does() -> None:
    assert go_quote('a"b\\c') == '"a\\"b\\\\c"'
    assert go_quote("a\nb\x01\x7f") == '"a\\nb\\x01\\x7f"'
    assert go_quote("ünï") == '"ünï"'
    header = warning_header("unknown field " + go_quote("spec.x\r\nInjected: 1"))
    assert "\r" not in header and "\n" not in header
    assert warning_header("ü").encode("latin-1") == '299 - "ü"'.encode()
    assert "\n" not in warning_header("a\nSet-Cookie: x")


# -- through the server -----------------------------------------------------------------


TOKEN = "test-token"


@pytest.fixture(scope="module")
def server() -> Iterator[ApiServer]:
    from control.apiserver.main import bootstrap

    registry = Registry(MemoryBackend(), clock=time.time)
    bootstrap(registry)
    users = {TOKEN: User("admin", "", (ADMIN_GROUP,))}
    api_server = ApiServer(registry, Authenticator(users), port=0)
    api_server.start()
    yield api_server
    api_server.stop()


def _request(
    server: ApiServer,
    method: str,
    path: str,
    body: Any = None,
    content_type: str = "application/json",
) -> tuple[int, http.client.HTTPMessage, bytes]:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": content_type}
        data = None if body is None else json.dumps(body).encode()
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def test_server_serves_the_openapi_documents(server: ApiServer) -> None:
    status, headers, data = _request(server, "GET", "/openapi/v3")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert headers.get_all("Cache-Control") == ["no-cache, private"]
    url = json.loads(data)["paths"]["api/v1"]["serverRelativeURL"]
    status, headers, data = _request(server, "GET", url)
    assert status == 200
    assert headers.get_all("Cache-Control") == ["public, immutable"]
    assert "/api/v1/namespaces/{namespace}/pods/{name}" in json.loads(data)["paths"]
    status, headers, data = _request(server, "GET", "/openapi/v2?timeout=32s")
    assert (status, headers["Content-Type"], data) == (200, V2_CONTENT_TYPE, b"")
    status, _headers, data = _request(server, "GET", "/openapi/v3/apis/nope/v1")
    assert status == 404
    assert json.loads(data)["reason"] == "NotFound"
    status, _headers, _data = _request(server, "POST", "/openapi/v3", {})
    assert status == 405


def test_server_applies_field_validation(server: ApiServer) -> None:
    pods = "/api/v1/namespaces/default/pods"
    status, _headers, data = _request(server, "POST", pods + "?fieldValidation=Strict", _pod())
    assert status == 400
    assert json.loads(data)["message"] == STRICT_MESSAGE
    assert _request(server, "GET", pods + "/web")[0] == 404

    status, _headers, data = _request(server, "POST", pods + "?fieldValidation=Bad", _pod())
    assert (status, json.loads(data)["reason"]) == (422, "Invalid")

    status, headers, data = _request(server, "POST", pods, _pod())  # no parameter: Warn
    assert status == 201
    assert headers.get_all("Warning") == [
        '299 - "unknown field \\"spec.containers[0].imagePullPolicyy\\""',
        '299 - "unknown field \\"spec.foo\\""',
    ]
    stored = json.loads(data)
    assert "foo" not in stored["spec"]
    assert "imagePullPolicyy" not in stored["spec"]["containers"][0]

    patch = {"spec": {"activeDeadlineSeconds": 5, "bar": 1}}
    status, _headers, data = _request(
        server, "PATCH", pods + "/web?fieldValidation=Strict", patch,
        "application/merge-patch+json",
    )  # fmt: skip
    assert status == 400
    assert 'unknown field "spec.bar"' in json.loads(data)["message"]
    status, headers, data = _request(
        server, "PATCH", pods + "/web?fieldValidation=Ignore", patch,
        "application/merge-patch+json",
    )  # fmt: skip
    assert status == 200
    assert headers.get_all("Warning") is None
    assert "bar" not in json.loads(data)["spec"]
    assert json.loads(data)["spec"]["activeDeadlineSeconds"] == 5

    current = json.loads(_request(server, "GET", pods + "/web")[2])
    current["metadata"]["labelz"] = {"a": "b"}
    status, headers, _data = _request(server, "PUT", pods + "/web?fieldValidation=Warn", current)
    assert status == 200
    assert headers.get_all("Warning") == ['299 - "unknown field \\"metadata.labelz\\""']
    # The next response on a new request carries no stale warnings.
    status, headers, _data = _request(server, "GET", pods + "/web")
    assert (status, headers.get_all("Warning")) == (200, None)


# -- kubectl (optional) -----------------------------------------------------------------

KUBECTL = shutil.which("kubectl.1.32", path="/usr/lib/google-cloud-sdk/bin")


@pytest.mark.skipif(KUBECTL is None, reason="no kubectl 1.32")
def test_kubectl_validates_through_the_server_and_explains(tmp_path: Path) -> None:
    from control.apiserver.main import start

    api_server, kubeconfig = start(tmp_path / "data", MemoryBackend(), port=0)
    assert KUBECTL is not None
    try:
        manifest = tmp_path / "pod.yaml"
        manifest.write_text(json.dumps(_pod()))
        env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        env["KUBECACHEDIR"] = str(tmp_path / "cache")

        def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [KUBECTL, *args], env=env, capture_output=True, text=True, timeout=60
            )

        strict = kubectl("create", "-f", str(manifest))
        assert strict.returncode == 1, strict
        assert strict.stderr.strip() == (
            f'Error from server (BadRequest): error when creating "{manifest}": {STRICT_MESSAGE}'
        )
        warn = kubectl("apply", "-f", str(manifest), "--validate=warn")
        assert warn.returncode == 0, warn
        assert 'Warning: unknown field "spec.foo"' in warn.stderr
        explain = kubectl("explain", "pods.spec.containers")
        assert explain.returncode == 0, explain
        assert "FIELD: containers <[]Container>" in explain.stdout
        assert "imagePullPolicy\t<string>" in explain.stdout
    finally:
        api_server.stop()
