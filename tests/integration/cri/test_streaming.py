"""Exec, Attach and PortForward through the CRI server and its streaming server,
against real containers (root), with clients speaking as client-go does over SPDY
and WebSocket (tests/unit/cri/streaming/clients.py)."""

from __future__ import annotations

import time

import grpc
import pytest

from cri.api import api_pb2
from tests.integration.cri.support import NEEDS_CRI, Cri, wait_for
from tests.unit.cri.streaming import clients

pytestmark = NEEDS_CRI


def running(cri: Cri, name: str, command: list[str], **config: object) -> tuple[str, str]:
    sandbox = cri.run_sandbox(name)
    request = api_pb2.CreateContainerRequest(
        pod_sandbox_id=sandbox,
        config=api_pb2.ContainerConfig(
            metadata={"name": name},
            image={"image": cri.image},
            command=command,
            log_path=f"{name}/0.log",
            **config,  # type: ignore[arg-type]
        ),
        sandbox_config=cri.sandbox_config(name),
    )
    container = str(cri.runtime.CreateContainer(request).container_id)
    cri.start_container(container)
    return sandbox, container


def exec_url(cri: Cri, container: str, cmd: list[str], **options: bool) -> str:
    request = api_pb2.ExecRequest(container_id=container, cmd=cmd, **options)
    return str(cri.runtime.Exec(request).url)


@pytest.mark.parametrize("transport", ["spdy", "websocket"])
def test_exec(cri: Cri, transport: str) -> None:
    _, container = running(cri, "exec", ["sleep", "60"])
    command = ["sh", "-c", "cat; echo out; echo err >&2; exit 7"]
    url = exec_url(cri, container, command, stdin=True, stdout=True, stderr=True)
    assert url.startswith(cri.streaming.base_url + "/exec/")  # type: ignore[union-attr]
    if transport == "spdy":
        result = clients.spdy_command(url, stdin=b"from stdin\n")
    else:
        result = clients.websocket_command(url, stdin=b"from stdin\n")
    assert result.stdout == b"from stdin\nout\n"
    assert result.stderr == b"err\n"
    assert result.exit_code == 7

    url = exec_url(cri, container, ["echo", "-n", "hello"], stdout=True, stderr=True)
    result = clients.spdy_command(url)
    assert (result.stdout, result.stderr, result.exit_code) == (b"hello", b"", 0)


@pytest.mark.parametrize("transport", ["spdy", "websocket"])
def test_exec_with_a_terminal(cri: Cri, transport: str) -> None:
    _, container = running(cri, "tty", ["sleep", "60"])
    command = ["sh", "-c", "[ -t 0 ] && [ -t 1 ] && echo on-a-tty; read line; echo got $line"]
    url = exec_url(cri, container, command, stdin=True, stdout=True, tty=True)
    if transport == "spdy":
        result = clients.spdy_command(url, stdin=b"abc\n", tty=True, stdin_delay=0.5)
    else:
        result = clients.websocket_command(url, stdin=b"abc\n")
    assert b"on-a-tty" in result.stdout
    assert b"got abc" in result.stdout
    assert result.exit_code == 0


def test_exec_of_a_missing_command_fails_on_the_stream(cri: Cri) -> None:
    _, container = running(cri, "missing", ["sleep", "60"])
    url = exec_url(cri, container, ["/no/such/binary"], stdout=True, stderr=True)
    result = clients.spdy_command(url)
    assert result.status["status"] == "Failure"
    assert "/no/such/binary" in result.status["message"]
    # The container is unharmed.
    assert cri.exec(container, ["true"]).exit_code == 0


def test_attach(cri: Cri) -> None:
    _, container = running(cri, "attach", ["sh"], stdin=True, stdin_once=True)
    request = api_pb2.AttachRequest(container_id=container, stdin=True, stdout=True, stderr=True)
    url = str(cri.runtime.Attach(request).url)
    result = clients.spdy_command(url, stdin=b"echo hello; echo oops >&2\n", stdin_delay=0.5)
    assert result.stdout == b"hello\n"
    assert result.stderr == b"oops\n"
    assert result.status == {"metadata": {}, "status": "Success"}
    # stdin_once: the client's end of stdin ended the shell.
    wait_for(lambda: cri.status(container).status.state == api_pb2.CONTAINER_EXITED, "sh to exit")
    log = (cri.logs / "attach" / "attach" / "0.log").read_text()
    assert " stdout F hello" in log and " stderr F oops" in log


