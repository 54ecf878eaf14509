"""In-process watch fan-out for the memory and SQLite backends (kine
``pkg/broadcaster`` plus the replay of ``logstructured.Watch``).

What it owns: the set of open watches of one backend, a bounded queue per watch, and
the hand-over from replaying history to following live events. What it doesn't: where
events come from. The memory backend publishes each write as it makes it; the SQLite
backend's poller publishes what it reads from the log. Either way ``publish`` is called
by one producer at a time, in revision order, with every event up to ``revision``.

Ordering rule (why there are no gaps or duplicates): ``subscribe`` and ``publish`` take
the same lock. A watch subscribed when the published revision was P receives every
event above P through its queue, and replays (from_revision, P] itself from the
backend's history, page by page, in its consumer's thread, before it reads the queue.
Each watch also drops anything at or below the last revision it delivered.

A full queue (``max_pending`` events not consumed) drops the watch: it ends, and its
consumer re-watches from the last revision it saw, replaying from history, which
costs the store nothing while the consumer is slow (kine closes the watch the same
way; the API server's client re-lists on 410).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterator

from control.storage.base import Closing, Event
from control.storage.errors import StorageError

log = logging.getLogger(__name__)

# (prefix, after, upto) -> (events in (after, upto] under prefix, in revision order, at
# most one page of them; the revision up to which the history was read). Raises
# Compacted when ``after`` is below the compact revision.
ReplayPage = tuple[list[Event], int]
Replay = Callable[[str, int, int], ReplayPage]

DEFAULT_MAX_PENDING = 10_000


class LocalWatch(Closing):
    """One watch fed by a Broadcaster. Consumed by one thread."""

    def __init__(
        self,
        *,
        prefix: str,
        after: int,
        replay_to: int,
        replay: Replay,
        unsubscribe: Callable[[LocalWatch], None],
        max_pending: int,
    ) -> None:
        self.prefix = prefix
        self._after = after  # the last revision delivered (or asked to start after)
        self._replay_to = replay_to
        self._replay = replay
        self._unsubscribe = unsubscribe
        self._max_pending = max_pending
        self._cond = threading.Condition(threading.Lock())
        self._queue: collections.deque[list[Event]] = collections.deque()
        self._pending = 0
        self._ended = False
        self._error: StorageError | None = None

    # -- producer side (called with the broadcaster's lock held) --

    def offer(self, events: list[Event]) -> bool:
        """Queue the events under this watch's prefix; False if the watch has ended or
        just overflowed (the broadcaster forgets it)."""
        mine = [e for e in events if e.kv.key.startswith(self.prefix)]
        with self._cond:
            if self._ended:
                return False
            if not mine:
                return True
            if self._pending + len(mine) > self._max_pending:
                log.warning(
                    "watch on %r fell %d events behind: dropped",
                    self.prefix,
                    self._pending,
                    extra={"prefix": self.prefix},
                )
                self._queue.clear()
                self._pending = 0
                self._ended = True
                self._cond.notify_all()
                return False
            self._queue.append(mine)
            self._pending += len(mine)
            self._cond.notify_all()
            return True

    def end(self, error: StorageError | None = None) -> None:
        """End the watch after what is queued; with ``error``, raise it then."""
        with self._cond:
            if not self._ended:
                self._ended = True
                self._error = error
            self._cond.notify_all()

    # -- consumer side --

    def next_batch(self, timeout: float | None = None) -> list[Event] | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._cond:
                replaying = self._after < self._replay_to and not self._ended
            if replaying:
                events, upto = self._replay(self.prefix, self._after, self._replay_to)
                batch = self._take(events)
                self._after = max(self._after, upto)
                if batch:
                    return batch
                continue
            with self._cond:
                while not self._queue and not self._ended:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return []
                    self._cond.wait(remaining)
                if not self._queue:
                    if self._error is not None:
                        raise self._error
                    return None
                queued = self._queue.popleft()
                self._pending -= len(queued)
            batch = self._take(queued)
            if batch:
                return batch

    def _take(self, events: list[Event]) -> list[Event]:
        batch = [e for e in events if e.revision > self._after]
        if batch:
            self._after = batch[-1].revision
        return batch

    def close(self) -> None:
        with self._cond:
            self._ended = True
            self._error = None
            self._queue.clear()
            self._pending = 0
            self._cond.notify_all()
        self._unsubscribe(self)

    def __iter__(self) -> Iterator[list[Event]]:
        return self

    def __next__(self) -> list[Event]:
        batch = self.next_batch()
        if batch is None:
            raise StopIteration
        return batch


class Broadcaster:
    """The open watches of one backend and the revision published to them."""

    def __init__(self, *, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self._lock = threading.Lock()
        self._watches: set[LocalWatch] = set()
        self._max_pending = max_pending
        self._revision = 0

    @property
    def revision(self) -> int:
        """Every event up to this revision has been published."""
        with self._lock:
            return self._revision

    def start_at(self, revision: int) -> None:
        """Set the published revision before the first subscription (a poller starts
        where the log ends)."""
        with self._lock:
            self._revision = revision

    def subscribe(self, prefix: str, from_revision: int, replay: Replay) -> LocalWatch:
        with self._lock:
            watch = LocalWatch(
                prefix=prefix,
                after=from_revision,
                replay_to=self._revision,
                replay=replay,
                unsubscribe=self._forget,
                max_pending=self._max_pending,
            )
            self._watches.add(watch)
            return watch

    def publish(self, events: list[Event], revision: int) -> None:
        """Hand every event in (published revision, ``revision``] to the watches."""
        with self._lock:
            self._revision = max(self._revision, revision)
            if events:
                for watch in list(self._watches):
                    if not watch.offer(events):
                        self._watches.discard(watch)

    def end_all(self, error: Callable[[], StorageError] | None = None) -> None:
        """End every watch; with ``error``, each raises a fresh one from it once it has
        delivered what it holds."""
        with self._lock:
            watches, self._watches = self._watches, set()
        for watch in watches:
            watch.end(error() if error is not None else None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._watches)

    def _forget(self, watch: LocalWatch) -> None:
        with self._lock:
            self._watches.discard(watch)
