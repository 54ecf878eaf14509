"""The streaming server end to end on loopback, with runners that stand in for the
container side: exec and attach over SPDY and WebSocket (pipes and a real pty),
port-forward to a TCP server on 127.0.0.1, tokens and bad requests."""

from __future__ import annotations

import array
import json
import os
import pty
import socket
import threading
from collections.abc import Iterator

import pytest

from cri.streaming import remotecommand
from cri.streaming.remotecommand import ProcessFailed, ProcessIO, StreamOptions
from cri.streaming.server import StreamingServer
from tests.unit.cri.streaming import clients

PIPES = StreamOptions(stdin=True, stdout=True, stderr=True, tty=False)
TTY = StreamOptions(stdin=True, stdout=True, stderr=False, tty=True)


@pytest.fixture
def server() -> Iterator[StreamingServer]:
    streaming = StreamingServer("127.0.0.1:0")
    streaming.start()
    yield streaming
    streaming.stop()


def cat_with_status(code: int) -> remotecommand.Runner:
    """stdin to stdout upper-cased, a line on stderr, exit `code`."""

    def run(io: ProcessIO) -> int:
        data = b""
        while chunk := os.read(io.stdin, 4096):
            data += chunk
        os.write(io.stdout, data.upper())
        os.write(io.stderr, b"to stderr\n")
        return code

    return run


@pytest.mark.parametrize("transport", ["spdy", "websocket"])
def test_exec_with_pipes(server: StreamingServer, transport: str) -> None:
    for code in (0, 3):
        url = server.exec_url(PIPES, cat_with_status(code), "['cat']")
        if transport == "spdy":
            result = clients.spdy_command(url, stdin=b"hello")
            assert result.protocol == "v5.channel.k8s.io"
        else:
            result = clients.websocket_command(url, stdin=b"hello")
            assert result.protocol == "v5.channel.k8s.io"
        assert result.stdout == b"HELLO"
        assert result.stderr == b"to stderr\n"
        assert result.exit_code == code
        if code:
            assert result.status["reason"] == "NonZeroExitCode"
            assert "exit code 3" in result.status["message"]


def test_older_protocols_report_errors_as_text(server: StreamingServer) -> None:
    url = server.exec_url(PIPES, cat_with_status(2), "['cat']")
    result = clients.spdy_command(url, stdin=b"x", protocols=("v3.channel.k8s.io",))
    assert result.protocol == "v3.channel.k8s.io"
    assert result.stdout == b"X"
    assert b"exit code 2" in result.error and not result.error.startswith(b"{")

    url = server.exec_url(PIPES, cat_with_status(0), "['cat']")
    result = clients.websocket_command(url, stdin=b"y", protocols="v4.channel.k8s.io")
    assert result.protocol == "v4.channel.k8s.io"
    # v4 has no way to end stdin but closing: the runner read nothing past "y".
    assert result.stdout == b"Y" and result.exit_code == 0


def test_runner_failure_goes_to_the_error_channel(server: StreamingServer) -> None:
    def run(io: ProcessIO) -> int:
        raise ProcessFailed("exec c1: no such container")

    result = clients.spdy_command(server.exec_url(PIPES, run, "x"), stdin=b"")
    assert result.status["status"] == "Failure"
    assert result.status["message"] == "exec c1: no such container"


