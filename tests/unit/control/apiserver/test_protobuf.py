"""Protobuf request bodies (control/apiserver/protobuf.py, protobuf_schema.py): messages
encoded here by hand, field by field, as the Go encoder writes them (every non-pointer
field, empty or not), decoded into the JSON a JSON body would give; malformed bodies
into errors that name the message and field; and the server taking them on POST, PUT
and DELETE."""

from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest

from control.apiserver import protobuf
from control.apiserver.auth import ADMIN_GROUP, Authenticator, Rule, User
from control.apiserver.errors import ApiError
from control.apiserver.objects import Registry
from control.apiserver.protobuf import DecodeError, UnsupportedKind, decode
from control.apiserver.protobuf_schema import MESSAGES, ROOTS, parse_table
from control.apiserver.resources import lookup
from control.apiserver.server import ApiServer
from control.storage import MemoryBackend

# -- a small encoder ---------------------------------------------------------------


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative numbers: 10 bytes of two's complement, as Go sends
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def key(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def num(number: int, value: int | bool) -> bytes:
    return key(number, 0) + varint(int(value))


def text(number: int, value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return key(number, 2) + varint(len(data)) + data


def msg(number: int, *fields: bytes) -> bytes:
    return text(number, b"".join(fields))


def entry(number: int, map_key: str, value: str | bytes) -> bytes:
    return msg(number, text(1, map_key), text(2, value))


def envelope(api_version: str, kind: str, *fields: bytes) -> bytes:
    return protobuf.MAGIC + msg(1, text(1, api_version), text(2, kind)) + msg(2, *fields)


def go_meta(name: str, namespace: str = "", **labels: str) -> bytes:
    """ObjectMeta as Go writes a new object's: the empty strings, generation 0 and the
    zero creationTimestamp (an empty Time) included."""
    return msg(
        1, text(1, name), text(2, ""), text(3, namespace), text(4, ""), text(5, ""),
        text(6, ""), num(7, 0), msg(8),
        *(entry(11, k, v) for k, v in labels.items()),
    )  # fmt: skip


def quantity(number: int, value: str) -> bytes:
    return msg(number, text(1, value))


def int_or_string(number: int, value: int | str) -> bytes:
    if isinstance(value, int):
        return msg(number, num(1, 0), num(2, value), text(3, ""))
    return msg(number, num(1, 1), num(2, 0), text(3, value))


def container(name: str, image: str, *extra: bytes) -> bytes:
    """A Container as Go writes it: its non-pointer fields at their zero values."""
    return b"".join((
        text(1, name), text(2, image), text(5, ""), msg(8), text(13, ""), text(14, ""),
        num(16, False), num(17, False), num(18, False), text(20, ""), *extra,
    ))  # fmt: skip


# -- objects --------------------------------------------------------------------------


def test_namespace_as_kubectl_create_namespace_sends_it() -> None:
    body = envelope("v1", "Namespace", go_meta("foo"), msg(2), msg(3, text(1, "")))
    assert decode(body) == {
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "foo", "creationTimestamp": None},  # a zero Time: null
        "spec": {}, "status": {},
    }  # fmt: skip


def test_configmap_and_secret_maps() -> None:
    configmap = envelope(
        "v1", "ConfigMap", go_meta("x", "default"),
        entry(2, "a", "b"), entry(2, "c", "d\n"), entry(3, "blob", b"\x00\xff"),
    )  # fmt: skip
    assert decode(configmap) == {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "x", "namespace": "default", "creationTimestamp": None},
        "data": {"a": "b", "c": "d\n"}, "binaryData": {"blob": "AP8="},
    }  # fmt: skip
    secret = envelope(
        "v1", "Secret", go_meta("s", "default"),
        entry(2, "password", b"p@ss w"), entry(2, "empty", b""), text(3, "Opaque"),
    )  # fmt: skip
    decoded = decode(secret)
    assert decoded["data"] == {"password": base64.b64encode(b"p@ss w").decode(), "empty": ""}
    assert decoded["type"] == "Opaque"
    assert "immutable" not in decoded  # a pointer Go left nil: not on the wire


