"""The cluster store's interface: a revisioned key/value store with watch, in the etcd
model (etcd ``mvcc``; kine ``pkg/server/types.go``; the API server's contract in
``k8s.io/apiserver/pkg/storage/interfaces.go``).

What it owns: the value types (KeyValue, Event, ListResult, Deleted), the Backend and
Watch protocols every backend implements (memory.py, sqlite.py, etcd.py), and small
helpers shared by the backends (on keys; ``Closing``). What it doesn't: objects, JSON, resource
versions as strings, selectors, retries of a compare-and-swap loop (the API server's
``guaranteed_update``) -- those are control/apiserver's.

The model:

- One cluster-wide revision counter. Every successful write (create, update, delete)
  advances it by exactly one and is stamped with it; reads and failed writes do not
  advance it. ``revision=0`` in a read means "the current revision".
- A KeyValue carries ``create_revision`` (the write that created this incarnation of
  the key), ``mod_revision`` (the last write to it; the API server's
  ``resourceVersion``) and ``version`` (1 at creation, +1 per update; a delete ends
  the incarnation, and a create afterwards starts again at 1).
- History is kept until ``compact(revision)``: afterwards reads below that revision
  and watches from below it raise Compacted; reads *at* it still work.
- Keys are non-empty ``str`` compared in UTF-8 byte order (which is code point order);
  values are ``bytes``. A prefix is a plain string prefix: ``"/registry/pods/"``.

Sync, not async: sqlite3 and http.client block, and the API server serves requests on
threads. Every Backend method may be called from any thread at the same time; a Watch
is consumed by one thread, and ``close()`` may come from any thread. An asyncio caller
wraps calls in ``asyncio.to_thread``.

Watch semantics (all backends):

- ``watch(prefix, from_revision)`` delivers every event on a key under ``prefix`` with a
  revision above ``from_revision``, in revision order, first the history already
  written (replay), then live events, with no gaps or duplicates. To watch from "now",
  pass the revision of a list or ``current_revision()``.
- ``watch`` raises Compacted if ``from_revision`` is below the compact revision.
  A compaction that overtakes a watch still replaying makes ``next_batch`` raise it.
- A watch ends (``next_batch`` returns None, iteration stops) on ``close()``, when its
  backend closes, or when the backend drops it because its consumer fell too far
  behind; the consumer re-watches from the last revision it saw (or re-lists on
  Compacted). Unavailable means the store itself is unreachable.
- Put events carry ``prev_kv`` (the value before the write; None for a create). A
  delete event's ``kv`` has only ``key`` and ``mod_revision`` (the delete's revision),
  as in etcd; ``prev_kv`` is the deleted value.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import NamedTuple, NewType, Protocol, Self

Revision = NewType("Revision", int)


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: Revision
    mod_revision: Revision
    version: int


class EventType(enum.Enum):
    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    kv: KeyValue
    prev_kv: KeyValue | None = None

    @property
    def revision(self) -> Revision:
        return self.kv.mod_revision


class ListResult(NamedTuple):
    """A page of a list: the live keys in key order, the revision the page was read at
    (the requested one, else the current one at the time of the read), and whether
    keys follow after the last one."""

    items: tuple[KeyValue, ...]
    revision: Revision
    more: bool


class Deleted(NamedTuple):
    revision: Revision
    kv: KeyValue  # the value the delete removed


class Watch(Protocol):
    """A stream of event batches. Each batch is non-empty and in revision order; batches
    follow each other in revision order."""

    def next_batch(self, timeout: float | None = None) -> list[Event] | None:
        """The next batch; ``[]`` if ``timeout`` seconds passed without one; None once
        the watch has ended. Raises Compacted (history needed was compacted away) or
        Unavailable (the store is unreachable)."""
        ...

    def close(self) -> None:
        """End the watch; idempotent, callable from any thread (a blocked
        ``next_batch`` returns None)."""
        ...

    def __iter__(self) -> Iterator[list[Event]]: ...

    def __next__(self) -> list[Event]: ...

    def __enter__(self) -> Watch: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class Backend(Protocol):
    """A revisioned key/value store. Errors: control.storage.errors."""

    def get(self, key: str, revision: int = 0) -> KeyValue:
        """The live value of ``key`` at ``revision`` (0: now). NotFound, Compacted,
        FutureRevision."""
        ...

    def list(
        self,
        prefix: str,
        *,
        revision: int = 0,
        limit: int = 0,
        continue_from: str | None = None,
    ) -> ListResult:
        """Live keys starting with ``prefix`` at ``revision`` (0: now), in key order, at
        most ``limit`` of them (0: all), only keys after ``continue_from`` (exclusive).
        To page through one consistent snapshot, pass the first page's ``revision`` and
        its last key as ``continue_from``. Compacted, FutureRevision."""
        ...

    def count(self, prefix: str) -> int:
        """How many live keys start with ``prefix`` now."""
        ...

    def create(self, key: str, value: bytes) -> Revision:
        """Write a key that is not live; its revision. AlreadyExists."""
        ...

    def update(self, key: str, value: bytes, expected_mod_revision: int) -> Revision:
        """Replace the value of a live key whose mod revision is
        ``expected_mod_revision``; the new revision. NotFound if not live, Conflict
        (with the current value) if the mod revision differs."""
        ...

    def delete(self, key: str, expected_mod_revision: int | None = None) -> Deleted:
        """Delete a live key, if given only at ``expected_mod_revision``. NotFound,
        Conflict."""
        ...

    def watch(self, prefix: str, from_revision: int) -> Watch:
        """Events on keys under ``prefix`` after ``from_revision`` (see the module
        docstring). Compacted."""
        ...

    def current_revision(self) -> Revision:
        """The revision of the last write (etcd starts at 1, an empty SQLite store at
        0)."""
        ...

    def compact(self, revision: int) -> None:
        """Drop history below ``revision``: every value superseded at or before it and
        every delete at or before it. Compacted if ``revision`` is not above the
        compact revision, FutureRevision if above the current one."""
        ...

    def close(self) -> None:
        """Release connections and threads; open watches end. Idempotent."""
        ...

    def __enter__(self) -> Backend: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def check_key(key: str) -> bytes:
    """The UTF-8 bytes of a key; ValueError for an empty or unencodable key."""
    if not key:
        raise ValueError("storage key must not be empty")
    try:
        return key.encode()
    except UnicodeEncodeError as e:
        raise ValueError(f"storage key {key!r} is not valid unicode") from e


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest byte string above every string starting with ``prefix`` (etcd's
    ``range_end`` for a prefix); None when there is none (empty prefix, all 0xff)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


def check_list_args(prefix: str, revision: int, limit: int) -> bytes:
    """The prefix's bytes; ValueError for a negative revision or limit."""
    if revision < 0:
        raise ValueError(f"list {prefix}: negative revision {revision}")
    if limit < 0:
        raise ValueError(f"list {prefix}: negative limit {limit}")
    return prefix.encode()


def list_start(prefix: bytes, continue_from: str | None) -> bytes:
    """The first key a list may return: the prefix, or just after ``continue_from``."""
    if continue_from is None:
        return prefix
    return max(prefix, continue_from.encode() + b"\x00")


class Closing(abc.ABC):
    """The context manager of a backend or watch: ``with`` returns it and closes it on
    the way out (the subclass defines ``close``)."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
