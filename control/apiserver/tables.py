"""Table output (meta.k8s.io/v1 Table), what `kubectl get` prints: the columns the
kube-apiserver's printers give for pods, nodes, deployments, replicasets,
namespaces and services, and NAME/AGE for everything else. Each row carries the
object as PartialObjectMetadata, as kubectl expects (`includeObject=Metadata`).
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from typing import Any

from control.apiserver.resources import ResourceType

Object = dict[str, Any]
Column = tuple[str, str, str, int]  # name, type, description, priority (1: -o wide only)


def age(timestamp: str, now: float | None = None) -> str:
    """`kubectl`'s short age: 45s, 3m, 5h, 2d (and <unknown>)."""
    try:
        created = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError):
        return "<unknown>"
    seconds = int(
        (now if now is not None else time.time()) - created.replace(tzinfo=datetime.UTC).timestamp()
    )
    seconds = max(seconds, 0)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 3600 * 2:
        return f"{seconds // 60}m"
    if seconds < 86400 * 2:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _pod_row(pod: Object) -> list[Any]:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    containers = spec.get("containers") or []
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for s in statuses if s.get("ready"))
    restarts = sum(int(s.get("restartCount", 0)) for s in statuses)
    reason = status.get("reason") or status.get("phase") or "Unknown"
    for s in statuses:
        waiting = (s.get("state") or {}).get("waiting")
        terminated = (s.get("state") or {}).get("terminated")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
        elif terminated and terminated.get("reason") and not s.get("ready"):
            reason = terminated["reason"]
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Terminating"
    return [
        pod["metadata"]["name"], f"{ready}/{len(containers)}", reason, str(restarts),
        age(pod["metadata"].get("creationTimestamp", "")), status.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>", "<none>", "<none>",
    ]  # fmt: skip


def _node_row(node: Object) -> list[Any]:
    conditions = {
        c.get("type"): c.get("status") for c in (node.get("status") or {}).get("conditions") or []
    }
    ready = {"True": "Ready", "False": "NotReady"}.get(str(conditions.get("Ready")), "Unknown")
    if (node.get("spec") or {}).get("unschedulable"):
        ready += ",SchedulingDisabled"
    info = (node.get("status") or {}).get("nodeInfo") or {}
    roles = [k.split("/", 1)[1] for k in (node["metadata"].get("labels") or {})
             if k.startswith("node-role.kubernetes.io/")]  # fmt: skip
    return [
        node["metadata"]["name"], ready, ",".join(roles) or "<none>",
        age(node["metadata"].get("creationTimestamp", "")), info.get("kubeletVersion", ""),
    ]  # fmt: skip


def _deployment_row(deployment: Object) -> list[Any]:
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    return [
        deployment["metadata"]["name"],
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
        status.get("updatedReplicas", 0), status.get("availableReplicas", 0),
        age(deployment["metadata"].get("creationTimestamp", "")),
    ]  # fmt: skip


def _replicaset_row(replicaset: Object) -> list[Any]:
    spec, status = replicaset.get("spec") or {}, replicaset.get("status") or {}
    return [
        replicaset["metadata"]["name"], spec.get("replicas", 0), status.get("replicas", 0),
        status.get("readyReplicas", 0), age(replicaset["metadata"].get("creationTimestamp", "")),
    ]  # fmt: skip


def _namespace_row(namespace: Object) -> list[Any]:
    return [
        namespace["metadata"]["name"], (namespace.get("status") or {}).get("phase", ""),
        age(namespace["metadata"].get("creationTimestamp", "")),
    ]  # fmt: skip


def _service_row(service: Object) -> list[Any]:
    spec = service.get("spec") or {}
    ports = ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or [])
    return [
        service["metadata"]["name"], spec.get("type", "ClusterIP"),
        spec.get("clusterIP") or "<none>", "<none>", ports or "<none>",
        age(service["metadata"].get("creationTimestamp", "")),
    ]  # fmt: skip


def _default_row(obj: Object) -> list[Any]:
    return [obj["metadata"]["name"], age(obj["metadata"].get("creationTimestamp", ""))]


_NAME = ("Name", "string", "Name must be unique within a namespace.", 0)
_AGE = ("Age", "string", "CreationTimestamp is a timestamp representing the server time "
        "when this object was created.", 0)  # fmt: skip
_PRINTERS: dict[str, tuple[list[Column], Callable[[Object], list[Any]]]] = {
    "Pod": ([
        _NAME,
        ("Ready", "string", "The aggregate readiness state of this pod for accepting traffic.",
         0),
        ("Status", "string", "The aggregate status of the containers in this pod.", 0),
        ("Restarts", "string",
         "The number of times the containers in this pod have been restarted.", 0),
        _AGE, ("IP", "string", "IP address allocated to the pod.", 1),
        ("Node", "string", "Name of the node the pod is assigned to.", 1),
        ("Nominated Node", "string", "Name of the node the pod is nominated to.", 1),
        ("Readiness Gates", "string", "The readiness gates of the pod.", 1),
    ], _pod_row),
    "Node": ([
        _NAME, ("Status", "string", "The status of the node", 0),
        ("Roles", "string", "The roles of the node", 0), _AGE,
        ("Version", "string", "Kubelet Version reported by the node.", 0),
    ], _node_row),
    "Deployment": ([
        _NAME, ("Ready", "string", "Number of the pod with ready state", 0),
        ("Up-to-date", "string", "Total number of non-terminated pods targeted by this "
         "deployment that have the desired template spec.", 0),
        ("Available", "string", "Total number of available pods (ready for at least "
         "minReadySeconds) targeted by this deployment.", 0),
        _AGE,
    ], _deployment_row),
    "ReplicaSet": ([
        _NAME, ("Desired", "integer", "Number of desired pods.", 0),
        ("Current", "integer", "Number of actual pods.", 0),
        ("Ready", "integer", "The number of pods with ready status.", 0), _AGE,
    ], _replicaset_row),
    "Namespace": (
        [_NAME, ("Status", "string", "The status of the namespace", 0), _AGE], _namespace_row
    ),
    "Service": ([
        _NAME, ("Type", "string", "The type of the service.", 0),
        ("Cluster-IP", "string", "The cluster IP of the service.", 0),
        ("External-IP", "string", "The external IP of the service.", 0),
        ("Port(s)", "string", "The ports of the service.", 0), _AGE,
    ], _service_row),
}  # fmt: skip


def table(resource: ResourceType, obj: Object, *, list_: bool) -> Object:
    """A Table of one object or of a list's items."""
    columns, row = _PRINTERS.get(resource.kind, ([_NAME, _AGE], _default_row))
    items = obj.get("items", []) if list_ else [obj]
    rows = []
    for item in items:
        meta = item.get("metadata") or {}
        rows.append({
            "cells": row(item),
            "object": {
                "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                "metadata": meta,
            },
        })  # fmt: skip
    metadata: Object = {}
    if list_:
        metadata = {
            k: v
            for k, v in (obj.get("metadata") or {}).items()
            if k in ("resourceVersion", "continue")
        }
    else:
        metadata = {"resourceVersion": (obj.get("metadata") or {}).get("resourceVersion", "")}
    return {
        "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
        "columnDefinitions": [
            {"name": name, "type": kind, "format": "name" if name == "Name" else "",
             "description": text, "priority": priority}
            for name, kind, text, priority in columns
        ],
        "rows": rows,
    }  # fmt: skip