def test_attach_over_websocket_sees_output_as_it_comes(cri: Cri) -> None:
    _, container = running(cri, "ws-attach", ["sh", "-c", "sleep 1; echo one; sleep 1; echo two"])
    request = api_pb2.AttachRequest(container_id=container, stdout=True)
    started = time.monotonic()
    result = clients.websocket_command(str(cri.runtime.Attach(request).url))
    assert result.stdout == b"one\ntwo\n"
    assert result.status["status"] == "Success"
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("tunnel", [False, True])
def test_port_forward(cri: Cri, tunnel: bool) -> None:
    serve = "mkdir -p /www && echo hello-pf > /www/index.html && exec httpd -f -p 8080 -h /www"
    sandbox, container = running(cri, "web", ["sh", "-c", serve])
    wait_for(
        lambda: cri.exec(container, ["wget", "-q", "-O", "-", "http://127.0.0.1:8080/"]).stdout,
        "httpd to serve",
    )
    url = str(cri.runtime.PortForward(api_pb2.PortForwardRequest(pod_sandbox_id=sandbox)).url)
    session = clients.port_forward_session(url, tunnel=tunnel)
    try:
        request = b"GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n"
        received, error = clients.forward_once(session, 8080, 0, request)
        assert error == b""
        assert received.startswith(b"HTTP/1.") and received.endswith(b"hello-pf\n")
        received, error = clients.forward_once(session, 9, 1, b"")
        assert b"connect to port 9" in error
    finally:
        session.close()


def test_bad_requests(cri: Cri) -> None:
    sandbox, container = running(cri, "bad", ["sleep", "60"])
    cases = [
        (api_pb2.ExecRequest(container_id="nope", cmd=["true"], stdout=True), "NOT_FOUND"),
        (api_pb2.ExecRequest(container_id=container, stdout=True), "INVALID_ARGUMENT"),
        (api_pb2.ExecRequest(container_id=container, cmd=["true"]), "INVALID_ARGUMENT"),
        (
            api_pb2.ExecRequest(container_id=container, cmd=["true"], tty=True, stderr=True),
            "INVALID_ARGUMENT",
        ),
        (api_pb2.AttachRequest(container_id=container, stdout=True, tty=True), "INVALID_ARGUMENT"),
        (api_pb2.PortForwardRequest(pod_sandbox_id="nope"), "NOT_FOUND"),
        (api_pb2.PortForwardRequest(pod_sandbox_id=sandbox, port=[70000]), "INVALID_ARGUMENT"),
    ]
    for request, code in cases:
        method = {
            api_pb2.ExecRequest: cri.runtime.Exec,
            api_pb2.AttachRequest: cri.runtime.Attach,
            api_pb2.PortForwardRequest: cri.runtime.PortForward,
        }[type(request)]
        with pytest.raises(grpc.RpcError) as raised:
            method(request)
        assert raised.value.code().name == code, (request, raised.value.details())
    cri.runtime.StopContainer(api_pb2.StopContainerRequest(container_id=container, timeout=0))
    with pytest.raises(grpc.RpcError) as raised:
        cri.runtime.Exec(api_pb2.ExecRequest(container_id=container, cmd=["true"], stdout=True))
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_container_with_a_terminal(cri: Cri) -> None:
    _, container = running(cri, "term", ["sh"], tty=True, stdin=True, stdin_once=True)
    request = api_pb2.AttachRequest(container_id=container, stdin=True, stdout=True, tty=True)
    url = str(cri.runtime.Attach(request).url)
    result = clients.spdy_command(
        url, stdin=b"stty size; [ -t 0 ] && echo on-a-tty; exit 3\n", tty=True,
        resize=(100, 40), stdin_delay=0.5,
    )  # fmt: skip
    assert b"40 100" in result.stdout
    assert b"on-a-tty" in result.stdout
    assert result.status["status"] == "Success"
    wait_for(lambda: cri.status(container).status.state == api_pb2.CONTAINER_EXITED, "sh to exit")
    assert cri.status(container).status.exit_code == 3
    # One stream: what the terminal showed is logged as stdout.
    log = (cri.logs / "term" / "term" / "0.log").read_text()
    assert " stdout " in log and "on-a-tty" in log and " stderr " not in log
