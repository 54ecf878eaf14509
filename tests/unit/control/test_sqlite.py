"""control/storage/sqlite.py beyond the shared suite: durability across a SIGKILL,
writers racing from the same base revision (threads and processes), the database's
own uniqueness rule, compaction in batches keeping recent history, and watches fed
by the poller from writes made through another connection."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from control.storage import (
    Backend,
    Compacted,
    Conflict,
    MemoryBackend,
    NotFound,
    SQLiteBackend,
    StorageError,
)
from control.storage.base import Event, Watch

REPO = Path(__file__).resolve().parents[3]


def run_python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_database_is_wal_and_fsyncs_every_commit(tmp_path: Path) -> None:
    with SQLiteBackend(tmp_path / "s.db", compact_interval=0) as store:
        store.create("/a", b"1")
        store.get("/a")
        conns = list(store._connections)
        assert len(conns) >= 2  # the writer and a reader
        for conn in conns:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        for name in ("s.db", "s.db-wal", "s.db-shm"):
            assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name


WRITER = """
import sys
from control.storage import SQLiteBackend
store = SQLiteBackend(sys.argv[1], compact_interval=0)
counter = store.create("/counter", b"0")
print("counter", counter, flush=True)
i = 0
while True:
    rev = store.create(f"/d/{i:06d}", b"value-%d" % i)
    print("create", i, rev, flush=True)
    counter = store.update("/counter", str(i).encode(), counter)
    print("update", i, counter, flush=True)
    i += 1
"""


def test_every_acknowledged_write_survives_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    writer = run_python(WRITER, str(db))
    assert writer.stdout is not None
    acked: list[list[str]] = []
    try:
        for line in writer.stdout:
            acked.append(line.split())
            if len(acked) >= 400:
                break
        writer.send_signal(signal.SIGKILL)
        # lines printed before the kill are acknowledged writes too
        rest, _ = writer.communicate(timeout=10)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert writer.returncode == -signal.SIGKILL
    acked.extend(line.split() for line in rest.splitlines() if line.strip())
    acked = [a for a in acked if len(a) == 3]  # a line cut by the kill is not an ack
    creates = [(int(i), int(rev)) for kind, i, rev in acked if kind == "create"]
    updates = [(int(i), int(rev)) for kind, i, rev in acked if kind == "update"]
    assert len(creates) >= 190

    with SQLiteBackend(db, compact_interval=0) as store:
        for i, rev in creates:
            kv = store.get(f"/d/{i:06d}")
            assert kv.value == b"value-%d" % i
            assert kv.mod_revision == rev
        counter = store.get("/counter")
        last_i, last_rev = updates[-1]
        assert counter.mod_revision >= last_rev
        assert int(counter.value) >= last_i
        # the log goes on from where the killed writer left it
        assert store.current_revision() >= max(rev for _, rev in creates + updates)
        assert store.create("/after", b"x") == store.current_revision()
        assert store.count("/d/") >= len(creates)


def _race(stores: list[SQLiteBackend], base: int) -> list[str]:
    """Every store updates /race from ``base`` at the same moment; the outcomes."""
    barrier = threading.Barrier(len(stores))
    outcomes: list[str] = []

    def write(store: SQLiteBackend, name: str) -> None:
        barrier.wait()
        try:
            store.update("/race", name.encode(), base)
            outcomes.append("won " + name)
        except Conflict as e:
            assert e.kv is not None and e.kv.mod_revision == base + 1
            outcomes.append("lost")

    threads = [
        threading.Thread(target=write, args=(store, f"writer{i}-{base}"))
        for i, store in enumerate(stores)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def test_two_writers_from_the_same_base_revision_one_wins(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with (
        SQLiteBackend(db, compact_interval=0) as one,
        SQLiteBackend(db, compact_interval=0) as two,
    ):
        base = one.create("/race", b"0")
        for _ in range(30):
            outcomes = _race([one, two], base)
            winners = [o.removeprefix("won ") for o in outcomes if o != "lost"]
            assert len(winners) == 1 and outcomes.count("lost") == 1
            kv = two.get("/race")
            assert kv.value == winners[0].encode()
            assert kv.mod_revision == base + 1
            base = kv.mod_revision


INCREMENTER = """
import sys
from control.storage import Conflict, SQLiteBackend
store = SQLiteBackend(sys.argv[1], compact_interval=0)
conflicts = 0
for _ in range(int(sys.argv[2])):
    while True:
        kv = store.get("/counter")
        try:
            store.update("/counter", str(int(kv.value) + 1).encode(), kv.mod_revision)
            break
        except Conflict:
            conflicts += 1
