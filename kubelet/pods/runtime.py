"""The runtime's view of a pod: its sandboxes and containers as the CRI reports them,
found by the labels the kubelet sets (the real kubelet's names, so pods survive a
kubelet restart and tools like crictl show them), turned into plain frozen values
that the pure decision code (actions.py, status.py) reads.

`fetch_pod_runtime(cri, uid, ...)` is the kubelet's GetPodStatus: ListPodSandbox and
ListContainers filtered by the pod uid label, then PodSandboxStatus of the newest
sandbox and ContainerStatus of every container. Sandboxes and containers are sorted
newest first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

import grpc

from cri.api import api_pb2
from kubelet.cri_client import CriClient

log = logging.getLogger(__name__)

# Labels (immutable, selectable) and annotations the kubelet puts on CRI objects.
POD_NAME_LABEL = "io.kubernetes.pod.name"
POD_NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
POD_UID_LABEL = "io.kubernetes.pod.uid"
CONTAINER_NAME_LABEL = "io.kubernetes.container.name"
CONTAINER_TYPE_ANNOTATION = "io.kubernetes.container.type"  # "init" or "app"
CONTAINER_HASH_ANNOTATION = "io.kubernetes.container.hash"
RESTART_COUNT_ANNOTATION = "io.kubernetes.container.restartCount"
TERMINATION_MESSAGE_PATH_ANNOTATION = "io.kubernetes.container.terminationMessagePath"
TERMINATION_MESSAGE_POLICY_ANNOTATION = "io.kubernetes.container.terminationMessagePolicy"
GRACE_PERIOD_ANNOTATION = "io.kubernetes.pod.terminationGracePeriod"
# Where the kubelet keeps the termination message file of a container instance on
# the host (kubeling's own annotation: the status reads it back after a restart).
TERMINATION_MESSAGE_HOST_PATH_ANNOTATION = "kubeling.io/termination-message-host-path"


class ContainerState(Enum):
    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"
    UNKNOWN = "unknown"


_STATES = {
    api_pb2.CONTAINER_CREATED: ContainerState.CREATED,
    api_pb2.CONTAINER_RUNNING: ContainerState.RUNNING,
    api_pb2.CONTAINER_EXITED: ContainerState.EXITED,
    api_pb2.CONTAINER_UNKNOWN: ContainerState.UNKNOWN,
}


@dataclass(frozen=True, slots=True)
class SandboxInfo:
    id: str
    attempt: int
    ready: bool
    created_at: int  # ns since the epoch
    ip: str = ""
    additional_ips: tuple[str, ...] = ()
    host_network: bool = False


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    id: str
    name: str
    sandbox_id: str
    state: ContainerState
    restart_count: int
    created_at: int  # ns since the epoch
    started_at: int = 0
    finished_at: int = 0
    exit_code: int = 0
    reason: str = ""
    message: str = ""  # the runtime's message (not the termination message)
    image: str = ""
    image_ref: str = ""
    hash: str = ""
    init: bool = False
    log_path: str = ""
    termination_message_path: str = ""  # host path of the message file
    termination_message_policy: str = ""


@dataclass(frozen=True, slots=True)
class PodRuntime:
    """A pod as the runtime has it; empty when the runtime knows nothing of it."""

    uid: str
    sandboxes: tuple[SandboxInfo, ...] = ()
    containers: tuple[ContainerInfo, ...] = ()
    timestamp: float = 0.0  # when it was fetched (wall clock)

    @property
    def latest_sandbox(self) -> SandboxInfo | None:
        return self.sandboxes[0] if self.sandboxes else None

    def by_name(self, name: str, *, init: bool | None = None) -> list[ContainerInfo]:
        """The instances of container `name`, newest first."""
        return [c for c in self.containers if c.name == name and (init is None or c.init == init)]

    def latest(self, name: str, *, init: bool | None = None) -> ContainerInfo | None:
        found = self.by_name(name, init=init)
        return found[0] if found else None

    def running(self) -> list[ContainerInfo]:
        return [c for c in self.containers if c.state is ContainerState.RUNNING]


@dataclass
class RuntimeInfo:
    """The runtime's name (containerIDs are <name>://<id>)."""

    name: str = "kubeling"
    version: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def _annotation_int(annotations: dict[str, str], key: str) -> int:
    try:
        return int(annotations.get(key, "0"))
    except ValueError:
        return 0