def test_deployment_as_kubectl_create_deployment_sends_it() -> None:
    template_spec = msg(
        2, msg(2, container("busybox", "busybox:1.36", msg(6, text(1, ""), num(2, 0),
                                                           num(3, 8080), text(4, ""),
                                                           text(5, "")))),
        text(3, ""), text(6, ""), text(8, ""), text(9, ""), text(10, ""), num(11, False),
        num(12, False), num(13, False), text(16, ""), text(17, ""), text(19, ""), text(24, ""),
    )  # fmt: skip
    body = envelope(
        "apps/v1", "Deployment", go_meta("web", "default", app="web"),
        msg(2, num(1, 2), msg(2, entry(1, "app", "web")),
            msg(3, go_meta("", app="web"), template_spec), msg(4, text(1, "")), num(5, 0),
            num(7, False)),
        msg(3, num(1, 0), num(2, 0), num(3, 0), num(4, 0), num(5, 0), num(7, 0)),
    )  # fmt: skip
    assert decode(body) == {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "creationTimestamp": None,
                     "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"creationTimestamp": None, "labels": {"app": "web"}},
                "spec": {"containers": [{
                    "name": "busybox", "image": "busybox:1.36",
                    "ports": [{"containerPort": 8080}], "resources": {},
                }]},
            },
            "strategy": {},
        },
        "status": {},
    }  # fmt: skip


