"""The seams between the pod sync and the kubelet's other components (volumes,
environment, DNS, probes, lifecycle hooks, events), as Protocols, so the pod sync
is built and tested on its own and kubelet/kubelet.py plugs the real ones in.

The other components raise their own errors; the wiring turns those into
`SyncError(reason, message)`, the reason being what the pod status and event show
(FailedMount, CreateContainerConfigError, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cri.api import api_pb2
from kubelet.probes.spec import ProbeType


class SyncError(Exception):
    """A step of a pod sync failed for a reason the pod's status or events show."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        self.message = message
        super().__init__(f"{reason}: {message}")


class Volumes(Protocol):
    def setup(self, pod: dict[str, Any]) -> dict[str, Path]: ...

    def mounts(
        self,
        pod: dict[str, Any],
        container: dict[str, Any],
        volumes: dict[str, Path],
        *,
        pod_ip: str,
        env: Sequence[api_pb2.KeyValue],
    ) -> list[api_pb2.Mount]: ...

    def teardown(self, pod_uid: str) -> None: ...


class Probes(Protocol):
    def add(
        self,
        pod: dict[str, Any],
        container: dict[str, Any],
        container_id: str,
        pod_ip: str,
        *,
        started_at: float | None = None,
    ) -> None: ...

    def remove(self, container_id: str) -> None: ...

    def remove_pod(self, pod_uid: str) -> None: ...

    def stop_liveness_and_startup(self, pod_uid: str) -> None: ...

    def ready(self, container_id: str) -> bool: ...

    def started(self, container_id: str) -> bool: ...

    def liveness_failed(self, container_id: str) -> str | None: ...

    def failed_probe(self, container_id: str) -> ProbeType | None: ...


class Events(Protocol):
    def record(
        self, obj: dict[str, Any], event_type: str, reason: str, message: str,
        *, field_path: str = "",
    ) -> None: ...  # fmt: skip


# (pod, container, pod_ip=, host_ip=) -> the container's environment
EnvFunc = Callable[..., list[api_pb2.KeyValue]]
# pod -> the sandbox's DNSConfig
DnsFunc = Callable[[dict[str, Any]], api_pb2.DNSConfig]
# pod -> the sandbox's hostname
HostnameFunc = Callable[[dict[str, Any]], str]
# (pod, container, container_id, pod_ip, *, timeout) -> None, or the error (already
# recorded as a FailedPostStartHook event): kubelet.lifecycle.run_post_start
PostStartFunc = Callable[..., "str | None"]
# (pod, container, container_id, pod_ip, *, grace_period) -> the seconds left for
# StopContainer (at least 2): kubelet.lifecycle.run_pre_stop
PreStopFunc = Callable[..., float]


@dataclass
class Collaborators:
    """Everything a pod sync calls besides the CRI and the API."""

    volumes: Volumes
    probes: Probes
    events: Events
    env: EnvFunc
    dns: DnsFunc
    hostname: HostnameFunc
    post_start: PostStartFunc
    pre_stop: PreStopFunc
