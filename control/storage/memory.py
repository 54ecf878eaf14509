"""An in-memory Backend for tests of the layers above (the API server, controllers):
the reference semantics of control.storage.base in the fewest lines, nothing durable.

What it owns: per-key histories, the event log for watch replay, the revision counter
and compact revision, all under one lock. Watches go through fanout.Broadcaster; a
write publishes its event while holding the lock, so events reach watches in revision
order.
"""

from __future__ import annotations

import bisect
import threading

from control.storage.base import (
    Closing,
    Deleted,
    Event,
    EventType,
    KeyValue,
    ListResult,
    Revision,
    check_key,
    check_list_args,
)
from control.storage.errors import (
    AlreadyExists,
    Compacted,
    Conflict,
    FutureRevision,
    NotFound,
    Unavailable,
)
from control.storage.fanout import DEFAULT_MAX_PENDING, Broadcaster, LocalWatch, ReplayPage

REPLAY_PAGE = 500

# One entry of a key's history: (revision, the value then, or None if deleted then).
_Entry = tuple[int, KeyValue | None]


class MemoryBackend(Closing):
    def __init__(self, *, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self._lock = threading.RLock()
        self._revision = 0
        self._compacted = 0
        self._history: dict[str, list[_Entry]] = {}
        self._keys: list[str] = []  # every key with a history, sorted
        self._events: list[Event] = []  # in revision order, above the compact revision
        self._broadcaster = Broadcaster(max_pending=max_pending)
        self._closed = False

    # -- reads --

    def get(self, key: str, revision: int = 0) -> KeyValue:
        check_key(key)
        with self._lock:
            at = self._read_revision("get " + key, revision)
            kv = self._value_at(key, at)
            if kv is None:
                raise NotFound("get", key, revision)
            return kv

    def list(
        self,
        prefix: str,
        *,
        revision: int = 0,
        limit: int = 0,
        continue_from: str | None = None,
    ) -> ListResult:
        check_list_args(prefix, revision, limit)
        start = prefix if continue_from is None else max(prefix, continue_from + "\x00")
        with self._lock:
            at = self._read_revision("list " + prefix, revision)
            items: list[KeyValue] = []
            for i in range(bisect.bisect_left(self._keys, start), len(self._keys)):
                key = self._keys[i]
                if not key.startswith(prefix):
                    break
                kv = self._value_at(key, at)
                if kv is None:
                    continue
                if limit and len(items) == limit:
                    return ListResult(tuple(items), Revision(at), True)
                items.append(kv)
            return ListResult(tuple(items), Revision(at), False)

    def count(self, prefix: str) -> int:
        with self._lock:
            self._check_open()
            return sum(
                1
                for key in self._keys
                if key.startswith(prefix) and self._value_at(key, self._revision) is not None
            )

    def current_revision(self) -> Revision:
        with self._lock:
            self._check_open()
            return Revision(self._revision)

    # -- writes --

    def create(self, key: str, value: bytes) -> Revision:
        check_key(key)
        with self._lock:
            self._check_open()
            current = self._value_at(key, self._revision)
            if current is not None:
                raise AlreadyExists(key, current)
            revision = self._revision + 1
            kv = KeyValue(key, bytes(value), Revision(revision), Revision(revision), 1)
            self._append(key, kv, Event(EventType.PUT, kv, None))
            return Revision(revision)

    def update(self, key: str, value: bytes, expected_mod_revision: int) -> Revision:
        check_key(key)
        with self._lock:
            current = self._live("update", key, expected_mod_revision)
            revision = Revision(self._revision + 1)
            kv = KeyValue(key, bytes(value), current.create_revision, revision, current.version + 1)
            self._append(key, kv, Event(EventType.PUT, kv, current))
            return revision

    def delete(self, key: str, expected_mod_revision: int | None = None) -> Deleted:
        check_key(key)
        with self._lock:
            current = self._live("delete", key, expected_mod_revision)
            revision = Revision(self._revision + 1)
            tombstone = KeyValue(key, b"", Revision(0), revision, 0)
            self._append(key, None, Event(EventType.DELETE, tombstone, current))
            return Deleted(revision, current)

    def compact(self, revision: int) -> None:
        with self._lock:
            self._check_open()
            if revision <= self._compacted:
                raise Compacted(f"compact {revision}", revision, self._compacted)
            if revision > self._revision:
                raise FutureRevision(f"compact {revision}", revision, self._revision)
            for key in list(self._history):
                history = self._history[key]
                last = bisect.bisect_right(history, revision, key=lambda e: e[0]) - 1
                if last < 0:
                    continue
                # the value at the compact revision stays readable; a delete goes
                del history[: last if history[last][1] is not None else last + 1]
                if not history:
                    del self._history[key]
                    del self._keys[bisect.bisect_left(self._keys, key)]
            del self._events[: bisect.bisect_right(self._events, revision, key=_revision_of)]
            self._compacted = revision

    # -- watch --

    def watch(self, prefix: str, from_revision: int) -> LocalWatch:
        with self._lock:
            self._check_open()
            if from_revision < self._compacted:
                raise Compacted(f"watch {prefix}", from_revision, self._compacted)
            return self._broadcaster.subscribe(prefix, from_revision, self._replay)

    def _replay(self, prefix: str, after: int, upto: int) -> ReplayPage:
        with self._lock:
            if after < self._compacted:
                raise Compacted(f"watch {prefix}", after, self._compacted)
            start = bisect.bisect_right(self._events, after, key=_revision_of)
            page = [e for e in self._events[start : start + REPLAY_PAGE] if e.revision <= upto]
            scanned = page[-1].revision if len(page) == REPLAY_PAGE else upto
            return [e for e in page if e.kv.key.startswith(prefix)], scanned

    # -- lifecycle --

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._broadcaster.end_all()

    # -- helpers (called with the lock held) --

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("memory store is closed")

    def _read_revision(self, op: str, revision: int) -> int:
        self._check_open()
        if revision < 0:
            raise ValueError(f"{op}: negative revision {revision}")
        if revision > self._revision:
            raise FutureRevision(op, revision, self._revision)
        if revision and revision < self._compacted:
            raise Compacted(op, revision, self._compacted)
        return revision or self._revision

    def _value_at(self, key: str, revision: int) -> KeyValue | None:
        history = self._history.get(key)
        if not history:
            return None
        i = bisect.bisect_right(history, revision, key=lambda e: e[0]) - 1
        return history[i][1] if i >= 0 else None

    def _live(self, op: str, key: str, expected: int | None) -> KeyValue:
        self._check_open()
        current = self._value_at(key, self._revision)
        if current is None:
            raise NotFound(op, key)
        if expected is not None and current.mod_revision != expected:
            raise Conflict(op, key, expected, current)
        return current

    def _append(self, key: str, kv: KeyValue | None, event: Event) -> None:
        self._revision += 1
        history = self._history.get(key)
        if history is None:
            history = self._history[key] = []
            bisect.insort(self._keys, key)
        history.append((self._revision, kv))
        self._events.append(event)
        self._broadcaster.publish([event], self._revision)


def _revision_of(event: Event) -> int:
    return event.revision
