"""Validation as a client meets it in a 422: for each rule the field path and the
reason (`details.causes[].field` and `.reason`), and for some the message kubectl
prints. Objects are what a client sends after the server's defaulting (kinds.py),
since that is what the server validates."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from control.apiserver import validation
from control.apiserver.kinds import kind_for
from control.apiserver.resources import lookup
from control.apiserver.validation import (
    DUPLICATE,
    FORBIDDEN,
    INVALID,
    NOT_SUPPORTED,
    REQUIRED,
    TOO_LONG,
    Cause,
)

NOT_FOUND = "FieldValueNotFound"
Object = dict[str, Any]
Change = Callable[[Object], Any]


def reasons(causes: list[Cause]) -> list[tuple[str, str]]:
    """(reason, field) of each cause, as `details.causes` gives them."""
    return [(c.type, c.field) for c in causes]


def changed(base: Object, change: Change) -> Object:
    obj = copy.deepcopy(base)
    change(obj)
    return obj


def defaulted(kind: str, group: str, plural: str, obj: Object) -> Object:
    resource = lookup(group, "v1", plural)
    assert resource is not None and resource.kind == kind
    obj = copy.deepcopy(obj)
    kind_for(resource).default(obj)
    return obj


POD: Object = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
    "spec": {
        "volumes": [{"name": "data", "emptyDir": {}}],
        "containers": [
            {
                "name": "web",
                "image": "nginx:1.27",
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "env": [{"name": "MODE", "value": "prod"}, {"name": "my.var-1", "value": ""}],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            }
        ],
    },
}


def spec(obj: Object) -> Object:
    result: Object = obj["spec"]
    return result


def container(obj: Object, index: int = 0) -> Object:
    result: Object = obj["spec"]["containers"][index]
    return result


def test_a_valid_pod_has_no_causes() -> None:
    assert validation.validate_pod(POD) == []
    assert validation.validate_pod(defaulted("Pod", "", "pods", POD)) == []


# -- object metadata -------------------------------------------------------------------

# (metadata, the causes)
POD_METADATA: list[tuple[Object, list[tuple[str, str]]]] = [
    ({"name": "web"}, []),
    ({"name": "web-1.example.com"}, []),  # pods: a DNS-1123 subdomain
    ({"name": "a" * 253}, []),
    ({"name": "0web"}, []),
    ({"name": "a" * 254}, [(INVALID, "metadata.name")]),
    ({"name": "Web"}, [(INVALID, "metadata.name")]),
    ({"name": "web_1"}, [(INVALID, "metadata.name")]),
    ({"name": "-web"}, [(INVALID, "metadata.name")]),
    ({"name": "web-"}, [(INVALID, "metadata.name")]),
    ({"name": "web..x"}, [(INVALID, "metadata.name")]),
    ({"name": "web/x"}, [(INVALID, "metadata.name")]),
    ({}, [(REQUIRED, "metadata.name")]),
    ({"name": ""}, [(REQUIRED, "metadata.name")]),
    ({"generateName": "web-"}, []),
    ({"generateName": "web"}, []),
    ({"generateName": "Web-"}, [(INVALID, "metadata.generateName")]),
    ({"generateName": "web_"}, [(INVALID, "metadata.generateName")]),
    ({"generateName": "-"}, [(INVALID, "metadata.generateName")]),
    # a given name wins, but a bad generateName is still refused
    ({"name": "web-abcde", "generateName": "web-"}, []),
    ({"name": "web-abcde", "generateName": "Web-"}, [(INVALID, "metadata.generateName")]),
    # labels: qualified keys, short values
    ({"name": "w", "labels": {"app": "web", "app.kubernetes.io/name": "web"}}, []),
    ({"name": "w", "labels": {"a": "", "A_b.c-D": "V_1.x-Y"}}, []),
    ({"name": "w", "labels": {"app": "-web"}}, [(INVALID, "metadata.labels")]),
    ({"name": "w", "labels": {"app": "web app"}}, [(INVALID, "metadata.labels")]),
    ({"name": "w", "labels": {"app": "v" * 64}}, [(INVALID, "metadata.labels")]),
    ({"name": "w", "labels": {"app": 1}}, [(INVALID, "metadata.labels")]),
    ({"name": "w", "labels": {"bad key": "x"}}, [(INVALID, "metadata.labels")]),
    ({"name": "w", "labels": {"Example.com/app": "x"}}, [(INVALID, "metadata.labels")]),
    ({"name": "w", "labels": {"example.com/": "x"}}, [(INVALID, "metadata.labels")]),
    ({"name": "w", "labels": {"k" * 64: "x"}}, [(INVALID, "metadata.labels")]),
    ({"name": "w", "labels": ["app"]}, [(INVALID, "metadata.labels")]),
    # annotations: qualified keys, any value, 256 KiB in all
    ({"name": "w", "annotations": {"example.com/note": "any value: at all!"}}, []),
    ({"name": "w", "annotations": {"not valid": "x"}}, [(INVALID, "metadata.annotations")]),
    ({"name": "w", "annotations": {"a": "x" * (256 * 1024)}}, [(TOO_LONG, "metadata.annotations")]),
    ({"name": "w", "annotations": {"a": "x" * (256 * 1024 - 1)}}, []),
]


@pytest.mark.parametrize(("metadata", "expected"), POD_METADATA)
def test_pod_metadata(metadata: Object, expected: list[tuple[str, str]]) -> None:
    pod = changed(POD, lambda p: p.update(metadata=metadata))
    assert reasons(validation.validate_pod(pod)) == expected


# (the validator, a name, valid?)
NAME_RULES: list[tuple[Callable[[Object], list[Cause]], str, bool]] = [
    # namespaces: DNS-1123 labels
    (validation.validate_namespace, "kube-system", True),
    (validation.validate_namespace, "0ns", True),
    (validation.validate_namespace, "a" * 63, True),
    (validation.validate_namespace, "a" * 64, False),
    (validation.validate_namespace, "team.a", False),
    (validation.validate_namespace, "Team", False),
    # services: DNS-1035 labels (a letter first)
    (validation.validate_service, "web", True),
    (validation.validate_service, "web-1", True),
    (validation.validate_service, "1web", False),
    (validation.validate_service, "web.svc", False),
    (validation.validate_service, "s" * 64, False),
    # config maps, nodes: DNS-1123 subdomains
    (validation.validate_configmap, "app.settings", True),
    (validation.validate_configmap, "App", False),
    (validation.validate_node, "node-1.example.com", True),
    (validation.validate_node, "node_1", False),
]


@pytest.mark.parametrize(("validate", "name", "valid"), NAME_RULES)
def test_name_rules(validate: Callable[[Object], list[Cause]], name: str, valid: bool) -> None:
    obj: Object = {"metadata": {"name": name}, "spec": {"ports": [{"port": 80}]}}
    found = [c for c in validate(obj) if c.field == "metadata.name"]
    assert (found == []) is valid, found
    assert all(c.type == INVALID for c in found)


def test_name_messages() -> None:
    [cause] = validation.validate_pod(changed(POD, lambda p: p["metadata"].update(name="Web")))
    assert cause.message.startswith('Invalid value: "Web": a lowercase RFC 1123 subdomain must')
    [cause] = validation.validate_pod(changed(POD, lambda p: p.update(metadata={})))
    assert cause.message == "Required value: name or generateName is required"
    [cause] = validation.validate_namespace({"metadata": {"name": "a.b"}})
    assert cause.message.startswith('Invalid value: "a.b": a lowercase RFC 1123 label must')


def test_generate_name_message_names_the_prefix() -> None:
    [cause] = validation.validate_pod(
        changed(POD, lambda p: p.update(metadata={"generateName": "Web-"}))
    )
    assert cause.message.startswith('Invalid value: "Web-": a lowercase RFC 1123 subdomain')


def test_label_messages() -> None:
    meta = {"name": "w", "labels": {"Example.com/app": "x", "app": "-x"}}
    first, second = validation.validate_object_meta(meta, namespaced=True)
    assert first.message.startswith('Invalid value: "Example.com/app": prefix part ')
    assert second.message.startswith('Invalid value: "-x": a valid label must be an empty string')


# -- pods --------------------------------------------------------------------------------

# (a change to a valid pod, the causes)
POD_SPECS: list[tuple[Change, list[tuple[str, str]]]] = [
    # containers are required
    (lambda p: spec(p).pop("containers"), [(REQUIRED, "spec.containers")]),
    (lambda p: spec(p).update(containers=[]), [(REQUIRED, "spec.containers")]),
    (lambda p: p.pop("spec"), [(REQUIRED, "spec")]),
    # names: required, DNS labels, unique across init containers and containers
    (lambda p: container(p).pop("name"), [(REQUIRED, "spec.containers[0].name")]),
    (lambda p: container(p).update(name="Web"), [(INVALID, "spec.containers[0].name")]),
    (lambda p: container(p).update(name="web.1"), [(INVALID, "spec.containers[0].name")]),
    (
        lambda p: spec(p)["containers"].append({"name": "web", "image": "busybox"}),
        [(DUPLICATE, "spec.containers[1].name")],
    ),
    (
        lambda p: spec(p).update(initContainers=[{"name": "web", "image": "busybox"}]),
        [(DUPLICATE, "spec.containers[0].name")],
    ),
    (
        lambda p: spec(p).update(initContainers=[{"name": "init", "image": "busybox"}]),
        [],
    ),
    (
        lambda p: spec(p).update(initContainers=[{"name": "init"}]),
        [(REQUIRED, "spec.initContainers[0].image")],
    ),
    # images are required
    (lambda p: container(p).pop("image"), [(REQUIRED, "spec.containers[0].image")]),
    (lambda p: container(p).update(image=""), [(REQUIRED, "spec.containers[0].image")]),
    (
        lambda p: spec(p)["containers"].append({"name": "side"}),
        [(REQUIRED, "spec.containers[1].image")],
    ),
    # ports
    (lambda p: container(p).update(ports=[{"containerPort": 65535}, {"containerPort": 1}]), []),
    (
        lambda p: container(p).update(ports=[{"containerPort": 65536}]),
        [(INVALID, "spec.containers[0].ports[0].containerPort")],
    ),
    (
        lambda p: container(p).update(ports=[{"containerPort": 80}, {"containerPort": -1}]),
        [(INVALID, "spec.containers[0].ports[1].containerPort")],
    ),
    (
        lambda p: container(p).update(ports=[{"containerPort": 0}]),
        [(REQUIRED, "spec.containers[0].ports[0].containerPort")],
    ),
    (
        lambda p: container(p).update(ports=[{"name": "http"}]),
        [(REQUIRED, "spec.containers[0].ports[0].containerPort")],
    ),
    (
        lambda p: container(p).update(ports=[{"containerPort": 80, "protocol": "HTTP"}]),
        [(NOT_SUPPORTED, "spec.containers[0].ports[0].protocol")],
    ),
    (lambda p: container(p).update(ports=[{"containerPort": 53, "protocol": "UDP"}]), []),
    (lambda p: container(p).update(ports=80), [(INVALID, "spec.containers[0].ports")]),
    # environment variable names
    (lambda p: container(p).update(env=[{"name": "_A.b-C9"}]), []),
    (
        lambda p: container(p).update(env=[{"name": "OK"}, {"name": "1BAD"}]),
        [(INVALID, "spec.containers[0].env[1].name")],
    ),
    (
        lambda p: container(p).update(env=[{"name": "A B"}]),
        [(INVALID, "spec.containers[0].env[0].name")],
    ),
    (
        lambda p: container(p).update(env=[{"value": "x"}]),
        [(REQUIRED, "spec.containers[0].env[0].name")],
    ),
    # volume mounts refer to volumes of the pod
    (
        lambda p: container(p).update(volumeMounts=[{"name": "cache", "mountPath": "/c"}]),
        [(NOT_FOUND, "spec.containers[0].volumeMounts[0].name")],
    ),
    (
        lambda p: spec(p).pop("volumes"),
        [(NOT_FOUND, "spec.containers[0].volumeMounts[0].name")],
    ),
    (
        lambda p: container(p).update(volumeMounts=[{"name": "data"}]),
        [(REQUIRED, "spec.containers[0].volumeMounts[0].mountPath")],
    ),
    (
        lambda p: container(p).update(volumeMounts=[{"mountPath": "/x"}]),
        [(REQUIRED, "spec.containers[0].volumeMounts[0].name")],
    ),
    (
        lambda p: spec(p)["volumes"].append({"name": "data", "emptyDir": {}}),
        [(DUPLICATE, "spec.volumes[1].name")],
    ),
    (lambda p: spec(p)["volumes"].append({"emptyDir": {}}), [(REQUIRED, "spec.volumes[1].name")]),
    (lambda p: spec(p)["volumes"].append({"name": "Data"}), [(INVALID, "spec.volumes[1].name")]),
    # restartPolicy, dnsPolicy, terminationGracePeriodSeconds
    (lambda p: spec(p).update(restartPolicy="Never"), []),
    (lambda p: spec(p).update(restartPolicy="OnFailure"), []),
    (lambda p: spec(p).update(restartPolicy="Sometimes"), [(NOT_SUPPORTED, "spec.restartPolicy")]),
    (lambda p: spec(p).update(restartPolicy="always"), [(NOT_SUPPORTED, "spec.restartPolicy")]),
    (lambda p: spec(p).update(dnsPolicy="Default"), []),
    (lambda p: spec(p).update(dnsPolicy="Google"), [(NOT_SUPPORTED, "spec.dnsPolicy")]),
    (lambda p: spec(p).update(terminationGracePeriodSeconds=0), []),
    (
        lambda p: spec(p).update(terminationGracePeriodSeconds=-1),
        [(INVALID, "spec.terminationGracePeriodSeconds")],
    ),
    # several at once: all are reported
    (
        lambda p: spec(p).update(
            restartPolicy="x", containers=[{"name": "a"}, {"name": "a", "image": "i"}]
        ),
        [
            (REQUIRED, "spec.containers[0].image"),
            (DUPLICATE, "spec.containers[1].name"),
            (NOT_SUPPORTED, "spec.restartPolicy"),
        ],
    ),
]


@pytest.mark.parametrize(("change", "expected"), POD_SPECS)
def test_pod_spec(change: Change, expected: list[tuple[str, str]]) -> None:
    assert reasons(validation.validate_pod(changed(POD, change))) == expected


def test_pod_messages() -> None:
    def only(change: Change) -> str:
        [cause] = validation.validate_pod(changed(POD, change))
        return cause.message

    assert only(lambda p: container(p).pop("image")) == "Required value"
    assert only(lambda p: spec(p).update(restartPolicy="Sometimes")) == (
        'Unsupported value: "Sometimes": supported values: "Always", "Never", "OnFailure"'
    )
    assert only(lambda p: container(p).update(volumeMounts=[{"name": "x", "mountPath": "/x"}])) == (
        'Not found: "x"'
    )
    assert only(lambda p: spec(p)["containers"].append({"name": "web", "image": "i"})) == (
        'Duplicate value: "web"'
    )
    assert only(lambda p: container(p).update(ports=[{"containerPort": 70000}])) == (
        "Invalid value: 70000: must be between 1 and 65535, inclusive"
    )
    assert only(lambda p: spec(p).update(terminationGracePeriodSeconds=-1)).startswith(
        "Invalid value: -1: "
    )


# -- pod updates -------------------------------------------------------------------------

RUNNING = changed(defaulted("Pod", "", "pods", POD), lambda p: spec(p).update(nodeName="n1"))

# (a change to a running pod, allowed?)
POD_UPDATES: list[tuple[Change, bool]] = [
    (lambda p: None, True),
    (lambda p: container(p).update(image="nginx:1.28"), True),
    (lambda p: p["metadata"]["labels"].update(tier="front"), True),
    (lambda p: p["metadata"].update(annotations={"a": "b"}), True),
    (lambda p: p.update(status={"phase": "Running"}), True),
    (lambda p: spec(p).update(activeDeadlineSeconds=60), True),
    (lambda p: spec(p).update(terminationGracePeriodSeconds=5), True),
    (lambda p: spec(p).update(tolerations=[{"key": "k", "operator": "Exists"}]), True),
    (lambda p: spec(p).update(restartPolicy="Never"), False),
    (lambda p: container(p).update(ports=[{"containerPort": 8080, "protocol": "TCP"}]), False),
    (lambda p: container(p).update(env=[]), False),
    (lambda p: container(p).update(name="other"), False),
    (lambda p: spec(p)["containers"].append({"name": "side", "image": "busybox"}), False),
    (lambda p: spec(p)["volumes"].append({"name": "more", "emptyDir": {}}), False),
    (lambda p: spec(p).update(nodeName="n2"), False),
    (lambda p: spec(p).pop("nodeName"), False),
]


@pytest.mark.parametrize(("change", "allowed"), POD_UPDATES)
def test_pod_update(change: Change, allowed: bool) -> None:
    causes = validation.validate_pod_update(RUNNING, changed(RUNNING, change))
    if allowed:
        assert causes == []
    else:
        assert reasons(causes) == [(FORBIDDEN, "spec")]
        assert causes[0].message.startswith(
            "Forbidden: pod updates may not change fields other than `spec.containers[*].image`"
        )


# -- services ----------------------------------------------------------------------------

SERVICE: Object = {
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
}

# (a change to a valid service, the causes)
SERVICES: list[tuple[Change, list[tuple[str, str]]]] = [
    (lambda s: None, []),
    (lambda s: s["spec"].pop("ports"), [(REQUIRED, "spec.ports")]),
    (lambda s: s["spec"].update(ports=[]), [(REQUIRED, "spec.ports")]),
    (lambda s: s["spec"].update(type="ExternalName", ports=[], externalName="example.com"), []),
    (lambda s: s["spec"].update(clusterIP="None", ports=[]), []),  # headless
    (lambda s: s["spec"].update(type="NodePort"), []),
    (lambda s: s["spec"].update(type="LoadBalancer"), []),
    (lambda s: s["spec"].update(type="Internal"), [(NOT_SUPPORTED, "spec.type")]),
    (lambda s: s["spec"].update(ports=[{"port": 0}]), [(INVALID, "spec.ports[0].port")]),
    (lambda s: s["spec"].update(ports=[{"port": 65536}]), [(INVALID, "spec.ports[0].port")]),
    (
        lambda s: s["spec"].update(ports=[{"port": 80}, {"port": 443}]),
        [(REQUIRED, "spec.ports[0].name"), (REQUIRED, "spec.ports[1].name")],
    ),
    (
        lambda s: s["spec"].update(
            ports=[{"name": "http", "port": 80}, {"name": "https", "port": 443}]
        ),
        [],
    ),
    (
        lambda s: s["spec"].update(
            ports=[{"name": "http", "port": 80}, {"name": "http", "port": 443}]
        ),
        [(DUPLICATE, "spec.ports[1].name")],
    ),
    (lambda s: s["spec"].update(selector={"app": "-"}), [(INVALID, "spec.selector")]),
    (lambda s: s["spec"].pop("selector"), []),
    (lambda s: s.pop("spec"), [(REQUIRED, "spec")]),
    (lambda s: s["metadata"].update(name="1web"), [(INVALID, "metadata.name")]),
]


@pytest.mark.parametrize(("change", "expected"), SERVICES)
def test_service(change: Change, expected: list[tuple[str, str]]) -> None:
    assert reasons(validation.validate_service(changed(SERVICE, change))) == expected


# -- config maps and secrets --------------------------------------------------------------

# (data, binaryData, the causes)
CONFIGMAPS: list[tuple[Object, Object, list[tuple[str, str]]]] = [
    ({"a": "1", "key.name": "", "KEY_NAME": "", "key-name": "", ".dotfile": "x"}, {}, []),
    ({"a/b": "1"}, {}, [(INVALID, "data[a/b]")]),
    ({"a b": "1"}, {}, [(INVALID, "data[a b]")]),
    ({"": "1"}, {}, [(INVALID, "data[]")]),
    ({"k" * 254: "1"}, {}, [(INVALID, f"data[{'k' * 254}]")]),
    ({".": "1"}, {}, [(INVALID, "data[.]")]),
    ({"..": "1"}, {}, [(INVALID, "data[..]")]),
    ({"..data": "1"}, {}, [(INVALID, "data[..data]")]),
    ({}, {"bin": "AAEC"}, []),
    ({}, {"bad/key": "AAEC"}, [(INVALID, "binaryData[bad/key]")]),
    ({"same": "1"}, {"same": "AAEC"}, [(INVALID, "binaryData[same]")]),
    ({"big": "x" * (1024 * 1024)}, {}, []),
    ({"big": "x" * (1024 * 1024), "more": "x"}, {}, [(TOO_LONG, "")]),
]


@pytest.mark.parametrize(("data", "binary", "expected"), CONFIGMAPS)
def test_configmap(data: Object, binary: Object, expected: list[tuple[str, str]]) -> None:
    configmap: Object = {"metadata": {"name": "settings"}, "data": data}
    if binary:
        configmap["binaryData"] = binary
    assert reasons(validation.validate_configmap(configmap)) == expected


def test_configmap_key_message() -> None:
    [cause] = validation.validate_configmap({"metadata": {"name": "s"}, "data": {"a/b": "1"}})
    assert cause.message.startswith('Invalid value: "a/b": a valid config key must consist of')


def test_secret_keys() -> None:
    secret: Object = {"metadata": {"name": "s"}, "data": {"ok": "eA=="}, "stringData": {"a b": "x"}}
    assert reasons(validation.validate_secret(secret)) == [(INVALID, "stringData[a b]")]


# -- deployments ---------------------------------------------------------------------------

DEPLOYMENT: Object = {
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web", "tier": "front"}},
            "spec": {"containers": [{"name": "web", "image": "nginx"}]},
        },
    },
}


def dspec(d: Object) -> Object:
    result: Object = d["spec"]
    return result


# (a change to a valid deployment, the causes)
DEPLOYMENTS: list[tuple[Change, list[tuple[str, str]]]] = [
    (lambda d: None, []),
    (
        lambda d: dspec(d).update(
            selector={"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}
        ),
        [],
    ),
    # the selector must select the template's labels
    (
        lambda d: dspec(d).update(selector={"matchLabels": {"app": "api"}}),
        [(INVALID, "spec.template.metadata.labels")],
    ),
    (
        lambda d: dspec(d)["template"]["metadata"].pop("labels"),
        [(INVALID, "spec.template.metadata.labels")],
    ),
    (
        lambda d: dspec(d).update(
            selector={"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}
        ),
        [(INVALID, "spec.template.metadata.labels")],
    ),
    (lambda d: dspec(d).pop("selector"), [(REQUIRED, "spec.selector")]),
    (lambda d: dspec(d).update(selector={"matchLabels": {}}), [(INVALID, "spec.selector")]),
    (
        lambda d: dspec(d).update(
            selector={"matchExpressions": [{"key": "app", "operator": "Is", "values": ["web"]}]}
        ),
        [(INVALID, "spec.selector")],
    ),
    (
        lambda d: dspec(d)["template"]["metadata"]["labels"].update(bad="-"),
        [(INVALID, "spec.template.metadata.labels")],
    ),
    (lambda d: dspec(d).update(replicas=0), []),
    (lambda d: dspec(d).update(replicas=-1), [(INVALID, "spec.replicas")]),
    (
        lambda d: dspec(d)["template"]["spec"].pop("containers"),
        [(REQUIRED, "spec.template.spec.containers")],
    ),
    (
        lambda d: dspec(d)["template"]["spec"]["containers"][0].pop("image"),
        [(REQUIRED, "spec.template.spec.containers[0].image")],
    ),
    (
        lambda d: dspec(d)["template"]["spec"].update(restartPolicy="Never"),
        [(NOT_SUPPORTED, "spec.template.spec.restartPolicy")],
    ),
    (lambda d: dspec(d).update(strategy={"type": "Recreate"}), []),
    (
        lambda d: dspec(d).update(strategy={"type": "BlueGreen"}),
        [(NOT_SUPPORTED, "spec.strategy.type")],
    ),
    (
        lambda d: dspec(d).update(strategy={"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}),
        [(FORBIDDEN, "spec.strategy.rollingUpdate")],
    ),
    (lambda d: d.pop("spec"), [(REQUIRED, "spec")]),
]


@pytest.mark.parametrize(("change", "expected"), DEPLOYMENTS)
def test_deployment(change: Change, expected: list[tuple[str, str]]) -> None:
    assert reasons(validation.validate_deployment(changed(DEPLOYMENT, change))) == expected


def test_deployment_selector_message() -> None:
    bad = changed(DEPLOYMENT, lambda d: dspec(d).update(selector={"matchLabels": {"app": "x"}}))
    [cause] = validation.validate_deployment(bad)
    assert cause.message == (
        'Invalid value: {"app": "web", "tier": "front"}: `selector` does not match template '
        "`labels`"
    )


def test_replicaset_selector_must_match() -> None:
    bad = changed(DEPLOYMENT, lambda d: dspec(d).update(selector={"matchLabels": {"app": "x"}}))
    assert reasons(validation.validate_replicaset(bad)) == [
        (INVALID, "spec.template.metadata.labels")
    ]


# (a change to a deployment on update, the causes)
DEPLOYMENT_UPDATES: list[tuple[Change, list[tuple[str, str]]]] = [
    (lambda d: dspec(d).update(replicas=5), []),
    (lambda d: dspec(d)["template"]["spec"]["containers"][0].update(image="nginx:2"), []),
    (lambda d: dspec(d)["template"]["metadata"]["labels"].update(tier="back"), []),
    (
        lambda d: dspec(d).update(selector={"matchLabels": {"app": "web", "tier": "front"}}),
        [(INVALID, "spec.selector")],
    ),
    (
        lambda d: dspec(d).update(
            selector={"matchExpressions": [{"key": "app", "operator": "Exists"}]}
        ),
        [(INVALID, "spec.selector")],
    ),
]


@pytest.mark.parametrize(("change", "expected"), DEPLOYMENT_UPDATES)
def test_deployment_update(change: Change, expected: list[tuple[str, str]]) -> None:
    new = changed(DEPLOYMENT, change)
    causes = validation.validate_deployment_update(DEPLOYMENT, new)
    assert reasons(causes) == expected
    if causes:
        assert causes[0].message.endswith(": field is immutable")
    assert reasons(validation.validate_replicaset_update(DEPLOYMENT, new)) == expected
