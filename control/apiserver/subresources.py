"""Subresources with verbs of their own: a pod's `binding` (the scheduler's POST
that sets spec.nodeName), `eviction` (a delete as the eviction API asks it; no
PodDisruptionBudgets yet, so it is always allowed), the `scale` of Deployments
and ReplicaSets (autoscaling/v1 Scale: GET, and PUT/PATCH of spec.replicas) and a
namespace's `finalize` (PUT: only spec.finalizers changes; the namespace controller
empties it once the namespace is empty, and a deleted namespace then goes).
"""

from __future__ import annotations

from typing import Any

from control.apiserver import errors
from control.apiserver.errors import Target
from control.apiserver.objects import Registry
from control.apiserver.resources import ResourceType
from control.apiserver.validation import Cause

Object = dict[str, Any]


def bind(
    registry: Registry, pods: ResourceType, namespace: str, name: str, binding: Object
) -> Object:
    """POST pods/<name>/binding: bind the pod to `target.name` once."""
    target = binding.get("target") if isinstance(binding.get("target"), dict) else {}
    node = str((target or {}).get("name") or "")
    what = Target("pods", name)
    if not node:
        raise errors.invalid("Binding", Target("Binding", name), [
            Cause("FieldValueRequired", "Required value", "target.name"),
        ])  # fmt: skip

    def assign(pod: Object) -> Object:
        spec = pod.setdefault("spec", {})
        if pod["metadata"].get("deletionTimestamp"):
            raise errors.conflict(what, "pod is being deleted, cannot be assigned to a host")
        if spec.get("nodeName"):
            raise errors.conflict(
                what, f'pod {name} is already assigned to node "{spec["nodeName"]}"'
            )
        spec["nodeName"] = node
        conditions = pod.setdefault("status", {}).setdefault("conditions", [])
        conditions[:] = [c for c in conditions if c.get("type") != "PodScheduled"]
        conditions.append({"type": "PodScheduled", "status": "True"})
        return pod

    registry.guaranteed_update(pods, namespace, name, assign)
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}


def evict(
    registry: Registry, pods: ResourceType, namespace: str, name: str, eviction: Object
) -> Object:
    """POST pods/<name>/eviction: delete the pod with the eviction's options."""
    options = (
        eviction.get("deleteOptions") if isinstance(eviction.get("deleteOptions"), dict) else {}
    )
    grace = (options or {}).get("gracePeriodSeconds")
    registry.delete(pods, namespace, name, grace_period=None if grace is None else int(grace))
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}


def scale_of(resource: ResourceType, obj: Object) -> Object:
    spec, status, meta = obj.get("spec") or {}, obj.get("status") or {}, obj["metadata"]
    selector = ",".join(
        f"{k}={v}"
        for k, v in sorted(((spec.get("selector") or {}).get("matchLabels") or {}).items())
    )
    return {
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                          "creationTimestamp") if k in meta},
        "spec": {"replicas": spec.get("replicas", 0)},
        "status": {"replicas": status.get("replicas", 0), "selector": selector},
    }  # fmt: skip


def get_scale(registry: Registry, resource: ResourceType, namespace: str, name: str) -> Object:
    return scale_of(resource, registry.get(resource, namespace, name))


def set_scale(
    registry: Registry, resource: ResourceType, namespace: str, name: str, scale: Object
) -> Object:
    # Absent is 0: Go encoders omit a zero spec.replicas.
    replicas = (scale.get("spec") or {}).get("replicas", 0)
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise errors.invalid("Scale", Target("Scale", name), [
            Cause("FieldValueInvalid",
                         f"Invalid value: {replicas}: must be greater than or equal to 0",
                         "spec.replicas"),
        ])  # fmt: skip
    wanted = (scale.get("metadata") or {}).get("resourceVersion")

    def change(obj: Object) -> Object:
        if wanted and wanted != obj["metadata"]["resourceVersion"]:
            raise errors.conflict(Target(resource.plural, name, resource.group),
                                  "the object has been modified; please apply your changes to "
                                  "the latest version and try again")  # fmt: skip
        if obj["spec"].get("replicas") != replicas:
            obj["spec"]["replicas"] = replicas
            obj["metadata"]["generation"] = int(obj["metadata"].get("generation", 1)) + 1
        return obj

    return scale_of(resource, registry.guaranteed_update(resource, namespace, name, change))


def finalize_namespace(
    registry: Registry, namespaces: ResourceType, name: str, namespace: Object
) -> Object:
    """PUT namespaces/<name>/finalize: the namespace with the body's spec.finalizers."""
    spec = namespace.get("spec") if isinstance(namespace.get("spec"), dict) else {}
    finalizers = (spec or {}).get("finalizers") or []
    if not isinstance(finalizers, list) or not all(isinstance(f, str) and f for f in finalizers):
        raise errors.invalid("Namespace", Target("namespaces", name), [
            Cause("FieldValueInvalid", "Invalid value: must be a list of finalizer names",
                  "spec.finalizers"),
        ])  # fmt: skip
    meta = namespace.get("metadata") if isinstance(namespace.get("metadata"), dict) else {}
    given_name = (meta or {}).get("name")
    if given_name and given_name != name:
        raise errors.bad_request(
            f"the name of the object ({given_name}) does not match the name on the URL ({name})"
        )
    wanted = (meta or {}).get("resourceVersion")

    def change(current: Object) -> Object:
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise errors.conflict(Target("namespaces", name),
                                  "the object has been modified; please apply your changes to "
                                  "the latest version and try again")  # fmt: skip
        current.setdefault("spec", {})["finalizers"] = list(dict.fromkeys(finalizers))
        return current

    return registry.guaranteed_update(namespaces, "", name, change)
