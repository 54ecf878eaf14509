"""One worker thread per pod (the kubelet's pod worker): it owns every runtime change
of its pod, so two syncs of a pod never overlap, and only the latest desired state
matters (an update replaces the pending one and wakes the thread).

Each pass:
1. fetch the runtime's view of the pod (runtime.fetch_pod_runtime);
2. removed from the desired set, or marked for deletion → terminate: preStop hooks,
   stop the containers with the grace period, stop the sandboxes; remove containers,
   sandboxes, volumes, cgroup and directories; then, for a pod deleted through the
   API, DELETE it with gracePeriodSeconds 0 and its uid as a precondition; exit;
3. terminal (Succeeded/Failed) → keep everything stopped;
4. else sync (sync.PodSyncer.sync_pod) and fetch again;
5. compute the status and hand it to the status manager (which writes on change).

A pass runs when woken (spec update, PLEG event, probe change) or after the sync
period, sooner when a back-off ends. Failures are logged and retried after a short
delay. `stop()` (kubelet shutdown) ends the thread and leaves containers running.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from kubeapi.client import ApiError, Client
from kubelet.config import KubeletConfig
from kubelet.cri_client import CriClient
from kubelet.pods import configs
from kubelet.pods.dependencies import Events, Probes
from kubelet.pods.messages import termination_message
from kubelet.pods.runtime import PodRuntime, RuntimeInfo, fetch_pod_runtime
from kubelet.pods.status import (
    DEADLINE_EXCEEDED,
    DEADLINE_MESSAGE,
    FAILED,
    TERMINAL_PHASES,
    StatusInputs,
    Waiting,
    active_deadline_left,
    compute_pod_status,
)
from kubelet.pods.status_manager import StatusManager
from kubelet.pods.sync import NodeFacts, PodSyncer

log = logging.getLogger(__name__)

RETRY_SECONDS = 1.0


@dataclass
class WorkerContext:
    """What every pod worker shares."""

    config: KubeletConfig
    cri: CriClient
    client: Client
    syncer: PodSyncer
    statuses: StatusManager
    probes: Probes
    events: Events
    runtime_info: RuntimeInfo
    node: Callable[[], NodeFacts]
    # The API object to write a pod's status to (the pod, or a static pod's mirror).
    status_target: Callable[[dict[str, Any]], dict[str, Any] | None]
    on_exit: Callable[[str, PodWorker], None]  # the worker of that uid is done
    forget_events: Callable[[str], None]
    clock: Callable[[], float] = time.time


class PodWorker:
    def __init__(self, context: WorkerContext, uid: str, pod: dict[str, Any]) -> None:
        self.context = context
        self.uid = uid
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._pod = pod
        self._removed = False  # no longer desired (deleted from the API, file removed)
        self._status: dict[str, Any] | None = None
        self._waiting: dict[str, Waiting] = {}
        self._retry_in: float | None = None
        # An eviction asked for (reason, message, grace, condition): done on the next pass.
        self._failure: tuple[str, str, int, dict[str, Any] | None] | None = None
        self._thread = threading.Thread(target=self._run, name=f"pod-{uid[:8]}", daemon=True)

    # -- the manager's side ------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def update(self, pod: dict[str, Any]) -> None:
        """A newer version of the pod. A change of its status alone (most often the
        kubelet's own write coming back through the watch) needs no sync, as the
        kubelet reconciles such updates without syncing."""
        with self._lock:
            old, self._pod = self._pod, pod
        if _desired_state(old) != _desired_state(pod):
            self._wake.set()

    def remove(self) -> None:
        """The pod is no longer desired: kill it and clean up."""
        with self._lock:
            self._removed = True
        self._wake.set()

    def fail(
        self, reason: str, message: str, *, grace: int, condition: dict[str, Any] | None = None
    ) -> None:
        """Make the pod terminal (eviction): its containers stop with `grace` seconds and
        its status becomes Failed with `reason`, `message` and `condition`, for good."""
        with self._lock:
            self._failure = (reason, message, grace, condition)
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Kubelet shutdown: end the thread, leave the pod's containers as they are."""
        self._stopping.set()
        self._wake.set()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def api_view(self) -> dict[str, Any]:
        """The pod with the latest status this worker computed."""
        with self._lock:
            pod = copy.deepcopy(self._pod)
            status = copy.deepcopy(self._status)
        if status is not None:
            pod["status"] = status
        return pod

    @property
    def active(self) -> bool:
        """Counts against the node's max pods: not terminating nor finished."""
        with self._lock:
            phase = (self._status or self._pod.get("status") or {}).get("phase")
        return not self.terminating and phase not in TERMINAL_PHASES

    @property
    def terminating(self) -> bool:
        with self._lock:
            return self._removed or bool(configs.meta(self._pod).get("deletionTimestamp"))

    # -- the thread --------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                done = self._pass()
            except (grpc.RpcError, ApiError, OSError) as e:
                log.warning("pod %s: sync failed: %s", self.uid, _describe(e))
                done = False
                self._retry_in = RETRY_SECONDS
            except Exception:
                log.exception("pod %s: sync failed", self.uid)
                done = False
                self._retry_in = RETRY_SECONDS
            if done:
                self.context.on_exit(self.uid, self)
                return
            timeout = self.context.config.sync_frequency
            if self._retry_in is not None:
                timeout = max(0.05, min(timeout, self._retry_in))
            self._wake.wait(timeout)
            self._wake.clear()

    def _fetch(self) -> PodRuntime:
        return fetch_pod_runtime(
            self.context.cri, self.uid, clock=self.context.clock,
            timeout=self.context.config.runtime_request_timeout,
        )  # fmt: skip

    def _pass(self) -> bool:
        """One pass; True when the pod is gone and the worker should exit."""
        with self._lock:
            pod = copy.deepcopy(self._pod)
            removed = self._removed
        if self._stopping.is_set():
            return False
        runtime = self._fetch()
        if removed or configs.meta(pod).get("deletionTimestamp"):
            return self._terminate(pod, runtime, deleted_in_api=not removed)
        self._retry_in = None
        status = self._compute(pod, runtime)
        with self._lock:
            failure = self._failure
        if failure is not None and status["phase"] not in TERMINAL_PHASES:
            status = self._fail_now(pod, runtime, status, *failure)
            runtime = self._fetch()
        left = active_deadline_left(pod, status, self.context.clock())
        if left is not None and left <= 0 and status["phase"] not in TERMINAL_PHASES:
            status = {**status, "phase": FAILED, "reason": DEADLINE_EXCEEDED,
                      "message": DEADLINE_MESSAGE}  # fmt: skip
            with self._lock:
                self._status = copy.deepcopy(status)
            self.context.events.record(pod, "Normal", DEADLINE_EXCEEDED, DEADLINE_MESSAGE)
            status = self._compute(pod, runtime)
        elif left is not None and left > 0:
            self._retry_in = left  # wake up when the deadline passes
        if status["phase"] not in TERMINAL_PHASES:
            result = self.context.syncer.sync_pod(pod, runtime)
            self._waiting = result.waiting
            if result.retry_in is not None:
                self._retry_in = min(self._retry_in or result.retry_in, result.retry_in)
            if result.error is not None:
                log.info("pod %s: %s", configs.pod_full_name(pod), result.error)
            if result.acted:
                runtime = self._fetch()
            status = self._compute(pod, runtime)
        if status["phase"] in TERMINAL_PHASES and (
            runtime.running() or any(s.ready for s in runtime.sandboxes)
        ):
            self.context.syncer.kill_pod(pod, runtime, stop_sandboxes=True, message="")
        self._publish(pod, status)
        return False

    def _fail_now(
        self, pod: dict[str, Any], runtime: PodRuntime, status: dict[str, Any],
        reason: str, message: str, grace: int, condition: dict[str, Any] | None,
    ) -> dict[str, Any]:  # fmt: skip
        others = [c for c in status.get("conditions") or [] if c.get("type") != "DisruptionTarget"]
        failed = {**status, "phase": FAILED, "reason": reason, "message": message,
                  "conditions": others + ([condition] if condition else [])}  # fmt: skip
        with self._lock:
            self._status = copy.deepcopy(failed)
        self.context.syncer.kill_pod(pod, runtime, stop_sandboxes=True, grace=grace)
        with self._lock:
            self._failure = None
        return self._compute(pod, self._fetch())

    def _compute(self, pod: dict[str, Any], runtime: PodRuntime) -> dict[str, Any]:
        with self._lock:
            if self._status is not None:
                pod = {**pod, "status": self._status}
        probes = self.context.probes
        inputs = StatusInputs(
            runtime_name=self.context.runtime_info.name,
            host_ip=self.context.node().host_ip,
            now=self.context.clock(),
            waiting=self._waiting,
            ready=probes.ready,
            started=probes.started,
            termination_message=termination_message,
        )
        return compute_pod_status(pod, runtime, inputs)

    def _publish(self, pod: dict[str, Any], status: dict[str, Any]) -> None:
        with self._lock:
            self._status = copy.deepcopy(status)
        target = self.context.status_target(pod)
        if target is not None:
            self.context.statuses.set(target, status)

    def _publish_final(self, pod: dict[str, Any]) -> None:
        """The status once every container stopped: nothing restarts any more, so the
        phase is Succeeded when all exited 0, else Failed (as the kubelet reports a
        pod it terminated)."""
        final = copy.deepcopy(pod)
        final.setdefault("spec", {})["restartPolicy"] = "Never"
        self._waiting = {}
        status = self._compute(final, self._fetch())
        if status["phase"] in TERMINAL_PHASES:
            self._publish(pod, status)

    def _terminate(self, pod: dict[str, Any], runtime: PodRuntime, *, deleted_in_api: bool) -> bool:
        syncer = self.context.syncer
        # A terminating pod is not restarted for failing probes; readiness goes on.
        self.context.probes.stop_liveness_and_startup(self.uid)
        syncer.kill_pod(pod, runtime, stop_sandboxes=True)
        if deleted_in_api:
            self._publish_final(pod)
        # Resources first, the API object last: once it is gone, nothing of the pod
        # is left on the node (the kubelet's "pod resources are reclaimed").
        syncer.remove_pod(self.uid, self._fetch())
        if deleted_in_api:
            meta = configs.meta(pod)
            namespace = meta.get("namespace") or "default"
            try:
                self.context.client.delete(
                    f"/api/v1/namespaces/{namespace}/pods/{meta.get('name')}",
                    {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0,
                     "preconditions": {"uid": self.uid}},
                )  # fmt: skip
            except ApiError as e:
                if e.code not in (404, 409):  # gone already, or a new pod of that name
                    raise
        self.context.statuses.forget(self.uid)
        self.context.forget_events(self.uid)
        log.info("pod %s: terminated and removed", configs.pod_full_name(pod))
        return True


def _desired_state(pod: dict[str, Any]) -> tuple[Any, ...]:
    """What of a pod the sync acts on: its spec and the metadata it reads."""
    meta = configs.meta(pod)
    return (
        pod.get("spec"), meta.get("labels"), meta.get("annotations"),
        meta.get("deletionTimestamp"), meta.get("deletionGracePeriodSeconds"),
    )  # fmt: skip


def _describe(error: BaseException) -> str:
    if isinstance(error, grpc.RpcError) and hasattr(error, "details"):
        return f"{error.code().name}: {error.details()}"
    return str(error)