def container_info(status: api_pb2.ContainerStatus, sandbox_id: str) -> ContainerInfo:
    annotations = dict(status.annotations)
    labels = dict(status.labels)
    restart_count = (
        _annotation_int(annotations, RESTART_COUNT_ANNOTATION)
        if RESTART_COUNT_ANNOTATION in annotations
        else int(status.metadata.attempt)
    )
    return ContainerInfo(
        id=status.id,
        name=labels.get(CONTAINER_NAME_LABEL) or status.metadata.name,
        sandbox_id=sandbox_id,
        state=_STATES.get(status.state, ContainerState.UNKNOWN),
        restart_count=restart_count,
        created_at=int(status.created_at),
        started_at=int(status.started_at),
        finished_at=int(status.finished_at),
        exit_code=int(status.exit_code),
        reason=status.reason,
        message=status.message,
        image=status.image.user_specified_image or status.image.image,
        image_ref=status.image_ref or status.image_id,
        hash=annotations.get(CONTAINER_HASH_ANNOTATION, ""),
        init=annotations.get(CONTAINER_TYPE_ANNOTATION) == "init",
        log_path=status.log_path,
        termination_message_path=annotations.get(TERMINATION_MESSAGE_HOST_PATH_ANNOTATION, ""),
        termination_message_policy=annotations.get(TERMINATION_MESSAGE_POLICY_ANNOTATION, ""),
    )


def sandbox_info(status: api_pb2.PodSandboxStatus) -> SandboxInfo:
    options = status.linux.namespaces.options
    return SandboxInfo(
        id=status.id,
        attempt=int(status.metadata.attempt),
        ready=status.state == api_pb2.SANDBOX_READY,
        created_at=int(status.created_at),
        ip=status.network.ip,
        additional_ips=tuple(p.ip for p in status.network.additional_ips),
        host_network=options.network == api_pb2.NODE,
    )


def fetch_pod_runtime(
    cri: CriClient, uid: str, *, clock: Callable[[], float], timeout: float
) -> PodRuntime:
    """The pod's sandboxes and containers now (see the module docstring). A container
    or sandbox removed between the list and its status call is left out."""
    timestamp = clock()
    selector = {POD_UID_LABEL: uid}
    listed = cri.runtime.ListPodSandbox(
        api_pb2.ListPodSandboxRequest(filter=api_pb2.PodSandboxFilter(label_selector=selector)),
        timeout=timeout,
    ).items
    ordered = sorted(listed, key=lambda s: (s.created_at, s.metadata.attempt), reverse=True)
    sandboxes: list[SandboxInfo] = []
    for index, item in enumerate(ordered):
        if index == 0:
            try:
                response = cri.runtime.PodSandboxStatus(
                    api_pb2.PodSandboxStatusRequest(pod_sandbox_id=item.id), timeout=timeout
                )
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                continue
            sandboxes.append(sandbox_info(response.status))
        else:
            sandboxes.append(
                SandboxInfo(
                    id=item.id,
                    attempt=int(item.metadata.attempt),
                    ready=item.state == api_pb2.SANDBOX_READY,
                    created_at=int(item.created_at),
                )
            )
    containers = cri.runtime.ListContainers(
        api_pb2.ListContainersRequest(filter=api_pb2.ContainerFilter(label_selector=selector)),
        timeout=timeout,
    ).containers
    infos: list[ContainerInfo] = []
    for container in containers:
        try:
            status = cri.runtime.ContainerStatus(
                api_pb2.ContainerStatusRequest(container_id=container.id), timeout=timeout
            ).status
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                raise
            continue
        infos.append(container_info(status, container.pod_sandbox_id))
    infos.sort(key=lambda c: (c.created_at, c.restart_count), reverse=True)
    return PodRuntime(uid, tuple(sandboxes), tuple(infos), timestamp)
