"""The streaming server: the HTTP endpoint behind the URLs that the Exec, Attach
and PortForward RPCs answer, as the kubelet's CRI streaming server does it.

The RPC registers what to do (a runner for exec/attach, a connect function for
port-forward) and gets a URL with a one-time token: `http://<address>/exec/<token>`,
`/attach/<token>` or `/portforward/<token>`. A token is consumed by the first
request that presents it and expires after `TOKEN_TTL` seconds unused; at most
`MAX_IN_FLIGHT` wait at once (kubelet's figures).

A request must be an upgrade, to `SPDY/3.1` (client-go's SPDY executor and
port-forward dialer, crictl by default) or to `websocket` (client-go's WebSocket
executor with channel protocols v5/v4/v1, and port-forward tunnelled as
`SPDY/3.1+portforward.k8s.io`). Each connection is served on a thread of its own;
the server itself never blocks the gRPC server.
"""

from __future__ import annotations

import http.server
import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cri.streaming import portforward, remotecommand, websocket
from cri.streaming.channels import spdy_channels, websocket_channels
from cri.streaming.remotecommand import Runner, StreamOptions
from cri.streaming.spdy import UPGRADE as SPDY_UPGRADE
from cri.streaming.spdy import Session, Stream

log = logging.getLogger(__name__)

TOKEN_TTL = 60.0
MAX_IN_FLIGHT = 1000
# After the session's end is sent, how long the client gets to close its side.
CLOSE_WAIT_SECONDS = 5.0

DEFAULT_ADDRESS = "127.0.0.1:0"


class TooManyRequests(Exception):
    """More than MAX_IN_FLIGHT streaming requests wait for their client."""


@dataclass(frozen=True)
class CommandRequest:
    kind: str  # "exec" or "attach"
    options: StreamOptions
    runner: Runner
    command: str  # how errors name it: the argv for an exec, the container for an attach

    @property
    def console(self) -> bool:
        """An exec with a terminal gets it through a console socket; an attach to a
        container with a terminal is served through pipes by the supervisor."""
        return self.kind == "exec" and self.options.tty


@dataclass(frozen=True)
class PortForwardRequest:
    connect: portforward.Connect
    what: str  # the sandbox, in errors


Request = CommandRequest | PortForwardRequest


@dataclass
class _Cache:
    entries: dict[str, tuple[float, Request]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, request: Request, now: float) -> str:
        with self.lock:
            for token in [t for t, (expiry, _) in self.entries.items() if expiry <= now]:
                del self.entries[token]
            if len(self.entries) >= MAX_IN_FLIGHT:
                raise TooManyRequests("maximum number of in-flight streaming requests exceeded")
            token = secrets.token_urlsafe(8)
            self.entries[token] = (now + TOKEN_TTL, request)
            return token

    def consume(self, token: str, now: float) -> Request | None:
        with self.lock:
            entry = self.entries.pop(token, None)
        if entry is None or entry[0] <= now:
            return None
        return entry[1]


