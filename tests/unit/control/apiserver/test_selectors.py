"""Label and field selectors as a client gives them (`?labelSelector=`, `?fieldSelector=`,
`kubectl get -l/--field-selector`) and the structured selectors of Deployments: what
matches, what does not, and which selectors the API refuses."""

from __future__ import annotations

from typing import Any

import pytest

from control.apiserver.selectors import (
    LabelSelector,
    SelectorError,
    fields_of,
    from_label_selector,
    parse_field_selector,
    parse_label_selector,
)

WEB = {"app": "web", "tier": "front"}
DB = {"app": "db", "tier": "back", "env": "prod"}
BARE: dict[str, str] = {}
EMPTY_VALUE = {"app": ""}
PREFIXED = {"app.kubernetes.io/name": "web", "app.kubernetes.io/part-of": "shop"}


# -- label selectors: parsing and matching --------------------------------------------

# (selector, labels, matches)
LABEL_CASES: list[tuple[str, dict[str, str], bool]] = [
    # equality: =, ==
    ("app=web", WEB, True),
    ("app=web", DB, False),
    ("app=web", BARE, False),
    ("app==web", WEB, True),
    ("app==web", DB, False),
    # inequality also matches objects without the label
    ("app!=web", WEB, False),
    ("app!=web", DB, True),
    ("app!=web", BARE, True),
    # set membership
    ("env in (prod,staging)", DB, True),
    ("env in (staging)", DB, False),
    ("env in (prod)", WEB, False),
    ("env notin (prod)", DB, False),
    ("env notin (staging,dev)", DB, True),
    ("env notin (prod)", WEB, True),
    ("app in (web)", WEB, True),
    # existence
    ("env", DB, True),
    ("env", WEB, False),
    ("!env", WEB, True),
    ("!env", DB, False),
    ("!env", BARE, True),
    # several requirements: all must hold
    ("app=web,tier=front", WEB, True),
    ("app=web,tier=back", WEB, False),
    ("app,!env", WEB, True),
    ("app,!env", DB, False),
    ("tier=back,env in (prod),app!=web", DB, True),
    ("app in (web,db),tier notin (front)", DB, True),
    ("app in (web,db),tier notin (front)", WEB, False),
    # prefixed keys
    ("app.kubernetes.io/name=web", PREFIXED, True),
    ("app.kubernetes.io/name=web", WEB, False),
    ("app.kubernetes.io/name in (web,api),app.kubernetes.io/part-of", PREFIXED, True),
    ("!app.kubernetes.io/name", PREFIXED, False),
    ("example.com/x!=y", PREFIXED, True),
    # whitespace around keys, operators, values and commas
    ("  app = web ,  tier in ( front , back ) ", WEB, True),
    ("app  ==  web", WEB, True),
    ("app != db", WEB, True),
    ("env notin(prod)", DB, False),
    ("env in(prod)", DB, True),
    ("! env", WEB, True),
    # an empty value selects the empty label value only
    ("app=", EMPTY_VALUE, True),
    ("app=", WEB, False),
    ("app=", BARE, False),
    # key characters: upper case, dots, underscores in the name part
    ("My_Key.v2=Val-1.x", {"My_Key.v2": "Val-1.x"}, True),
    # the empty selector matches everything
    ("", WEB, True),
    ("", BARE, True),
    ("   ", BARE, True),
]