def test_pointer_zeros_are_kept_and_omitempty_zeros_dropped() -> None:
    spec = msg(
        2, num(1, 0), msg(4, text(1, "RollingUpdate"), msg(2, int_or_string(1, 0),
                                                        int_or_string(2, "25%"))),
        num(5, 0), num(6, 0), num(9, 0),
    )  # fmt: skip
    decoded = decode(envelope("apps/v1", "Deployment", go_meta("web", "default"), spec))
    assert decoded["spec"] == {
        "replicas": 0,  # *int32 set to 0: scaled to zero, not unset
        "strategy": {"type": "RollingUpdate",
                     "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
        "revisionHistoryLimit": 0, "progressDeadlineSeconds": 0,
    }  # fmt: skip


def test_pod_volumes_probes_and_security_context() -> None:
    probe = msg(
        10, msg(1, msg(2, text(1, "/healthz"), int_or_string(2, "http"), text(3, ""),
                       text(4, "HTTP"))),
        num(2, 3), num(3, 0), num(4, 10), num(5, 0), num(6, 0),
    )  # fmt: skip
    spec = msg(
        2,
        msg(1, text(1, "scratch"), msg(2, msg(2, text(1, "Memory"), quantity(2, "64Mi")))),
        msg(1, text(1, "config"), msg(2, msg(19, msg(1, text(1, "settings")), num(3, 0o644),
                                             num(4, True)))),
        msg(2, container(
            "web", "nginx",
            msg(7, text(1, "MODE"), text(2, "prod")),
            msg(7, text(1, "NODE"), text(2, ""),
                msg(3, msg(1, text(1, "v1"), text(2, "spec.nodeName")))),
            msg(8, msg(1, text(1, "cpu")), msg(2, text(1, "memory"), quantity(2, "128Mi"))),
            msg(9, text(1, "config"), num(2, True), text(3, "/etc/app"), text(4, "")),
            probe,
            msg(15, num(4, 0), num(5, True), msg(1, text(1, "NET_ADMIN"), text(2, "ALL"))),
        )),
        text(3, "OnFailure"), num(4, 0), num(21, False), num(11, False),
        msg(14, num(2, -1), text(4, varint(5) + varint(300) + varint(7)), num(4, 9)),
        msg(22, text(1, "k"), text(2, "Exists"), text(3, ""), text(4, "NoExecute"), num(5, -5)),
    )  # fmt: skip
    pod = decode(envelope("v1", "Pod", go_meta("web", "default"), spec))
    assert pod["spec"]["volumes"] == [
        {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
        {"name": "config", "configMap": {"name": "settings", "defaultMode": 0o644,
                                         "optional": True}},
    ]  # fmt: skip
    web = pod["spec"]["containers"][0]
    assert web["env"] == [
        {"name": "MODE", "value": "prod"},
        {"name": "NODE", "valueFrom": {"fieldRef": {"apiVersion": "v1",
                                                    "fieldPath": "spec.nodeName"}}},
    ]  # fmt: skip
    # A map entry without its value: the zero Quantity, "0".
    assert web["resources"] == {"limits": {"cpu": "0"}, "requests": {"memory": "128Mi"}}
    assert web["volumeMounts"] == [{"name": "config", "readOnly": True, "mountPath": "/etc/app"}]
    assert web["livenessProbe"] == {  # ProbeHandler's fields inline, as in JSON
        "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},  # host "": omitempty
        "initialDelaySeconds": 3, "periodSeconds": 10,
    }  # fmt: skip
    assert web["securityContext"] == {
        "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
        "runAsUser": 0, "runAsNonRoot": True,
    }  # fmt: skip
    assert pod["spec"]["restartPolicy"] == "OnFailure"
    assert pod["spec"]["terminationGracePeriodSeconds"] == 0
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert "hostNetwork" not in pod["spec"]
    # Negative numbers (10-byte varints) and a repeated int64 both packed and not.
    assert pod["spec"]["securityContext"] == {"runAsUser": -1, "supplementalGroups": [5, 300, 7, 9]}
    assert pod["spec"]["tolerations"] == [
        {"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": -5}
    ]


def test_times() -> None:
    meta = msg(
        1, text(1, "n1"), msg(8, num(1, 1_700_000_000), num(2, 999_000_000)),
        msg(9, num(1, 0), num(2, 0)),  # 1970 exactly: a time, not the zero one
    )  # fmt: skip
    lease = envelope(
        "coordination.k8s.io/v1", "Lease", meta,
        msg(2, text(1, "node-1"), num(2, 40), msg(4, num(1, 1_700_000_000), num(2, 123_456_789)),
            msg(3)),
    )  # fmt: skip
    decoded = decode(lease)
    assert decoded["metadata"] == {
        "name": "n1", "creationTimestamp": "2023-11-14T22:13:20Z",
        "deletionTimestamp": "1970-01-01T00:00:00Z",
    }  # fmt: skip
    # MicroTime keeps microseconds; an empty (zero) one is null.
    assert decoded["spec"] == {
        "holderIdentity": "node-1", "leaseDurationSeconds": 40, "acquireTime": None,
        "renewTime": "2023-11-14T22:13:20.123456Z",
    }  # fmt: skip
    go_zero = msg(8, num(1, -62135596800), num(2, 0))
    assert decode(envelope("v1", "Namespace", msg(1, text(1, "a"), go_zero)))["metadata"] == {
        "name": "a", "creationTimestamp": None,
    }  # fmt: skip


def test_service_ports() -> None:
    port = msg(1, text(1, "80-8080"), text(2, "TCP"), num(3, 80), int_or_string(4, 8080), num(5, 0))
    bare = msg(1, text(1, ""), text(2, ""), num(3, 443), int_or_string(4, 0), num(5, 0))
    spec = msg(2, port, bare, entry(2, "app", "web"), text(3, ""), text(4, "ClusterIP"))
    decoded = decode(envelope("v1", "Service", go_meta("web", "default"), spec, msg(3, msg(1))))
    # The zero targetPort is left out, so that defaulting sets it to the port.
    assert decoded["spec"] == {
        "ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080},
                  {"port": 443}],
        "selector": {"app": "web"}, "type": "ClusterIP",
    }  # fmt: skip
    assert decoded["status"] == {"loadBalancer": {}}


def test_eviction_and_delete_options() -> None:
    options = (num(1, 0), msg(2, text(1, "uid-1")), text(4, "Foreground"), text(5, "All"))
    eviction = decode(envelope("policy/v1", "Eviction", go_meta("web", "default"),
                               msg(2, *options)))  # fmt: skip
    assert eviction["deleteOptions"] == {
        "gracePeriodSeconds": 0, "preconditions": {"uid": "uid-1"},
        "propagationPolicy": "Foreground", "dryRun": ["All"],
    }  # fmt: skip
    for version in ("v1", "apps/v1", "meta.k8s.io/v1"):
        decoded = protobuf.MAGIC + msg(1, text(1, version), text(2, "DeleteOptions"))
        decoded += msg(2, num(1, 30))
        assert decode(decoded) == {
            "apiVersion": version, "kind": "DeleteOptions", "gracePeriodSeconds": 30,
        }  # fmt: skip


def test_a_message_sent_twice_merges() -> None:
    body = envelope("v1", "ConfigMap", msg(1, text(1, "x")), msg(1, entry(11, "a", "1")),
                    entry(2, "k", "1"), entry(2, "k", "2"))  # fmt: skip
    assert decode(body) == {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "x", "labels": {"a": "1"}}, "data": {"k": "2"},
    }  # fmt: skip


