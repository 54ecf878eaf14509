"""Garbage collection of the runtime's dead objects (the kubelet's container GC):

- exited containers beyond `keep` per (pod, container name), oldest first: the newest
  exited one stays (the status shows it as lastState, its exit code and restart
  count survive a kubelet restart);
- not-ready sandboxes that are not their pod's newest and hold no container;
- sandboxes and containers of pods the kubelet does not run (`live` excludes them)
  are the pod workers' job (they stop them with the grace period first), not GC's.

`plan` is pure; `ContainerGC.collect` lists through the CRI and removes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from cri.api import api_pb2
from kubelet.cri_client import CriClient
from kubelet.pods.runtime import CONTAINER_NAME_LABEL, POD_UID_LABEL

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Plan:
    containers: tuple[str, ...]
    sandboxes: tuple[str, ...]


def plan(
    sandboxes: list[api_pb2.PodSandbox],
    containers: list[api_pb2.Container],
    *,
    keep: int,
    live: Callable[[str], bool],
) -> Plan:
    """What to remove (see the module docstring). `live(uid)`: the kubelet runs that pod."""
    remove_containers: list[str] = []
    by_key: dict[tuple[str, str], list[api_pb2.Container]] = {}
    for container in containers:
        uid = container.labels.get(POD_UID_LABEL, "")
        if not uid or not live(uid) or container.state != api_pb2.CONTAINER_EXITED:
            continue
        name = container.labels.get(CONTAINER_NAME_LABEL) or container.metadata.name
        by_key.setdefault((uid, name), []).append(container)
    for dead in by_key.values():
        dead.sort(key=lambda c: c.created_at, reverse=True)
        remove_containers.extend(c.id for c in dead[max(0, keep) :])
    removed = set(remove_containers)
    holding = {c.pod_sandbox_id for c in containers if c.id not in removed}
    newest: dict[str, api_pb2.PodSandbox] = {}
    for sandbox in sandboxes:
        uid = sandbox.labels.get(POD_UID_LABEL, "")
        if uid and (uid not in newest or sandbox.created_at > newest[uid].created_at):
            newest[uid] = sandbox
    remove_sandboxes = [
        s.id
        for s in sandboxes
        if (uid := s.labels.get(POD_UID_LABEL, ""))
        and live(uid)
        and s.state == api_pb2.SANDBOX_NOTREADY
        and newest[uid].id != s.id
        and s.id not in holding
    ]
    return Plan(tuple(remove_containers), tuple(remove_sandboxes))


class ContainerGC:
    def __init__(
        self, cri: CriClient, *, keep: int, live: Callable[[str], bool], timeout: float
    ) -> None:
        self.cri = cri
        self.keep = keep
        self.live = live
        self.timeout = timeout

    def collect(self) -> Plan:
        sandboxes = list(
            self.cri.runtime.ListPodSandbox(
                api_pb2.ListPodSandboxRequest(), timeout=self.timeout
            ).items
        )
        containers = list(
            self.cri.runtime.ListContainers(
                api_pb2.ListContainersRequest(), timeout=self.timeout
            ).containers
        )
        found = plan(sandboxes, containers, keep=self.keep, live=self.live)
        for container_id in found.containers:
            self._remove("container", container_id, self.cri.runtime.RemoveContainer,
                         api_pb2.RemoveContainerRequest(container_id=container_id))  # fmt: skip
        for sandbox_id in found.sandboxes:
            self._remove("sandbox", sandbox_id, self.cri.runtime.RemovePodSandbox,
                         api_pb2.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id))  # fmt: skip
        return found

    def _remove(self, kind: str, id_: str, call: Callable[..., Any], request: Any) -> None:
        """One removal; a failure is logged and retried on the next collection."""
        try:
            call(request, timeout=self.timeout)
            log.debug("gc: removed %s %s", kind, id_[:12])
        except grpc.RpcError as e:
            log.warning("gc: remove %s %s: %s", kind, id_[:12], e.details())
