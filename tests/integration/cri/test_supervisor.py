"""The node supervisor against the real kernel (root): busybox containers created,
started, logged, exec'd into, stopped and deleted through it, exit codes and
events, a client killed with SIGKILL, the supervisor itself killed and re-adopting,
and the figures the design asks for (create+start latency, PSS with 20 containers).

Isolation: every test gets its own supervisor (spawned by `ensure_supervisor` on a
short state directory under /tmp, as unix socket paths are limited to 107 bytes),
its own runtime root inside it and its own cgroup parent. At the end it deletes
every container, stops its supervisor by PID and checks that no container process,
cgroup, runtime state or supervisor is left.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cri.supervisor import (
    AlreadyExists,
    EventKind,
    InvalidArgument,
    InvalidState,
    NotFound,
    Status,
    SupervisorClient,
    SupervisorError,
    ensure_supervisor,
)
from cri.supervisor.client import running_supervisor
from cri.supervisor.logs import FULL, PARTIAL, STDERR, STDOUT, parse_record
from runtime.bundle import busybox_rootfs, default_spec

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("busybox") is None, reason="needs busybox"),
]

RFC3339_NANO = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")
Edit = Callable[[dict[str, Any]], None]


@pytest.fixture(scope="module")
def busybox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(busybox_rootfs(str(tmp_path_factory.mktemp("busybox") / "rootfs")))


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except FileNotFoundError:
        return False


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)
    return value


@dataclass
class Node:
    """One supervisor and what its test made."""

    state: Path
    logs: Path
    bundles: Path
    busybox: Path
    cgroup_parent: str
    client: SupervisorClient
    ids: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return int(self.client.ping()["pid"])

    def bundle(self, args: list[str], *, edit: Edit | None = None) -> tuple[str, str]:
        """(container id, bundle dir) for busybox running `args`."""
        container_id = f"s-{uuid.uuid4().hex[:10]}"
        self.ids.append(container_id)
        config = copy.deepcopy(default_spec(args))
        config["root"]["path"] = str(self.busybox)
        config["linux"]["cgroupsPath"] = f"{self.cgroup_parent}/{container_id}"
        if edit is not None:
            edit(config)
        bundle = self.bundles / container_id
        bundle.mkdir(parents=True)
        (bundle / "config.json").write_text(json.dumps(config))
        return container_id, str(bundle)

    def log_path(self, container_id: str) -> Path:
        return self.logs / f"{container_id}.log"

    def run(self, args: list[str], *, stdin: bool = False, start: bool = True) -> str:
        container_id, bundle = self.bundle(args)
        info = self.client.create(
            container_id, bundle, log_path=str(self.log_path(container_id)), stdin=stdin
        )
        assert info.status is Status.CREATED
        if start:
            assert self.client.start(container_id).status is Status.RUNNING
        return container_id

    def records(self, container_id: str) -> list[tuple[bytes, bytes, bytes, bytes]]:
        path = self.log_path(container_id)
        return [parse_record(line) for line in path.read_bytes().splitlines()]

    def leftovers(self) -> list[str]:
        found = [str(p) for p in (self.state / "runtime").glob("*")]
        found += [str(p) for p in (self.state / "containers").glob("*")]
        found += [str(p) for p in (self.state / "exec").glob("*")]
        for controller in os.listdir("/sys/fs/cgroup"):
            parent = Path(f"/sys/fs/cgroup/{controller}{self.cgroup_parent}")
            if parent.is_dir():
                found += [str(p) for p in parent.iterdir() if p.is_dir()]
                found += [f"process {pid}" for pid in _pids(parent) if alive(pid)]
        return found


def _pids(cgroup: Path) -> list[int]:
    pids = []
    for procs in [cgroup / "cgroup.procs", *cgroup.glob("*/cgroup.procs")]:
        try:
            pids += [int(line) for line in procs.read_text().split()]
        except OSError:
            pass
    return pids


def stop_supervisor(pid: int) -> None:
    assert pid > 0  # never kill(0): that is our own process group
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not alive(pid), f"supervisor {pid} to exit")


@pytest.fixture
def node(busybox: Path, tmp_path: Path) -> Iterator[Node]:
    state = Path(tempfile.mkdtemp(prefix="kls-"))
    node = Node(
        state=state, logs=tmp_path / "logs", bundles=tmp_path / "bundles", busybox=busybox,
        cgroup_parent=f"/kubeling-test-sup-{uuid.uuid4().hex[:8]}",
        client=ensure_supervisor(state),
    )  # fmt: skip
    try:
        yield node
    finally:
        try:
            client = ensure_supervisor(state)  # a test may have killed it
            for info in client.list():
                client.delete(info.id, force=True)
            assert client.list() == []
            stop_supervisor(running_supervisor(state))
            assert not (state / "supervisor.sock").exists()
            assert node.leftovers() == []
        finally:
            for controller in os.listdir("/sys/fs/cgroup"):
                parent = Path(f"/sys/fs/cgroup/{controller}{node.cgroup_parent}")
                if parent.is_dir():
                    parent.rmdir()
            shutil.rmtree(state)


# -- logs ----------------------------------------------------------------------------


def test_output_lands_in_the_log_in_cri_format(node: Node):
    script = (
        "echo out1; echo err1 >&2; echo 'ünïcödé ✓'; "
        "printf '%20000s\\n' '' | tr ' ' x; "  # one line of 20000 bytes
        "echo err2 >&2; printf 'no newline'"
    )
    container_id = node.run(["sh", "-c", script])
    info = node.client.wait(container_id, timeout=10)
    assert (info.status, info.exit_code) == (Status.STOPPED, 0)
    records = node.records(container_id)
    assert all(RFC3339_NANO.match(timestamp) for timestamp, *_ in records)
    timestamps = [timestamp for timestamp, *_ in records]
    assert timestamps == sorted(timestamps)
    stdout = [(tag, content) for _, stream, tag, content in records if stream == STDOUT]
    stderr = [(tag, content) for _, stream, tag, content in records if stream == STDERR]
    assert stdout == [
        (FULL, b"out1"),
        (FULL, "ünïcödé ✓".encode()),
        (PARTIAL, b"x" * 16384),
        (FULL, b"x" * (20000 - 16384)),
        (PARTIAL, b"no newline"),
    ]
    assert stderr == [(FULL, b"err1"), (FULL, b"err2")]
    assert (node.log_path(container_id).stat().st_mode & 0o777) == 0o640


def test_reopen_log_after_rotation(node: Node):
    container_id = node.run(["sh", "-c", "while :; do echo tick; sleep 0.02; done"])
    path = node.log_path(container_id)
    wait_for(lambda: path.exists() and path.stat().st_size > 0, "first records")
    rotated = path.with_suffix(".log.1")
    path.rename(rotated)
    node.client.reopen_log(container_id)
    wait_for(lambda: path.exists() and path.stat().st_size > 0, "records in the new file")
    node.client.stop(container_id, timeout=0)
    for file in (rotated, path):
        records = [parse_record(line) for line in file.read_bytes().splitlines()]
        assert records
        assert {(stream, tag, content) for _, stream, tag, content in records} == {
            (STDOUT, FULL, b"tick")
        }
    with pytest.raises(InvalidState, match="not running"):
        node.client.reopen_log(container_id)


def test_stdin_reaches_the_container(node: Node):
    container_id = node.run(
        ["sh", "-c", "read first; read second; echo got:$first:$second"], stdin=True
    )
    node.client.write_stdin(container_id, b"hello\n")
    node.client.write_stdin(container_id, b"world\n", close=True)
    assert node.client.wait(container_id, timeout=10).exit_code == 0
    assert [r[3] for r in node.records(container_id)] == [b"got:hello:world"]
    with pytest.raises(InvalidState):
        node.client.write_stdin(container_id, b"late")


def test_container_without_stdin_reads_end_of_file(node: Node):
    container_id = node.run(["sh", "-c", "cat; echo eof"])
    assert node.client.wait(container_id, timeout=10).exit_code == 0
    assert [r[3] for r in node.records(container_id)] == [b"eof"]
    with pytest.raises(InvalidState, match="no stdin"):
        node.client.write_stdin(container_id, b"x")


# -- exits, stop, events ---------------------------------------------------------------


def test_exit_codes_are_reported_in_events_and_state(node: Node):
    with node.client.events() as events:
        exits_3 = node.run(["sh", "-c", "exit 3"])
        assert node.client.wait(exits_3, timeout=10).exit_code == 3

        trapped = node.run(
            ["sh", "-c", "trap 'exit 42' TERM; echo trapped; while :; do sleep 0.05; done"]
        )
        wait_for(lambda: node.log_path(trapped).exists() and node.records(trapped), "the trap")
        started = time.monotonic()
        info = node.client.stop(trapped, timeout=10)
        assert (info.status, info.exit_code) == (Status.STOPPED, 42)
        assert time.monotonic() - started < 5

        # pid 1 of its namespace ignores SIGTERM without a handler: SIGKILL after 0.3 s
        stubborn = node.run(["sleep", "100"])
        started = time.monotonic()
        info = node.client.stop(stubborn, timeout=0.3)
        assert info.exit_code == 137
        assert 0.3 <= time.monotonic() - started < 5
        assert node.client.stop(stubborn, timeout=0.3).exit_code == 137  # idempotent

        seen = [events.next(5) for _ in range(9)]
    for container_id, code in ((exits_3, 3), (trapped, 42), (stubborn, 137)):
        kinds = [(e.kind, e.exit_code) for e in seen if e.container_id == container_id]
        assert kinds == [
            (EventKind.CREATED, None),
            (EventKind.STARTED, None),
            (EventKind.EXITED, code),
        ]
        state = node.client.state(container_id)
        assert (state.status, state.exit_code) == (Status.STOPPED, code)
        assert 0 < state.created_at <= state.started_at <= state.finished_at
    runtime_state = json.loads(
        subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), "kubeling-runtime"),
             "--root", str(node.state / "runtime"), "state", stubborn],
            capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    assert (runtime_state["status"], runtime_state["exitCode"]) == ("stopped", 137)


def test_kill_and_delete(node: Node):
    with node.client.events() as events:
        container_id = node.run(["sleep", "100"])
        node.client.kill(container_id, signal.SIGKILL)
        assert node.client.wait(container_id, timeout=10).exit_code == 137
        node.client.delete(container_id)
        kinds = [events.next(5).kind for _ in range(4)]
    assert kinds == [EventKind.CREATED, EventKind.STARTED, EventKind.EXITED, EventKind.DELETED]
    with pytest.raises(NotFound):
        node.client.state(container_id)


def test_forced_delete_of_running_and_created_containers(node: Node):
    running = node.run(["sleep", "100"])
    created = node.run(["sleep", "100"], start=False)
    pids = [node.client.state(c).pid for c in (running, created)]
    for container_id in (running, created):
        with pytest.raises(InvalidState, match="stop it first"):
            node.client.delete(container_id)
        node.client.delete(container_id, force=True)
    assert not any(alive(pid) for pid in pids)
    assert node.client.list() == []


def test_wait_with_a_timeout_returns_the_running_container(node: Node):
    container_id = node.run(["sleep", "100"])
    info = node.client.wait(container_id, timeout=0.1)
    assert info.status is Status.RUNNING
    assert info.exit_code is None


# -- exec ----------------------------------------------------------------------------


def test_exec_sync_returns_output_and_exit_code(node: Node):
    container_id = node.run(["sleep", "100"])
    result = node.client.exec_sync(
        container_id, ["sh", "-c", "echo out; echo err >&2; echo $FOO; exit 5"], env=["FOO=bar"]
    )
    assert (result.exit_code, result.stdout, result.stderr) == (5, b"out\nbar\n", b"err\n")
    assert not result.timed_out
    big = node.client.exec_sync(container_id, ["head", "-c", "3000000", "/dev/zero"])
    assert (big.exit_code, big.stdout) == (0, b"\0" * 3000000)
    hostname = node.client.exec_sync(container_id, ["hostname"])
    assert hostname.stdout == b"kubeling\n"  # in the container's namespaces


def test_exec_sync_honours_its_timeout(node: Node):
    container_id = node.run(["sleep", "100"])
    started = time.monotonic()
    result = node.client.exec_sync(
        container_id, ["sh", "-c", "echo before; exec sleep 30"], timeout=0.5
    )
    assert 0.5 <= time.monotonic() - started < 5
    assert result.timed_out
    assert result.exit_code == 137
    assert result.stdout == b"before\n"
    # the container is unharmed and execs still work
    assert node.client.state(container_id).status is Status.RUNNING
    assert node.client.exec_sync(container_id, ["true"], timeout=5).exit_code == 0


def test_exec_sync_errors(node: Node):
    container_id = node.run(["sleep", "100"])
    with pytest.raises(SupervisorError, match="no-such-binary"):
        node.client.exec_sync(container_id, ["no-such-binary"])
    with pytest.raises(NotFound):
        node.client.exec_sync("nope", ["true"])
    with pytest.raises(InvalidArgument, match="'args' is empty"):
        node.client.exec_sync(container_id, [])
    node.client.stop(container_id, timeout=0)
    with pytest.raises(InvalidState, match="stopped"):
        node.client.exec_sync(container_id, ["true"])


def test_concurrent_exec_sync_from_threads(node: Node):
    container_id = node.run(["sleep", "100"])
    results: list[bytes] = []

    def run(n: int) -> None:
        results.append(node.client.exec_sync(container_id, ["echo", str(n)]).stdout)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == sorted(f"{n}\n".encode() for n in range(8))


# -- bad input -----------------------------------------------------------------------


def test_bad_requests_get_typed_errors(node: Node):
    container_id = node.run(["sleep", "100"], start=False)
    _, bundle = node.bundle(["true"])
    with pytest.raises(AlreadyExists):
        node.client.create(container_id, bundle)
    with pytest.raises(InvalidArgument, match="invalid container id"):
        node.client.create("../escape", bundle)
    with pytest.raises(InvalidArgument, match="not a directory"):
        node.client.create("relative", "bundle")
    with pytest.raises(InvalidArgument, match="not absolute"):
        node.client.create("rel-log", bundle, log_path="logs/0.log")
    with pytest.raises(NotFound):
        node.client.start("nope")
    node.client.start(container_id)
    with pytest.raises(InvalidState, match="running"):
        node.client.start(container_id)


def test_failed_create_leaves_nothing(node: Node):
    def no_args(config: dict[str, Any]) -> None:
        config["process"]["args"] = []

    container_id, bundle = node.bundle([], edit=no_args)
    with pytest.raises(InvalidArgument, match="args"):
        node.client.create(container_id, bundle, log_path=str(node.log_path(container_id)))
    assert node.client.list() == []
    assert node.leftovers() == []


def test_a_slow_create_holds_up_no_other_request(node: Node):
    """Creates run side by side: while one container's init is still setting itself
    up (here a createContainer hook sleeps), other containers are created and
    started, and the waiting one's id is taken."""

    def slow_setup(config: dict[str, Any]) -> None:
        config["hooks"] = {"createContainer": [{"path": "/bin/sleep", "args": ["sleep", "2"]}]}

    slow_id, slow_bundle = node.bundle(["sleep", "60"], edit=slow_setup)
    created: list[Any] = []
    thread = threading.Thread(
        target=lambda: created.append(node.client.create(slow_id, slow_bundle)), daemon=True
    )
    thread.start()

    def pending() -> bool:
        try:
            node.client.state(slow_id)
        except InvalidState:
            return True
        except NotFound:
            return False  # not there yet
        raise AssertionError("the slow create finished before its hook did")

    wait_for(pending, "the slow create to be under way")
    with pytest.raises(AlreadyExists):
        node.client.create(slow_id, slow_bundle)
    with pytest.raises(InvalidState, match="being created"):
        node.client.delete(slow_id, force=True)
    others = [node.run(["sleep", "60"]) for _ in range(3)]
    assert created == []  # still waiting for its init
    for container_id in others:
        assert node.client.state(container_id).status is Status.RUNNING
    thread.join(timeout=15)
    [info] = created
    assert info.status is Status.CREATED
    assert node.client.start(slow_id).status is Status.RUNNING
    assert {info.id for info in node.client.list()} == {slow_id, *others}