def test_managed_fields_raw_json() -> None:
    raw = b'{"f:data":{"f:a":{}}}'
    meta = msg(1, text(1, "x"), msg(17, text(1, "kubectl"), text(2, "Update"),
                                    text(6, "FieldsV1"), msg(7, text(1, raw))))  # fmt: skip
    decoded = decode(envelope("v1", "ConfigMap", meta))
    assert decoded["metadata"]["managedFields"] == [
        {"manager": "kubectl", "operation": "Update", "fieldsType": "FieldsV1",
         "fieldsV1": {"f:data": {"f:a": {}}}}
    ]  # fmt: skip


# -- malformed bodies -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"kind": "Namespace"}', "k8s\\x00"),
        (protobuf.MAGIC + b"\x0a", "truncated varint"),
        (envelope("v1", "Namespace", b"\x0a\x80"), "truncated varint"),
        (envelope("v1", "Namespace", b"\x0a\x05ab"), "length 5 runs past the end"),
        (envelope("v1", "Namespace", b"\x08" + b"\xff" * 10 + b"\x01"), "longer than 10 bytes"),
        (
            envelope("v1", "Namespace", msg(1, text(99, "x"))),
            "at metadata: meta.v1.ObjectMeta has no field 99",
        ),
        (
            envelope("v1", "Pod", msg(2, num(3, 1))),
            "at spec: core.v1.PodSpec field 3 (restartPolicy): wire type varint, expected "
            "length-delimited",
        ),
        (
            envelope("v1", "Pod", msg(2, msg(2, text(1, "a")), msg(2, text(1, "b"), text(77, "")))),
            "at spec.containers[1]: core.v1.Container has no field 77",
        ),
        (
            envelope("v1", "Pod", msg(2, msg(2, key(2, 1) + b"\x00" * 8))),
            "core.v1.Container field 2 (image): wire type 64-bit",
        ),
        (
            envelope("v1", "Pod", msg(2, msg(2, key(1, 5) + b"\x00" * 4))),
            "core.v1.Container field 1 (name): wire type 32-bit",
        ),
        (envelope("v1", "Pod", msg(2, key(2, 3))), "unsupported wire type 3"),
        (envelope("v1", "Namespace", msg(1, text(1, b"\xff\xfe"))), "is not UTF-8"),
        (envelope("v1", "Namespace", b"\x00\x01"), "field number 0"),
        (
            envelope("v1", "Service", msg(2, msg(1, msg(4, num(1, 2))))),
            "at spec.ports[0].targetPort: intstr.IntOrString: type 2 is neither",
        ),
        (
            envelope("v1", "Namespace", msg(1, msg(8, num(1, 5), num(2, 1_000_000_000)))),
            "nanos 1000000000 is out of range",
        ),
        (
            envelope(
                "v1", "Pod", msg(2, msg(2, msg(8, msg(1, text(1, "cpu"), msg(2, text(1, ""))))))
            ),
            "an empty string is no quantity",
        ),
        (envelope("v1", "ConfigMap", msg(2, num(3, 1))), "a map entry has no field 3"),
        (protobuf.MAGIC + msg(1, text(1, "v1")), "names no kind"),
        (
            protobuf.MAGIC + msg(1, text(1, "v1"), text(2, "Namespace")) + text(5, ""),
            "runtime.Unknown has no field 5",
        ),
        (
            protobuf.MAGIC + msg(1, text(1, "v1"), text(2, "Namespace")) + text(3, "gzip"),
            "content encoding 'gzip'",
        ),
    ],
)
def test_malformed_bodies_are_errors_naming_the_place(body: bytes, words: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(body)
    assert not isinstance(caught.value, UnsupportedKind)
    assert words in str(caught.value)


def test_unknown_kinds() -> None:
    for api_version, kind in (("v1", "PersistentVolume"), ("batch/v1", "Job"), ("apps/v2", "x")):
        with pytest.raises(UnsupportedKind, match=f"no protobuf schema for {api_version}"):
            decode(envelope(api_version, kind, msg(1, text(1, "x"))))


def test_request_body_answers() -> None:
    with pytest.raises(ApiError) as bad:
        protobuf.request_body(envelope("v1", "Namespace", msg(1, text(99, "x"))))
    assert (bad.value.code, bad.value.reason) == (400, "BadRequest")
    assert "meta.v1.ObjectMeta has no field 99" in bad.value.message
    with pytest.raises(ApiError) as unsupported:
        protobuf.request_body(envelope("batch/v1", "Job"))
    assert (unsupported.value.code, unsupported.value.reason) == (415, "UnsupportedMediaType")


# -- the schema table -------------------------------------------------------------------


def test_schema_facts() -> None:
    pod_spec = MESSAGES["core.v1.PodSpec"].fields
    assert (pod_spec[3].json_name, pod_spec[3].type) == ("restartPolicy", "string")
    assert pod_spec[2].repeated and pod_spec[2].type == "core.v1.Container"
    assert pod_spec[7].map_values and pod_spec[7].type == "string"
    assert pod_spec[4].keep_zero and not pod_spec[11].keep_zero
    assert MESSAGES["core.v1.Volume"].fields[2].inline
    assert ROOTS[("policy/v1", "Eviction")].name == "policy.v1.Eviction"
    # Every message a field names is in the table.
    for message in MESSAGES.values():
        for field in message.fields.values():
            assert field.type in MESSAGES or not field.is_message, (message.name, field)


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ("a.v1.X\n    1 name strin", "unknown type strin"),
        ("a.v1.X\n    1 name string, 1 other string", "field 1 twice"),
        ("a.v1.X\n    one name string", "cannot read field"),
        ("    1 name string", "fields before any message"),
        ("a.v1.X\n    1 ^string", "is no message"),
        ("a.v1.X\n    1 y Y\nb.v1.X\n    1 z string", "two messages named X"),
    ],
)
def test_schema_table_mistakes(table: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_table(table)


# -- through the server ---------------------------------------------------------------

TOKEN = "admin-token"
NAMESPACES = "/api/v1/namespaces"


@pytest.fixture
def server() -> Iterator[ApiServer]:
    backend = MemoryBackend()
    registry = Registry(backend, clock=lambda: 1_700_000_000.0)
    namespaces = lookup("", "v1", "namespaces")
    assert namespaces is not None
    registry.create(namespaces, "", {"metadata": {"name": "default"}})
    authenticator = Authenticator(
        tokens={TOKEN: User("admin", "uid-admin", (ADMIN_GROUP,))},
        rules=(Rule(groups=frozenset({ADMIN_GROUP}), verbs=frozenset({"*"}),
                    resources=frozenset({"*"})),),
    )  # fmt: skip
    started = ApiServer(registry, authenticator, host="127.0.0.1", port=0)
    started.start()
    try:
        yield started
    finally:
        started.stop()
        backend.close()


def call(
    server: ApiServer, method: str, path: str, body: bytes | None = None,
    content_type: str = protobuf.MEDIA_TYPE,
) -> tuple[int, Any]:  # fmt: skip
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if body is not None:
        headers["Content-Type"] = content_type
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def without_server_fields(obj: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in obj["metadata"].items()
            if k not in ("uid", "resourceVersion", "creationTimestamp", "name")}  # fmt: skip
    return {**obj, "metadata": meta}


def test_protobuf_and_json_bodies_store_the_same_object(server: ApiServer) -> None:
    deployment = envelope(
        "apps/v1", "Deployment", go_meta("proto", "default", app="web"),
        msg(2, num(1, 3), msg(2, entry(1, "app", "web")),
            msg(3, go_meta("", app="web"), msg(2, msg(2, container("web", "nginx:1.25"))))),
    )  # fmt: skip
    code, from_protobuf = call(server, "POST", "/apis/apps/v1/namespaces/default/deployments",
                               deployment)  # fmt: skip
    assert code == 201, from_protobuf
    as_json = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "json", "namespace": "default", "labels": {"app": "web"}},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"creationTimestamp": None, "labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}},
    }  # fmt: skip
    code, from_json = call(server, "POST", "/apis/apps/v1/namespaces/default/deployments",
                           json.dumps(as_json).encode(), "application/json")  # fmt: skip
    assert code == 201, from_json
    assert without_server_fields(from_protobuf) == without_server_fields(from_json)
    assert from_protobuf["spec"]["strategy"]["rollingUpdate"] == {
        "maxUnavailable": "25%",
        "maxSurge": "25%",
    }


