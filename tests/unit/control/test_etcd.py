"""control/storage/etcd.py against a real etcd (Debian etcd-server) on 127.0.0.1 that
each test starts and stops itself: failing over between endpoints, an etcd that goes
away (Unavailable, watches end), and the gateway's stream decoding over many events.
Skipped only when etcd is not installed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from control.storage import EtcdBackend, NotFound, Unavailable, open_backend
from control.storage.testing import LocalEtcd, etcd_binary, free_port


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[LocalEtcd]:
    if etcd_binary() is None:
        pytest.skip("needs etcd (Debian package etcd-server): not installed")
    with LocalEtcd(tmp_path / "etcd") as server:
        yield server


def test_a_dead_endpoint_is_skipped(etcd: LocalEtcd) -> None:
    dead = f"127.0.0.1:{free_port()}"
    store = open_backend(f"etcd://{dead},{etcd.endpoint}")
    assert isinstance(store, EtcdBackend)
    try:
        rev = store.create("/a", b"1")  # a refused connection is safe to retry elsewhere
        assert store.get("/a").mod_revision == rev
        with store.watch("/", from_revision=rev - 1) as watch:
            batch = watch.next_batch(timeout=5)
        assert batch is not None and [e.kv.key for e in batch] == ["/a"]
    finally:
        store.close()


def test_an_etcd_that_goes_away_is_unavailable_and_ends_watches(etcd: LocalEtcd) -> None:
    with open_backend(etcd.url) as store:
        rev = store.create("/a", b"1")
        watch = store.watch("/", from_revision=rev)
        etcd.stop()
        with pytest.raises(Unavailable):
            watch.next_batch(timeout=10)
        with pytest.raises(Unavailable):
            store.get("/a")
        with pytest.raises(Unavailable):
            store.create("/b", b"1")


def test_a_restarted_etcd_is_used_again_through_fresh_connections(etcd: LocalEtcd) -> None:
    with open_backend(etcd.url) as store:
        store.create("/a", b"1")
        store.get("/a")  # leaves a keep-alive connection in the pool
        etcd.stop()
        etcd.start()  # same ports, same data dir
        deadline = time.monotonic() + 10
        while True:
            try:
                assert store.get("/a").value == b"1"
                break
            except Unavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        with pytest.raises(NotFound):
            store.get("/b")


def test_a_watch_decodes_large_batches_split_across_reads(etcd: LocalEtcd) -> None:
    with open_backend(etcd.url) as store:
        start = store.current_revision()
        big = bytes(range(256)) * 400  # ~100 KB per event, base64 in the stream
        revs = [store.create(f"/big/{i}", big) for i in range(20)]
        with store.watch("/big/", from_revision=start) as watch:
            got: list[int] = []
            deadline = time.monotonic() + 10
            while len(got) < 20 and time.monotonic() < deadline:
                for event in watch.next_batch(timeout=1) or []:
                    assert event.kv.value == big
                    got.append(event.revision)
        assert got == revs
