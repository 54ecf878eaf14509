"""control/storage.open_backend: the store URL selects the backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from control.storage import EtcdBackend, MemoryBackend, SQLiteBackend, open_backend
from control.storage.base import prefix_end
from control.storage.etcd import parse_endpoints


def test_memory() -> None:
    store = open_backend("memory://")
    assert isinstance(store, MemoryBackend)
    store.close()


def test_sqlite_takes_an_absolute_path(tmp_path: Path) -> None:
    store = open_backend(f"sqlite://{tmp_path}/sub/state.db")
    try:
        assert isinstance(store, SQLiteBackend)
        assert store.path == tmp_path / "sub" / "state.db"
        assert store.path.exists()
    finally:
        store.close()


def test_etcd_takes_a_list_of_endpoints() -> None:
    store = open_backend("etcd://127.0.0.1:2379,10.0.0.2:12379,etcd3")
    assert isinstance(store, EtcdBackend)
    assert store.endpoints == [("127.0.0.1", 2379), ("10.0.0.2", 12379), ("etcd3", 2379)]
    store.close()


def test_parse_endpoints() -> None:
    assert parse_endpoints("[::1]:2380") == [("::1", 2380)]
    with pytest.raises(ValueError):
        parse_endpoints(",")
    with pytest.raises(ValueError):
        parse_endpoints(":2379")


@pytest.mark.parametrize(
    "url",
    [
        "postgres://db/kubeling",
        "sqlite://relative/state.db",
        "sqlite:///",
        "memory:///somewhere",
        "etcd://127.0.0.1:2379/path",
        "etcd://",
        "state.db",
    ],
)
def test_urls_that_name_no_backend_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        open_backend(url)


def test_prefix_end() -> None:
    assert prefix_end(b"/a/") == b"/a0"
    assert prefix_end(b"a\xff\xff") == b"b"
    assert prefix_end(b"\xff") is None
    assert prefix_end(b"") is None
