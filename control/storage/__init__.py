"""The cluster store: a revisioned key/value store with watch in the etcd model, the
bottom layer of the API server. The interface is control.storage.base (read its
docstring first), the errors control.storage.errors; backends are chosen by URL:

- ``sqlite:///var/lib/kubeling/state.db``: the embedded default (sqlite.py)
- ``etcd://127.0.0.1:2379[,host:port...]``: an etcd v3 cluster (etcd.py)
- ``memory://``: nothing durable, for tests of the layers above (memory.py)
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from control.storage.base import (
    Backend,
    Deleted,
    Event,
    EventType,
    KeyValue,
    ListResult,
    Revision,
    Watch,
)
from control.storage.errors import (
    AlreadyExists,
    Compacted,
    Conflict,
    FutureRevision,
    NotFound,
    StorageError,
    Unavailable,
)
from control.storage.etcd import EtcdBackend, parse_endpoints
from control.storage.memory import MemoryBackend
from control.storage.sqlite import SQLiteBackend

__all__ = [
    "AlreadyExists",
    "Backend",
    "Compacted",
    "Conflict",
    "Deleted",
    "EtcdBackend",
    "Event",
    "EventType",
    "FutureRevision",
    "KeyValue",
    "ListResult",
    "MemoryBackend",
    "NotFound",
    "Revision",
    "SQLiteBackend",
    "StorageError",
    "Unavailable",
    "Watch",
    "open_backend",
]


def open_backend(url: str) -> Backend:
    """The backend a store URL names (see the module docstring); ValueError for a URL
    that names none."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "memory":
        if parts.netloc or parts.path not in ("", "/"):
            raise ValueError(f"store url {url!r}: memory:// takes no path")
        return MemoryBackend()
    if scheme == "sqlite":
        if parts.netloc:
            raise ValueError(f"store url {url!r}: use sqlite:///absolute/path (three slashes)")
        path = unquote(parts.path)
        if not path or path.endswith("/"):
            raise ValueError(f"store url {url!r}: no database file")
        return SQLiteBackend(path)
    if scheme == "etcd":
        if parts.path not in ("", "/"):
            raise ValueError(f"store url {url!r}: etcd://host:port[,host:port] takes no path")
        return EtcdBackend(parse_endpoints(parts.netloc))
    raise ValueError(f"store url {url!r}: unknown scheme (sqlite, etcd or memory)")
