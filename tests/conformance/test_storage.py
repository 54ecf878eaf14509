"""One suite for every cluster store backend (control/storage): memory, SQLite and a
real etcd (the Debian ``etcd-server``, started on free 127.0.0.1 ports in a temp
dir for the session and stopped by PID; those cases skip only if etcd is not
installed).

The etcd server is shared by the session: each test starts with its keys wiped, but
its revision counter and compaction carry on, so every test reads revisions relative
to what it wrote, never absolute ones."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from control.storage import (
    AlreadyExists,
    Backend,
    Compacted,
    Conflict,
    Event,
    EventType,
    FutureRevision,
    KeyValue,
    NotFound,
    Watch,
    open_backend,
)
from control.storage.testing import LocalEtcd, etcd_binary

BACKENDS = ["memory", "sqlite", "etcd"]


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEtcd]:
    if etcd_binary() is None:
        pytest.skip("needs etcd (Debian package etcd-server): not installed")
    with LocalEtcd(tmp_path_factory.mktemp("etcd")) as server:
        yield server


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "etcd":
        server: LocalEtcd = request.getfixturevalue("etcd_server")
        server.wipe()
        backend = open_backend(server.url)
    elif request.param == "sqlite":
        backend = open_backend(f"sqlite://{tmp_path}/state.db")
    else:
        backend = open_backend("memory://")
    try:
        yield backend
    finally:
        backend.close()


def collect(watch: Watch, n: int, timeout: float = 10.0) -> list[Event]:
    """The first ``n`` events of a watch (fewer if it ends or ``timeout`` passes)."""
    events: list[Event] = []
    deadline = time.monotonic() + timeout
    while len(events) < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        batch = watch.next_batch(timeout=remaining)
        if batch is None:
            break
        assert batch or time.monotonic() >= deadline - 0.01, "empty batch before the timeout"
        events.extend(batch)
    return events


def quiet(watch: Watch, seconds: float = 0.3) -> list[Event]:
    """What a watch delivers within ``seconds`` (expected: nothing)."""
    return collect(watch, 1, timeout=seconds)


def summary(events: list[Event]) -> list[tuple[str, str, bytes, int]]:
    return [(e.type.value, e.kv.key, e.kv.value, e.kv.mod_revision) for e in events]


# -- create, get, update, delete --


def test_create_then_get_returns_the_value_and_its_revisions(store: Backend) -> None:
    before = store.current_revision()
    rev = store.create("/a", b"one")
    assert rev == before + 1
    assert store.current_revision() == rev
    assert store.get("/a") == KeyValue("/a", b"one", rev, rev, 1)


def test_create_of_a_live_key_is_refused_and_writes_nothing(store: Backend) -> None:
    rev = store.create("/a", b"one")
    with pytest.raises(AlreadyExists) as info:
        store.create("/a", b"two")
    assert info.value.key == "/a"
    assert info.value.kv is not None and info.value.kv.mod_revision == rev
    assert store.current_revision() == rev
    assert store.get("/a").value == b"one"


def test_get_of_a_missing_key_is_not_found(store: Backend) -> None:
    store.create("/a", b"1")
    with pytest.raises(NotFound) as info:
        store.get("/b")
    assert info.value.key == "/b"
    with pytest.raises(NotFound):
        store.get("/a/")  # neither a prefix match nor a neighbour


def test_update_with_the_current_mod_revision_replaces_the_value(store: Backend) -> None:
    created = store.create("/a", b"1")
    rev = store.update("/a", b"2", created)
    assert rev == created + 1
    assert store.get("/a") == KeyValue("/a", b"2", created, rev, 2)
    rev3 = store.update("/a", b"3", rev)
    assert store.get("/a") == KeyValue("/a", b"3", created, rev3, 3)


def test_update_with_a_stale_mod_revision_conflicts_and_carries_the_current_value(
    store: Backend,
) -> None:
    created = store.create("/a", b"1")
    rev = store.update("/a", b"2", created)
    with pytest.raises(Conflict) as info:
        store.update("/a", b"lost", created)
    assert info.value.expected == created
    assert info.value.kv == KeyValue("/a", b"2", created, rev, 2)
    assert store.current_revision() == rev
    assert store.get("/a").value == b"2"


def test_update_of_a_missing_key_is_not_found(store: Backend) -> None:
    rev = store.create("/a", b"1")
    with pytest.raises(NotFound):
        store.update("/b", b"x", rev)
    with pytest.raises(NotFound):
        store.update("/b", b"x", 0)  # an expected revision of 0 never creates
    store.delete("/a")
    with pytest.raises(NotFound):
        store.update("/a", b"x", rev)
    with pytest.raises(NotFound):
        store.get("/b")


def test_delete_returns_the_deleted_value_and_the_key_is_gone(store: Backend) -> None:
    created = store.create("/a", b"1")
    rev, kv = store.delete("/a")
    assert rev == created + 1
    assert kv == KeyValue("/a", b"1", created, created, 1)
    assert store.current_revision() == rev
    with pytest.raises(NotFound):
        store.get("/a")
    with pytest.raises(NotFound):
        store.delete("/a")
    assert store.current_revision() == rev


def test_delete_with_an_expected_mod_revision_is_a_compare_and_swap(store: Backend) -> None:
    created = store.create("/a", b"1")
    updated = store.update("/a", b"2", created)
    with pytest.raises(Conflict) as info:
        store.delete("/a", expected_mod_revision=created)
    assert info.value.kv is not None and info.value.kv.mod_revision == updated
    assert store.get("/a").value == b"2"
    deleted = store.delete("/a", expected_mod_revision=updated)
    assert deleted.kv.value == b"2"
    with pytest.raises(NotFound):
        store.delete("/a", expected_mod_revision=updated)


def test_create_after_delete_starts_a_new_incarnation(store: Backend) -> None:
    first = store.create("/a", b"1")
    store.update("/a", b"2", first)
    store.delete("/a")
    again = store.create("/a", b"3")
    assert store.get("/a") == KeyValue("/a", b"3", again, again, 1)


def test_values_are_kept_byte_for_byte(store: Backend) -> None:
    every_byte = bytes(range(256))
    big = bytes(i * 7 % 251 for i in range(200_000))
    store.create("/bytes", every_byte)
    store.create("/empty", b"")
    store.create("/big", big)
    assert store.get("/bytes").value == every_byte
    assert store.get("/empty").value == b""
    assert store.get("/big").value == big


def test_bad_arguments_are_value_errors(store: Backend) -> None:
    with pytest.raises(ValueError):
        store.create("", b"x")
    with pytest.raises(ValueError):
        store.get("")
    with pytest.raises(ValueError):
        store.list("/", limit=-1)
    with pytest.raises(ValueError):
        store.list("/", revision=-1)


# -- list, count, historical reads --


def test_list_returns_live_keys_under_the_prefix_in_byte_order(store: Backend) -> None:
    for key in ["/a/2", "/a/10", "/a/1", "/ab", "/a", "/b/1", "/a/\u00e9", "/a/z", "/a/x"]:
        store.create(key, key.encode())
    store.delete("/a/x")
    result = store.list("/a/")
    # UTF-8 byte order: "/a/1" < "/a/10" < "/a/2" < "/a/z" < "/a/é"
    assert [kv.key for kv in result.items] == ["/a/1", "/a/10", "/a/2", "/a/z", "/a/\u00e9"]
    assert all(kv.value == kv.key.encode() for kv in result.items)
    assert result.revision == store.current_revision()
    assert not result.more
    assert [kv.key for kv in store.list("/a").items] == [
        "/a",
        "/a/1",
        "/a/10",
        "/a/2",
        "/a/z",
        "/a/\u00e9",
        "/ab",
    ]
    assert [kv.key for kv in store.list("").items][-1] == "/b/1"
    assert len(store.list("").items) == 8
    assert store.list("/c").items == ()


def test_list_pages_with_limit_and_continue_cover_each_key_once(store: Backend) -> None:
    keys = [f"/p/{i:03d}" for i in range(23)]
    for key in reversed(keys):
        store.create(key, b"v")
    store.create("/q", b"outside")
    first = store.list("/p/", limit=10)
    assert [kv.key for kv in first.items] == keys[:10]
    assert first.more
    seen = [kv.key for kv in first.items]
    page = first
    while page.more:
        page = store.list(
            "/p/", revision=first.revision, limit=10, continue_from=page.items[-1].key
        )
        assert page.revision == first.revision
        seen.extend(kv.key for kv in page.items)
    assert seen == keys
    assert [len(p.items) for p in [first]] == [10]
    exact = store.list("/p/", limit=23)
    assert len(exact.items) == 23 and not exact.more
    assert not store.list("/p/", limit=3, continue_from=keys[-4]).more


def test_list_at_a_revision_shows_that_snapshot(store: Backend) -> None:
    a = store.create("/s/a", b"a1")
    store.create("/s/b", b"b1")
    snapshot = store.create("/s/c", b"c1")
    store.update("/s/a", b"a2", a)
    store.delete("/s/b")
    store.create("/s/d", b"d1")
    then = store.list("/s/", revision=snapshot)
    assert then.revision == snapshot
    assert [(kv.key, kv.value) for kv in then.items] == [
        ("/s/a", b"a1"),
        ("/s/b", b"b1"),
        ("/s/c", b"c1"),
    ]
    now = store.list("/s/")
    assert [(kv.key, kv.value) for kv in now.items] == [
        ("/s/a", b"a2"),
        ("/s/c", b"c1"),
        ("/s/d", b"d1"),
    ]
    # paging through a snapshot is not disturbed by writes between the pages
    page1 = store.list("/s/", revision=snapshot, limit=2)
    store.create("/s/bb", b"new")
    store.delete("/s/c")
    page2 = store.list("/s/", revision=snapshot, limit=2, continue_from=page1.items[-1].key)
    assert [kv.key for kv in page1.items + page2.items] == ["/s/a", "/s/b", "/s/c"]
    assert page1.more and not page2.more


def test_get_at_a_revision_sees_the_value_then(store: Backend) -> None:
    before = store.create("/other", b"x")
    created = store.create("/a", b"1")
    updated = store.update("/a", b"2", created)
    deleted, _ = store.delete("/a")
    recreated = store.create("/a", b"3")
    assert store.get("/a", revision=created).value == b"1"
    assert store.get("/a", revision=updated) == KeyValue("/a", b"2", created, updated, 2)
    assert store.get("/a", revision=recreated).value == b"3"
    assert store.get("/a").value == b"3"
    with pytest.raises(NotFound):
        store.get("/a", revision=before)  # not yet created
    with pytest.raises(NotFound):
        store.get("/a", revision=deleted)


def test_reads_at_a_future_revision_are_refused(store: Backend) -> None:
    rev = store.create("/a", b"1")
    with pytest.raises(FutureRevision):
        store.get("/a", revision=rev + 5)
    with pytest.raises(FutureRevision):
        store.list("/", revision=rev + 5)


def test_count_counts_live_keys_under_a_prefix(store: Backend) -> None:
    assert store.count("/c/") == 0
    for i in range(5):
        store.create(f"/c/{i}", b"x")
    store.create("/cc", b"x")
    store.delete("/c/3")
    assert store.count("/c/") == 4
    assert store.count("/c") == 5
    assert store.count("") == 5


def test_every_write_advances_the_one_revision_counter_by_one(store: Backend) -> None:
    start = store.current_revision()
    revisions = [store.create(f"/k{i}", b"v") for i in range(5)]
    revisions.append(store.update("/k0", b"w", revisions[0]))
    revisions.append(store.delete("/k1").revision)
    assert revisions == list(range(start + 1, start + 8))
    # failed writes and reads move nothing
    with pytest.raises(AlreadyExists):
        store.create("/k2", b"v")
    with pytest.raises(Conflict):
        store.update("/k2", b"v", revisions[0])
    with pytest.raises(NotFound):
        store.delete("/k1")
    store.list("")
    assert store.current_revision() == start + 7
    kvs = store.list("/k").items
    assert max(kv.mod_revision for kv in kvs) == revisions[5]


def test_compare_and_swap_loses_no_update_under_concurrent_writers(store: Backend) -> None:
    store.create("/counter", b"0")
    threads, rounds = 4, 15
    conflicts = [0] * threads

    def increment(index: int) -> None:
        for _ in range(rounds):
            while True:
                kv = store.get("/counter")
                try:
                    store.update("/counter", str(int(kv.value) + 1).encode(), kv.mod_revision)
                    break
                except Conflict:
                    conflicts[index] += 1

    workers = [threading.Thread(target=increment, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    final = store.get("/counter")
    assert final.value == str(threads * rounds).encode()
    assert final.version == threads * rounds + 1


# -- watch --


def test_watch_replays_history_after_the_revision_then_follows_live_events(
    store: Backend,
) -> None:
    a = store.create("/w/a", b"1")
    store.update("/w/a", b"2", a)
    store.create("/w/b", b"1")
    with store.watch("/w/", from_revision=a) as watch:
        replayed = collect(watch, 2)
        assert summary(replayed) == [
            ("PUT", "/w/a", b"2", a + 1),
            ("PUT", "/w/b", b"1", a + 2),
        ]
        assert quiet(watch) == []
        c = store.create("/w/c", b"1")
        d = store.delete("/w/a").revision
        live = collect(watch, 2)
        assert summary(live) == [("PUT", "/w/c", b"1", c), ("DELETE", "/w/a", b"", d)]


def test_watch_events_carry_prev_kv(store: Backend) -> None:
    start = store.current_revision()
    with store.watch("/e/", from_revision=start) as watch:
        created = store.create("/e/a", b"1")
        updated = store.update("/e/a", b"2", created)
        deleted = store.delete("/e/a").revision
        put1, put2, gone = collect(watch, 3)
    assert put1 == Event(EventType.PUT, KeyValue("/e/a", b"1", created, created, 1), None)
    assert put2 == Event(
        EventType.PUT,
        KeyValue("/e/a", b"2", created, updated, 2),
        KeyValue("/e/a", b"1", created, created, 1),
    )
    assert gone.type is EventType.DELETE
    assert gone.kv.key == "/e/a" and gone.kv.mod_revision == deleted
    assert gone.prev_kv == KeyValue("/e/a", b"2", created, updated, 2)


def test_a_replayed_delete_carries_prev_kv(store: Backend) -> None:
    created = store.create("/e/a", b"1")
    store.delete("/e/a")
    again = store.create("/e/a", b"2")
    with store.watch("/e/", from_revision=created) as watch:
        gone, back = collect(watch, 2)
    assert gone.type is EventType.DELETE
    assert gone.prev_kv == KeyValue("/e/a", b"1", created, created, 1)
    assert back.kv == KeyValue("/e/a", b"2", again, again, 1)
    assert back.prev_kv is None  # a new incarnation has no previous value


def test_watch_sees_only_its_prefix(store: Backend) -> None:
    start = store.current_revision()
    store.create("/x/before", b"1")
    with store.watch("/x/", from_revision=start) as watch:
        store.create("/xy", b"1")
        store.create("/y/1", b"1")
        inside = store.create("/x/1", b"1")
        events = collect(watch, 2)
        assert [e.kv.key for e in events] == ["/x/before", "/x/1"]
        assert events[-1].revision == inside
        assert quiet(watch) == []


def test_watch_of_one_key_by_its_full_name(store: Backend) -> None:
    start = store.current_revision()
    with store.watch("/k/a", from_revision=start) as watch:
        store.create("/k/b", b"1")
        store.create("/k/a", b"1")
        assert [e.kv.key for e in collect(watch, 1)] == ["/k/a"]


def test_several_watchers_see_the_same_events(store: Backend) -> None:
    start = store.current_revision()
    watches = [store.watch("/m/", from_revision=start) for _ in range(5)]
    try:
        for i in range(10):
            store.create(f"/m/{i}", str(i).encode())
        expected = summary(collect(watches[0], 10))
        assert len(expected) == 10
        for watch in watches[1:]:
            assert summary(collect(watch, 10)) == expected
    finally:
        for watch in watches:
            watch.close()


def test_a_watch_from_ahead_delivers_only_what_comes_after(store: Backend) -> None:
    start = store.current_revision()
    with store.watch("/f/", from_revision=start + 2) as watch:
        for i in range(3):
            store.create(f"/f/{i}", b"x")
        events = collect(watch, 1)
        assert [e.kv.key for e in events] == ["/f/2"]
        assert quiet(watch) == []


def test_a_long_history_replays_in_order_without_gaps(store: Backend) -> None:
    start = store.current_revision()
    written = []
    for i in range(1100):
        written.append(store.create(f"/h/{i:04d}", b"x"))
        if i % 10 == 0:
            store.create(f"/other/{i}", b"x")  # filtered out by the prefix
    with store.watch("/h/", from_revision=start) as watch:
        events = collect(watch, 1100, timeout=30)
    assert [e.revision for e in events] == written


def test_watch_times_out_with_an_empty_batch(store: Backend) -> None:
    with store.watch("/t/", from_revision=store.current_revision()) as watch:
        began = time.monotonic()
        assert watch.next_batch(timeout=0.2) == []
        assert time.monotonic() - began >= 0.15


def test_watch_close_ends_it_and_unblocks_a_waiting_reader(store: Backend) -> None:
    watch = store.watch("/c/", from_revision=store.current_revision())
    results: list[object] = []
    reader = threading.Thread(target=lambda: results.append(watch.next_batch()))
    reader.start()
    time.sleep(0.2)
    watch.close()
    reader.join(timeout=5)
    assert not reader.is_alive()
    assert results == [None]
    watch.close()  # idempotent
    store.create("/c/after", b"x")
    assert watch.next_batch(timeout=0.2) is None
    assert list(watch) == []


def test_iterating_a_watch_yields_batches_until_it_is_closed(store: Backend) -> None:
    start = store.current_revision()
    for i in range(3):
        store.create(f"/i/{i}", b"x")
    watch = store.watch("/i/", from_revision=start)
    seen: list[str] = []
    for batch in watch:
        seen.extend(e.kv.key for e in batch)
        if len(seen) == 3:
            watch.close()
    assert seen == ["/i/0", "/i/1", "/i/2"]


def test_closing_the_backend_ends_its_watches(store: Backend) -> None:
    watch = store.watch("/z/", from_revision=store.current_revision())
    store.close()
    assert watch.next_batch(timeout=5) is None


# -- compaction --


def test_compaction_refuses_reads_and_watches_below_it(store: Backend) -> None:
    first = store.create("/o/a", b"1")
    second = store.update("/o/a", b"2", first)
    store.create("/o/b", b"1")
    store.delete("/o/b")
    compact_at = store.create("/o/c", b"1")
    after = store.update("/o/a", b"3", second)
    store.compact(compact_at)
    for rev in (first, second, compact_at - 1):
        with pytest.raises(Compacted):
            store.get("/o/a", revision=rev)
        with pytest.raises(Compacted):
            store.list("/o/", revision=rev)
        with pytest.raises(Compacted):
            store.watch("/o/", from_revision=rev)
    # the compact revision itself is still readable, and watchable from
    assert [(kv.key, kv.value) for kv in store.list("/o/", revision=compact_at).items] == [
        ("/o/a", b"2"),
        ("/o/c", b"1"),
    ]
    assert store.get("/o/a", revision=compact_at).value == b"2"
    with store.watch("/o/", from_revision=compact_at) as watch:
        (event,) = collect(watch, 1)
    assert event.revision == after
    assert event.prev_kv == KeyValue("/o/a", b"2", first, second, 2)
    with pytest.raises(Compacted):
        store.compact(compact_at)  # already there
    with pytest.raises(FutureRevision):
        store.compact(store.current_revision() + 10)


def test_compaction_keeps_the_current_state(store: Backend) -> None:
    revs: dict[str, int] = {}
    for i in range(20):
        revs[f"/n/{i:02d}"] = store.create(f"/n/{i:02d}", b"0")
    for round_ in range(1, 4):
        for key in list(revs)[::2]:
            revs[key] = store.update(key, str(round_).encode(), revs[key])
    for key in list(revs)[1::4]:
        store.delete(key)
        del revs[key]
    before = store.list("/n/")
    store.compact(store.current_revision())
    assert store.list("/n/").items == before.items
    assert store.count("/n/") == len(revs)
    for key, rev in revs.items():
        assert store.get(key).mod_revision == rev
    # the deleted keys stay deleted, and can be created again
    assert store.create("/n/01", b"new") == store.current_revision()


def test_writes_after_compacting_everything_continue_the_revisions(store: Backend) -> None:
    store.create("/r/a", b"1")
    last = store.delete("/r/a").revision
    store.compact(last)
    assert store.current_revision() == last
    assert store.create("/r/a", b"2") == last + 1