print(conflicts)
"""


def test_writers_in_two_processes_lose_no_update(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with SQLiteBackend(db, compact_interval=0) as store:
        store.create("/counter", b"0")
    procs = [run_python(INCREMENTER, str(db), "150") for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with SQLiteBackend(db, compact_interval=0) as store:
        kv = store.get("/counter")
    assert kv.value == b"300"
    assert kv.version == 301


def test_the_database_refuses_two_rows_from_the_same_base(tmp_path: Path) -> None:
    """Even a writer that skipped the check cannot append a second successor."""
    db = tmp_path / "s.db"
    with SQLiteBackend(db, compact_interval=0) as store:
        base = store.create("/a", b"1")
        store.update("/a", b"2", base)
        raw = sqlite3.connect(db)
        try:
            insert = (
                "INSERT INTO log (name, deleted, create_revision, prev_revision, version, value)"
                " VALUES (?, 0, ?, ?, 2, ?)"
            )
            with pytest.raises(sqlite3.IntegrityError):
                raw.execute(insert, (b"/a", base, base, b"other"))
            with pytest.raises(sqlite3.IntegrityError):  # a second create of /a
                raw.execute(insert, (b"/a", base, 0, b"other"))
            raw.execute(insert, (b"/b", 1, 0, b"fine"))  # the rule is per key
            raw.rollback()
        finally:
            raw.close()
        assert store.get("/a").value == b"2"


def _apply(ops: list[tuple[str, str, bytes]], *stores: Backend) -> None:
    for op, key, value in ops:
        for store in stores:
            if op == "create":
                store.create(key, value)
            elif op == "update":
                store.update(key, value, store.get(key).mod_revision)
            else:
                store.delete(key)


def _workload() -> list[tuple[str, str, bytes]]:
    ops: list[tuple[str, str, bytes]] = []
    live: set[str] = set()
    for i in range(300):
        key = f"/k/{i % 17:02d}"
        if key not in live:
            ops.append(("create", key, b"%d" % i))
            live.add(key)
        elif i % 11 == 0:
            ops.append(("delete", key, b""))
            live.discard(key)
        else:
            ops.append(("update", key, b"%d" % i))
    return ops


def test_compaction_keeps_recent_history_and_refuses_below(tmp_path: Path) -> None:
    with (
        SQLiteBackend(
            tmp_path / "s.db", compact_interval=0, compact_keep=50, compact_batch=7
        ) as store,
        MemoryBackend() as oracle,
    ):
        _apply(_workload(), store, oracle)
        current = store.current_revision()
        rows_before = _rows(store)
        assert store.auto_compact() == current - 50
        assert store.auto_compact() is None  # nothing more to do yet
        target = current - 50
        # every retained revision reads as it did
        for rev in range(target, current + 1):
            assert store.list("/", revision=rev) == oracle.list("/", revision=rev)
        with pytest.raises(Compacted) as info:
            store.list("/", revision=target - 1)
        assert info.value.compact_revision == target
        with pytest.raises(Compacted):
            store.get("/k/01", revision=1)
        with pytest.raises(Compacted):
            store.watch("/", from_revision=target - 1)
        # the history from the target on still replays, with prev_kv
        oracle.compact(target)
        with store.watch("/", from_revision=target) as w1, oracle.watch("/", target) as w2:
            assert _drain(w1, current - target) == _drain(w2, current - target)
        # what is gone: every row superseded at or before the target, every delete
        rows_after = _rows(store)
        assert len(rows_after) < len(rows_before)
        old = [r for r in rows_after if r[0] <= target]
        assert not [r for r in old if r[2]]  # no tombstones at or below the target
        at_target = store.list("/", revision=target).items
        assert sorted(r[0] for r in old) == sorted(
            kv.mod_revision for kv in at_target if kv.mod_revision <= target
        )


def test_compaction_in_batches_leaves_what_one_transaction_leaves(tmp_path: Path) -> None:
    with (
        SQLiteBackend(tmp_path / "a.db", compact_interval=0, compact_batch=3) as small,
        SQLiteBackend(tmp_path / "b.db", compact_interval=0, compact_batch=100_000) as big,
    ):
        _apply(_workload(), small, big)
        for target in (40, 41, 200, small.current_revision()):
            small.compact(target)
            big.compact(target)
            assert _rows(small) == _rows(big)


def test_the_compactor_thread_keeps_the_newest_revisions(tmp_path: Path) -> None:
    with SQLiteBackend(
        tmp_path / "s.db", compact_interval=0.02, compact_keep=10, compact_batch=4
    ) as store:
        rev = store.create("/a", b"0")
        for i in range(40):
            rev = store.update("/a", b"%d" % i, rev)
        deadline = time.monotonic() + 10
        while _compact_revision(store) != rev - 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _compact_revision(store) == rev - 10
        assert store.get("/a", revision=rev - 10).value == b"29"


def test_a_watch_sees_writes_made_through_another_connection(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with (
        SQLiteBackend(db, compact_interval=0, poll_interval=0.05) as watcher,
        SQLiteBackend(db, compact_interval=0) as writer,
    ):
        with watcher.watch("/x/", from_revision=watcher.current_revision()) as watch:
            revs = [writer.create(f"/x/{i}", b"v") for i in range(3)]
            events: list[int] = []
            deadline = time.monotonic() + 10
            while len(events) < 3 and time.monotonic() < deadline:
                events.extend(e.revision for e in watch.next_batch(timeout=1) or [])
        assert events == revs


def test_a_compaction_elsewhere_that_overtakes_the_poller_ends_its_watches(
    tmp_path: Path,
) -> None:
    db = tmp_path / "s.db"
    with (
        SQLiteBackend(db, compact_interval=0, poll_interval=3600) as watcher,
        SQLiteBackend(db, compact_interval=0) as other,
    ):
        rev = watcher.create("/a", b"0")
        watch = watcher.watch("/", from_revision=rev)
        assert watch.next_batch(timeout=0.1) == []  # the poller has started
        for i in range(5):
            rev = other.update("/a", b"%d" % i, rev)
        other.compact(rev)  # the superseded updates are gone before anyone polled
        watcher.create("/b", b"1")  # wakes the poller
        with pytest.raises(Compacted):
            watch.next_batch(timeout=10)


def test_compaction_here_waits_for_the_poller_so_live_watches_lose_nothing(
    tmp_path: Path,
) -> None:
    db = tmp_path / "s.db"
    with (
        SQLiteBackend(db, compact_interval=0, compact_batch=5, poll_interval=3600) as store,
        SQLiteBackend(db, compact_interval=0) as other,
    ):
        rev = store.create("/a", b"0")
        with store.watch("/", from_revision=rev) as watch:
            assert watch.next_batch(timeout=0.1) == []  # the poller has started
            revs = []
            for i in range(200):  # through the other connection: the poller sleeps on
                rev = other.update("/a", b"%d" % i, rev)
                revs.append(rev)
            store.compact(rev)
            got = [e.revision for e in _drain(watch, 200)]
        assert got == revs


def test_reopening_keeps_data_and_revisions(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with SQLiteBackend(db, compact_interval=0) as store:
        store.create("/a", b"1")
        last = store.delete("/a").revision
        store.compact(last)  # the newest row (the tombstone) is gone now
    with SQLiteBackend(db, compact_interval=0) as store:
        assert store.current_revision() == last
        with pytest.raises(NotFound):
            store.get("/a")
        assert store.create("/a", b"2") == last + 1


def test_an_unknown_schema_version_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    SQLiteBackend(db, compact_interval=0).close()
    raw = sqlite3.connect(db)
    raw.execute("UPDATE meta SET value = 99 WHERE key = 'schema_version'")
    raw.commit()
    raw.close()
    with pytest.raises(StorageError, match="schema version 99"):
        SQLiteBackend(db, compact_interval=0)


def test_closing_stops_the_threads_it_started(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    store = SQLiteBackend(tmp_path / "s.db", compact_interval=0.05)
    store.watch("/", from_revision=0).close()
    assert len(set(threading.enumerate()) - before) == 2  # poller and compactor
    store.close()
    assert set(threading.enumerate()) - before == set()
    assert os.path.exists(tmp_path / "s.db")


def _rows(store: SQLiteBackend) -> list[tuple[int, bytes, int]]:
    raw = sqlite3.connect(store.path)
    try:
        return [
            (rev, bytes(name), deleted)
            for rev, name, deleted in raw.execute(
                "SELECT revision, name, deleted FROM log ORDER BY revision"
            )
        ]
    finally:
        raw.close()


def _compact_revision(store: SQLiteBackend) -> int:
    raw = sqlite3.connect(store.path)
    try:
        value: int = raw.execute(
            "SELECT value FROM meta WHERE key = 'compact_revision'"
        ).fetchone()[0]
        return value
    finally:
        raw.close()


def _drain(watch: Watch, n: int) -> list[Event]:
    events: list[Event] = []
    deadline = time.monotonic() + 10
    while len(events) < n and time.monotonic() < deadline:
        batch = watch.next_batch(timeout=1)
        if batch is None:
            break
        events.extend(batch)
    return events
