"""Small pieces of the supervisor: wait statuses, signal names, ids, zombies, the
records on disk, the reactor's timers and the child watcher."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from cri.supervisor.adoption import zombie_status
from cri.supervisor.containers import exit_code, parse_signal, validate_id
from cri.supervisor.errors import InvalidArgument
from cri.supervisor.protocol import Status
from cri.supervisor.reactor import ChildWatcher, Reactor
from cri.supervisor.records import ContainerRecord, RecordStore


def test_exit_code_of_wait_statuses():
    assert exit_code(0) == 0
    assert exit_code(3 << 8) == 3
    assert exit_code(signal.SIGKILL) == 137
    assert exit_code(signal.SIGTERM | 0x80) == 143  # core dumped


@pytest.mark.parametrize("value", [15, "TERM", "SIGTERM", "sigterm", "term"])
def test_parse_signal_by_number_or_name(value: object):
    assert parse_signal(value, "kill") == signal.SIGTERM


@pytest.mark.parametrize("value", [0, -1, 65, "NOPE", None, True, 1.5])
def test_parse_signal_rejects_other_values(value: object):
    with pytest.raises(InvalidArgument, match="kill: field 'signal'"):
        parse_signal(value, "kill")


@pytest.mark.parametrize("container_id", ["", ".", "..", "a/b", ".hidden", "x" * 129, "a\0b"])
def test_invalid_ids(container_id: str):
    with pytest.raises(InvalidArgument, match="create: invalid container id"):
        validate_id(container_id, "create")


def test_valid_ids():
    for container_id in ("c1", "a" * 64, "pod_ctr-1.2"):
        validate_id(container_id, "create")


def _start_time(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    return int(stat[stat.rindex(b")") + 2 :].split()[19])


def test_zombie_status_reads_the_exit_of_an_unreaped_process():
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    try:
        start_time = _start_time(pid)
        deadline = time.monotonic() + 5
        while (status := zombie_status(pid, start_time)) is None:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        assert status == 7 << 8
        assert zombie_status(pid, start_time + 1) is None  # another process, same pid
    finally:
        os.waitpid(pid, 0)
    assert zombie_status(pid, start_time) is None


def test_zombie_status_of_a_live_process_is_none():
    assert zombie_status(os.getpid(), _start_time(os.getpid())) is None


def test_records_round_trip(tmp_path: Path):
    store = RecordStore(str(tmp_path / "containers"))
    first = ContainerRecord(id="c1", bundle="/b", log_path="/l", stdin=True, created_at=5)
    second = ContainerRecord(
        id="c2", bundle="/b2", log_path="", stdin=False, created_at=6,
        status=Status.STOPPED, pid=9, started_at=7, finished_at=8, exit_code=255,
    )  # fmt: skip
    store.save(first)
    store.save(second)
    first.status = Status.RUNNING
    store.save(first)  # replaced, not added
    assert store.load_all() == [first, second]
    assert second.info(adopted=True).adopted
    store.remove("c1")
    store.remove("c1")
    assert store.load_all() == [second]
    assert sorted(os.listdir(tmp_path / "containers")) == ["c2.json"]


def test_unreadable_records_are_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    store = RecordStore(str(tmp_path))
    (tmp_path / "broken.json").write_text("{")
    (tmp_path / "other.json").write_text('{"id": "x"}')
    (tmp_path / ".c.json.1.tmp").write_text("{")
    (tmp_path / "notes.txt").write_text("ignored")
    assert store.load_all() == []
    assert len([r for r in caplog.records if "skip unreadable" in r.getMessage()]) == 2


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_timers_fire_in_deadline_order_and_can_be_cancelled():
    clock = FakeClock()
    reactor = Reactor(clock=clock)
    fired: list[str] = []
    try:
        reactor.call_later(2, lambda: fired.append("b"))
        reactor.call_later(1, lambda: fired.append("a"))
        cancelled = reactor.call_later(1.5, lambda: fired.append("never"))
        reactor.call_later(5, lambda: (fired.append("last"), reactor.stop()))
        cancelled.cancel()
        clock.now = 101.5
        reactor._run_due_timers()
        assert fired == ["a"]
        assert reactor._timeout() == pytest.approx(0.5)
        clock.now = 200
        reactor.run()  # everything due: runs them, the last one stops the loop
        assert fired == ["a", "b", "last"]
        assert reactor._timeout() is None
    finally:
        reactor.close()


def test_reactor_dispatches_readable_fds():
    reactor = Reactor()
    read_fd, write_fd = os.pipe()
    seen: list[bytes] = []

    def on_readable() -> None:
        seen.append(os.read(read_fd, 100))
        reactor.remove(read_fd)
        reactor.stop()

    try:
        reactor.add_reader(read_fd, on_readable)
        os.write(write_fd, b"ping")
        reactor.run()
        assert seen == [b"ping"]
    finally:
        reactor.close()
        os.close(read_fd)
        os.close(write_fd)


def test_child_watcher_routes_statuses_and_reaps_strangers():
    # In a forked process: waitpid(-1) there cannot reap children of pytest's.
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            watcher = ChildWatcher()
            results: dict[int, int] = {}
            children = []
            for code in (3, 4, 5):
                child = os.fork()
                if child == 0:
                    os._exit(code)
                children.append(child)
            watcher.watch(children[0], lambda status: results.__setitem__(0, status))
            watcher.watch(children[1], lambda status: results.__setitem__(1, status))
            deadline = time.monotonic() + 5
            stranger_reaped = False
            while not (stranger_reaped and len(results) == 2) and time.monotonic() < deadline:
                watcher.reap()
                try:
                    os.kill(children[2], 0)  # exists, maybe as a zombie
                except ProcessLookupError:
                    stranger_reaped = True  # reaped by the watcher, and nobody told
                time.sleep(0.001)
            ok = results == {0: 3 << 8, 1: 4 << 8} and stranger_reaped
            os.write(write_fd, b"ok" if ok else repr(results).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    try:
        assert os.read(read_fd, 1000) == b"ok"
    finally:
        os.close(read_fd)
        os.waitpid(pid, 0)
