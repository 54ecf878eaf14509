"""The prober: one worker thread per (container, probe type) that runs the probe every
period and keeps the container's results — ready, started, liveness failed — for the
pod worker to read, calling `on_change(pod_uid)` whenever one of them changes.

Semantics (the kubelet's prober workers):
- A worker waits `initialDelaySeconds` from the container's start, then probes every
  `periodSeconds`. A container that was running before the manager existed (the
  kubelet restarted and re-adopts it) first waits a random part of the period, so a
  restarted kubelet does not probe everything at once.
- Until the startup probe succeeds, liveness and readiness probes do not run; once it
  does, the readiness probe runs at once rather than at its next tick.
- A result changes only after `failureThreshold` consecutive failures or
  `successThreshold` consecutive successes. Readiness starts False; liveness starts
  passing; started starts False (True without a startup probe).
- After a liveness or startup failure the container needs a restart: the result stays
  failed and that worker stops probing until the container is gone (`remove`, or
  `add` of a new container of the same name in the pod).
- A probe that cannot run at all (the runtime refused the exec, an undeclared named
  port) is not counted, only reported.
- Every failed probe records a Warning `Unhealthy` event ("Liveness probe failed:
  <output>"), a success with a warning a `ProbeWarning` event.

Concurrency: the results live behind one lock; workers call `on_change` and the event
recorder without holding it. remove()/remove_pod() only signal the workers (they wake
from Event.wait at once, or finish the probe in flight and drop its result), so they
never block the pod worker; stop() also joins them.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubelet.probes.handlers import CriLike, Outcome, Result, RuntimeExec, run_probe
from kubelet.probes.spec import ProbeSpec, ProbeType, container_probes

log = logging.getLogger(__name__)

WARNING = "Warning"  # kubelet.events.WARNING; the recorder is any object with record()


class EventSink(Protocol):
    """kubelet.events.EventRecorder, or anything with its record()."""

    def record(
        self, obj: dict[str, Any], event_type: str, reason: str, message: str,
        *, field_path: str = "",
    ) -> None: ...  # fmt: skip


@dataclass
class _ContainerResults:
    pod_uid: str
    name: str
    has_readiness: bool
    has_startup: bool
    ready: bool = False  # the readiness probe's result; False until it first passes
    started: bool = False
    failure: str | None = None  # set once liveness or startup fails its threshold
    failed_probe: ProbeType | None = None  # which of the two it was
    workers: dict[ProbeType, _Worker] = field(default_factory=dict)


def field_path(pod: dict[str, Any], name: str) -> str:
    """How events name container `name` of `pod` (involvedObject.fieldPath)."""
    spec = pod.get("spec") or {}
    if any(c.get("name") == name for c in spec.get("initContainers") or []):
        return f"spec.initContainers{{{name}}}"
    return f"spec.containers{{{name}}}"


class _Worker:
    """Probes one container with one of its probes until stopped, or until its result
    is final (liveness/startup failed, startup passed)."""

    def __init__(
        self,
        manager: ProbeManager,
        spec: ProbeSpec,
        *,
        pod: dict[str, Any],
        container: dict[str, Any],
        container_id: str,
        pod_ip: str,
        first_wait: float,
    ) -> None:
        self.manager = manager
        self.spec = spec
        self.pod = pod
        self.container = container
        self.container_id = container_id
        self.pod_ip = pod_ip
        self.first_wait = first_wait
        # No probe before this (initial delay, jitter), even when triggered early.
        self.not_before = time.monotonic() + first_wait
        self.stopped = False
        self._wake = threading.Event()
        self._last: Result | None = None
        self._run_length = 0
        name = container.get("name", "")
        self.thread = threading.Thread(
            target=self._run,
            name=f"probe-{spec.probe_type.value.lower()}-{name}-{container_id[:12]}",
            daemon=True,
        )

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped = True
        self._wake.set()

    def trigger(self) -> None:
        """Probe now instead of at the next tick."""
        self._wake.set()

    def _sleep(self, seconds: float) -> bool:
        """Wait `seconds` or until woken; True when the worker should end."""
        if seconds > 0:
            self._wake.wait(seconds)
        self._wake.clear()
        return self.stopped

    def _run(self) -> None:
        wait = self.first_wait
        try:
            while not self._sleep(wait):
                early = self.not_before - time.monotonic()
                if early > 0:
                    wait = early
                    continue
                wait = self.spec.period
                if self.spec.probe_type is not ProbeType.STARTUP and not self.manager.started(
                    self.container_id
                ):
                    continue  # the startup probe has not passed yet
                outcome = run_probe(
                    self.manager.cri,
                    self.spec,
                    container=self.container,
                    container_id=self.container_id,
                    pod_ip=self.pod_ip,
                )
                if self.stopped:
                    return
                self._report(outcome)
                if self._count(outcome):
                    return
        except Exception:  # a bug must not end probing silently
            log.exception("probe worker %s failed", self.thread.name)

    def _report(self, outcome: Outcome) -> None:
        kind = self.spec.probe_type.value
        if outcome.result is Result.SUCCESS:
            return
        if outcome.result is Result.WARNING:
            reason, message = "ProbeWarning", f"{kind} probe warning: {outcome.message}"
        elif outcome.result is Result.FAILURE:
            reason, message = "Unhealthy", f"{kind} probe failed: {outcome.message}"
        else:
            reason = "Unhealthy"
            message = f"{kind} probe errored and resulted in unknown state: {outcome.message}"
        name = str(self.container.get("name", ""))
        log.info("probe of %s: %s", name, message, extra={"container_id": self.container_id})
        if self.manager.events is not None:
            try:
                self.manager.events.record(
                    self.pod, WARNING, reason, message, field_path=field_path(self.pod, name)
                )
            except Exception:  # events are best effort
                log.exception("recording probe event of %s", name)

    def _count(self, outcome: Outcome) -> bool:
        """Count `outcome` toward the thresholds and publish the result once reached;
        True when this worker's job is done."""
        if outcome.result is Result.ERROR:
            return False
        result = Result.FAILURE if outcome.result is Result.FAILURE else Result.SUCCESS
        if result is self._last:
            self._run_length += 1
        else:
            self._last, self._run_length = result, 1
        threshold = (
            self.spec.failure_threshold if result is Result.FAILURE else self.spec.success_threshold
        )
        if self._run_length < threshold:
            return False
        self.manager._publish(self, result is Result.SUCCESS)
        if self.spec.probe_type is ProbeType.READINESS:
            return False
        # Liveness/startup failed: the container must be restarted, nothing more to
        # learn from it. Startup passed: it never runs again for this container.
        return result is Result.FAILURE or self.spec.probe_type is ProbeType.STARTUP


