"""What every controller shares: informers, the keyed work queue, label selectors,
owner references and the worker loop.

Informer: one watch of a collection (kubeapi.client's `watch`, so a RELISTED event
replaces the cache) keeping `namespace/name -> object`; handlers get `(old, new)`
(`new` None: deleted), called on the watch thread.

WorkQueue (client-go's workqueue, STYLE §8): keys, not objects, so only the latest
state matters; a key queued twice is queued once; a key being processed is not
handed to a second worker, and one added meanwhile is handed out again once `done`;
`retry` re-adds a key after an exponential per-key backoff, `forget` resets it.
"""

from __future__ import annotations

import abc
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from kubeapi.client import ApiError, Client, Watch

log = logging.getLogger(__name__)

Object = dict[str, Any]
Handler = Callable[[Object | None, Object | None], None]


def key_of(obj: Object) -> str:
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace") or ""
    return f"{namespace}/{meta.get('name', '')}" if namespace else str(meta.get("name", ""))


def split_key(key: str) -> tuple[str, str]:
    namespace, _, name = key.rpartition("/")
    return namespace, name


# -- selectors and owners (pure) -------------------------------------------------------


def selector_matches(selector: Object | None, labels: dict[str, str] | None) -> bool:
    """A metav1.LabelSelector against labels. An empty or missing selector matches
    nothing (as the workload controllers treat it)."""
    if not selector or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        return False
    labels = labels or {}
    for name, value in (selector.get("matchLabels") or {}).items():
        if labels.get(name) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        name, operator = expression.get("key", ""), expression.get("operator", "")
        values = expression.get("values") or []
        if operator == "In" and labels.get(name) not in values:
            return False
        if operator == "NotIn" and name in labels and labels[name] in values:
            return False
        if operator == "Exists" and name not in labels:
            return False
        if operator == "DoesNotExist" and name in labels:
            return False
    return True


def labels_of(obj: Object) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def controller_ref(obj: Object) -> Object | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def owner_reference(owner: Object) -> Object:
    meta = owner["metadata"]
    return {
        "apiVersion": owner.get("apiVersion", ""), "kind": owner.get("kind", ""),
        "name": meta["name"], "uid": meta["uid"], "controller": True,
        "blockOwnerDeletion": True,
    }  # fmt: skip


def terminating(obj: Object) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def generation_of(obj: Object) -> int:
    return int((obj.get("metadata") or {}).get("generation") or 0)


# -- informers -------------------------------------------------------------------------


