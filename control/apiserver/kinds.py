"""What is particular to each kind: defaults, validation, the initial status, the
grace period of a delete. Everything else is generic (objects.py).

Defaults are those the real API applies (pkg/apis/core/v1/defaults.go and
apps/v1's), for the fields clients and controllers rely on: a pod's restartPolicy,
terminationGracePeriodSeconds, dnsPolicy, schedulerName, each container's
imagePullPolicy (Always for :latest or no tag, else IfNotPresent),
terminationMessagePath/Policy; a Deployment's replicas, strategy,
revisionHistoryLimit, progressDeadlineSeconds; a Service's type, sessionAffinity,
port protocol and targetPort; a Namespace's finalizer and phase.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from control.apiserver import validation
from control.apiserver.resources import ResourceType
from control.apiserver.validation import Cause

Object = dict[str, Any]


def _nothing(_obj: Object) -> None:
    return None


def _no_causes(_obj: Object) -> list[Cause]:
    return []


def _no_update_causes(_old: Object, _new: Object) -> list[Cause]:
    return []


@dataclass(frozen=True)
class Kind:
    default: Callable[[Object], None] = _nothing
    validate: Callable[[Object], list[Cause]] = _no_causes
    validate_update: Callable[[Object, Object], list[Cause]] = _no_update_causes
    initial_status: Callable[[Object], None] = _nothing
    # (object, requested grace period or None) -> seconds to wait before it is gone
    grace_period: Callable[[Object, int | None], int] = lambda _obj, _requested: 0
    # Marks the object as being deleted, besides deletionTimestamp (a phase, ...).
    terminate: Callable[[Object], None] = _nothing
    # Whether something other than metadata.finalizers still holds a deleted object.
    held: Callable[[Object], bool] = lambda _obj: False
    # (current, new) on an update: puts back in `new` what only a subresource changes.
    keep_on_update: Callable[[Object, Object], None] = lambda _current, _new: None


# -- pods -------------------------------------------------------------------------------


def _image_pull_policy(image: str) -> str:
    name = image.split("@", 1)[0]
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else ""
    if not tag and "@" not in image:
        tag = "latest"  # no tag and no digest: the reference means :latest
    return "Always" if tag == "latest" else "IfNotPresent"


def default_container(container: Object) -> None:
    container.setdefault("imagePullPolicy", _image_pull_policy(str(container.get("image", ""))))
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("resources", {})
    for port in container.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")


def default_pod_spec(spec: Object) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    if spec.get("serviceAccountName") and not spec.get("serviceAccount"):
        spec["serviceAccount"] = spec["serviceAccountName"]
    for field in ("initContainers", "containers"):
        for container in spec.get(field) or []:
            if isinstance(container, dict):
                default_container(container)
    for volume in spec.get("volumes") or []:
        if isinstance(volume, dict) and len(volume) == 1 and "name" in volume:
            volume["emptyDir"] = {}  # a volume with no source is an emptyDir


def _default_pod(pod: Object) -> None:
    spec = pod.setdefault("spec", {})
    if isinstance(spec, dict):
        default_pod_spec(spec)


def _pod_grace(pod: Object, requested: int | None) -> int:
    """A pod no kubelet runs (unbound) goes at once; otherwise the kubelet gets the
    grace period to stop its containers and deletes it then."""
    spec = pod.get("spec") or {}
    if not spec.get("nodeName"):
        return 0
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return 0  # nothing left to stop
    if requested is not None:
        return max(requested, 0)
    return int(spec.get("terminationGracePeriodSeconds", 30))


def _pending(pod: Object) -> None:
    pod["status"] = {"phase": "Pending"}  # what a client sends is not the status


NOT_READY_TAINT = "node.kubernetes.io/not-ready"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
DEFAULT_TOLERATION_SECONDS = 300


def _tolerates_no_execute(toleration: Object, key: str) -> bool:
    """Whether `toleration` already covers the key's NoExecute taint (any value)."""
    if toleration.get("effect") not in (None, "", "NoExecute"):
        return False
    if not toleration.get("key"):
        return toleration.get("operator") == "Exists"  # tolerates every taint
    return toleration.get("key") == key


