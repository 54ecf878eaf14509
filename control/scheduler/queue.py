"""The scheduling queue: pods waiting for a decision, newest update wins (STYLE §8).

`active` pods are tried in arrival order (higher spec.priority first); a pod found
unschedulable waits in `unschedulable` until something changes that could help (a
node added or changed, a bound pod deleted: `move_all_to_active`) or `flush` finds
it waited `retry_interval`; a pod whose Binding failed waits `backoff` seconds.
An update to a waiting pod replaces the stored copy without waking it (its own
status update must not retry it at once). Thread-safe; `pop` blocks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from control.scheduler.cache import uid
from control.scheduler.model import Object


class SchedulingQueue:
    def __init__(
        self, *, retry_interval: float = 15.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.retry_interval = retry_interval
        self.clock = clock
        self._ready = threading.Condition()
        self._active: dict[str, Object] = {}
        self._waiting: dict[str, tuple[float, Object]] = {}  # uid -> (retry at, pod)

    def add(self, pod: Object) -> None:
        """A pending pod, new or updated."""
        key = uid(pod)
        with self._ready:
            if key in self._waiting:
                self._waiting[key] = (self._waiting[key][0], pod)
                return
            self._active[key] = pod
            self._ready.notify()

    def remove(self, pod: Object) -> None:
        key = uid(pod)
        with self._ready:
            self._active.pop(key, None)
            self._waiting.pop(key, None)

    def replace(self, pods: list[Object]) -> None:
        """After a relist: exactly these pods are pending."""
        with self._ready:
            keys = {uid(p) for p in pods}
            for key in [k for k in self._active if k not in keys]:
                del self._active[key]
            for key in [k for k in self._waiting if k not in keys]:
                del self._waiting[key]
            for pod in pods:
                self.add(pod)

    def park(self, pod: Object, *, after: float | None = None) -> None:
        """Back off: the pod is retried after `after` seconds (default retry_interval)."""
        delay = self.retry_interval if after is None else after
        with self._ready:
            self._waiting[uid(pod)] = (self.clock() + delay, pod)
            self._ready.notify()

    def move_all_to_active(self) -> None:
        with self._ready:
            for key, (_, pod) in self._waiting.items():
                self._active.setdefault(key, pod)
            self._waiting.clear()
            self._ready.notify_all()

    def flush(self) -> None:
        """Waiting pods whose time has come become active."""
        now = self.clock()
        with self._ready:
            due = [k for k, (at, _) in self._waiting.items() if at <= now]
            for key in due:
                self._active.setdefault(key, self._waiting.pop(key)[1])
            if due:
                self._ready.notify_all()

    def pop(self, timeout: float) -> Object | None:
        """The next active pod (highest priority, then oldest), or None after `timeout`."""
        with self._ready:
            if not self._active:
                self._ready.wait(timeout)
            if not self._active:
                return None
            key = max(self._active, key=lambda k: _priority(self._active[k]), default="")
            if _priority(self._active[key]) == 0:
                key = next(iter(self._active))
            return self._active.pop(key)

    def __len__(self) -> int:
        with self._ready:
            return len(self._active) + len(self._waiting)

    def next_retry(self) -> float | None:
        with self._ready:
            return min((at for at, _ in self._waiting.values()), default=None)


def _priority(pod: Object) -> int:
    return int((pod.get("spec") or {}).get("priority") or 0)
