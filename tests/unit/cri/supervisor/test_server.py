"""The socket side and the client together, without containers: a `Server` with
test handlers runs its reactor on a thread, and `SupervisorClient` talks to it over a
real unix socket (typed errors, deferred and out-of-order answers, many threads on
one client, malformed input, events, peers that go away)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cri.supervisor import protocol
from cri.supervisor import server as server_module
from cri.supervisor.client import SupervisorClient
from cri.supervisor.daemon import listen
from cri.supervisor.errors import (
    InvalidArgument,
    InvalidState,
    NotFound,
    SupervisorError,
    Unavailable,
)
from cri.supervisor.protocol import Args, Event, EventKind
from cri.supervisor.reactor import Reactor
from cri.supervisor.server import Reply, Server
from runtime import errors as runtime_errors


@dataclass
class Harness:
    reactor: Reactor
    server: Server
    socket_path: str
    client: SupervisorClient
    pending: list[Reply] = field(default_factory=list)

    def on_loop(self, action: Callable[[], None]) -> None:
        """Run `action` on the reactor's thread (as the supervisor's code runs)."""
        self.reactor.call_later(0, action)
        self.reactor.wake()


@pytest.fixture
def harness() -> Iterator[Harness]:
    directory = tempfile.mkdtemp(prefix="kls-")  # short: unix socket paths are limited
    socket_path = str(Path(directory) / "s.sock")
    reactor = Reactor()
    holder: list[Harness] = []

    def echo(args: Args, reply: Reply) -> None:
        reply.ok({"echo": args.values})

    def not_found(args: Args, reply: Reply) -> None:
        raise runtime_errors.NotFound(f"container {args.text('id')} does not exist")

    def bad_spec(_args: Args, _reply: Reply) -> None:
        raise runtime_errors.SpecError("config.json: process.args: must not be empty")

    def invalid_state(_args: Args, _reply: Reply) -> None:
        raise runtime_errors.InvalidState("cannot start container c1: it is stopped")

    def crash(_args: Args, _reply: Reply) -> None:
        raise ZeroDivisionError("division by zero")

    def later(args: Args, reply: Reply) -> None:
        holder[0].pending.append(reply)
        delay = args.number("delay", None)
        if delay is not None:
            reactor.call_later(delay, lambda: reply.ok({"after": delay}))

    def big(args: Args, reply: Reply) -> None:
        reply.ok({"data": "x" * args.integer("size")})

    def write_to_fds(args: Args, reply: Reply) -> None:
        for fd in args.fds:
            os.write(fd, b"via fd")
        reply.ok({"fds": len(args.fds)})

    handlers = {
        "start": echo, "state": not_found, "create": bad_spec, "kill": invalid_state,
        "delete": crash, "wait": later, "list": big, "exec": write_to_fds,
    }  # fmt: skip
    server = Server(reactor, listen(socket_path), handlers)
    harness = Harness(reactor, server, socket_path, SupervisorClient(socket_path, timeout=10))
    holder.append(harness)
    thread = threading.Thread(target=reactor.run, name="reactor")
    thread.start()
    try:
        yield harness
    finally:
        reactor.stop()
        reactor.wake()
        thread.join(10)
        server.close()
        reactor.close()
        shutil.rmtree(directory)


def test_call_returns_the_result(harness: Harness):
    assert harness.client.call("start", {"id": "c1", "n": [1, 2]}) == {
        "echo": {"id": "c1", "n": [1, 2]}
    }


@pytest.mark.parametrize(
    ("op", "error", "message"),
    [
        ("state", NotFound, "container c9 does not exist"),
        ("create", InvalidArgument, "config.json: process.args: must not be empty"),
        ("kill", InvalidState, "cannot start container c1: it is stopped"),
        ("delete", SupervisorError, "ZeroDivisionError: division by zero"),
    ],
)
def test_runtime_errors_arrive_typed(
    harness: Harness, op: str, error: type[SupervisorError], message: str
):
    with pytest.raises(error) as raised:
        harness.client.call(op, {"id": "c9"})
    assert type(raised.value) is error
    assert str(raised.value) == message


def test_descriptors_travel_with_a_request_and_are_closed_after(harness: Harness):
    pipes = [os.pipe(), os.pipe()]
    result = harness.client.call("exec", {}, fds=[write for _, write in pipes])
    assert result == {"fds": 2}
    for read, write in pipes:
        os.close(write)
        # The supervisor's copy is closed too: the pipe ends after what it wrote.
        assert os.read(read, 100) == b"via fd"
        assert os.read(read, 100) == b""
        os.close(read)


def test_claiming_descriptors_not_sent_is_refused(harness: Harness):
    with pytest.raises(InvalidArgument, match="2 file descriptors claimed, 0 received"):
        harness.client.call("exec", {"fds": 2})
    assert harness.client.call("exec") == {"fds": 0}


def test_the_server_keeps_serving_after_errors(harness: Harness):
    for _ in range(3):
        with pytest.raises(SupervisorError):
            harness.client.call("delete")
    assert harness.client.call("start") == {"echo": {}}


def test_deferred_answer(harness: Harness):
    assert harness.client.call("wait", {"delay": 0.05}) == {"after": 0.05}


def test_many_threads_share_one_client(harness: Harness):
    def call(n: int) -> dict[str, object]:
        return harness.client.call("start", {"n": n})

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(call, range(400)))
    assert results == [{"echo": {"n": n}} for n in range(400)]


def raw(harness: Harness) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(harness.socket_path)
    return sock


def read_messages(sock: socket.socket, count: int) -> list[dict[str, object]]:
    data = b""
    while data.count(b"\n") < count:
        chunk = sock.recv(65536)
        assert chunk, "connection closed early"
        data += chunk
    return [json.loads(line) for line in data.splitlines()]


def test_pipelined_requests_are_answered_by_id_out_of_order(harness: Harness):
    with raw(harness) as sock:
        sock.sendall(
            protocol.request(1, "wait", {"delay": 0.1}) + protocol.request(2, "start", {"x": 1})
        )
        first, second = read_messages(sock, 2)
    assert (first["id"], first["ok"]) == (2, True)
    assert (second["id"], second["result"]) == (1, {"after": 0.1})


def test_malformed_line_gets_an_error_and_the_connection_stays(harness: Harness):
    with raw(harness) as sock:
        sock.sendall(b"{nonsense\n" + protocol.request(5, "start", {}))
        error, answer = read_messages(sock, 2)
    assert error == {
        "id": 0,
        "ok": False,
        "error": {"kind": "invalid_argument", "message": error["error"]["message"]},  # type: ignore[index]
    }
    assert answer == {"id": 5, "ok": True, "result": {"echo": {}}}


def test_too_long_a_line_closes_the_connection(harness: Harness, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(protocol, "MAX_LINE", 1000)
    with raw(harness) as sock:
        sock.sendall(b"x" * 5000)
        (error,) = read_messages(sock, 1)
        assert sock.recv(10) == b""
    assert error["error"] == {"kind": "invalid_argument", "message": "message too long"}


def test_a_large_answer_arrives_whole(harness: Harness):
    assert len(harness.client.call("list", {"size": 8 * 1024 * 1024})["data"]) == 8 * 1024 * 1024


def test_a_client_that_leaves_before_its_answer_does_no_harm(harness: Harness):
    with raw(harness) as sock:
        sock.sendall(protocol.request(1, "wait", {}))
        deadline = time.monotonic() + 5
        while not harness.pending:
            assert time.monotonic() < deadline, "the request never arrived"
            time.sleep(0.005)
    done = threading.Event()

    def answer_all() -> None:
        for reply in harness.pending:
            reply.ok({"late": True})
        done.set()

    harness.on_loop(answer_all)
    assert done.wait(5)
    assert harness.client.call("start") == {"echo": {}}


def test_events_reach_every_subscriber(harness: Harness):
    first = harness.client.events()
    second = harness.client.events()
    try:
        event = Event(EventKind.EXITED, "c1", 10, 123, exit_code=3)
        harness.on_loop(lambda: harness.server.broadcast(event.to_wire()))
        assert first.next(5) == event
        assert second.next(5) == event
        with pytest.raises(TimeoutError):
            first.next(0.05)
    finally:
        first.close()
        second.close()
    assert harness.client.call("start") == {"echo": {}}


def test_a_subscriber_that_does_not_read_is_dropped(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(server_module, "MAX_SUBSCRIBER_BACKLOG", 64 * 1024)
    stream = harness.client.events()
    done = threading.Event()

    def flood() -> None:
        for n in range(5000):
            event = Event(EventKind.CREATED, "c" * 200, n, n)
            harness.server.broadcast(event.to_wire())
        done.set()

    try:
        harness.on_loop(flood)
        assert done.wait(10)
        received = 0
        with pytest.raises(Unavailable):
            while True:
                stream.next(5)
                received += 1
    finally:
        stream.close()
    assert 0 < received < 5000


def test_event_stream_iteration_ends_when_closed(harness: Harness):
    stream = harness.client.events()
    threading.Timer(0.05, stream.close).start()
    assert list(stream) == []


def test_unavailable_when_nobody_listens(tmp_path: Path):
    client = SupervisorClient(tmp_path / "none.sock", timeout=1)
    assert not client.alive()
    with pytest.raises(Unavailable, match="connect to the supervisor"):
        client.ping()
