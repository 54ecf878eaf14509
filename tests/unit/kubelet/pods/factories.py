"""Pods, runtime views and a recording probe manager for the pod-sync unit tests."""

from __future__ import annotations

from typing import Any

from kubelet.pods.actions import container_hash
from kubelet.pods.runtime import ContainerInfo, ContainerState, PodRuntime, SandboxInfo
from kubelet.probes.spec import ProbeType

SECOND = 1_000_000_000


def make_pod(
    *names: str,
    init: tuple[str, ...] = (),
    restart_policy: str = "Always",
    uid: str = "uid-1",
    **spec: Any,
) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "default", "uid": uid},
        "spec": {
            "restartPolicy": restart_policy,
            "initContainers": [{"name": n, "image": "busybox"} for n in init],
            "containers": [{"name": n, "image": "busybox"} for n in names or ("main",)],
            **spec,
        },
    }


def sandbox(
    id_: str = "sb1",
    *,
    ready: bool = True,
    attempt: int = 0,
    ip: str = "10.0.0.5",
    created: int = 1,
) -> SandboxInfo:
    return SandboxInfo(id=id_, attempt=attempt, ready=ready, created_at=created * SECOND, ip=ip)


def container(
    name: str,
    state: ContainerState,
    *,
    pod: dict[str, Any] | None = None,
    id_: str = "",
    exit_code: int = 0,
    restarts: int = 0,
    init: bool = False,
    created: int = 10,
    started: int = 11,
    finished: int = 0,
    reason: str = "",
) -> ContainerInfo:
    spec_hash = ""
    if pod is not None:
        key = "initContainers" if init else "containers"
        spec_hash = container_hash(next(c for c in pod["spec"][key] if c["name"] == name))
    return ContainerInfo(
        id=id_ or f"{name}-{restarts}",
        name=name,
        sandbox_id="sb1",
        state=state,
        restart_count=restarts,
        created_at=created * SECOND,
        started_at=started * SECOND,
        finished_at=finished * SECOND,
        exit_code=exit_code,
        reason=reason,
        image="busybox",
        image_ref="sha256:abc",
        hash=spec_hash,
        init=init,
    )


def runtime(
    *containers: ContainerInfo, sandboxes: tuple[SandboxInfo, ...] | None = None
) -> PodRuntime:
    ordered = sorted(containers, key=lambda c: (c.created_at, c.restart_count), reverse=True)
    return PodRuntime("uid-1", sandboxes if sandboxes is not None else (sandbox(),), tuple(ordered))


class FakeProbes:
    def __init__(self) -> None:
        self.added: list[str] = []
        self.started_at: dict[str, float | None] = {}
        self.removed: list[str] = []
        self.failed: dict[str, ProbeType] = {}

    def add(
        self,
        pod: Any,
        container: Any,
        container_id: str,
        pod_ip: str,
        *,
        started_at: float | None = None,
    ) -> None:
        self.added.append(container_id)
        self.started_at[container_id] = started_at

    def remove(self, container_id: str) -> None:
        self.removed.append(container_id)

    def remove_pod(self, pod_uid: str) -> None: ...

    def stop_liveness_and_startup(self, pod_uid: str) -> None: ...

    def ready(self, container_id: str) -> bool:
        return True

    def started(self, container_id: str) -> bool:
        return True

    def liveness_failed(self, container_id: str) -> str | None:
        return (
            f"{self.failed[container_id].value} probe failed"
            if container_id in self.failed
            else None
        )

    def failed_probe(self, container_id: str) -> ProbeType | None:
        return self.failed.get(container_id)