# -- clients and supervisors that die --------------------------------------------------

_CLIENT = """
import sys
from cri.supervisor import SupervisorClient
client = SupervisorClient(sys.argv[1])
client.create(sys.argv[2], sys.argv[3])
client.start(sys.argv[2])
print("started", flush=True)
client.wait(sys.argv[2])  # blocks: killed here
"""


def test_a_client_killed_with_sigkill_changes_nothing(node: Node):
    container_id, bundle = node.bundle(["sleep", "100"])
    socket_path = str(node.state / "supervisor.sock")
    with subprocess.Popen(
        [sys.executable, "-c", _CLIENT, socket_path, container_id, bundle],
        stdout=subprocess.PIPE, text=True,
    ) as client:  # fmt: skip
        assert client.stdout is not None
        assert client.stdout.readline() == "started\n"
        client.kill()  # SIGKILL, in the middle of its wait
        client.wait(10)
    fresh = SupervisorClient(socket_path)
    (info,) = fresh.list()
    assert (info.id, info.status) == (container_id, Status.RUNNING)
    assert alive(info.pid)
    assert fresh.exec_sync(container_id, ["true"]).exit_code == 0
    assert fresh.stop(container_id, timeout=0).exit_code == 137


def test_supervisor_killed_and_restarted_readopts_its_containers(node: Node):
    running = node.run(["sleep", "100"])
    created = node.run(["sleep", "100"], start=False)
    finished = node.run(["sh", "-c", "exit 4"])
    assert node.client.wait(finished, timeout=10).exit_code == 4
    old_pid = node.pid
    os.kill(old_pid, signal.SIGKILL)
    wait_for(lambda: not alive(old_pid), "the supervisor to die")
    assert running_supervisor(node.state) == 0

    client = ensure_supervisor(node.state)
    assert node.pid != old_pid
    infos = {info.id: info for info in client.list()}
    assert {c: (i.status, i.adopted) for c, i in infos.items()} == {
        running: (Status.RUNNING, True),
        created: (Status.CREATED, True),
        finished: (Status.STOPPED, True),
    }
    assert infos[finished].exit_code == 4
    assert alive(infos[running].pid)
    with pytest.raises(InvalidState, match="not captured"):
        client.reopen_log(running)
    # The exit of a container that is no longer our child is learnt via its pidfd.
    with client.events() as events:
        client.kill(running, signal.SIGKILL)
        event = events.next(10)
    assert (event.kind, event.container_id) == (EventKind.EXITED, running)
    # 137 if its zombie could still be read, else unknown
    assert event.exit_code in (137, 255)
    assert client.state(running).status is Status.STOPPED
    assert client.start(created).status is Status.RUNNING
    assert client.exec_sync(created, ["true"]).exit_code == 0