class ProbeManager:
    """Probe workers and results of the node's containers, keyed by container ID.

    `cri` is a kubelet.cri_client.CriClient (or any object with ExecSync, such as its
    `.runtime`); `events` an EventRecorder or None; `on_change(pod_uid)` is called from
    a worker thread whenever ready/started/liveness_failed of a container changes.

    Results are about probes only: the pod worker combines them with the container's
    state (a container that is not running is not ready, whatever its probes say). A
    container the manager does not know (no probes, or removed) reads as ready, started
    and not failed.
    """

    def __init__(
        self,
        cri: CriLike | RuntimeExec,
        events: EventSink | None,
        on_change: Callable[[str], None],
    ) -> None:
        self.cri = cri
        self.events = events
        self.on_change = on_change
        self._created = time.time()
        self._lock = threading.Lock()
        self._containers: dict[str, _ContainerResults] = {}

    # ---- the pod worker's side -------------------------------------------------------

    def add(
        self,
        pod: dict[str, Any],
        container: dict[str, Any],
        container_id: str,
        pod_ip: str,
        *,
        started_at: float | None = None,
    ) -> None:
        """Start probing a running container (a no-op when it is already probed).
        `started_at` (Unix seconds; CRI ContainerStatus.started_at / 1e9) is when the
        container started, for initialDelaySeconds; default now. Probes of an earlier
        container of the same name in the pod stop. ProbeSpecError (a ValueError) for
        a probe the API would reject; then nothing starts."""
        specs = container_probes(container)
        meta = pod.get("metadata") or {}
        pod_uid = str(meta.get("uid") or "")
        name = str(container.get("name", ""))
        if not pod_uid or not name or not container_id:
            raise ValueError("probes need the pod's metadata.uid, a container name and an id")
        now = time.time()
        start = now if started_at is None else started_at
        adopted = started_at is not None and started_at < self._created
        types = {spec.probe_type for spec in specs}
        with self._lock:
            if container_id in self._containers:
                return
            replaced = [
                cid
                for cid, entry in self._containers.items()
                if entry.pod_uid == pod_uid and entry.name == name
            ]
            for cid in replaced:
                self._drop(cid)
            entry = _ContainerResults(
                pod_uid,
                name,
                has_readiness=ProbeType.READINESS in types,
                has_startup=ProbeType.STARTUP in types,
                started=ProbeType.STARTUP not in types,
            )
            for spec in specs:
                first_wait = max(start + spec.initial_delay - now, 0.0)
                if adopted:
                    first_wait = max(first_wait, random.uniform(0, spec.period))
                entry.workers[spec.probe_type] = _Worker(
                    self, spec, pod=pod, container=container, container_id=container_id,
                    pod_ip=pod_ip, first_wait=first_wait,
                )  # fmt: skip
            self._containers[container_id] = entry
            for worker in entry.workers.values():
                worker.start()

    def remove(self, container_id: str) -> None:
        """Stop the container's probes and forget its results (it is gone or being
        restarted)."""
        with self._lock:
            self._drop(container_id)

    def remove_pod(self, pod_uid: str) -> None:
        """remove() of every container of the pod."""
        with self._lock:
            for cid in [c for c, e in self._containers.items() if e.pod_uid == pod_uid]:
                self._drop(cid)

    def stop_liveness_and_startup(self, pod_uid: str) -> None:
        """A terminating pod's containers are not restarted for failing probes: stop
        their liveness and startup probes (readiness keeps running, so endpoints
        drop the pod as it shuts down), as the kubelet does when a pod terminates."""
        with self._lock:
            for entry in self._containers.values():
                if entry.pod_uid != pod_uid:
                    continue
                for probe_type in (ProbeType.LIVENESS, ProbeType.STARTUP):
                    worker = entry.workers.pop(probe_type, None)
                    if worker is not None:
                        worker.stop()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every worker and wait (up to `timeout` s in all) for their threads."""
        with self._lock:
            workers = [w for e in self._containers.values() for w in e.workers.values()]
            for cid in list(self._containers):
                self._drop(cid)
        deadline = time.monotonic() + timeout
        for worker in workers:
            worker.thread.join(max(deadline - time.monotonic(), 0.0))

    def ready(self, container_id: str) -> bool:
        """The readiness probe's result once started; True without a readiness probe."""
        with self._lock:
            entry = self._containers.get(container_id)
            if entry is None:
                return True
            return entry.started and (entry.ready or not entry.has_readiness)

    def started(self, container_id: str) -> bool:
        """The startup probe has passed (True without one)."""
        with self._lock:
            entry = self._containers.get(container_id)
            return entry is None or entry.started

    def liveness_failed(self, container_id: str) -> str | None:
        """Once the liveness (or startup) probe failed failureThreshold times in a row:
        the reason to kill the container, worded as the kubelet's Killing event
        ("Container web failed liveness probe, will be restarted"). None otherwise."""
        with self._lock:
            entry = self._containers.get(container_id)
            return None if entry is None else entry.failure

    def failed_probe(self, container_id: str) -> ProbeType | None:
        """LIVENESS or STARTUP once liveness_failed() is set: which probe's
        terminationGracePeriodSeconds applies to the kill
        (kubelet.lifecycle.termination_grace_period)."""
        with self._lock:
            entry = self._containers.get(container_id)
            return None if entry is None else entry.failed_probe

    def workers(self, container_id: str) -> list[threading.Thread]:
        """The threads probing the container (for status and tests)."""
        with self._lock:
            entry = self._containers.get(container_id)
            return [] if entry is None else [w.thread for w in entry.workers.values()]

    # ---- the workers' side -----------------------------------------------------------

    def _drop(self, container_id: str) -> None:
        entry = self._containers.pop(container_id, None)
        if entry is not None:
            for worker in entry.workers.values():
                worker.stop()

    def _publish(self, worker: _Worker, success: bool) -> None:
        """Store a worker's result (unless it was stopped meanwhile) and tell the pod
        worker when it changed anything."""
        probe_type = worker.spec.probe_type
        wake: _Worker | None = None
        with self._lock:
            entry = self._containers.get(worker.container_id)
            if worker.stopped or entry is None or entry.workers.get(probe_type) is not worker:
                return
            before = (entry.ready, entry.started, entry.failure)
            if probe_type is ProbeType.READINESS:
                entry.ready = success
            elif probe_type is ProbeType.STARTUP and success:
                entry.started = True
                wake = entry.workers.get(ProbeType.READINESS)
            elif not success:
                check = "liveness" if probe_type is ProbeType.LIVENESS else "startup"
                entry.failure = f"Container {entry.name} failed {check} probe, will be restarted"
                entry.failed_probe = probe_type
            changed = before != (entry.ready, entry.started, entry.failure)
            pod_uid = entry.pod_uid
        if wake is not None:
            wake.trigger()
        if changed:
            log.info(
                "probe result changed",
                extra={"container_id": worker.container_id, "probe": probe_type.value},
            )
            try:
                self.on_change(pod_uid)
            except Exception:
                log.exception("on_change of pod %s", pod_uid)