@pytest.mark.parametrize(("text", "labels", "expected"), LABEL_CASES)
def test_label_selector_matches(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_label_selector(text).matches(labels) is expected


def test_empty_label_selector_is_empty() -> None:
    assert parse_label_selector("").empty
    assert parse_label_selector(" ").empty
    assert not parse_label_selector("a").empty


# Selectors the API refuses with 400 (`unable to parse requirement: ...`).
BAD_LABEL_SELECTORS = [
    "app in ()",  # a set needs values
    "app notin ( )",
    "app in (a",  # unbalanced parentheses
    "app in a)",
    "app in (a))",
    "app=web,,tier=front",  # an empty requirement
    "app=web,",
    ",app",
    "=web",  # no key
    "!",
    "!=web",
    "bad key=x",  # a space inside a key
    "-app=web",  # keys start and end with an alphanumeric
    "app-=web",
    "Example.com/app=web",  # the prefix is a lower-case DNS subdomain
    "a/b/c=web",  # at most one prefix
    "/app=web",  # an empty prefix
    "app.kubernetes.io/=web",  # an empty name
    "x" * 64 + "=web",  # the name part has at most 63 characters
    "app=" + "v" * 64,  # values have at most 63 characters
    "app=-web",  # values start and end with an alphanumeric
    "app=web-",
    "app=a b",
    "app=web=db",
    "app in (a,-b)",
    "app in (a b)",
    "!app=web",
]


@pytest.mark.parametrize("text", BAD_LABEL_SELECTORS)
def test_label_selector_errors(text: str) -> None:
    with pytest.raises(SelectorError, match=r"^unable to parse requirement"):
        parse_label_selector(text)


def test_selector_error_is_a_value_error() -> None:
    assert issubclass(SelectorError, ValueError)


# -- structured selectors (metav1.LabelSelector) ---------------------------------------

# (selector, labels, matches)
STRUCTURED_CASES: list[tuple[dict[str, Any], dict[str, str], bool]] = [
    ({"matchLabels": {"app": "web"}}, WEB, True),
    ({"matchLabels": {"app": "web"}}, DB, False),
    ({"matchLabels": {"app": "web", "tier": "front"}}, WEB, True),
    ({"matchLabels": {"app": "web", "tier": "back"}}, WEB, False),
    ({"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}]}, DB, True),
    ({"matchExpressions": [{"key": "env", "operator": "In", "values": ["dev"]}]}, DB, False),
    ({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]}, DB, False),
    ({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]}, WEB, True),
    ({"matchExpressions": [{"key": "env", "operator": "Exists"}]}, DB, True),
    ({"matchExpressions": [{"key": "env", "operator": "Exists"}]}, WEB, False),
    ({"matchExpressions": [{"key": "env", "operator": "DoesNotExist"}]}, WEB, True),
    ({"matchExpressions": [{"key": "env", "operator": "DoesNotExist", "values": []}]}, DB, False),
    # matchLabels and matchExpressions are ANDed
    (
        {
            "matchLabels": {"app": "db"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["back", "x"]}],
        },
        DB,
        True,
    ),
    (
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["back"]}],
        },
        WEB,
        False,
    ),
    ({"matchLabels": {"app.kubernetes.io/name": "web"}}, PREFIXED, True),
    # the empty selector matches everything
    ({}, WEB, True),
    ({"matchLabels": {}, "matchExpressions": []}, BARE, True),
]


@pytest.mark.parametrize(("selector", "labels", "expected"), STRUCTURED_CASES)
def test_structured_selector_matches(
    selector: dict[str, Any], labels: dict[str, str], expected: bool
) -> None:
    assert from_label_selector(selector).matches(labels) is expected


