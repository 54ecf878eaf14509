"""Domain errors of the cluster store (control/storage).

Every error a backend raises on purpose is a StorageError. They become Kubernetes
``Status`` objects only in control/apiserver/ (NotFound 404, AlreadyExists 409,
Conflict 409, Compacted 410 Gone, FutureRevision 504 "Too large resource version",
Unavailable 503). Messages are lower-case, have no trailing period and name the
operation and the key, for example ``update /registry/pods/a/b: conflict: expected mod
revision 5, current 7``.

Bad arguments (an empty key, a negative limit) are programming errors and raise
ValueError, not a StorageError.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from control.storage.base import KeyValue


class StorageError(Exception):
    """Base class of every error control/storage raises on purpose."""


class NotFound(StorageError):
    """No live key ``key`` (at ``revision``; 0 is the current revision)."""

    def __init__(self, op: str, key: str, revision: int = 0) -> None:
        at = f" at revision {revision}" if revision else ""
        super().__init__(f"{op} {key}: not found{at}")
        self.key = key
        self.revision = revision


class AlreadyExists(StorageError):
    """``create`` of a key that is live; ``kv`` is the live value when the backend
    knows it."""

    def __init__(self, key: str, kv: KeyValue | None = None) -> None:
        now = f" (mod revision {kv.mod_revision})" if kv is not None else ""
        super().__init__(f"create {key}: already exists{now}")
        self.key = key
        self.kv = kv


class Conflict(StorageError):
    """A compare-and-swap that failed: the key's mod revision is not ``expected``.
    ``kv`` is the current value (None if the key is gone), so a caller can retry from
    it without another read."""

    def __init__(self, op: str, key: str, expected: int, kv: KeyValue | None) -> None:
        current = f"current {kv.mod_revision}" if kv is not None else "the key is gone"
        super().__init__(f"{op} {key}: conflict: expected mod revision {expected}, {current}")
        self.key = key
        self.expected = expected
        self.kv = kv


class Compacted(StorageError):
    """A read or watch at a revision below the compact revision: that history is gone.
    The API server answers 410 Gone and the client re-lists. ``compact_revision`` is
    None where the backend is not told it (etcd's range errors)."""

    def __init__(self, op: str, revision: int, compact_revision: int | None) -> None:
        known = f" (compact revision {compact_revision})" if compact_revision else ""
        super().__init__(f"{op}: revision {revision} has been compacted{known}")
        self.revision = revision
        self.compact_revision = compact_revision


class FutureRevision(StorageError):
    """A read at a revision the store has not reached yet (``current_revision`` None
    where the backend is not told it)."""

    def __init__(self, op: str, revision: int, current_revision: int | None) -> None:
        known = f" (current {current_revision})" if current_revision else ""
        super().__init__(f"{op}: revision {revision} is a future revision{known}")
        self.revision = revision
        self.current_revision = current_revision


class Unavailable(StorageError):
    """The store cannot be reached or is closed (etcd down, SQLite locked for longer
    than the busy timeout). For a write, the outcome is unknown: the caller reads
    before it retries."""