def default_toleration_seconds(
    pod: Object,
    *,
    not_ready: int = DEFAULT_TOLERATION_SECONDS,
    unreachable: int = DEFAULT_TOLERATION_SECONDS,
) -> None:
    """The DefaultTolerationSeconds admission (pods being created): a pod that does
    not tolerate the not-ready / unreachable NoExecute taints tolerates them for a
    while, so a short node outage does not evict it at once."""
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        return
    tolerations = spec.get("tolerations")
    if tolerations is None:
        tolerations = []
    if not isinstance(tolerations, list):
        return  # validation names the field
    given = [t for t in tolerations if isinstance(t, dict)]
    added = [
        {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}
        for key, seconds in ((NOT_READY_TAINT, not_ready), (UNREACHABLE_TAINT, unreachable))
        if not any(_tolerates_no_execute(t, key) for t in given)
    ]
    if added:
        spec["tolerations"] = [*tolerations, *added]


# -- apps ---------------------------------------------------------------------------


def _default_template(obj: Object) -> None:
    template = (obj.get("spec") or {}).get("template")
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        default_pod_spec(template["spec"])


def _default_deployment(deployment: Object) -> None:
    spec = deployment.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("replicas", 1)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    _default_template(deployment)


def _default_replicaset(replicaset: Object) -> None:
    spec = replicaset.setdefault("spec", {})
    if isinstance(spec, dict):
        spec.setdefault("replicas", 1)
    _default_template(replicaset)


# -- core, other ----------------------------------------------------------------------


def _default_service(service: Object) -> None:
    spec = service.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
            if "port" in port:
                port.setdefault("targetPort", port["port"])


def _default_secret(secret: Object) -> None:
    secret.setdefault("type", "Opaque")


def _default_namespace(namespace: Object) -> None:
    spec = namespace.setdefault("spec", {})
    if isinstance(spec, dict):
        spec.setdefault("finalizers", ["kubernetes"])


def _active(namespace: Object) -> None:
    namespace["status"] = {"phase": "Active"}


def _namespace_terminating(namespace: Object) -> None:
    namespace.setdefault("status", {})["phase"] = "Terminating"


def _namespace_held(namespace: Object) -> bool:
    """A namespace goes once its spec.finalizers ("kubernetes": the namespace
    controller has not emptied it yet) are gone too."""
    return bool((namespace.get("spec") or {}).get("finalizers"))


def _keep_namespace_finalizers(current: Object, new: Object) -> None:
    """spec.finalizers change only through namespaces/<name>/finalize."""
    spec = new.setdefault("spec", {})
    if isinstance(spec, dict):  # [] once finalized, so that defaulting adds none back
        spec["finalizers"] = list((current.get("spec") or {}).get("finalizers") or [])


# The namespaces the real API's NamespaceLifecycle admission never lets go.
IMMORTAL_NAMESPACES = ("default", "kube-system", "kube-public")


def _empty_status(obj: Object) -> None:
    obj["status"] = {}


def _given_status(obj: Object) -> None:
    obj.setdefault("status", {})  # a kubelet registers its node with the status


_KINDS: dict[str, Kind] = {
    "Pod": Kind(
        default=_default_pod, validate=validation.validate_pod,
        validate_update=validation.validate_pod_update, initial_status=_pending,
        grace_period=_pod_grace,
    ),
    "Namespace": Kind(
        default=_default_namespace, validate=validation.validate_namespace,
        initial_status=_active, terminate=_namespace_terminating, held=_namespace_held,
        keep_on_update=_keep_namespace_finalizers,
    ),
    "Node": Kind(validate=validation.validate_node, initial_status=_given_status),
    "Service": Kind(
        default=_default_service, validate=validation.validate_service,
        initial_status=_empty_status,
    ),
    "ConfigMap": Kind(validate=validation.validate_configmap),
    "Secret": Kind(default=_default_secret, validate=validation.validate_secret),
    "Deployment": Kind(
        default=_default_deployment, validate=validation.validate_deployment,
        validate_update=validation.validate_deployment_update, initial_status=_empty_status,
    ),
    "ReplicaSet": Kind(
        default=_default_replicaset, validate=validation.validate_replicaset,
        validate_update=validation.validate_replicaset_update, initial_status=_empty_status,
    ),
}  # fmt: skip


def kind_for(resource: ResourceType) -> Kind:
    kind = _KINDS.get(resource.kind)
    if kind is not None:
        return kind
    return Kind(validate=lambda obj: validation.validate_generic(obj, resource.namespaced))