# (selector, a fragment of the message)
BAD_STRUCTURED: list[tuple[Any, str]] = [
    ("app=web", "spec.selector: must be an object"),
    ({"matchExpressions": ["app"]}, "spec.selector.matchExpressions[0]: must be an object"),
    (
        {"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]},
        'spec.selector.matchExpressions[0].operator: Unsupported value: "Equals"',
    ),
    (
        {"matchExpressions": [{"key": "a", "operator": "In"}]},
        "spec.selector.matchExpressions[0].values: Required value",
    ),
    (
        {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": []}]},
        "spec.selector.matchExpressions[0].values: Required value",
    ),
    (
        {
            "matchExpressions": [
                {"key": "a", "operator": "Exists"},
                {"key": "b", "operator": "Exists", "values": ["x"]},
            ]
        },
        "spec.selector.matchExpressions[1].values: Forbidden",
    ),
    (
        {"matchExpressions": [{"key": "a", "operator": "DoesNotExist", "values": ["x"]}]},
        "spec.selector.matchExpressions[0].values: Forbidden",
    ),
    ({"matchLabels": {"bad key": "x"}}, "invalid label key"),
    ({"matchLabels": {"app": "-x"}}, "invalid label value"),
    (
        {"matchExpressions": [{"key": "a", "operator": "In", "values": ["ok", "not ok"]}]},
        "invalid label value",
    ),
]


@pytest.mark.parametrize(("selector", "message"), BAD_STRUCTURED)
def test_structured_selector_errors(selector: Any, message: str) -> None:
    with pytest.raises(SelectorError) as raised:
        from_label_selector(selector, "spec.selector")
    assert message in str(raised.value)


def test_structured_selector_equals_the_text_form() -> None:
    structured = from_label_selector(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "NotIn", "values": ["back"]},
                {"key": "env", "operator": "DoesNotExist"},
            ],
        }
    )
    text = parse_label_selector("app=web,tier notin (back),!env")
    assert isinstance(structured, LabelSelector)
    assert set(structured.requirements) == set(text.requirements)


# -- field selectors ---------------------------------------------------------------------


def pod(
    name: str = "web",
    namespace: str = "default",
    node: str | None = None,
    phase: str | None = "Pending",
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec},
        "status": {},
    }
    if node is not None:
        body["spec"]["nodeName"] = node
    if phase is not None:
        body["status"]["phase"] = phase
    return body


RUNNING_ON_N1 = pod("a", node="n1", phase="Running")
PENDING = pod("b")
HOST_NETWORK = pod("c", "kube-system", node="n2", phase="Running", hostNetwork=True)

# (kind, selector, object, matches)
FIELD_CASES: list[tuple[str, str, dict[str, Any], bool]] = [
    ("Pod", "spec.nodeName=n1", RUNNING_ON_N1, True),
    ("Pod", "spec.nodeName=n1", HOST_NETWORK, False),
    ("Pod", "spec.nodeName==n1", RUNNING_ON_N1, True),
    ("Pod", "spec.nodeName!=n1", RUNNING_ON_N1, False),
    ("Pod", "spec.nodeName!=n1", HOST_NETWORK, True),
    # what the scheduler watches: pods no node was chosen for
    ("Pod", "spec.nodeName=", PENDING, True),
    ("Pod", "spec.nodeName=", RUNNING_ON_N1, False),
    ("Pod", "spec.nodeName!=", RUNNING_ON_N1, True),
    ("Pod", "spec.nodeName!=", PENDING, False),
    ("Pod", "status.phase=Running", RUNNING_ON_N1, True),
    ("Pod", "status.phase=Running", PENDING, False),
    ("Pod", "status.phase!=Running", PENDING, True),
    ("Pod", "status.phase!=Succeeded,status.phase!=Failed", RUNNING_ON_N1, True),
    ("Pod", "status.phase=Running,spec.nodeName=n1", RUNNING_ON_N1, True),
    ("Pod", "status.phase=Running,spec.nodeName=n2", RUNNING_ON_N1, False),
    ("Pod", "metadata.name=a", RUNNING_ON_N1, True),
    ("Pod", "metadata.name=a", PENDING, False),
    ("Pod", "metadata.namespace=kube-system", HOST_NETWORK, True),
    ("Pod", "metadata.namespace!=kube-system", PENDING, True),
    ("Pod", "spec.hostNetwork=true", HOST_NETWORK, True),
    ("Pod", "spec.hostNetwork=false", PENDING, True),  # unset is false
    ("Pod", "spec.hostNetwork=false", HOST_NETWORK, False),
    ("Pod", "spec.restartPolicy=Never", pod("d", restartPolicy="Never"), True),
    ("Pod", " spec.nodeName = n1 ", RUNNING_ON_N1, True),
    ("Pod", "", PENDING, True),
    (
        "Node",
        "spec.unschedulable=true",
        {"metadata": {"name": "n"}, "spec": {"unschedulable": True}},
        True,
    ),
    ("Node", "spec.unschedulable=false", {"metadata": {"name": "n"}, "spec": {}}, True),
    ("Node", "metadata.name=n", {"metadata": {"name": "n"}}, True),
    (
        "Secret",
        "type=kubernetes.io/tls",
        {"metadata": {"name": "s"}, "type": "kubernetes.io/tls"},
        True,
    ),
    ("Secret", "type!=Opaque", {"metadata": {"name": "s"}, "type": "Opaque"}, False),
    (
        "Namespace",
        "status.phase=Active",
        {"metadata": {"name": "x"}, "status": {"phase": "Active"}},
        True,
    ),
    ("ConfigMap", "metadata.name=settings", {"metadata": {"name": "settings"}}, True),
    ("ConfigMap", "metadata.name!=settings", {"metadata": {"name": "settings"}}, False),
    (
        "Event",
        "involvedObject.kind=Pod,involvedObject.name=web,reason=Started",
        {
            "metadata": {"name": "e"},
            "involvedObject": {"kind": "Pod", "name": "web"},
            "reason": "Started",
        },
        True,
    ),
    (
        "Event",
        "source=kubelet",
        {"metadata": {"name": "e"}, "source": {"component": "kubelet"}},
        True,
    ),
    ("ReplicaSet", "status.replicas=0", {"metadata": {"name": "rs"}, "status": {}}, True),
    (
        "ReplicaSet",
        "status.replicas=2",
        {"metadata": {"name": "rs"}, "status": {"replicas": 2}},
        True,
    ),
]


