"""The pod lifecycle event generator (the kubelet's generic PLEG): every relist period
it lists all sandboxes and containers through the CRI, compares each pod's objects
and their states with the previous relist, and wakes the worker of every pod where
something appeared, disappeared or changed state (so a container killed behind the
kubelet's back is restarted within a period or two).

The first relist reports every pod the runtime has (the kubelet adopting what it
finds after a restart). `healthy()` is false once no relist has succeeded for the
threshold (3 minutes, as the kubelet), which the node's Ready condition reports.
`pods()` are the uids the runtime holds, for housekeeping (orphans, GC).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

import grpc

from cri.api import api_pb2
from kubelet.cri_client import CriClient
from kubelet.pods.runtime import POD_NAME_LABEL, POD_NAMESPACE_LABEL, POD_UID_LABEL

log = logging.getLogger(__name__)

RELIST_THRESHOLD = 180.0

# pod uid -> {"sandbox:<id>" or "container:<id>": state}
Snapshot = dict[str, dict[str, int]]


def changed_pods(
    old: Mapping[str, Mapping[str, int]], new: Mapping[str, Mapping[str, int]]
) -> set[str]:
    """Pods whose objects or states differ between two relists."""
    return {uid for uid in set(old) | set(new) if old.get(uid) != new.get(uid)}


def snapshot(sandboxes: list[api_pb2.PodSandbox], containers: list[api_pb2.Container]) -> Snapshot:
    found: Snapshot = {}
    sandbox_uid: dict[str, str] = {}
    for sandbox in sandboxes:
        uid = sandbox.labels.get(POD_UID_LABEL) or sandbox.metadata.uid
        if not uid:
            continue  # not a kubelet's sandbox
        sandbox_uid[sandbox.id] = uid
        found.setdefault(uid, {})[f"sandbox:{sandbox.id}"] = int(sandbox.state)
    for container in containers:
        uid = container.labels.get(POD_UID_LABEL) or sandbox_uid.get(container.pod_sandbox_id, "")
        if not uid:
            continue
        found.setdefault(uid, {})[f"container:{container.id}"] = int(container.state)
    return found


class Pleg:
    def __init__(
        self,
        cri: CriClient,
        *,
        period: float,
        on_change: Callable[[str], None],
        timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        threshold: float = RELIST_THRESHOLD,
    ) -> None:
        self.cri = cri
        self.period = period
        self.on_change = on_change
        self.timeout = timeout
        self.clock = clock
        self.threshold = threshold
        self._lock = threading.Lock()
        self._previous: Snapshot | None = None
        self._names: dict[str, tuple[str, str]] = {}  # uid -> (namespace, name)
        self._last_success: float | None = None
        self._relisted = threading.Event()

    def relist(self) -> set[str]:
        """One relist; the uids reported as changed. grpc.RpcError when the CRI fails."""
        sandboxes = self.cri.runtime.ListPodSandbox(
            api_pb2.ListPodSandboxRequest(), timeout=self.timeout
        ).items
        containers = self.cri.runtime.ListContainers(
            api_pb2.ListContainersRequest(), timeout=self.timeout
        ).containers
        current = snapshot(list(sandboxes), list(containers))
        names = {
            s.labels[POD_UID_LABEL]: (s.labels.get(POD_NAMESPACE_LABEL, ""),
                                      s.labels.get(POD_NAME_LABEL, ""))
            for s in sandboxes if s.labels.get(POD_UID_LABEL)
        }  # fmt: skip
        with self._lock:
            self._names = names
            previous = self._previous
            self._previous = current
            self._last_success = self.clock()
        changed = set(current) if previous is None else changed_pods(previous, current)
        self._relisted.set()
        for uid in sorted(changed):
            self.on_change(uid)
        return changed

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            started = self.clock()
            try:
                self.relist()
            except grpc.RpcError as e:
                log.warning("relist failed: %s", e.details() if hasattr(e, "details") else e)
            except Exception:
                log.exception("relist failed")
            stop.wait(max(0.0, self.period - (self.clock() - started)))

    def wait_first(self, timeout: float) -> bool:
        return self._relisted.wait(timeout)

    def healthy(self) -> bool:
        with self._lock:
            last = self._last_success
        return last is not None and self.clock() - last < self.threshold

    def pods(self) -> set[str]:
        with self._lock:
            return set(self._previous or {})

    def identity(self, uid: str) -> tuple[str, str]:
        """(namespace, name) of a pod from its sandbox labels ("" when unknown)."""
        with self._lock:
            return self._names.get(uid, ("", ""))

    def relisted(self) -> bool:
        return self._relisted.is_set()
