"""PATCH bodies: JSON Patch (the RFC 6902 appendix), JSON Merge Patch (the RFC 7386
appendix table), strategic merge patch as kubectl apply and kubectl patch send it, the
merge-key table, errors, and that inputs are never changed."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from control.apiserver.patch import (
    APPLY_PATCH_CBOR,
    APPLY_PATCH_YAML,
    JSON_PATCH,
    LIST_MERGE_KEYS,
    MAX_JSON_PATCH_OPERATIONS,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    SUPPORTED_PATCH_TYPES,
    PatchError,
    UnsupportedPatchType,
    apply_patch,
    media_type,
)


def _apply(original: Any, patch: Any, content_type: str) -> Any:
    """Apply ``patch`` (a JSON value, or a raw body as bytes) and check that the
    original is left as it was."""
    before = copy.deepcopy(original)
    body = patch if isinstance(patch, bytes) else json.dumps(patch)
    result = apply_patch(original, body, content_type)
    assert original == before, "the original was changed"
    return result


def smp(original: Any, patch: Any) -> Any:
    return _apply(original, patch, STRATEGIC_MERGE_PATCH)


# Content types ----------------------------------------------------------------------


def test_supported_types_are_the_three_patch_types() -> None:
    assert SUPPORTED_PATCH_TYPES == (
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
    )


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/merge-patch+json", "application/merge-patch+json"),
        ("application/merge-patch+json; charset=utf-8", "application/merge-patch+json"),
        (" Application/JSON-Patch+JSON ", "application/json-patch+json"),
        ("", ""),
    ],
)
def test_media_type(content_type: str, expected: str) -> None:
    assert media_type(content_type) == expected


@pytest.mark.parametrize(
    ("content_type", "patch", "expected"),
    [
        (JSON_PATCH, [{"op": "add", "path": "/b", "value": 2}], {"a": 1, "b": 2}),
        (MERGE_PATCH, {"b": 2}, {"a": 1, "b": 2}),
        (STRATEGIC_MERGE_PATCH, {"b": 2}, {"a": 1, "b": 2}),
        (f"{MERGE_PATCH}; charset=utf-8", {"b": 2}, {"a": 1, "b": 2}),
        ("APPLICATION/STRATEGIC-MERGE-PATCH+JSON", {"b": 2}, {"a": 1, "b": 2}),
    ],
)
def test_dispatch_by_content_type(content_type: str, patch: Any, expected: Any) -> None:
    assert _apply({"a": 1}, patch, content_type) == expected


@pytest.mark.parametrize(
    "content_type",
    [APPLY_PATCH_YAML, APPLY_PATCH_CBOR, "application/json", "application/yaml", "", "text/plain"],
)
def test_other_content_types_are_unsupported_before_the_body_is_read(content_type: str) -> None:
    with pytest.raises(UnsupportedPatchType) as caught:
        apply_patch({"a": 1}, b"not even json", content_type)
    assert caught.value.content_type == content_type
    assert "unsupported patch type" in str(caught.value)


def test_unsupported_type_is_not_a_patch_error() -> None:
    assert not issubclass(UnsupportedPatchType, PatchError)


@pytest.mark.parametrize("content_type", SUPPORTED_PATCH_TYPES)
@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"{'a': 1}", b"\xff\xfe\x00", "[1, 2", b'{"a": NaN}', b'{"a": Infinity}'],
)
def test_bad_json_is_a_patch_error(content_type: str, body: bytes | str) -> None:
    with pytest.raises(PatchError, match="invalid json"):
        apply_patch({"a": 1}, body, content_type)


@pytest.mark.parametrize("content_type", SUPPORTED_PATCH_TYPES)
def test_deep_nesting_is_a_patch_error(content_type: str) -> None:
    body = "[" * 100_000 + "]" * 100_000
    with pytest.raises(PatchError, match="nested too deeply"):
        apply_patch({"a": 1}, body, content_type)


def test_deep_nesting_that_json_accepts_is_a_patch_error() -> None:
    depth = 900  # json.loads takes it; merging recurses more than once a level
    body = '{"a": ' * depth + "1" + "}" * depth
    with pytest.raises(PatchError, match="strategic merge patch: nested too deeply"):
        apply_patch({}, body, STRATEGIC_MERGE_PATCH)


@pytest.mark.parametrize(
    ("content_type", "patch"),
    [
        (JSON_PATCH, '[{"op": "add", "path": "/a/x", "value": {"n": 1}}]'),
        (MERGE_PATCH, '{"a": {"x": {"n": 1}}}'),
        (STRATEGIC_MERGE_PATCH, '{"a": {"x": {"n": 1}}}'),
    ],
)
def test_result_shares_nothing_with_the_original(content_type: str, patch: str) -> None:
    original = {"a": {"keep": [1, {"deep": True}]}, "b": [{"c": 1}]}
    result = apply_patch(original, patch, content_type)
    result["a"]["keep"][1]["deep"] = False
    result["b"][0]["c"] = 2
    assert original == {"a": {"keep": [1, {"deep": True}]}, "b": [{"c": 1}]}


def test_bytes_and_str_bodies_are_the_same() -> None:
    as_bytes = apply_patch({"a": 1}, b'{"b": "\xc3\xa9"}', MERGE_PATCH)
    as_str = apply_patch({"a": 1}, '{"b": "\u00e9"}', MERGE_PATCH)
    assert as_bytes == as_str == {"a": 1, "b": "\u00e9"}


# JSON Patch: RFC 6902 appendix A ----------------------------------------------------

# Written from RFC 6902's appendix examples A.1 to A.16; None means "an error".
RFC6902_APPENDIX: list[Any] = [
    pytest.param(
        {"foo": "bar"},
        [{"op": "add", "path": "/baz", "value": "qux"}],
        {"baz": "qux", "foo": "bar"},
        id="A.1 adding an object member",
    ),
    pytest.param(
        {"foo": ["bar", "baz"]},
        [{"op": "add", "path": "/foo/1", "value": "qux"}],
        {"foo": ["bar", "qux", "baz"]},
        id="A.2 adding an array element",
    ),
    pytest.param(
        {"baz": "qux", "foo": "bar"},
        [{"op": "remove", "path": "/baz"}],
        {"foo": "bar"},
        id="A.3 removing an object member",
    ),
    pytest.param(
        {"foo": ["bar", "qux", "baz"]},
        [{"op": "remove", "path": "/foo/1"}],
        {"foo": ["bar", "baz"]},
        id="A.4 removing an array element",
    ),
    pytest.param(
        {"baz": "qux", "foo": "bar"},
        [{"op": "replace", "path": "/baz", "value": "boo"}],
        {"baz": "boo", "foo": "bar"},
        id="A.5 replacing a value",
    ),
    pytest.param(
        {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
        [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
        {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}},
        id="A.6 moving a value",
    ),
    pytest.param(
        {"foo": ["all", "grass", "cows", "eat"]},
        [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
        {"foo": ["all", "cows", "eat", "grass"]},
        id="A.7 moving an array element",
    ),
    pytest.param(
        {"baz": "qux", "foo": ["a", 2, "c"]},
        [
            {"op": "test", "path": "/baz", "value": "qux"},
            {"op": "test", "path": "/foo/1", "value": 2},
        ],
        {"baz": "qux", "foo": ["a", 2, "c"]},
        id="A.8 testing a value: success",
    ),
    pytest.param(
        {"baz": "qux"},
        [{"op": "test", "path": "/baz", "value": "bar"}],
        None,
        id="A.9 testing a value: error",
    ),
    pytest.param(
        {"foo": "bar"},
        [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
        {"foo": "bar", "child": {"grandchild": {}}},
        id="A.10 adding a nested member object",
    ),
    pytest.param(
        {"foo": "bar"},
        [{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}],
        {"foo": "bar", "baz": "qux"},
        id="A.11 ignoring unrecognized elements",
    ),
    pytest.param(
        {"foo": "bar"},
        [{"op": "add", "path": "/baz/bat", "value": "qux"}],
        None,
        id="A.12 adding to a nonexistent target",
    ),
    pytest.param(
        {"foo": "bar", "baz": 1},
        b'[{"op": "add", "path": "/baz", "value": "qux", "op": "remove"}]',
        None,
        id="A.13 invalid JSON Patch document",
    ),
    pytest.param(
        {"/": 9, "~1": 10},
        [{"op": "test", "path": "/~01", "value": 10}],
        {"/": 9, "~1": 10},
        id="A.14 ~ escape ordering",
    ),
    pytest.param(
        {"/": 9, "~1": 10},
        [{"op": "test", "path": "/~01", "value": "10"}],
        None,
        id="A.15 comparing strings and numbers",
    ),
    pytest.param(
        {"foo": ["bar"]},
        [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
        {"foo": ["bar", ["abc", "def"]]},
        id="A.16 adding an array value",
    ),
]


@pytest.mark.parametrize(("original", "patch", "expected"), RFC6902_APPENDIX)
def test_rfc6902_appendix(original: Any, patch: Any, expected: Any) -> None:
    if expected is None:
        with pytest.raises(PatchError):
            _apply(original, patch, JSON_PATCH)
    else:
        assert _apply(original, patch, JSON_PATCH) == expected


@pytest.mark.parametrize(
    ("original", "patch", "expected"),
    [
        pytest.param({"a": 1}, [], {"a": 1}, id="empty patch"),
        pytest.param({"a": 1}, [{"op": "add", "path": "", "value": [1]}], [1], id="add root"),
        pytest.param(
            {"a": 1},
            [{"op": "replace", "path": "", "value": {"b": 2}}],
            {"b": 2},
            id="replace root",
        ),
        pytest.param({"a": 1}, [{"op": "add", "path": "/a", "value": 2}], {"a": 2}, id="add over"),
        pytest.param(
            {"a": None}, [{"op": "replace", "path": "/a", "value": 1}], {"a": 1}, id="replace null"
        ),
        pytest.param(
            {"a": [1]}, [{"op": "add", "path": "/a/1", "value": 2}], {"a": [1, 2]}, id="end"
        ),
        pytest.param(
            {"a": [1]}, [{"op": "add", "path": "/a/0", "value": 0}], {"a": [0, 1]}, id="0"
        ),
        pytest.param({"": 1}, [{"op": "remove", "path": "/"}], {}, id="empty member name"),
        pytest.param(
            {"a/b": {"m~n": 1}},
            [{"op": "replace", "path": "/a~1b/m~0n", "value": 2}],
            {"a/b": {"m~n": 2}},
            id="escapes",
        ),
        pytest.param(
            {"a": {"b": 1}},
            [{"op": "move", "from": "/a", "path": "/a"}],
            {"a": {"b": 1}},
            id="move onto itself",
        ),
        pytest.param(
            {"a": {"b": 1}, "ab": 2},
            [{"op": "move", "from": "/a", "path": "/ab"}],
            {"ab": {"b": 1}},
            id="move to a sibling that shares a prefix",
        ),
        pytest.param(
            {"a": [1, 2, 3]},
            [{"op": "move", "from": "/a/0", "path": "/a/-"}],
            {"a": [2, 3, 1]},
            id="move to the end",
        ),
        pytest.param(
            {"a": {"x": [1]}},
            [
                {"op": "copy", "from": "/a", "path": "/b"},
                {"op": "add", "path": "/b/x/-", "value": 2},
            ],
            {"a": {"x": [1]}, "b": {"x": [1, 2]}},
            id="copy is deep",
        ),
        pytest.param(
            {"n": 1, "f": [1.0, {"a": 1, "b": [True]}]},
            [
                {"op": "test", "path": "/n", "value": 1.0},
                {"op": "test", "path": "/f", "value": [1, {"b": [True], "a": 1.0}]},
            ],
            {"n": 1, "f": [1.0, {"a": 1, "b": [True]}]},
            id="test compares numbers by value and members in any order",
        ),
        pytest.param(
            {"a": None},
            [{"op": "test", "path": "/a", "value": None}],
            {"a": None},
            id="test null",
        ),
        pytest.param(
            {"metadata": {"labels": {"app": "web"}}, "spec": {"replicas": 1}},
            [
                {"op": "test", "path": "/spec/replicas", "value": 1},
                {"op": "replace", "path": "/spec/replicas", "value": 3},
                {"op": "add", "path": "/metadata/labels/tier", "value": "front"},
                {"op": "remove", "path": "/metadata/labels/app"},
            ],
            {"metadata": {"labels": {"tier": "front"}}, "spec": {"replicas": 3}},
            id="kubectl patch --type=json",
        ),
    ],
)
def test_json_patch(original: Any, patch: Any, expected: Any) -> None:
    assert _apply(original, patch, JSON_PATCH) == expected


@pytest.mark.parametrize(
    ("original", "patch", "message", "path"),
    [
        pytest.param({}, {"op": "add"}, "must be an array", "", id="not an array"),
        pytest.param({}, [1], "operation 0: must be an object", "", id="op not an object"),
        pytest.param({}, [{"path": "/a"}], 'unknown or missing "op"', "", id="no op"),
        pytest.param(
            {}, [{"op": "frob", "path": "/a"}], 'unknown or missing "op"', "", id="bad op"
        ),
        pytest.param({}, [{"op": "remove"}], '"path" must be', "", id="no path"),
        pytest.param({}, [{"op": "remove", "path": 1}], '"path" must be', "", id="path not str"),
        pytest.param({}, [{"op": "add", "path": "/a"}], 'missing "value"', "/a", id="no value"),
        pytest.param(
            {"a": 1}, [{"op": "move", "path": "/b"}], '"from" must be', "", id="move without from"
        ),
        pytest.param(
            {"a": 1}, [{"op": "remove", "path": "a"}], "must start with /", "a", id="no /"
        ),
        pytest.param({"a": 1}, [{"op": "remove", "path": "/a~2"}], "~0 or ~1", "/a~2", id="~2"),
        pytest.param({"a": 1}, [{"op": "remove", "path": "/a~"}], "~0 or ~1", "/a~", id="~ at end"),
        pytest.param(
            {"a": 1}, [{"op": "remove", "path": "/b"}], "path not found", "/b", id="remove missing"
        ),
        pytest.param(
            {"a": 1},
            [{"op": "replace", "path": "/b", "value": 1}],
            "path not found",
            "/b",
            id="replace missing",
        ),
        pytest.param(
            {"a": 1},
            [{"op": "test", "path": "/b", "value": None}],
            "not found",
            "/b",
            id="test missing",
        ),
        pytest.param(
            {"a": 1},
            [{"op": "test", "path": "/a", "value": True}],
            "test failed: the value is 1",
            "/a",
            id="test bool against 1",
        ),
        pytest.param(
            {"a": [1]},
            [{"op": "test", "path": "/a", "value": [1, 2]}],
            "test failed",
            "/a",
            id="test arrays of other length",
        ),
        pytest.param(
            {"a": [1]}, [{"op": "remove", "path": "/a/1"}], "out of range", "/a/1", id="idx"
        ),
        pytest.param(
            {"a": [1]},
            [{"op": "add", "path": "/a/2", "value": 0}],
            "out of range",
            "/a/2",
            id="add idx",
        ),
        pytest.param(
            {"a": [1, 2]},
            [{"op": "remove", "path": "/a/01"}],
            "not an array index",
            "/a/01",
            id="01",
        ),
        pytest.param(
            {"a": [1]}, [{"op": "remove", "path": "/a/-"}], "not an array index", "/a/-", id="-"
        ),
        pytest.param(
            {"a": [1]},
            [{"op": "add", "path": "/a/-1", "value": 0}],
            "not an array index",
            "/a/-1",
            id="-1",
        ),
        pytest.param(
            {"a": 1},
            [{"op": "add", "path": "/a/b", "value": 0}],
            "not a container",
            "/a/b",
            id="scalar",
        ),
        pytest.param(
            {"a": "s"},
            [{"op": "remove", "path": "/a/0/b"}],
            "has no members",
            "/a/0/b",
            id="into str",
        ),
        pytest.param(
            {"a": 1}, [{"op": "remove", "path": "/a/b"}], "number has no members", "/a/b", id="in 1"
        ),
        pytest.param(
            {"a": 1}, [{"op": "remove", "path": ""}], "whole document", "", id="remove root"
        ),
        pytest.param(
            {"a": {"b": 1}},
            [{"op": "move", "from": "/a", "path": "/a/b/c"}],
            "into its own child",
            "/a/b/c",
            id="move into child",
        ),
        pytest.param(
            {"a": 1},
            [{"op": "move", "from": "/x", "path": "/x"}],
            "path not found",
            "/x",
            id="move missing onto itself",
        ),
        pytest.param(
            {"a": 1},
            [{"op": "copy", "from": "/x", "path": "/y"}],
            "path not found",
            "/x",
            id="copy missing",
        ),
        pytest.param(
            {"a": 1},
            b'[{"op": "add", "path": "/b", "value": {"k": 1, "k": 2}}]',
            "duplicate member 'k'",
            "",
            id="duplicate member",
        ),
    ],
)
def test_json_patch_errors(original: Any, patch: Any, message: str, path: str) -> None:
    with pytest.raises(PatchError, match="json patch") as caught:
        _apply(original, patch, JSON_PATCH)
    assert message in str(caught.value)
    assert caught.value.path == path


def test_json_patch_error_names_the_operation() -> None:
    patch = [{"op": "add", "path": "/b", "value": 1}, {"op": "remove", "path": "/spec/x"}]
    with pytest.raises(PatchError) as caught:
        _apply({"spec": {}}, patch, JSON_PATCH)
    assert str(caught.value) == "json patch operation 1 (remove /spec/x): path not found"


def test_json_patch_is_all_or_nothing() -> None:
    original = {"a": 1}
    patch = [{"op": "add", "path": "/b", "value": 2}, {"op": "test", "path": "/a", "value": 2}]
    with pytest.raises(PatchError, match="test failed"):
        _apply(original, patch, JSON_PATCH)
    assert original == {"a": 1}


def test_json_patch_operation_limit() -> None:
    ok = [{"op": "test", "path": "/a", "value": 1}] * MAX_JSON_PATCH_OPERATIONS
    assert _apply({"a": 1}, ok, JSON_PATCH) == {"a": 1}
    with pytest.raises(PatchError, match="10001 operations"):
        _apply({"a": 1}, [*ok, ok[0]], JSON_PATCH)


def test_json_patch_copy_limit() -> None:
    # Each copy doubles the document: without a limit, 40 operations need terabytes.
    patch = [{"op": "copy", "from": "/a", "path": "/a/-"} for _ in range(40)]
    with pytest.raises(PatchError, match="copies more than"):
        _apply({"a": ["x" * 1000]}, patch, JSON_PATCH)


# JSON Merge Patch: RFC 7386 appendix A ----------------------------------------------

# Written from the example table in RFC 7386 appendix A.
RFC7386_APPENDIX = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("original", "patch", "expected"), RFC7386_APPENDIX)
def test_rfc7386_appendix(original: Any, patch: Any, expected: Any) -> None:
    assert _apply(original, patch, MERGE_PATCH) == expected


def test_merge_patch_on_a_deployment() -> None:
    deployment = {
        "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}},
        "spec": {
            "replicas": 1,
            "template": {"spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b"}]}},
        },
    }
    patch = {
        "metadata": {"labels": {"tier": None, "team": "x"}},
        "spec": {
            "replicas": 3,
            "template": {"spec": {"containers": [{"name": "a", "image": "a:2"}]}},
        },
    }
    assert _apply(deployment, patch, MERGE_PATCH) == {
        "metadata": {"name": "web", "labels": {"app": "web", "team": "x"}},
        # merge patch replaces lists whole: container b is gone
        "spec": {
            "replicas": 3,
            "template": {"spec": {"containers": [{"name": "a", "image": "a:2"}]}},
        },
    }


# Strategic merge patch: what kubectl sends -------------------------------------------


def container(name: str, image: str, **more: Any) -> dict[str, Any]:
    return {"name": name, "image": image, **more}


def deployment(*containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "labels": {"app": "web", "tier": "front"},
            "annotations": {"deployment.kubernetes.io/revision": "1"},
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": list(containers), "restartPolicy": "Always"},
            },
            **spec,
        },
    }


def template_spec(patch: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"template": {"spec": patch}}}


def containers_of(obj: dict[str, Any]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = obj["spec"]["template"]["spec"]["containers"]
    return result


ENV = [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
WEB = container("web", "nginx:1.25", ports=[{"containerPort": 80, "protocol": "TCP"}], env=ENV)
SIDECAR = container("log", "fluent-bit:2", args=["--verbose"])
METRICS = container("metrics", "exporter:1")


def test_apply_changes_one_containers_image() -> None:
    patch = template_spec(
        {
            "$setElementOrder/containers": [{"name": "web"}, {"name": "log"}, {"name": "metrics"}],
            "containers": [{"name": "log", "image": "fluent-bit:3"}],
        }
    )
    result = smp(deployment(WEB, SIDECAR, METRICS), patch)
    assert containers_of(result) == [WEB, {**SIDECAR, "image": "fluent-bit:3"}, METRICS]
    rest = deployment(WEB, SIDECAR, METRICS)
    del rest["spec"]["template"]["spec"]["containers"]
    del result["spec"]["template"]["spec"]["containers"]
    assert result == rest


@pytest.mark.parametrize(
    ("patch", "env"),
    [
        pytest.param(
            {
                "$setElementOrder/env": [{"name": "A"}, {"name": "B"}, {"name": "C"}],
                "env": [{"name": "C", "value": "3"}],
            },
            [*ENV, {"name": "C", "value": "3"}],
            id="add (kubectl apply)",
        ),
        pytest.param(
            {"env": [{"name": "C", "value": "3"}]},
            [{"name": "C", "value": "3"}, *ENV],
            id="add without order goes first (kubectl patch)",
        ),
        pytest.param(
            {"$setElementOrder/env": [{"name": "B"}], "env": [{"$patch": "delete", "name": "A"}]},
            [{"name": "B", "value": "2"}],
            id="remove (kubectl apply)",
        ),
        pytest.param(
            {"env": [{"name": "A", "value": "one"}]},
            [{"name": "A", "value": "one"}, {"name": "B", "value": "2"}],
            id="change a value",
        ),
        pytest.param(
            {"env": [{"name": "A", "value": None, "valueFrom": {"fieldRef": {"fieldPath": "x"}}}]},
            [
                {"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "x"}}},
                {"name": "B", "value": "2"},
            ],
            id="value to valueFrom",
        ),
        pytest.param(
            {"env": [{"name": "Z", "$patch": "delete"}]}, ENV, id="remove a missing one: no-op"
        ),
    ],
)
def test_env_by_name(patch: dict[str, Any], env: list[Any]) -> None:
    patch = template_spec(
        {"$setElementOrder/containers": [{"name": "web"}], "containers": [{"name": "web", **patch}]}
    )
    assert containers_of(smp(deployment(WEB), patch)) == [{**WEB, "env": env}]


def test_apply_removes_a_container() -> None:
    patch = template_spec(
        {
            "$setElementOrder/containers": [{"name": "web"}, {"name": "metrics"}],
            "containers": [{"$patch": "delete", "name": "log"}],
        }
    )
    assert containers_of(smp(deployment(WEB, SIDECAR, METRICS), patch)) == [WEB, METRICS]


def test_apply_reorders_containers() -> None:
    patch = template_spec(
        {"$setElementOrder/containers": [{"name": "metrics"}, {"name": "web"}, {"name": "log"}]}
    )
    assert containers_of(smp(deployment(WEB, SIDECAR, METRICS), patch)) == [METRICS, WEB, SIDECAR]


def test_apply_keeps_containers_it_does_not_manage_near_their_neighbours() -> None:
    # "log" was injected by someone else; the manifest has web, metrics, and now "new".
    patch = template_spec(
        {
            "$setElementOrder/containers": [{"name": "web"}, {"name": "metrics"}, {"name": "new"}],
            "containers": [{"name": "new", "image": "new:1"}],
        }
    )
    result = containers_of(smp(deployment(WEB, SIDECAR, METRICS), patch))
    assert [c["name"] for c in result] == ["web", "log", "metrics", "new"]


def test_apply_switches_strategy_with_retain_keys() -> None:
    patch = {
        "spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": None}}
    }
    assert smp(deployment(WEB), patch)["spec"]["strategy"] == {"type": "Recreate"}


def test_retain_keys_drops_defaulted_fields_the_patch_does_not_name() -> None:
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    assert smp(deployment(WEB), patch)["spec"]["strategy"] == {"type": "Recreate"}


def test_apply_switches_a_volume_source_with_retain_keys() -> None:
    pod = {"spec": {"volumes": [{"name": "data", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]}}
    patch = {
        "spec": {
            "$setElementOrder/volumes": [{"name": "data"}, {"name": "tmp"}],
            "volumes": [
                {"$retainKeys": ["configMap", "name"], "name": "data", "configMap": {"name": "cm"}}
            ],
        }
    }
    assert smp(pod, patch)["spec"]["volumes"] == [
        {"name": "data", "configMap": {"name": "cm"}},
        {"name": "tmp", "emptyDir": {}},
    ]


def test_labels_null_deletes_a_key() -> None:
    patch = {"metadata": {"labels": {"tier": None, "team": "x"}, "annotations": {"gone": None}}}
    result = smp(deployment(WEB), patch)
    assert result["metadata"]["labels"] == {"app": "web", "team": "x"}
    assert result["metadata"]["annotations"] == {"deployment.kubernetes.io/revision": "1"}


@pytest.mark.parametrize(
    ("finalizers", "patch", "expected"),
    [
        pytest.param(["a", "b"], {"finalizers": ["b", "c"]}, ["a", "b", "c"], id="set union"),
        pytest.param(["a", "b"], {"finalizers": ["a"]}, ["a", "b"], id="adding one present: no-op"),
        pytest.param(["a"], {"finalizers": ["c"]}, ["c", "a"], id="new goes first without order"),
        pytest.param(
            ["a", "b", "c"], {"$deleteFromPrimitiveList/finalizers": ["b"]}, ["a", "c"], id="delete"
        ),
        pytest.param(
            ["a", "b"],
            {"$deleteFromPrimitiveList/finalizers": ["x"]},
            ["a", "b"],
            id="delete a missing one: no-op",
        ),
        pytest.param(
            None, {"$deleteFromPrimitiveList/finalizers": ["x"]}, None, id="delete from no list"
        ),
        pytest.param(
            ["a", "b"],
            {
                "$setElementOrder/finalizers": ["a", "c"],
                "finalizers": ["c"],
                "$deleteFromPrimitiveList/finalizers": ["b"],
            },
            ["a", "c"],
            id="kubectl apply: replace b with c",
        ),
        pytest.param(
            ["a"],
            {"finalizers": ["b"], "$deleteFromPrimitiveList/finalizers": ["b"]},
            ["a"],
            id="delete wins over add",
        ),
        pytest.param(["a", "b"], {"finalizers": None}, None, id="null deletes them all"),
        pytest.param(["a"], {"finalizers": ["b", "b"]}, ["b", "a"], id="duplicates collapse"),
        pytest.param(
            # Kubernetes' interleaving: b came before c in the live list, so it goes first.
            ["a", "b", "c"],
            {"$setElementOrder/finalizers": ["c", "a"]},
            ["b", "c", "a"],
            id="order",
        ),
    ],
)
def test_finalizers_are_a_set(finalizers: list[str] | None, patch: Any, expected: Any) -> None:
    original: dict[str, Any] = {"metadata": {"name": "x"}}
    if finalizers is not None:
        original["metadata"]["finalizers"] = finalizers
    result = smp(original, {"metadata": patch})["metadata"]
    assert result.get("finalizers") == expected


# Strategic merge patch: the merge keys of each kind -----------------------------------


def pod(spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": spec,
    }
    if status is not None:
        obj["status"] = status
    return obj


KIND_CASES: list[Any] = [
    pytest.param(
        pod(
            {
                "containers": [
                    container("a", "a:1", ports=[{"containerPort": 80}, {"containerPort": 443}])
                ]
            }
        ),
        {
            "spec": {
                "containers": [{"name": "a", "ports": [{"containerPort": 443, "name": "https"}]}]
            }
        },
        pod(
            {
                "containers": [
                    container(
                        "a",
                        "a:1",
                        ports=[{"containerPort": 80}, {"containerPort": 443, "name": "https"}],
                    )
                ]
            }
        ),
        id="pod container ports by containerPort",
    ),
    pytest.param(
        pod(
            {"containers": [container("a", "a:1", volumeMounts=[{"mountPath": "/d", "name": "d"}])]}
        ),
        {
            "spec": {
                "containers": [
                    {
                        "name": "a",
                        "volumeMounts": [
                            {"mountPath": "/d", "readOnly": True},
                            {"mountPath": "/e", "name": "e"},
                        ],
                    }
                ]
            }
        },
        pod(
            {
                "containers": [
                    container(
                        "a",
                        "a:1",
                        volumeMounts=[
                            {"mountPath": "/d", "name": "d", "readOnly": True},
                            {"mountPath": "/e", "name": "e"},
                        ],
                    )
                ]
            }
        ),
        id="pod volumeMounts by mountPath",
    ),
    pytest.param(
        pod(
            {
                "containers": [
                    container("a", "a:1", volumeDevices=[{"devicePath": "/dev/x", "name": "x"}])
                ]
            }
        ),
        {
            "spec": {
                "containers": [
                    {"name": "a", "volumeDevices": [{"devicePath": "/dev/x", "name": "y"}]}
                ]
            }
        },
        pod(
            {
                "containers": [
                    container("a", "a:1", volumeDevices=[{"devicePath": "/dev/x", "name": "y"}])
                ]
            }
        ),
        id="pod volumeDevices by devicePath",
    ),
    pytest.param(
        pod(
            {
                "containers": [container("a", "a:1")],
                "initContainers": [container("i", "i:1"), container("j", "j:1")],
            }
        ),
        {"spec": {"initContainers": [{"name": "j", "image": "j:2"}]}},
        pod(
            {
                "containers": [container("a", "a:1")],
                "initContainers": [container("i", "i:1"), container("j", "j:2")],
            }
        ),
        id="pod initContainers by name",
    ),
    pytest.param(
        pod(
            {
                "ephemeralContainers": [
                    container("dbg", "busybox", env=[{"name": "X", "value": "1"}])
                ]
            }
        ),
        {"spec": {"ephemeralContainers": [{"name": "dbg", "env": [{"name": "Y", "value": "2"}]}]}},
        pod(
            {
                "ephemeralContainers": [
                    container(
                        "dbg",
                        "busybox",
                        env=[{"name": "Y", "value": "2"}, {"name": "X", "value": "1"}],
                    )
                ]
            }
        ),
        id="pod ephemeralContainers by name, their env by name",
    ),
    pytest.param(
        pod({"containers": [container("a", "a:1", args=["-x", "-y"], command=["run"])]}),
        {"spec": {"containers": [{"name": "a", "args": ["-z"]}]}},
        pod({"containers": [container("a", "a:1", args=["-z"], command=["run"])]}),
        id="pod args replaced",
    ),
    pytest.param(
        pod(
            {
                "tolerations": [
                    {"key": "a", "operator": "Exists"},
                    {"key": "b", "operator": "Exists"},
                ]
            }
        ),
        {"spec": {"tolerations": [{"key": "a", "operator": "Exists", "effect": "NoSchedule"}]}},
        pod({"tolerations": [{"key": "a", "operator": "Exists", "effect": "NoSchedule"}]}),
        id="pod tolerations replaced",
    ),
    pytest.param(
        pod(
            {
                "imagePullSecrets": [{"name": "a"}],
                "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["a"]}],
            }
        ),
        {
            "spec": {
                "imagePullSecrets": [{"name": "b"}],
                "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["b"]}],
            }
        },
        pod(
            {
                "imagePullSecrets": [{"name": "b"}, {"name": "a"}],
                "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["b"]}],
            }
        ),
        id="pod imagePullSecrets by name, hostAliases by ip (their hostnames replaced)",
    ),
    pytest.param(
        pod(
            {
                "topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 1}],
                "schedulingGates": [{"name": "g1"}, {"name": "g2"}],
            }
        ),
        {
            "spec": {
                "topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 2}],
                "schedulingGates": [{"$patch": "delete", "name": "g1"}],
            }
        },
        pod(
            {
                "topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 2}],
                "schedulingGates": [{"name": "g2"}],
            }
        ),
        id="pod topologySpreadConstraints by topologyKey, schedulingGates by name",
    ),
    pytest.param(
        pod(
            {},
            {
                "phase": "Pending",
                "conditions": [
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": "False"},
                ],
                "podIPs": [{"ip": "10.0.0.5"}],
            },
        ),
        {
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}],
                "podIPs": [{"ip": "fd00::5"}],
                "containerStatuses": [{"name": "a", "ready": True}],
            }
        },
        pod(
            {},
            {
                "phase": "Running",
                "conditions": [
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": "True"},
                ],
                "podIPs": [{"ip": "fd00::5"}, {"ip": "10.0.0.5"}],
                "containerStatuses": [{"name": "a", "ready": True}],
            },
        ),
        id="pod status: conditions by type, podIPs by ip (kubelet status patch)",
    ),
    pytest.param(
        pod(
            {},
            {"containerStatuses": [{"name": "a", "ready": False}, {"name": "b", "ready": False}]},
        ),
        {"status": {"containerStatuses": [{"name": "a", "ready": True}]}},
        pod({}, {"containerStatuses": [{"name": "a", "ready": True}]}),
        id="pod containerStatuses replaced",
    ),
    pytest.param(
        {
            "kind": "PodTemplate",
            "template": {
                "metadata": {"labels": {"a": "1"}},
                "spec": {"containers": [container("a", "a:1"), container("b", "b:1")]},
            },
        },
        {
            "template": {
                "metadata": {"labels": {"b": "2"}},
                "spec": {"containers": [{"name": "b", "image": "b:2"}]},
            }
        },
        {
            "kind": "PodTemplate",
            "template": {
                "metadata": {"labels": {"a": "1", "b": "2"}},
                "spec": {"containers": [container("a", "a:1"), container("b", "b:2")]},
            },
        },
        id="podtemplate containers by name",
    ),
    pytest.param(
        {
            "kind": "ReplicaSet",
            "metadata": {
                "ownerReferences": [{"uid": "u1", "kind": "Deployment", "controller": True}]
            },
            "spec": {"template": {"spec": {"containers": [container("a", "a:1")]}}},
            "status": {"replicas": 1},
        },
        {
            "metadata": {"ownerReferences": [{"uid": "u1", "blockOwnerDeletion": True}]},
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": "a", "env": [{"name": "E", "value": "1"}]}]}
                }
            },
            "status": {"conditions": [{"type": "ReplicaFailure", "status": "True"}]},
        },
        {
            "kind": "ReplicaSet",
            "metadata": {
                "ownerReferences": [
                    {
                        "uid": "u1",
                        "kind": "Deployment",
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ]
            },
            "spec": {
                "template": {
                    "spec": {
                        "containers": [container("a", "a:1", env=[{"name": "E", "value": "1"}])]
                    }
                }
            },
            "status": {"replicas": 1, "conditions": [{"type": "ReplicaFailure", "status": "True"}]},
        },
        id="replicaset ownerReferences by uid, template containers, conditions",
    ),
    pytest.param(
        {
            "kind": "Deployment",
            "status": {
                "conditions": [
                    {"type": "Available", "status": "False"},
                    {"type": "Progressing", "status": "True"},
                ]
            },
        },
        {
            "status": {
                "conditions": [
                    {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}
                ]
            }
        },
        {
            "kind": "Deployment",
            "status": {
                "conditions": [
                    {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                    {"type": "Progressing", "status": "True"},
                ]
            },
        },
        id="deployment status conditions by type",
    ),
    pytest.param(
        {
            "kind": "Service",
            "spec": {
                "selector": {"app": "web"},
                "ports": [{"port": 80, "targetPort": 8080}, {"port": 443, "targetPort": 8443}],
            },
        },
        {"spec": {"ports": [{"port": 80, "targetPort": 9090}]}},
        {
            "kind": "Service",
            "spec": {
                "selector": {"app": "web"},
                "ports": [{"port": 80, "targetPort": 9090}, {"port": 443, "targetPort": 8443}],
            },
        },
        id="service ports by port",
    ),
    pytest.param(
        {
            "kind": "Node",
            "spec": {"podCIDRs": ["10.0.0.0/24"], "taints": [{"key": "a", "effect": "NoSchedule"}]},
            "status": {
                "addresses": [
                    {"type": "InternalIP", "address": "10.1.1.1"},
                    {"type": "Hostname", "address": "n1"},
                ],
                "conditions": [
                    {"type": "Ready", "status": "False"},
                    {"type": "MemoryPressure", "status": "False"},
                ],
                "capacity": {"cpu": "2", "memory": "1Gi"},
            },
        },
        {
            "spec": {"podCIDRs": ["fd00::/64"], "taints": [{"key": "b", "effect": "NoExecute"}]},
            "status": {
                "addresses": [{"type": "InternalIP", "address": "10.1.1.2"}],
                "conditions": [{"type": "Ready", "status": "True"}],
                "capacity": {"cpu": "4"},
            },
        },
        {
            "kind": "Node",
            "spec": {
                "podCIDRs": ["fd00::/64", "10.0.0.0/24"],
                "taints": [{"key": "b", "effect": "NoExecute"}],
            },
            "status": {
                "addresses": [
                    {"type": "InternalIP", "address": "10.1.1.2"},
                    {"type": "Hostname", "address": "n1"},
                ],
                "conditions": [
                    {"type": "Ready", "status": "True"},
                    {"type": "MemoryPressure", "status": "False"},
                ],
                "capacity": {"cpu": "4", "memory": "1Gi"},
            },
        },
        id="node podCIDRs set, taints replaced, addresses and conditions by type",
    ),
    pytest.param(
        {"kind": "ConfigMap", "data": {"a": "1", "b": "2"}, "binaryData": {"x": "AA=="}},
        {"data": {"a": None, "c": "3"}, "binaryData": {"x": "AQ=="}},
        {"kind": "ConfigMap", "data": {"b": "2", "c": "3"}, "binaryData": {"x": "AQ=="}},
        id="configmap data merges as a map",
    ),
    pytest.param(
        {"kind": "Secret", "type": "Opaque", "data": {"u": "dQ=="}, "stringData": {"p": "x"}},
        {"data": {"p": "cA=="}, "stringData": None},
        {"kind": "Secret", "type": "Opaque", "data": {"u": "dQ==", "p": "cA=="}},
        id="secret data merges as a map",
    ),
    pytest.param(
        {
            "kind": "ServiceAccount",
            "secrets": [{"name": "t1"}],
            "imagePullSecrets": [{"name": "p1"}],
        },
        {"secrets": [{"name": "t2"}], "imagePullSecrets": [{"name": "p2"}]},
        {
            "kind": "ServiceAccount",
            "secrets": [{"name": "t2"}, {"name": "t1"}],
            "imagePullSecrets": [{"name": "p2"}],
        },
        id="serviceaccount secrets by name, its imagePullSecrets replaced",
    ),
    pytest.param(
        {
            "kind": "Namespace",
            "spec": {"finalizers": ["kubernetes"]},
            "metadata": {"finalizers": ["a"]},
        },
        {"spec": {"finalizers": ["other"]}, "metadata": {"finalizers": ["b"]}},
        {
            "kind": "Namespace",
            "spec": {"finalizers": ["other"]},
            "metadata": {"finalizers": ["b", "a"]},
        },
        id="namespace spec.finalizers replaced, metadata.finalizers merged",
    ),
    pytest.param(
        {
            "kind": "CronJob",
            "spec": {
                "jobTemplate": {
                    "spec": {
                        "template": {
                            "spec": {"containers": [container("a", "a:1"), container("b", "b:1")]}
                        }
                    }
                }
            },
        },
        {
            "spec": {
                "jobTemplate": {
                    "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "a:2"}]}}}
                }
            }
        },
        {
            "kind": "CronJob",
            "spec": {
                "jobTemplate": {
                    "spec": {
                        "template": {
                            "spec": {"containers": [container("a", "a:2"), container("b", "b:1")]}
                        }
                    }
                }
            },
        },
        id="cronjob job template containers by name",
    ),
]


@pytest.mark.parametrize(("original", "patch", "expected"), KIND_CASES)
def test_merge_keys_by_kind(original: Any, patch: Any, expected: Any) -> None:
    assert smp(original, patch) == expected


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("spec.containers", "name"),
        ("spec.initContainers", "name"),
        ("spec.ephemeralContainers", "name"),
        ("spec.volumes", "name"),
        ("spec.imagePullSecrets", "name"),
        ("spec.hostAliases", "ip"),
        ("spec.topologySpreadConstraints", "topologyKey"),
        ("spec.containers[].env", "name"),
        ("spec.containers[].ports", "containerPort"),
        ("spec.containers[].volumeMounts", "mountPath"),
        ("spec.containers[].volumeDevices", "devicePath"),
        ("spec.initContainers[].env", "name"),
        ("spec.ephemeralContainers[].volumeMounts", "mountPath"),
        ("template.spec.containers", "name"),
        ("template.spec.containers[].env", "name"),
        ("template.metadata.ownerReferences", "uid"),
        ("spec.template.spec.containers", "name"),
        ("spec.template.spec.initContainers[].ports", "containerPort"),
        ("spec.template.spec.volumes", "name"),
        ("spec.template.metadata.finalizers", None),
        ("spec.jobTemplate.spec.template.spec.containers[].env", "name"),
        ("metadata.ownerReferences", "uid"),
        ("metadata.finalizers", None),
        ("status.conditions", "type"),
        ("status.podIPs", "ip"),
        ("status.hostIPs", "ip"),
        ("status.addresses", "type"),
        ("spec.podCIDRs", None),
        ("spec.ports", "port"),
        ("secrets", "name"),
    ],
)
def test_merge_key_table(path: str, key: str | None) -> None:
    assert path in LIST_MERGE_KEYS
    assert LIST_MERGE_KEYS[path] == key


@pytest.mark.parametrize(
    "path",
    [
        "spec.tolerations",
        "spec.containers[].args",
        "spec.containers[].command",
        "spec.containers[].envFrom",
        "spec.containers[].resources.claims",
        "spec.readinessGates",
        "spec.taints",
        "spec.finalizers",
        "status.containerStatuses",
        "status.images",
        "spec.template.spec.tolerations",
        "subsets",
    ],
)
def test_atomic_lists_are_not_in_the_table(path: str) -> None:
    assert path not in LIST_MERGE_KEYS


def test_merge_key_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        LIST_MERGE_KEYS["spec.tolerations"] = "key"  # type: ignore[index]


# Strategic merge patch: directives and edge cases ---------------------------------


@pytest.mark.parametrize(
    ("original", "patch", "expected"),
    [
        pytest.param({"a": {"b": 1}}, {"a": {"c": 2}}, {"a": {"b": 1, "c": 2}}, id="maps merge"),
        pytest.param({"a": 1}, {"a": None, "z": None}, {}, id="null deletes, unknown null ignored"),
        pytest.param({"a": {"b": 1}}, {"a": "s"}, {"a": "s"}, id="other type replaces"),
        pytest.param({"a": [1]}, {"a": {"b": 1}}, {"a": {"b": 1}}, id="map replaces list"),
        pytest.param(
            {}, {"a": {"b": None, "c": {"d": None}}}, {"a": {"c": {}}}, id="new map nulls"
        ),
        pytest.param({"x": [1, 2]}, {"x": [3]}, {"x": [3]}, id="list without merge key replaced"),
        pytest.param(
            {"x": [{"a": 1}]},
            {"x": [{"a": None, "b": 2}]},
            {"x": [{"b": 2}]},
            id="replaced list nulls",
        ),
        pytest.param(
            {"a": {"b": 1, "c": 2}},
            {"a": {"$patch": "replace", "d": 3}},
            {"a": {"d": 3}},
            id="$patch replace on a map",
        ),
        pytest.param(
            {"a": 1},
            {"$patch": "replace", "b": {"c": None, "d": 1}},
            {"b": {"d": 1}},
            id="$patch replace at the root",
        ),
        pytest.param(
            {"a": {"b": 1}, "k": 1},
            {"a": {"$patch": "delete", "ignored": 1}},
            {"k": 1},
            id="$patch delete on a map deletes the key",
        ),
        pytest.param({"a": 1}, {"$patch": "delete"}, {}, id="$patch delete at the root"),
        pytest.param(
            {"a": {"b": 1}}, {"a": {"$patch": "merge", "c": 2}}, {"a": {"b": 1, "c": 2}}, id="merge"
        ),
        pytest.param({}, {"a": {"$patch": "delete"}}, {}, id="new map deleted"),
        pytest.param(
            {}, {"a": {"$patch": "replace", "b": 1}}, {"a": {"b": 1}}, id="new map replaced"
        ),
        pytest.param(
            {"a": {"keep": 1, "drop": 2}},
            {"a": {"$retainKeys": ["keep", "new"], "new": 3}},
            {"a": {"keep": 1, "new": 3}},
            id="$retainKeys",
        ),
        pytest.param(
            {"a": {"b": 1}},
            {"a": {"$retainKeys": [], "b": None}},
            {"a": {}},
            id="$retainKeys empty with a null",
        ),
    ],
)
def test_smp_maps(original: Any, patch: Any, expected: Any) -> None:
    assert smp(original, patch) == expected


def spec_containers(*items: Any) -> dict[str, Any]:
    return {"spec": {"containers": list(items)}}


@pytest.mark.parametrize(
    ("original", "patch", "expected"),
    [
        pytest.param(
            spec_containers(container("a", "a:1"), container("b", "b:1")),
            spec_containers({"$patch": "replace"}, container("c", "c:1")),
            spec_containers(container("c", "c:1")),
            id="$patch replace item replaces the list",
        ),
        pytest.param(
            spec_containers(container("a", "a:1")),
            spec_containers({"$patch": "replace"}),
            spec_containers(),
            id="$patch replace alone empties the list",
        ),
        pytest.param(
            spec_containers(container("a", "a:1"), container("b", "b:1")),
            spec_containers({"name": "a", "$patch": "delete"}, {"name": "b", "image": "b:2"}),
            spec_containers(container("b", "b:2")),
            id="delete one, change another",
        ),
        pytest.param(
            spec_containers(container("a", "a:1")),
            spec_containers({"$patch": "merge"}, {"name": "a", "image": "a:2", "$patch": "merge"}),
            spec_containers(container("a", "a:2")),
            id="$patch merge items",
        ),
        pytest.param(
            spec_containers(container("a", "a:1")),
            spec_containers(),
            spec_containers(container("a", "a:1")),
            id="empty patch list changes nothing",
        ),
        pytest.param(
            {"spec": {}},
            spec_containers(
                container(
                    "a",
                    "a:1",
                    env=[{"name": "X", "$patch": "delete"}, {"name": "Y", "value": None}],
                )
            ),
            spec_containers(container("a", "a:1", env=[{"name": "Y"}])),
            id="new list: directives applied, nulls dropped",
        ),
        pytest.param(
            spec_containers(container("a", "a:1")),
            spec_containers(
                container("b", "b:1", ports=[{"containerPort": 1, "$patch": "delete"}])
            ),
            spec_containers(container("b", "b:1", ports=[]), container("a", "a:1")),
            id="new item: its directives applied",
        ),
        pytest.param(
            {"spec": {"tolerations": [{"key": "a"}]}},
            {"spec": {"tolerations": [{"$patch": "replace"}, {"key": "b", "value": None}]}},
            {"spec": {"tolerations": [{"key": "b"}]}},
            id="replaced list: directive items dropped",
        ),
        pytest.param(
            spec_containers(container("a", "a:1"), container("b", "b:1"), container("c", "c:1")),
            spec_containers({"name": "c", "image": "c:2"}, {"name": "a", "image": "a:2"}),
            spec_containers(container("b", "b:1"), container("c", "c:2"), container("a", "a:2")),
            id="without order: the patch's order, b before c as in the live list",
        ),
    ],
)
def test_smp_lists(original: Any, patch: Any, expected: Any) -> None:
    assert smp(original, patch) == expected


@pytest.mark.parametrize(
    ("live", "patch", "expected"),
    [
        pytest.param(
            ["1", "2", "7", "9", "8", "3", "4"],
            {"$setElementOrder/conditions": [{"type": t} for t in ("2", "1", "4", "3")]},
            ["2", "1", "7", "9", "8", "4", "3"],
            id="server-only items stay after their live predecessor",
        ),
        pytest.param(
            ["1", "2"],
            {
                "$setElementOrder/conditions": [{"type": t} for t in ("4", "1", "2", "3")],
                "conditions": [{"type": "4"}, {"type": "3"}],
            },
            ["4", "1", "2", "3"],
            id="added items where the order puts them",
        ),
        pytest.param(
            ["1", "3"],
            {
                "$setElementOrder/conditions": [{"type": t} for t in ("3", "2", "1")],
                "conditions": [{"type": "3", "x": 1}, {"type": "1", "x": 1}],
            },
            ["3", "1"],
            id="an order naming a missing item",
        ),
        pytest.param(
            None,
            {"$setElementOrder/conditions": [{"type": "b"}, {"type": "a"}]},
            None,
            id="order of a list that is in neither",
        ),
        pytest.param(
            None,
            {
                "$setElementOrder/conditions": [{"type": "b"}, {"type": "a"}],
                "conditions": [{"type": "b"}, {"type": "c", "$patch": "delete"}, {"type": "a"}],
            },
            ["b", "a"],
            id="a new list in the order given",
        ),
        pytest.param(
            ["1", "2", "4"],
            {
                "$setElementOrder/conditions": [{"type": "2"}, {"type": "3"}],
                "conditions": [{"type": "3"}, {"type": "1", "$patch": "delete"}],
            },
            ["2", "3", "4"],  # Kubernetes: 2, 4, 3 (an artefact of Go slice aliasing)
            id="delete and add around a server-only item",
        ),
    ],
)
def test_set_element_order(live: list[str] | None, patch: dict[str, Any], expected: Any) -> None:
    status: dict[str, Any] = {}
    if live is not None:
        status["conditions"] = [{"type": t} for t in live]
    result = smp({"status": status}, {"status": patch})["status"]
    if expected is None:
        assert "conditions" not in result
    else:
        assert [c["type"] for c in result["conditions"]] == expected


def test_set_element_order_primitives() -> None:
    original = {"spec": {"podCIDRs": ["1", "2", "3"]}}
    patch = {"spec": {"$setElementOrder/podCIDRs": ["3", "1"], "podCIDRs": ["3"]}}
    # As Kubernetes interleaves: 2 came before 3 in the live list.
    assert smp(original, patch) == {"spec": {"podCIDRs": ["2", "3", "1"]}}


@pytest.mark.parametrize(
    ("original", "patch", "expected"),
    [
        pytest.param([], [], [], id="both empty"),
        pytest.param([None, "a"], [None, "b"], [None, "b", "a"], id="null is a value"),
        pytest.param([1, 1.0, True], [1.0], [1, True], id="1 and 1.0 are one value, true another"),
    ],
)
def test_primitive_sets(original: list[Any], patch: list[Any], expected: list[Any]) -> None:
    result = smp({"metadata": {"finalizers": original}}, {"metadata": {"finalizers": patch}})
    assert result == {"metadata": {"finalizers": expected}}


def test_merge_keys_that_are_objects_compare_as_json() -> None:
    original = {"status": {"conditions": [{"type": {"k": [1, None]}, "s": 1}, {"type": "x"}]}}
    patch = {"status": {"conditions": [{"type": {"k": [1.0, None]}, "s": 2}]}}
    assert smp(original, patch) == {
        "status": {"conditions": [{"type": {"k": [1, None]}, "s": 2}, {"type": "x"}]}
    }


def test_merge_key_values_compare_as_json() -> None:
    # 80 and 80.0 are the same port; true is not 1.
    original = spec_containers(container("a", "a:1", ports=[{"containerPort": 80, "name": "x"}]))
    patch = spec_containers({"name": "a", "ports": [{"containerPort": 80.0, "protocol": "TCP"}]})
    result = smp(original, patch)
    assert result["spec"]["containers"][0]["ports"] == [
        {"containerPort": 80, "name": "x", "protocol": "TCP"}
    ]
    primitive = smp({"spec": {"podCIDRs": [1]}}, {"spec": {"podCIDRs": [True]}})
    assert primitive == {"spec": {"podCIDRs": [True, 1]}}


@pytest.mark.parametrize(
    ("original", "patch", "message"),
    [
        pytest.param({}, [1], "strategic merge patch: must be an object, not an array", id="list"),
        pytest.param({}, "x", "must be an object, not a string", id="string"),
        pytest.param({}, True, "must be an object, not a boolean", id="boolean"),
        pytest.param({}, None, "must be an object, not null", id="null"),
        pytest.param({}, 1.5, "must be an object, not a number", id="number"),
        pytest.param([], {}, "cannot patch an array", id="original not an object"),
        pytest.param(
            spec_containers(container("a", "a:1")),
            spec_containers({"image": "x"}),
            "spec.containers[0]: list item has no merge key 'name'",
            id="missing merge key",
        ),
        pytest.param(
            spec_containers(container("a", "a:1")),
            spec_containers({"$patch": "delete", "image": "x"}),
            "spec.containers[0]: list item has no merge key 'name'",
            id="delete without merge key",
        ),
        pytest.param(
            spec_containers(container("a", "a:1")),
            spec_containers({"name": "a", "$patch": "frob"}),
            "spec.containers[0]: unknown $patch directive 'frob'",
            id="unknown $patch in a list item",
        ),
        pytest.param(
            {"metadata": {"labels": {}}},
            {"metadata": {"labels": {"$patch": 1}}},
            "metadata.labels: unknown $patch directive 1",
            id="unknown $patch in a map",
        ),
        pytest.param(
            {"spec": {"tolerations": []}},
            {"spec": {"tolerations": [{"$patch": "bogus"}]}},
            "spec.tolerations[0]: unknown $patch directive 'bogus'",
            id="unknown $patch in a replaced list",
        ),
        pytest.param({}, {"$frob": 1}, "<root>: unknown directive '$frob'", id="unknown directive"),
        pytest.param(
            {},
            {"spec": {"$setElementOrder/": []}},
            "spec: directive '$setElementOrder/' names no",
            id="sEO/",
        ),
        pytest.param(
            {},
            {"metadata": {"$deleteFromPrimitiveList/": []}},
            "names no field",
            id="dFPL/",
        ),
        pytest.param(
            {"spec": {"strategy": {}}},
            {"spec": {"strategy": {"$retainKeys": "type"}}},
            "spec.strategy: $retainKeys must be a list of field names",
            id="$retainKeys not a list",
        ),
        pytest.param(
            {"spec": {"strategy": {}}},
            {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}},
            "spec.strategy: 'rollingUpdate' is in the patch but not in $retainKeys",
            id="$retainKeys missing a patched key",
        ),
        pytest.param(
            {"spec": {"containers": []}},
            {"spec": {"$setElementOrder/containers": {"name": "a"}}},
            "spec.containers: $setElementOrder/containers must be a list",
            id="$setElementOrder not a list",
        ),
        pytest.param(
            {"spec": {"containers": []}},
            {"spec": {"$setElementOrder/containers": [{"image": "a"}]}},
            "spec.containers[0]: list item has no merge key 'name'",
            id="$setElementOrder item without merge key",
        ),
        pytest.param(
            {"spec": {"tolerations": []}},
            {"spec": {"$setElementOrder/tolerations": [{"key": "a"}]}},
            "the list has no merge key",
            id="$setElementOrder of objects without a merge key",
        ),
        pytest.param(
            {"spec": {"containers": {}}},
            {"spec": {"$setElementOrder/containers": []}},
            "names an object, not a list",
            id="$setElementOrder of a map",
        ),
        pytest.param(
            {"spec": {"containers": []}},
            {"spec": {"$setElementOrder/containers": [], "containers": None}},
            "goes with null, not a list",
            id="$setElementOrder with a null list",
        ),
        pytest.param(
            {"spec": {"containers": [container("a", "x"), container("b", "x")]}},
            {
                "spec": {
                    "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                    "containers": [{"name": "b", "image": "y"}, {"name": "a", "image": "y"}],
                }
            },
            "spec.containers[1]: not in the order $setElementOrder gives",
            id="patch order disagrees with $setElementOrder",
        ),
        pytest.param(
            {"metadata": {"finalizers": ["a"]}},
            {"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}},
            "metadata.finalizers: $deleteFromPrimitiveList/finalizers must be a list of primitives",
            id="$deleteFromPrimitiveList not a list",
        ),
        pytest.param(
            {"metadata": {"finalizers": ["a"]}},
            {"metadata": {"$deleteFromPrimitiveList/finalizers": [{"a": 1}]}},
            "must be a list of primitives",
            id="$deleteFromPrimitiveList of objects",
        ),
        pytest.param(
            {"metadata": {"finalizers": ["a"]}},
            {"metadata": {"finalizers": [{"name": "b"}]}},
            "metadata.finalizers: cannot merge a list that mixes objects and primitives",
            id="mixed list",
        ),
        pytest.param(
            {"metadata": {"finalizers": [["a"]]}},
            {"metadata": {"finalizers": [["b"]]}},
            "cannot merge a list of lists",
            id="list of lists",
        ),
        pytest.param(
            {"metadata": {"finalizers": [{"a": 1}]}},
            {"metadata": {"finalizers": [{"a": 2}]}},
            "cannot merge a list of objects without a merge key",
            id="objects in a primitive set",
        ),
    ],
)
def test_smp_errors(original: Any, patch: Any, message: str) -> None:
    with pytest.raises(PatchError) as caught:
        smp(original, patch)
    assert message in str(caught.value)
    assert str(caught.value).startswith("strategic merge patch: ")


def test_smp_error_path_attribute() -> None:
    patch = template_spec({"containers": [{"name": "web", "env": [{"value": "1"}]}]})
    with pytest.raises(PatchError) as caught:
        smp(deployment(WEB), patch)
    assert caught.value.path == "spec.template.spec.containers[0].env[0]"
    assert str(caught.value) == (
        "strategic merge patch: spec.template.spec.containers[0].env[0]: "
        "list item has no merge key 'name'"
    )


def test_field_names_with_dots_do_not_reach_the_table() -> None:
    # A map key "spec.containers" at the root is not the path spec.containers.
    original = {"spec.containers": [{"name": "a", "x": 1}]}
    assert smp(original, {"spec.containers": [{"name": "a"}]}) == {
        "spec.containers": [{"name": "a"}]
    }
