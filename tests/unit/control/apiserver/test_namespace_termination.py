"""Namespace termination in the registry (deletionTimestamp and phase Terminating, held
by spec.finalizers until namespaces/<name>/finalize empties them, no new content, the
system namespaces never deleted) and the DefaultTolerationSeconds defaults of pods."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from control.apiserver import subresources
from control.apiserver.errors import ApiError
from control.apiserver.objects import Registry
from control.apiserver.resources import ResourceType, lookup
from control.storage import MemoryBackend


def resource(plural: str) -> ResourceType:
    found = lookup("", "v1", plural)
    assert found is not None
    return found


NAMESPACES, PODS, CONFIGMAPS = resource("namespaces"), resource("pods"), resource("configmaps")


@pytest.fixture
def registry() -> Iterator[Registry]:
    with MemoryBackend() as backend:
        registry = Registry(backend, clock=lambda: 1_700_000_000.0,
                            unreachable_toleration_seconds=7)  # fmt: skip
        for name in ("default", "team"):
            registry.create(NAMESPACES, "", {"metadata": {"name": name}})
        yield registry


def gone(registry: Registry, name: str) -> bool:
    try:
        registry.get(NAMESPACES, "", name)
    except ApiError as e:
        assert e.code == 404
        return True
    return False


def test_a_deleted_namespace_terminates_until_finalized(registry: Registry) -> None:
    assert registry.get(NAMESPACES, "", "team")["spec"]["finalizers"] == ["kubernetes"]
    registry.create(CONFIGMAPS, "team", {"metadata": {"name": "kept"}})
    marked = registry.delete(NAMESPACES, "", "team")
    assert marked["metadata"]["deletionTimestamp"] == "2023-11-14T22:13:20Z"
    assert marked["status"]["phase"] == "Terminating"
    stored = registry.get(NAMESPACES, "", "team")
    assert stored["status"]["phase"] == "Terminating"
    with pytest.raises(ApiError) as refused:
        registry.create(CONFIGMAPS, "team", {"metadata": {"name": "late"}})
    assert refused.value.code == 403 and refused.value.reason == "Forbidden"
    assert refused.value.message == (
        "unable to create new content in namespace team because it is being terminated"
    )
    # Updates of what is there still work (controllers remove finalizers so).
    registry.update(CONFIGMAPS, "team", "kept", {"metadata": {"name": "kept"}, "data": {"a": "b"}})
    # A second delete changes nothing; a plain update cannot drop spec.finalizers.
    registry.delete(NAMESPACES, "", "team")
    registry.update(NAMESPACES, "", "team", {**stored, "spec": {"finalizers": []}})
    assert registry.get(NAMESPACES, "", "team")["spec"]["finalizers"] == ["kubernetes"]
    finalized = subresources.finalize_namespace(
        registry, NAMESPACES, "team", {"metadata": {"name": "team"}, "spec": {"finalizers": []}}
    )
    assert finalized["spec"]["finalizers"] == []
    assert gone(registry, "team")


def test_metadata_finalizers_hold_a_finalized_namespace(registry: Registry) -> None:
    namespace = registry.get(NAMESPACES, "", "team")
    registry.update(NAMESPACES, "", "team", {
        **namespace, "metadata": {**namespace["metadata"], "finalizers": ["example.com/x"]},
    })  # fmt: skip
    registry.delete(NAMESPACES, "", "team")
    subresources.finalize_namespace(registry, NAMESPACES, "team", {"spec": {"finalizers": []}})
    held = registry.get(NAMESPACES, "", "team")
    assert held["spec"]["finalizers"] == []
    # Updating it does not bring the "kubernetes" default back.
    registry.update(NAMESPACES, "", "team", {**held, "spec": {}})
    assert registry.get(NAMESPACES, "", "team")["spec"]["finalizers"] == []
    registry.update(NAMESPACES, "", "team", {
        **held, "metadata": {**held["metadata"], "finalizers": [], "resourceVersion": ""},
    })  # fmt: skip
    assert gone(registry, "team")


def test_finalize_changes_only_the_finalizers(registry: Registry) -> None:
    before = registry.get(NAMESPACES, "", "team")
    after = subresources.finalize_namespace(registry, NAMESPACES, "team", {
        "metadata": {"name": "team", "labels": {"x": "y"}},
        "spec": {"finalizers": ["a/b", "a/b", "kubernetes"]}, "status": {"phase": "Gone"},
    })  # fmt: skip
    assert after["spec"]["finalizers"] == ["a/b", "kubernetes"]
    assert after["metadata"].get("labels") == before["metadata"].get("labels")
    assert after["status"] == before["status"]
    for bad in ({"spec": {"finalizers": "kubernetes"}}, {"spec": {"finalizers": [""]}}):
        with pytest.raises(ApiError) as invalid:
            subresources.finalize_namespace(registry, NAMESPACES, "team", bad)
        assert invalid.value.code == 422
    with pytest.raises(ApiError) as conflict:
        subresources.finalize_namespace(registry, NAMESPACES, "team", {
            "metadata": {"resourceVersion": before["metadata"]["resourceVersion"]},
        })  # fmt: skip
    assert conflict.value.code == 409
    with pytest.raises(ApiError) as renamed:
        subresources.finalize_namespace(registry, NAMESPACES, "team", {"metadata": {"name": "x"}})
    assert renamed.value.code == 400


@pytest.mark.parametrize("name", ["default", "kube-system", "kube-public"])
def test_system_namespaces_may_not_be_deleted(registry: Registry, name: str) -> None:
    with pytest.raises(ApiError) as forbidden:
        registry.delete(NAMESPACES, "", name)
    assert forbidden.value.code == 403
    assert forbidden.value.message == (
        f'namespaces "{name}" is forbidden: this namespace may not be deleted'
    )


def _tolerations(registry: Registry, name: str, given: list[Any] | None) -> list[Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}]}
    if given is not None:
        spec["tolerations"] = given
    pod = registry.create(PODS, "default", {"metadata": {"name": name}, "spec": spec})
    return list(pod["spec"].get("tolerations") or [])


def test_default_toleration_seconds(registry: Registry) -> None:
    added = _tolerations(registry, "plain", None)
    assert added == [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 300},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 7},
    ]  # fmt: skip
    own = {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
           "effect": "NoExecute", "tolerationSeconds": 1}  # fmt: skip
    mixed = _tolerations(registry, "own", [own])
    assert mixed[0] == own and [t["key"] for t in mixed] == [
        "node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"]  # fmt: skip
    assert _tolerations(registry, "all", [{"operator": "Exists"}]) == [{"operator": "Exists"}]
    no_schedule = {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                   "effect": "NoSchedule"}  # fmt: skip
    assert len(_tolerations(registry, "other-effect", [no_schedule])) == 3
    # Defaults are added when pods are created only: an update keeps the spec as it is.
    pod = registry.get(PODS, "default", "plain")
    updated = registry.update(PODS, "default", "plain", pod)
    assert updated["spec"]["tolerations"] == added