def parse_address(address: str) -> tuple[str, int]:
    """host:port ([v6]:port); ValueError if malformed."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"streaming address {address!r}: expected host:port")
    return host.strip("[]") or "127.0.0.1", int(port)


class StreamingServer:
    def __init__(
        self, address: str = DEFAULT_ADDRESS, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        host, port = parse_address(address)
        self._cache = _Cache()
        self._clock = clock
        handler = type("Handler", (_Handler,), {"streaming": self})
        server_class = _Server6 if ":" in host else _Server
        self._http = server_class((host, port), handler)
        bound_host, bound_port = str(self._http.server_address[0]), self._http.server_address[1]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.base_url = f"http://{shown}:{bound_port}"
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._http.serve_forever, name="kubeling-streaming", daemon=True
        )
        self._thread.start()
        log.info("streaming server on %s", self.base_url)

    def stop(self) -> None:
        if self._thread is not None:
            self._http.shutdown()
            self._thread.join()
        self._http.server_close()

    def exec_url(self, options: StreamOptions, runner: Runner, command: str) -> str:
        return self._url("exec", CommandRequest("exec", options, runner, command))

    def attach_url(self, options: StreamOptions, runner: Runner, container: str) -> str:
        return self._url("attach", CommandRequest("attach", options, runner, container))

    def port_forward_url(self, connect: portforward.Connect, what: str) -> str:
        return self._url("portforward", PortForwardRequest(connect, what))

    def _url(self, kind: str, request: Request) -> str:
        return f"{self.base_url}/{kind}/{self._cache.add(request, self._clock())}"

    def consume(self, kind: str, token: str) -> Request | None:
        request = self._cache.consume(token, self._clock())
        if request is None:
            return None
        matches = isinstance(request, PortForwardRequest) == (kind == "portforward")
        if isinstance(request, CommandRequest):
            matches = matches and request.kind == kind
        return request if matches else None


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _SocketTransport:
    """The upgraded connection: reads through the request's buffered reader (which
    may hold bytes already), writes to the socket."""

    def __init__(self, handler: _Handler) -> None:
        self._rfile = handler.rfile
        self._sock: socket.socket = handler.connection

    def recv(self, size: int) -> bytes:
        return self._rfile.read1(size)

    def sendall(self, data: bytes) -> None:
        self._sock.sendall(data)

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Handler(http.server.BaseHTTPRequestHandler):
    streaming: StreamingServer
    protocol_version = "HTTP/1.1"
    server_version = "kubeling-streaming"

    def setup(self) -> None:
        # Headers and body go out in separate writes: with Nagle's algorithm the
        # second waits for the client's delayed ACK (40 ms a request on loopback).
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("streaming %s: " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _fail(self, code: int, message: str, headers: dict[str, str] | None = None) -> None:
        body = (message + "\n").encode()
        self.send_response(code)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def _switch(self, headers: dict[str, str]) -> None:
        self.send_response_only(101, "Switching Protocols")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True

    def _serve(self) -> None:
        parts = self.path.split("?", 1)[0].strip("/").split("/")
        if len(parts) != 2 or parts[0] not in ("exec", "attach", "portforward"):
            self._fail(404, f"{self.path}: not found")
            return
        kind, token = parts
        request = self.streaming.consume(kind, token)
        if request is None:
            self._fail(404, f"{kind} request {token!r}: not found or expired")
            return
        upgrade = self.headers.get("Upgrade", "").lower()
        connection = self.headers.get("Connection", "").lower()
        if "upgrade" not in connection or upgrade not in (SPDY_UPGRADE.lower(), "websocket"):
            self._fail(400, "unable to upgrade: missing upgrade headers in request")
            return
        if isinstance(request, PortForwardRequest):
            if upgrade == "websocket":
                self._port_forward_websocket(request)
            else:
                self._port_forward_spdy(request)
        elif upgrade == "websocket":
            self._command_websocket(request)
        else:
            self._command_spdy(request)

    # -- exec and attach ------------------------------------------------------------

    def _offered(self, header: str) -> list[str]:
        return [
            p.strip()
            for value in self.headers.get_all(header, [])
            for p in value.split(",")
            if p.strip()
        ]

    def _command_spdy(self, request: CommandRequest) -> None:
        offered = self._offered("X-Stream-Protocol-Version")
        protocol = next((p for p in offered if p in remotecommand.PROTOCOLS), None)
        if offered and protocol is None:
            self._fail(
                403,
                f"unable to upgrade: unable to negotiate protocol: client supports {offered}, "
                f"server accepts {remotecommand.PROTOCOLS}",
                {"X-Accepted-Stream-Protocol-Versions": ", ".join(remotecommand.PROTOCOLS)},
            )
            return
        protocol = protocol or remotecommand.V1
        headers = {"Connection": "Upgrade", "Upgrade": SPDY_UPGRADE}
        if offered:
            headers["X-Stream-Protocol-Version"] = protocol
        self._switch(headers)
        expected = request.options.expected_streams(protocol)
        streams: dict[str, Stream] = {}
        arrived = threading.Condition()

        def on_stream(stream: Stream) -> None:
            kind = stream.headers.get("streamtype", "")
            with arrived:
                if kind not in expected or kind in streams:
                    stream.reset()
                    return
                streams[kind] = stream
                arrived.notify_all()

        session = Session(_SocketTransport(self), server=True, on_stream=on_stream)
        reader = threading.Thread(target=session.serve, name="kubeling-spdy", daemon=True)
        reader.start()
        with arrived:
            complete = arrived.wait_for(
                lambda: set(streams) == expected or session.closed.is_set(),
                remotecommand.STREAM_WAIT_SECONDS,
            )
        if not complete or session.closed.is_set():
            log.info("%s: the client did not open its streams", request.kind)
            session.close()
            return
        channels = spdy_channels(streams, lambda _message: None)
        remotecommand.run_process(
            channels, request.runner, console=request.console, protocol=protocol,
            command=request.command,
        )  # fmt: skip
        reader.join(CLOSE_WAIT_SECONDS)
        session.close()

    def _websocket_handshake(self, supported: list[str]) -> str | None:
        """Answer the opening handshake; the chosen subprotocol ("" if the client
        offered none), or None after refusing."""
        key = self.headers.get("Sec-WebSocket-Key", "")
        if not key or self.headers.get("Sec-WebSocket-Version", "") != "13":
            self._fail(400, "websocket: Sec-WebSocket-Key and version 13 required")
            return None
        offered = ", ".join(self._offered("Sec-WebSocket-Protocol"))
        protocol = websocket.choose_protocol(offered, supported) if offered else ""
        if protocol is None:
            self._fail(400, f"websocket: none of the protocols {offered!r} is supported")
            return None
        headers = {
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Accept": websocket.accept_key(key),
        }
        if protocol:
            headers["Sec-WebSocket-Protocol"] = protocol
        self._switch(headers)
        return protocol

    def _websocket(self) -> websocket.WebSocket:
        transport = _SocketTransport(self)
        return websocket.WebSocket(transport.recv, transport.sendall, transport.close)

    def _command_websocket(self, request: CommandRequest) -> None:
        protocol = self._websocket_handshake(remotecommand.PROTOCOLS)
        if protocol is None:
            return
        protocol = protocol or remotecommand.V1
        ws = self._websocket()
        options = request.options
        channels, read_loop = websocket_channels(
            ws, stdin=options.stdin, stdout=options.stdout,
            stderr=options.stderr and not options.tty, finish=lambda _message: None,
        )  # fmt: skip
        reader = threading.Thread(target=read_loop, name="kubeling-websocket", daemon=True)
        reader.start()
        remotecommand.run_process(
            channels, request.runner, console=request.console, protocol=protocol,
            command=request.command,
        )  # fmt: skip
        ws.send_close()
        reader.join(CLOSE_WAIT_SECONDS)
        ws.close()

    # -- port forward ---------------------------------------------------------------

    def _port_forward_spdy(self, request: PortForwardRequest) -> None:
        offered = self._offered("X-Stream-Protocol-Version")
        if portforward.PROTOCOL not in offered:
            self._fail(
                403,
                f"unable to upgrade: unable to negotiate protocol: client supports {offered}, "
                f"server accepts {[portforward.PROTOCOL]}",
                {"X-Accepted-Stream-Protocol-Versions": portforward.PROTOCOL},
            )
            return
        self._switch(
            {
                "Connection": "Upgrade",
                "Upgrade": SPDY_UPGRADE,
                "X-Stream-Protocol-Version": portforward.PROTOCOL,
            }
        )
        forwarder = portforward.PortForwarder(request.connect, what=request.what)
        Session(_SocketTransport(self), server=True, on_stream=forwarder.on_stream).serve()

    def _port_forward_websocket(self, request: PortForwardRequest) -> None:
        if self._websocket_handshake([portforward.TUNNEL_PROTOCOL]) is None:
            return
        transport = websocket.WebSocketTransport(self._websocket())
        forwarder = portforward.PortForwarder(request.connect, what=request.what)
        Session(transport, server=True, on_stream=forwarder.on_stream).serve()