@pytest.mark.parametrize(("kind", "text", "obj", "expected"), FIELD_CASES)
def test_field_selector_matches(kind: str, text: str, obj: dict[str, Any], expected: bool) -> None:
    selector = parse_field_selector(text, kind)
    assert selector.matches(fields_of(kind, obj)) is expected


# (kind, selector, the field the API names)
UNSUPPORTED_FIELDS = [
    ("Pod", "spec.foo=x", "spec.foo"),
    ("Pod", "status.phase=Running,metadata.labels=x", "metadata.labels"),
    ("Pod", "spec.containers.image!=nginx", "spec.containers.image"),
    ("ConfigMap", "spec.nodeName=n1", "spec.nodeName"),
    ("ConfigMap", "data.x=1", "data.x"),
    ("Deployment", "status.phase=Running", "status.phase"),
    ("Node", "status.phase=Ready", "status.phase"),
    ("Service", "spec.type=ClusterIP", "spec.type"),
]


@pytest.mark.parametrize(("kind", "text", "field"), UNSUPPORTED_FIELDS)
def test_field_selector_unsupported_field(kind: str, text: str, field: str) -> None:
    with pytest.raises(SelectorError) as raised:
        parse_field_selector(text, kind)
    assert str(raised.value) == f"field label not supported: {field}"


@pytest.mark.parametrize("text", ["spec.nodeName", "status.phase in (Running)", "x,y=z"])
def test_field_selector_syntax_errors(text: str) -> None:
    with pytest.raises(SelectorError, match="^invalid selector"):
        parse_field_selector(text, "Pod")


def test_fields_of_a_pod() -> None:
    fields = fields_of("Pod", RUNNING_ON_N1)
    assert fields["metadata.name"] == "a"
    assert fields["metadata.namespace"] == "default"
    assert fields["spec.nodeName"] == "n1"
    assert fields["status.phase"] == "Running"
    assert fields["spec.hostNetwork"] == "false"
    assert fields_of("Pod", HOST_NETWORK)["spec.hostNetwork"] == "true"
    assert fields_of("Pod", PENDING)["spec.nodeName"] == ""