def fake_terminal(io: ProcessIO) -> int:
    """What the runtime does for a tty exec: open a pty, send the master to the
    console socket, and run a 'process' on the slave that echoes one line and the
    terminal's size."""
    master, slave = pty.openpty()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as console:
        console.connect(io.console_socket)
        fds = array.array("i", [master])
        console.sendmsg([b"/dev/pts/x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
    os.close(master)
    with os.fdopen(slave, "r+b", buffering=0) as terminal:
        line = terminal.readline()
        size = os.get_terminal_size(terminal.fileno())
        terminal.write(b"got " + line.strip() + f" {size.columns}x{size.lines}\n".encode())
    return 0


@pytest.mark.parametrize("transport", ["spdy", "websocket"])
def test_exec_with_a_terminal(server: StreamingServer, transport: str) -> None:
    url = server.exec_url(TTY, fake_terminal, "['sh']")
    if transport == "spdy":
        result = clients.spdy_command(
            url, stdin=b"hi\n", tty=True, resize=(100, 40), stdin_delay=0.3
        )
    else:
        result = clients.websocket_command(url, stdin=b"hi\n", resize=(100, 40))
    assert result.exit_code == 0
    # The pty echoes the input, then the reply (with CRLF line ends).
    assert b"got hi 100x40" in result.stdout


def test_attach_reports_success_without_exit_code(server: StreamingServer) -> None:
    def attach(io: ProcessIO) -> None:
        os.write(io.stdout, b"attached\n")
        return None

    options = StreamOptions(stdin=False, stdout=True, stderr=False, tty=False)
    result = clients.spdy_command(server.attach_url(options, attach, "c1"), stderr=False)
    assert result.stdout == b"attached\n"
    assert result.status == {"metadata": {}, "status": "Success"}


def test_tokens_are_single_use_and_per_kind(server: StreamingServer) -> None:
    url = server.exec_url(PIPES, cat_with_status(0), "x")
    attach_url = url.replace("/exec/", "/attach/")
    refused = clients.upgrade(attach_url, {"Connection": "Upgrade", "Upgrade": "SPDY/3.1"})
    assert refused.status == 404
    # The token was consumed by the wrong-kind request.
    assert clients.upgrade(url, {"Connection": "Upgrade", "Upgrade": "SPDY/3.1"}).status == 404


def test_expired_token() -> None:
    now = [0.0]
    streaming = StreamingServer("127.0.0.1:0", clock=lambda: now[0])
    streaming.start()
    try:
        url = streaming.exec_url(PIPES, cat_with_status(0), "x")
        now[0] = 61.0
        response = clients.upgrade(url, {"Connection": "Upgrade", "Upgrade": "SPDY/3.1"})
        assert response.status == 404 and b"expired" in response.body
    finally:
        streaming.stop()


def test_bad_upgrades(server: StreamingServer) -> None:
    url = server.exec_url(PIPES, cat_with_status(0), "x")
    plain = clients.upgrade(url, {})
    assert plain.status == 400 and b"upgrade" in plain.body
    url = server.exec_url(PIPES, cat_with_status(0), "x")
    refused = clients.upgrade(
        url,
        {"Connection": "Upgrade", "Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": "v9.x"},
    )
    assert refused.status == 403
    assert "v4.channel.k8s.io" in refused.headers["x-accepted-stream-protocol-versions"]
    url = server.exec_url(PIPES, cat_with_status(0), "x")
    with pytest.raises(AssertionError, match="400"):
        clients.websocket_command(url, protocols="base64.channel.k8s.io")
    assert clients.upgrade(server.base_url + "/nothing/here", {}).status == 404


@pytest.fixture
def echo_server() -> Iterator[int]:
    """A TCP server on 127.0.0.1 answering each connection with what it read,
    reversed, once the client has half-closed."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                data = b""
                while chunk := connection.recv(4096):
                    data += chunk
                connection.sendall(data[::-1])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    yield port
    stop.set()
    socket.create_connection(("127.0.0.1", port)).close()  # wakes accept()
    thread.join(5)
    listener.close()


@pytest.mark.parametrize("tunnel", [False, True])
def test_port_forward(server: StreamingServer, echo_server: int, tunnel: bool) -> None:
    def connect(port: int) -> socket.socket:
        return socket.create_connection(("127.0.0.1", port))

    url = server.port_forward_url(connect, "sandbox s1")
    session = clients.port_forward_session(url, tunnel=tunnel)
    try:
        # Two connections, one after the other, on one session.
        assert clients.forward_once(session, echo_server, 0, b"abc") == (b"cba", b"")
        assert clients.forward_once(session, echo_server, 1, b"x" * 100000) == (
            b"x" * 100000,
            b"",
        )
        closed = socket.create_server(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        closed.close()
        received, error = clients.forward_once(session, port, 2, b"")
        assert received == b""
        assert error.startswith(b"sandbox s1: connect to port")
        # A session still works after a failed connection.
        assert clients.forward_once(session, echo_server, 3, b"12") == (b"21", b"")
    finally:
        session.close()


def test_port_forward_needs_its_protocol(server: StreamingServer) -> None:
    url = server.port_forward_url(lambda port: socket.socket(), "sandbox s1")
    response = clients.upgrade(
        url,
        {
            "Connection": "Upgrade",
            "Upgrade": "SPDY/3.1",
            "X-Stream-Protocol-Version": "v4.channel.k8s.io",
        },
    )
    assert response.status == 403


def test_status_messages() -> None:
    success = remotecommand.status_message(remotecommand.V4, 0, "", "x")
    assert json.loads(success) == {"metadata": {}, "status": "Success"}
    assert remotecommand.status_message(remotecommand.V2, 0, "", "x") == b""
    failed = json.loads(remotecommand.status_message(remotecommand.V5, None, "boom", "x"))
    assert failed["status"] == "Failure" and failed["message"] == "boom"
    assert StreamOptions(True, True, True, True).expected_streams(remotecommand.V4) == {
        "error", "stdin", "stdout", "resize",
    }  # fmt: skip
    assert StreamOptions(False, True, True, False).expected_streams(remotecommand.V2) == {
        "error", "stdout", "stderr",
    }  # fmt: skip