def test_ensure_supervisor_starts_one_for_concurrent_callers(node: Node, tmp_path: Path):
    state = Path(tempfile.mkdtemp(prefix="kls-"))
    try:
        pids: list[int] = []

        def ensure() -> None:
            pids.append(int(ensure_supervisor(state).ping()["pid"]))

        threads = [threading.Thread(target=ensure) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(pids) == 6
        assert len(set(pids)) == 1
        assert running_supervisor(state) == pids[0]
        assert ensure_supervisor(state).ping()["pid"] == pids[0]
    finally:
        pid = running_supervisor(state)
        if pid:
            stop_supervisor(pid)
        shutil.rmtree(state)


# -- figures -------------------------------------------------------------------------


def pss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    raise AssertionError("no Pss in smaps_rollup")


def test_twenty_containers(node: Node, record_property: Callable[[str, object], None]):
    pid = node.pid
    idle_pss = pss_kib(pid)
    latencies = []
    ids = []
    for _ in range(20):
        container_id, bundle = node.bundle(["sh", "-c", "echo up; exec sleep 100"])
        started = time.perf_counter()
        node.client.create(container_id, bundle, log_path=str(node.log_path(container_id)))
        node.client.start(container_id)
        latencies.append(time.perf_counter() - started)
        ids.append(container_id)
    infos = node.client.list()
    assert len(infos) == 20
    assert all(info.status is Status.RUNNING and alive(info.pid) for info in infos)
    for container_id in ids:
        wait_for(lambda c=container_id: node.log_path(c).exists()
                 and node.log_path(c).stat().st_size > 0, "the first record")  # fmt: skip
        assert [r[3] for r in node.records(container_id)] == [b"up"]
    pss = pss_kib(pid)
    latencies.sort()
    figures = {
        "supervisor_pss_idle_kib": idle_pss,
        "supervisor_pss_20_containers_kib": pss,
        "create_start_median_ms": round(latencies[10] * 1000, 1),
        "create_start_max_ms": round(latencies[-1] * 1000, 1),
    }
    for name, value in figures.items():
        record_property(name, value)
    print(f"\nsupervisor figures: {figures}")
    assert pss < 64 * 1024  # generous: ~10 MiB expected
