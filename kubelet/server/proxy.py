"""The streaming proxy behind /exec, /attach and /portForward: the client's upgrade
request replayed to the runtime's streaming URL (what CRI Exec/Attach/PortForward
answered), then bytes piped both ways until both sides are done, as the kubelet
proxies to its runtime's streaming server.

The request goes out as the client sent it (method, Connection/Upgrade, the
X-Stream-Protocol-Version or Sec-WebSocket-* headers, anything else but Host and the
credentials), to the URL's path; the runtime's answer (101 Switching Protocols, or
an error) comes back to the client unchanged, so protocol negotiation is the
runtime's. Only plain-HTTP streaming URLs are supported (kubeling's and containerd's
default: a loopback listener).

Piping is one loop on the handler's thread with both sockets non-blocking (an SSL
socket must not be read and written from two threads at once). A side's end (EOF)
half-closes the other side's write direction; the proxy ends when both have ended,
when the runtime has ended and everything it sent was delivered, or after
`IDLE_TIMEOUT` seconds with no byte either way (the kubelet's streaming idle timeout
is 4 hours).
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import time
import urllib.parse
from collections.abc import Iterable

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
IDLE_TIMEOUT = 4 * 3600.0
CHUNK = 65536
# Bytes buffered in one direction before reading from that side pauses.
HIGH_WATER = 1 << 20
SKIPPED_HEADERS = {"host", "authorization", "content-length", "transfer-encoding"}


class ProxyError(Exception):
    """The streaming URL cannot be reached (502)."""


def upstream_request(url: str, method: str, headers: Iterable[tuple[str, str]]) -> tuple[
    tuple[str, int], bytes
]:  # fmt: skip
    """The (host, port) to connect to and the request head to send there."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "http" or not parsed.hostname:
        raise ProxyError(f"streaming URL {url!r}: only http:// URLs are supported")
    port = parsed.port or 80
    target = parsed.path or "/"
    if parsed.query:
        target += "?" + parsed.query
    lines = [f"{method} {target} HTTP/1.1", f"Host: {parsed.netloc}"]
    lines += [f"{name}: {value}" for name, value in headers if name.lower() not in SKIPPED_HEADERS]
    return (parsed.hostname, port), ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def connect(address: tuple[str, int]) -> socket.socket:
    try:
        upstream = socket.create_connection(address, timeout=CONNECT_TIMEOUT)
    except OSError as e:
        raise ProxyError(
            f"connect to the streaming server {address[0]}:{address[1]}: {e}"
        ) from None
    upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return upstream


class _Side:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.outbound = bytearray()  # bytes waiting to be written to this side
        self.read_done = False  # EOF (or error) reading from this side
        self.write_shut = False

    def pending(self) -> int:
        return self.sock.pending() if isinstance(self.sock, ssl.SSLSocket) else 0


def pipe(
    client: socket.socket, upstream: socket.socket, *, idle_timeout: float = IDLE_TIMEOUT
) -> None:
    """Copy bytes between `client` and `upstream` until both are done."""
    sides = (_Side(client), _Side(upstream))
    for side in sides:
        side.sock.setblocking(False)
    last_activity = time.monotonic()
    while True:
        client_side, upstream_side = sides
        if upstream_side.read_done and not client_side.outbound:
            return  # the runtime ended the session and the client has it all
        if client_side.read_done and upstream_side.read_done:
            return
        readers = [
            s.sock
            for s, other in ((client_side, upstream_side), (upstream_side, client_side))
            if not s.read_done and len(other.outbound) < HIGH_WATER
        ]
        writers = [s.sock for s in sides if s.outbound]
        ready_now = [s.sock for s in sides if s.pending() and s.sock in readers]
        timeout = 0.0 if ready_now else 1.0
        readable, writable, _ = select.select(readers, writers, [], timeout)
        readable = list(set(readable) | set(ready_now))
        if not readable and not writable:
            if time.monotonic() - last_activity > idle_timeout:
                log.info("streaming proxy: idle for %.0f s, closing", idle_timeout)
                return
            continue
        last_activity = time.monotonic()
        for side, other in ((client_side, upstream_side), (upstream_side, client_side)):
            if side.sock in readable:
                _read(side, other)
            if side.sock in writable or side.outbound:
                _write(side)
            if other.read_done and not side.outbound and not side.write_shut:
                side.write_shut = True
                with contextlib.suppress(OSError):
                    if isinstance(side.sock, ssl.SSLSocket):
                        pass  # TLS has no half-close; the client sees the end of the session
                    else:
                        side.sock.shutdown(socket.SHUT_WR)


def _read(side: _Side, other: _Side) -> None:
    try:
        data = side.sock.recv(CHUNK)
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError, InterruptedError):
        return
    except OSError:
        data = b""
    if not data:
        side.read_done = True
        return
    other.outbound += data


def _write(side: _Side) -> None:
    if not side.outbound:
        return
    try:
        sent = side.sock.send(side.outbound)
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError, InterruptedError):
        return
    except OSError:
        side.outbound.clear()
        side.read_done = True  # the peer is gone: nothing more will come from it either
        return
    del side.outbound[:sent]
