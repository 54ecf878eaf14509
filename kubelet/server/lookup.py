"""Finding what a node API path names: the pod in `pods()`, its containers and
sandbox in the runtime (by the labels the kubelet gives them,
io.kubernetes.pod.{namespace,name,uid} and io.kubernetes.container.name), and which
container instance's log to read, with the kubelet's error texts.

`RequestError(code, message)` carries the HTTP status the kubelet answers with.
"""

from __future__ import annotations

from typing import Any

import grpc

from cri.api import api_pb2
from kubelet.stats.collector import CONTAINER_NAME, POD_NAME, POD_NAMESPACE, POD_UID, Cri


class RequestError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


GRPC_TO_HTTP = {
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


def from_rpc(error: grpc.RpcError, what: str) -> RequestError:
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    return RequestError(GRPC_TO_HTTP.get(code, 500), f"{what}: {details}")


def find_pod(pods: list[dict[str, Any]], namespace: str, name: str) -> dict[str, Any] | None:
    for pod in pods:
        metadata = pod.get("metadata") or {}
        if metadata.get("namespace", "default") == namespace and metadata.get("name") == name:
            return pod
    return None


def pod_uid(pod: dict[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("uid", ""))


def spec_container_names(pod: dict[str, Any]) -> set[str]:
    spec = pod.get("spec") or {}
    return {
        str(c.get("name"))
        for key in ("containers", "initContainers", "ephemeralContainers")
        for c in spec.get(key) or []
    }


def _selector(pod: dict[str, Any], namespace: str, name: str) -> dict[str, str]:
    selector = {POD_NAMESPACE: namespace, POD_NAME: name}
    uid = pod_uid(pod)
    if uid:
        selector[POD_UID] = uid
    return selector


def containers_named(
    cri: Cri, pod: dict[str, Any], namespace: str, name: str, container: str
) -> list[api_pb2.Container]:
    """The runtime's instances of the pod's container `container`, newest first."""
    selector = {**_selector(pod, namespace, name), CONTAINER_NAME: container}
    request = api_pb2.ListContainersRequest(filter=api_pb2.ContainerFilter(label_selector=selector))
    try:
        found = list(cri.runtime.ListContainers(request, timeout=cri.timeout).containers)
    except grpc.RpcError as e:
        raise from_rpc(e, "list containers") from None
    return sorted(found, key=lambda c: (c.metadata.attempt, c.created_at), reverse=True)


def running_container(
    cri: Cri, pod: dict[str, Any], namespace: str, name: str, container: str
) -> str:
    """The id of the running instance of a container (exec and attach)."""
    for candidate in containers_named(cri, pod, namespace, name, container):
        if candidate.state == api_pb2.CONTAINER_RUNNING:
            return str(candidate.id)
    raise RequestError(404, f'container not found ("{container}")')


def ready_sandbox(cri: Cri, pod: dict[str, Any], namespace: str, name: str) -> str:
    """The id of the pod's ready sandbox (port forwarding)."""
    request = api_pb2.ListPodSandboxRequest(
        filter=api_pb2.PodSandboxFilter(
            label_selector=_selector(pod, namespace, name),
            state=api_pb2.PodSandboxStateValue(state=api_pb2.SANDBOX_READY),
        )
    )
    try:
        items = list(cri.runtime.ListPodSandbox(request, timeout=cri.timeout).items)
    except grpc.RpcError as e:
        raise from_rpc(e, "list pod sandboxes") from None
    if not items:
        raise RequestError(404, f'pod "{name}" has no running sandbox')
    return str(max(items, key=lambda s: s.created_at).id)


def _strip_runtime(container_id: str) -> str:
    """`containerd://abc` (a pod status's containerID) -> `abc`."""
    return container_id.split("://", 1)[-1]


def _status_of(pod: dict[str, Any], container: str) -> dict[str, Any] | None:
    status = pod.get("status") or {}
    for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
        for entry in status.get(key) or []:
            if entry.get("name") == container:
                found: dict[str, Any] = entry
                return found
    return None


def log_container(
    cri: Cri,
    pod: dict[str, Any],
    namespace: str,
    name: str,
    container: str,
    *,
    previous: bool,
) -> str:
    """The id of the container instance whose log /containerLogs reads: from the
    pod's status when the kubelet has one for the container (the kubelet's rules and
    texts), else the newest (or, with previous, the one before) the runtime has."""
    status = _status_of(pod, container)
    if status is not None:
        return _from_status(status, container, name, previous=previous)
    instances = containers_named(cri, pod, namespace, name, container)
    if previous:
        earlier = [c for c in instances[1:] if c.state == api_pb2.CONTAINER_EXITED]
        if not earlier:
            raise RequestError(
                400, f'previous terminated container "{container}" in pod "{name}" not found'
            )
        return str(earlier[0].id)
    if not instances or instances[0].state == api_pb2.CONTAINER_CREATED:
        raise RequestError(
            400, f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating'
        )
    return str(instances[0].id)


def _from_status(status: dict[str, Any], container: str, pod_name: str, *, previous: bool) -> str:
    state = status.get("state") or {}
    last = (status.get("lastState") or {}).get("terminated") or {}
    current_id = _strip_runtime(str(status.get("containerID", "")))
    last_id = _strip_runtime(str(last.get("containerID", "")))
    where = f'container "{container}" in pod "{pod_name}"'
    if previous:
        if not last_id:
            raise RequestError(400, f"previous terminated {where} not found")
        return last_id
    if state.get("running") is not None and current_id:
        return current_id
    terminated = state.get("terminated")
    if terminated is not None:
        terminated_id = _strip_runtime(str(terminated.get("containerID", ""))) or current_id
        if terminated_id:
            return terminated_id
        if last_id:
            return last_id
        raise RequestError(400, f"{where} is terminated")
    if last:
        if not last_id:
            raise RequestError(400, f"{where} is terminated")
        return last_id
    waiting = state.get("waiting")
    if waiting is not None:
        reason = waiting.get("reason", "")
        if reason == "ErrImagePull":
            raise RequestError(400, f"{where} is waiting to start: image can't be pulled")
        if reason == "ImagePullBackOff":
            raise RequestError(
                400, f"{where} is waiting to start: trying and failing to pull image"
            )
        raise RequestError(400, f"{where} is waiting to start: {reason}")
    raise RequestError(400, f"{where} is waiting to start - no logs yet")
