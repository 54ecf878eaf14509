"""Events the kubelet reports about pods and its node (`kubectl describe` shows them):
Pulling/Pulled/Created/Started/Killing, BackOff, Unhealthy, FailedMount, NodeReady …

Repeats of the same (object, reason, message) within a pod's life are folded into one
Event whose `count` and `lastTimestamp` go up, as the kubelet's event correlator does,
so a crash-looping container does not write a new object every back-off.

Once `start`ed, events are written by a thread of their own, as the kubelet's event
broadcaster does: a pod worker never waits for the API server to take an event (three
per pod started, in the middle of each pod's start). That thread writes at most `qps`
events a second after a burst of `burst` (the kubelet's --event-qps 50 and
--event-burst 100; qps 0: no limit), and at most QUEUE_SIZE events wait: more are
dropped and logged. Not started, `record` writes at once.
"""

from __future__ import annotations

import datetime
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubeapi.client import ApiError, Client

log = logging.getLogger(__name__)

NORMAL = "Normal"
WARNING = "Warning"
COMPONENT = "kubelet"
QUEUE_SIZE = 1000  # the broadcaster's queue length


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class _Event:
    """An event to write, with what it needs of its object taken when it happened."""

    kind: str
    api_version: str
    namespace: str
    name: str
    uid: str
    event_type: str
    reason: str
    message: str
    field_path: str
    timestamp: str


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; rate 0: no limit."""

    def __init__(
        self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._clock = clock
        self._tokens = float(self.burst)
        self._last = clock()

    def delay(self) -> float:
        """Take a token: seconds to wait before using it (0: at once)."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class EventRecorder:
    """Writes core/v1 Events for `node_name`'s kubelet. Never raises: an event that
    cannot be written is logged and dropped (events are best effort, as in the
    kubelet)."""

    def __init__(
        self, client: Client, node_name: str, *, qps: float = 50.0, burst: int = 100
    ) -> None:
        self.client = client
        self.node_name = node_name
        self._lock = threading.Lock()
        # (namespace, uid, reason, message) -> (event name, count)
        self._seen: dict[tuple[str, str, str, str], tuple[str, int]] = {}
        self._limit = TokenBucket(qps, burst)
        self._queue: queue.Queue[_Event | None] = queue.Queue(QUEUE_SIZE)
        self._sender: threading.Thread | None = None

    def start(self) -> None:
        """Write events from a thread of their own from now on."""
        if self._sender is None:
            self._sender = threading.Thread(target=self._send, name="events", daemon=True)
            self._sender.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued (for at most `timeout` seconds), then stop the thread."""
        sender, self._sender = self._sender, None
        if sender is None:
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        sender.join(timeout)

    def record(
        self, obj: dict[str, Any], event_type: str, reason: str, message: str,
        *, field_path: str = "",
    ) -> None:  # fmt: skip
        """An event about `obj` (a Pod or the Node). `field_path` names the container
        (`spec.containers{web}`), as the kubelet's events do."""
        meta = obj.get("metadata") or {}
        event = _Event(
            kind=obj.get("kind") or ("Node" if "namespace" not in meta else "Pod"),
            api_version=obj.get("apiVersion") or "v1",
            namespace=meta.get("namespace") or "default", name=meta.get("name") or "",
            uid=meta.get("uid") or "", event_type=event_type, reason=reason,
            message=message, field_path=field_path, timestamp=_now(),
        )  # fmt: skip
        if self._sender is None:
            self._write(event)
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            log.warning("event %s %s on %s dropped: too many waiting", reason, message, event.name)

    def _send(self) -> None:
        while (event := self._queue.get()) is not None:
            delay = self._limit.delay()
            if delay:
                time.sleep(delay)
            try:
                self._write(event)
            except Exception:  # keep the thread: the next event may well go through
                log.exception("event %s on %s", event.reason, event.name)

    def _write(self, event: _Event) -> None:
        reason, message, field_path = event.reason, event.message, event.field_path
        kind, namespace = event.kind, event.namespace
        uid = event.uid or event.name
        key = (namespace, f"{uid}/{field_path}", reason, message)
        now = event.timestamp
        with self._lock:
            previous = self._seen.get(key)
        try:
            if previous is not None:
                name, count = previous
                self.client.patch(
                    f"/api/v1/namespaces/{namespace}/events/{name}",
                    {"count": count + 1, "lastTimestamp": now},
                )
                with self._lock:
                    self._seen[key] = (name, count + 1)
                return
            name = f"{event.name or 'unknown'}.{uuid.uuid4().hex[:16]}"
            involved = {
                "apiVersion": event.api_version, "kind": kind,
                "name": event.name or None, "uid": event.uid or None,
            }  # fmt: skip
            if kind != "Node":
                involved["namespace"] = namespace
            if field_path:
                involved["fieldPath"] = field_path
            self.client.create(f"/api/v1/namespaces/{namespace}/events", {
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": involved, "reason": reason, "message": message,
                "type": event.event_type, "count": 1, "firstTimestamp": now, "lastTimestamp": now,
                "source": {"component": COMPONENT, "host": self.node_name},
                "reportingComponent": COMPONENT, "reportingInstance": self.node_name,
            })  # fmt: skip
            with self._lock:
                self._seen[key] = (name, 1)
        except ApiError as e:
            if previous is not None and e.code == 404:
                with self._lock:  # expired or deleted: the next repeat starts a new one
                    self._seen.pop(key, None)
            log.warning("event %s %s on %s: %s", reason, message, event.name, e)
        except OSError as e:
            log.warning("event %s %s on %s: %s", reason, message, event.name, e)

    def forget(self, pod_uid: str) -> None:
        """Drops the fold state of a pod that is gone."""
        with self._lock:
            for key in [k for k in self._seen if k[1].startswith(f"{pod_uid}/")]:
                del self._seen[key]
