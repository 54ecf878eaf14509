"""Clients of the streaming server, the way client-go talks to it (kubectl, crictl,
critest): exec/attach over SPDY/3.1 and over WebSocket (channel protocols), and
port-forward over SPDY, directly or tunnelled through a WebSocket."""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from cri.streaming import spdy
from cri.streaming.spdy import Session, Stream
from cri.streaming.websocket import WebSocket, WebSocketTransport

TIMEOUT = 30.0


@dataclass
class Upgraded:
    sock: socket.socket
    status: int
    headers: dict[str, str]
    leftover: bytes = b""
    body: bytes = b""


class _Buffered:
    """A socket whose first reads return bytes already read past the headers."""

    def __init__(self, sock: socket.socket, leftover: bytes) -> None:
        self.sock = sock
        self.leftover = leftover

    def recv(self, size: int) -> bytes:
        if self.leftover:
            data, self.leftover = self.leftover[:size], self.leftover[size:]
            return data
        return self.sock.recv(size)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()


def upgrade(url: str, headers: dict[str, str], method: str = "POST") -> Upgraded:
    """Send the upgrade request; read the response's head (and body if not 101)."""
    parsed = urllib.parse.urlsplit(url)
    sock = socket.create_connection((parsed.hostname, parsed.port), timeout=TIMEOUT)
    lines = [f"{method} {parsed.path} HTTP/1.1", f"Host: {parsed.netloc}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    response_headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        response_headers[name.strip().lower()] = value.strip()
    status = int(status_line.split()[1])
    result = Upgraded(sock, status, response_headers, rest)
    if status != 101:
        length = int(response_headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = sock.recv(4096)
            if not chunk:
                break
            rest += chunk
        result.body = rest
        sock.close()
    return result


@dataclass
class CommandResult:
    stdout: bytes = b""
    stderr: bytes = b""
    error: bytes = b""
    protocol: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.error)
        return loaded

    @property
    def exit_code(self) -> int:
        status = self.status
        if status["status"] == "Success":
            return 0
        for cause in status["details"]["causes"]:
            if cause.get("reason") == "ExitCode":
                return int(cause["message"])
        raise AssertionError(f"no exit code in {status}")


def _read_into(stream: Stream, sink: bytearray) -> threading.Thread:
    def run() -> None:
        sink.extend(stream.read_all())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def spdy_command(
    url: str,
    *,
    stdin: bytes | None = None,
    stdout: bool = True,
    stderr: bool = True,
    tty: bool = False,
    protocols: tuple[str, ...] = ("v5.channel.k8s.io", "v4.channel.k8s.io"),
    resize: tuple[int, int] | None = None,
    stdin_delay: float = 0.0,
) -> CommandResult:
    """An exec or attach over SPDY as client-go's SPDY executor does it."""
    up = upgrade(
        url,
        {
            "Connection": "Upgrade",
            "Upgrade": spdy.UPGRADE,
            "X-Stream-Protocol-Version": ", ".join(protocols),
        },
    )
    if up.status != 101:
        raise AssertionError(f"upgrade refused: {up.status} {up.body!r}")
    session = Session(_Buffered(up.sock, up.leftover), server=False)
    threading.Thread(target=session.serve, daemon=True).start()
    result = CommandResult(protocol=up.headers.get("x-stream-protocol-version", ""))
    error = session.open_stream({"streamType": "error"})
    streams: dict[str, Stream] = {}
    if stdin is not None:
        streams["stdin"] = session.open_stream({"streamType": "stdin"})
    if stdout:
        streams["stdout"] = session.open_stream({"streamType": "stdout"})
    if stderr and not tty:
        streams["stderr"] = session.open_stream({"streamType": "stderr"})
    if tty:
        streams["resize"] = session.open_stream({"streamType": "resize"})
        if resize is not None:
            size = {"Width": resize[0], "Height": resize[1]}
            streams["resize"].write(json.dumps(size).encode() + b"\n")
    out, err, status = bytearray(), bytearray(), bytearray()
    readers = [_read_into(error, status)]
    if "stdout" in streams:
        readers.append(_read_into(streams["stdout"], out))
    if "stderr" in streams:
        readers.append(_read_into(streams["stderr"], err))
    if stdin is not None:
        if stdin_delay:
            threading.Event().wait(stdin_delay)
        streams["stdin"].write(stdin)
        streams["stdin"].close()
    for reader in readers:
        reader.join(TIMEOUT)
        assert not reader.is_alive(), "the server did not end the session"
    session.close()
    result.stdout, result.stderr, result.error = bytes(out), bytes(err), bytes(status)
    return result


def websocket_connect(url: str, protocols: str) -> tuple[WebSocket, Upgraded]:
    key = base64.b64encode(os.urandom(16)).decode()
    up = upgrade(
        url,
        {
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Key": key,
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Protocol": protocols,
        },
        method="GET",
    )
    if up.status != 101:
        raise AssertionError(f"upgrade refused: {up.status} {up.body!r}")
    buffered = _Buffered(up.sock, up.leftover)
    return WebSocket(buffered.recv, buffered.sendall, buffered.close, client=True), up


def websocket_command(
    url: str,
    *,
    stdin: bytes | None = None,
    protocols: str = "v5.channel.k8s.io",
    resize: tuple[int, int] | None = None,
) -> CommandResult:
    """An exec or attach over WebSocket as client-go's WebSocket executor does it:
    stdin on channel 0 and, with v5, its end as the close signal 255 0."""
    ws, up = websocket_connect(url, protocols)
    result = CommandResult(protocol=up.headers.get("sec-websocket-protocol", ""))
    if resize is not None:
        ws.send_binary(b"\x04" + json.dumps({"Width": resize[0], "Height": resize[1]}).encode())
    if stdin is not None:
        if stdin:
            ws.send_binary(b"\x00" + stdin)
        ws.send_binary(b"\xff\x00")
    out, err, status = bytearray(), bytearray(), bytearray()
    while (message := ws.receive()) is not None:
        payload = message[1]
        if not payload:
            continue
        {1: out, 2: err, 3: status}.get(payload[0], bytearray()).extend(payload[1:])
    ws.close()
    result.stdout, result.stderr, result.error = bytes(out), bytes(err), bytes(status)
    return result


def port_forward_session(url: str, *, tunnel: bool = False) -> Session:
    """A port-forward session (SPDY, or SPDY tunnelled over a WebSocket)."""
    if tunnel:
        ws, _ = websocket_connect(url, "SPDY/3.1+portforward.k8s.io")
        session = Session(WebSocketTransport(ws), server=False)
    else:
        up = upgrade(
            url,
            {
                "Connection": "Upgrade",
                "Upgrade": spdy.UPGRADE,
                "X-Stream-Protocol-Version": "portforward.k8s.io",
            },
        )
        if up.status != 101:
            raise AssertionError(f"upgrade refused: {up.status} {up.body!r}")
        session = Session(_Buffered(up.sock, up.leftover), server=False)
    threading.Thread(target=session.serve, daemon=True).start()
    return session


def forward_once(
    session: Session, port: int, request_id: int, payload: bytes
) -> tuple[bytes, bytes]:
    """One forwarded connection as client-go makes it: the error stream (closed at
    once), then the data stream; send `payload`, half-close, read until the pod's
    side closes. Returns (data received, error stream text)."""
    headers = {"streamType": "error", "port": str(port), "requestID": str(request_id)}
    error = session.open_stream(headers)
    error.close()
    data = session.open_stream({**headers, "streamType": "data"})
    errors = bytearray()
    reader = _read_into(error, errors)
    if payload:
        data.write(payload)
    data.close()
    received = data.read_all()
    data.reset()
    reader.join(TIMEOUT)
    return received, bytes(errors)
