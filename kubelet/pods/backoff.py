"""Exponential back-off of container restarts and image pulls, keyed per (pod,
container), as the kubelet's flowcontrol.Backoff:

- `in_backoff(key, since)`: true while less than the key's current back-off has passed
  since `since` (the container's finish time); `in_backoff_since_update(key)` since
  the key's last failure (a failed pull).
- `next(key, at)`: the failure at `at` is let through; the back-off starts at
  `initial` for a new key and doubles up to `maximum` otherwise. A key whose last
  failure is older than 2 * `maximum` starts over (the container ran long enough).

So the first restart is immediate, the next ones wait initial, 2*initial, ... maximum.
Thread-safe; the clock is injected (monotonic-free wall time, because the times come
from the runtime's finishedAt)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Entry:
    backoff: float
    last_update: float


class Backoff:
    def __init__(
        self, initial: float, maximum: float, *, clock: Callable[[], float] = time.time
    ) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError(f"back-off: need 0 < initial ({initial}) <= maximum ({maximum})")
        self.initial = initial
        self.maximum = maximum
        self.clock = clock
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def _expired(self, entry: _Entry, at: float) -> bool:
        return at - entry.last_update > 2 * self.maximum

    def next(self, key: str, at: float) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or self._expired(entry, at):
                self._entries[key] = _Entry(self.initial, at)
            else:
                entry.backoff = min(entry.backoff * 2, self.maximum)
                entry.last_update = at

    def get(self, key: str) -> float:
        """The key's current back-off in seconds (0 when unknown)."""
        with self._lock:
            entry = self._entries.get(key)
            return entry.backoff if entry else 0.0

    def in_backoff(self, key: str, since: float) -> bool:
        with self._lock:
            entry = self._entries.get(key)
            now = self.clock()
            if entry is None or self._expired(entry, now):
                return False
            return now - since < entry.backoff

    def in_backoff_since_update(self, key: str) -> bool:
        """True while less than the key's back-off has passed since its last failure
        (pulls: the failure time is the last update)."""
        with self._lock:
            entry = self._entries.get(key)
            now = self.clock()
            if entry is None or self._expired(entry, now):
                return False
            return now - entry.last_update < entry.backoff

    def remaining(self, key: str, since: float) -> float:
        """Seconds until `in_backoff(key, since)` turns false (0 when it is)."""
        with self._lock:
            entry = self._entries.get(key)
            now = self.clock()
            if entry is None or self._expired(entry, now):
                return 0.0
            return max(0.0, entry.backoff - (now - since))

    def remaining_since_update(self, key: str) -> float:
        """Seconds until `in_backoff_since_update(key)` turns false (0 when it is)."""
        with self._lock:
            entry = self._entries.get(key)
            now = self.clock()
            if entry is None or self._expired(entry, now):
                return 0.0
            return max(0.0, entry.backoff - (now - entry.last_update))

    def reset(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def forget_prefix(self, prefix: str) -> None:
        """Drops the keys of a pod that is gone (keys start with its uid)."""
        with self._lock:
            for key in [k for k in self._entries if k.startswith(prefix)]:
                del self._entries[key]

    def gc(self) -> None:
        """Drops entries whose back-off has expired."""
        with self._lock:
            now = self.clock()
            for key in [k for k, e in self._entries.items() if self._expired(e, now)]:
                del self._entries[key]


def go_duration(seconds: float) -> str:
    """A duration as Go's time.Duration prints it: 10s, 1m20s, 5m0s, 1.5s."""
    if seconds < 60:
        return f"{seconds:g}s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 60:
        return f"{int(minutes)}m{rest:g}s"
    hours, minutes = divmod(minutes, 60)
    return f"{int(hours)}h{int(minutes)}m{rest:g}s"