def test_update_delete_and_eviction_bodies(server: ApiServer) -> None:
    code, created = call(server, "POST", NAMESPACES, envelope("v1", "Namespace", go_meta("a")))
    assert code == 201, created
    assert created["spec"] == {"finalizers": ["kubernetes"]}
    path = f"{NAMESPACES}/default/configmaps"
    assert call(server, "POST", path, envelope("v1", "ConfigMap", go_meta("c"),
                                               entry(2, "k", "1")))[0] == 201  # fmt: skip
    current = call(server, "GET", f"{path}/c")[1]
    meta = msg(1, text(1, "c"), text(6, current["metadata"]["resourceVersion"]))
    code, updated = call(server, "PUT", f"{path}/c", envelope("v1", "ConfigMap", meta,
                                                              entry(2, "k", "2")))  # fmt: skip
    assert code == 200, updated
    assert updated["data"] == {"k": "2"}
    # A stale resourceVersion in a protobuf DeleteOptions' preconditions: 409, as in JSON.
    options = protobuf.MAGIC + msg(1, text(1, "v1"), text(2, "DeleteOptions"))
    stale = options + msg(2, msg(2, text(2, current["metadata"]["resourceVersion"])))
    assert call(server, "DELETE", f"{path}/c", stale)[0] == 409
    assert call(server, "DELETE", f"{path}/c", options + msg(2, num(1, 0)))[0] == 200
    assert call(server, "GET", f"{path}/c")[0] == 404

    pods = f"{NAMESPACES}/default/pods"
    pod = envelope("v1", "Pod", go_meta("p"), msg(2, msg(2, container("c", "busybox:1.36"))))
    assert call(server, "POST", pods, pod)[0] == 201
    eviction = envelope("policy/v1", "Eviction", go_meta("p", "default"), msg(2, num(1, 0)))
    code, status = call(server, "POST", f"{pods}/p/eviction", eviction)
    assert code == 201, status
    assert call(server, "GET", f"{pods}/p")[0] == 404


def test_server_errors(server: ApiServer) -> None:
    code, status = call(server, "POST", NAMESPACES, envelope("v1", "Namespace", msg(1, num(1, 7))))
    assert (code, status["reason"]) == (400, "BadRequest")
    assert "meta.v1.ObjectMeta field 1 (name)" in status["message"]
    code, status = call(server, "POST", NAMESPACES, envelope("batch/v1", "Job", go_meta("j")))
    assert (code, status["reason"]) == (415, "UnsupportedMediaType")
    code, status = call(server, "POST", NAMESPACES, b"<ns/>", "application/xml")
    assert (code, status["reason"]) == (415, "UnsupportedMediaType")
    assert "application/json, application/vnd.kubernetes.protobuf" in status["message"]