class Informer:
    """A watch-fed cache of one collection (see the module docstring)."""

    def __init__(self, client: Client, path: str, **query: Any) -> None:
        self.client = client
        self.path = path
        self.query = query
        self.synced = threading.Event()
        self._lock = threading.Lock()
        self._store: dict[str, Object] = {}
        self._handlers: list[Handler] = []
        self._watch: Watch | None = None

    def add_handler(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def get(self, key: str) -> Object | None:
        with self._lock:
            return self._store.get(key)

    def list(self, namespace: str | None = None) -> list[Object]:
        with self._lock:
            items = list(self._store.values())
        if namespace is None:
            return items
        return [o for o in items if (o.get("metadata") or {}).get("namespace") == namespace]

    def _emit(self, old: Object | None, new: Object | None) -> None:
        for handler in self._handlers:
            try:
                handler(old, new)
            except Exception:
                log.exception("informer %s: handler failed", self.path)

    def _apply(self, event: Object) -> None:
        kind = event.get("type")
        if kind == "RELISTED":
            listed = event.get("object") or {}
            items = {key_of(o): o for o in listed.get("items") or []}
            with self._lock:
                previous, self._store = self._store, items
            for key, gone in previous.items():
                if key not in items:
                    self._emit(gone, None)
            for key, new in items.items():
                self._emit(previous.get(key), new)
            self.synced.set()
            return
        obj: Object = event.get("object") or {}
        key = key_of(obj)
        with self._lock:
            old = self._store.get(key)
            if kind == "DELETED":
                self._store.pop(key, None)
            elif kind in ("ADDED", "MODIFIED"):
                self._store[key] = obj
            else:
                return
        self._emit(old, None if kind == "DELETED" else obj)

    def run(self, stop: threading.Event) -> None:
        """Watch until `stop` (call on a thread of its own)."""
        self._watch = self.client.watch(self.path, **self.query)

        def close_on_stop() -> None:
            stop.wait()
            self._close()

        closer = threading.Thread(target=close_on_stop, daemon=True)
        closer.start()
        for event in self._watch:
            if stop.is_set():
                break
            self._apply(event)

    def _close(self) -> None:
        if self._watch is not None:
            self._watch.close()


# -- the keyed work queue --------------------------------------------------------------


class WorkQueue:
    """Keys to reconcile (see the module docstring). Thread-safe; `get` blocks."""

    def __init__(
        self, *, base_delay: float = 0.05, max_delay: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.clock = clock
        self._cond = threading.Condition()
        self._queue: deque[str] = deque()
        self._queued: set[str] = set()
        self._processing: set[str] = set()
        self._dirty: set[str] = set()
        self._delayed: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._shut = False

    def _enqueue(self, key: str) -> None:
        if key in self._processing:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.append(key)
            self._cond.notify()

    def add(self, key: str) -> None:
        with self._cond:
            self._enqueue(key)

    def add_after(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            due = self.clock() + delay
            self._delayed[key] = min(due, self._delayed.get(key, due))
            self._cond.notify()

    def retry(self, key: str) -> float:
        """Re-add `key` after its backoff (doubling per failure); the delay used."""
        with self._cond:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
        delay = min(self.base_delay * float(2**failures), self.max_delay)
        self.add_after(key, delay)
        return delay

    def forget(self, key: str) -> None:
        with self._cond:
            self._failures.pop(key, None)

    def failures(self, key: str) -> int:
        with self._cond:
            return self._failures.get(key, 0)

    def _promote(self) -> float | None:
        """Move due delayed keys to the queue; seconds until the next one is due."""
        now = self.clock()
        for key in [k for k, at in self._delayed.items() if at <= now]:
            del self._delayed[key]
            self._enqueue(key)
        return min((at - now for at in self._delayed.values()), default=None)

    def get(self, timeout: float) -> str | None:
        """The next key to reconcile (now owned by the caller until `done`), or None."""
        deadline = self.clock() + timeout
        with self._cond:
            while True:
                wait = self._promote()
                if self._queue:
                    key = self._queue.popleft()
                    self._queued.discard(key)
                    self._processing.add(key)
                    return key
                left = deadline - self.clock()
                if self._shut or left <= 0:
                    return None
                self._cond.wait(min(left, wait) if wait is not None else left)

    def done(self, key: str) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self._enqueue(key)

    def shut_down(self) -> None:
        with self._cond:
            self._shut = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue) + len(self._delayed)


# -- the worker loop -------------------------------------------------------------------


class Controller(abc.ABC):
    """A reconcile loop over a WorkQueue: `sync(key)` returns seconds until the key
    should be looked at again (None: only when something changes); an exception
    retries it with backoff."""

    name = "controller"

    def __init__(self, client: Client, *, workers: int = 2) -> None:
        self.client = client
        self.workers = workers
        self.queue = WorkQueue()

    @abc.abstractmethod
    def sync(self, key: str) -> float | None: ...

    def enqueue(self, obj: Object | None) -> None:
        if obj is not None:
            self.queue.add(key_of(obj))

    def process_one(self, timeout: float = 0.5) -> bool:
        key = self.queue.get(timeout)
        if key is None:
            return False
        try:
            after = self.sync(key)
            self.queue.forget(key)
            if after is not None:
                self.queue.add_after(key, after)
        except ApiError as e:
            delay = self.queue.retry(key)
            level = logging.DEBUG if e.code == 409 else logging.WARNING
            log.log(level, "%s %s: %s (retry in %.2fs)", self.name, key, e, delay)
        except Exception:
            delay = self.queue.retry(key)
            log.exception("%s %s failed (retry in %.2fs)", self.name, key, delay)
        finally:
            self.queue.done(key)
        return True

    def run(self, stop: threading.Event) -> list[threading.Thread]:
        """Start the workers; they end when `stop` is set."""

        def work() -> None:
            while not stop.is_set():
                self.process_one()

        threads = [
            threading.Thread(target=work, name=f"{self.name}-{i}", daemon=True)
            for i in range(self.workers)
        ]
        for thread in threads:
            thread.start()
        return threads
