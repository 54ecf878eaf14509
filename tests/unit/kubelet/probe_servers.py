"""Fakes and local servers for the probe and lifecycle-hook tests: a CRI runtime whose
ExecSync answers from a script, an event recorder that keeps what it is given, and
an HTTP(S) server on a free 127.0.0.1 port whose routes a test sets."""

from __future__ import annotations

import datetime
import http.server
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cri.api import api_pb2

ExecScript = Callable[[list[str]], "api_pb2.ExecSyncResponse | BaseException"]


class Changes:
    """A ProbeManager's on_change: its calls, countable from the test thread."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, pod_uid: str) -> None:
        with self.lock:
            self.calls.append(pod_uid)

    def count(self) -> int:
        with self.lock:
            return len(self.calls)


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self._code = code
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def exited(code: int, stdout: bytes = b"", stderr: bytes = b"") -> api_pb2.ExecSyncResponse:
    return api_pb2.ExecSyncResponse(exit_code=code, stdout=stdout, stderr=stderr)


class FakeRuntime:
    """ExecSync answers `script(cmd)`: a response, or an exception it raises. Every
    request is kept, with the gRPC deadline it came with, and the time it came."""

    def __init__(self, script: ExecScript | None = None) -> None:
        self.script: ExecScript = script or (lambda cmd: exited(0))
        self.requests: list[tuple[float, api_pb2.ExecSyncRequest, float | None]] = []
        self._lock = threading.Lock()

    def ExecSync(  # the CRI's method name
        self, request: api_pb2.ExecSyncRequest, timeout: float | None = None
    ) -> api_pb2.ExecSyncResponse:
        with self._lock:
            self.requests.append((time.monotonic(), request, timeout))
        answer = self.script(list(request.cmd))
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def commands(self) -> list[list[str]]:
        with self._lock:
            return [list(request.cmd) for _, request, _ in self.requests]


@dataclass
class RecordedEvent:
    obj: dict[str, Any]
    event_type: str
    reason: str
    message: str
    field_path: str


@dataclass
class RecordingEvents:
    events: list[RecordedEvent] = field(default_factory=list)

    def record(
        self, obj: dict[str, Any], event_type: str, reason: str, message: str,
        *, field_path: str = "",
    ) -> None:  # fmt: skip
        self.events.append(RecordedEvent(obj, event_type, reason, message, field_path))

    def reasons(self) -> list[tuple[str, str]]:
        return [(event.reason, event.message) for event in list(self.events)]


@dataclass
class Route:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class SeenRequest:
    path: str
    headers: dict[str, str]


class HttpServer:
    """A threading HTTP server on 127.0.0.1:<free port>. `routes[path]` answers GET
    `path`; anything else is 404. `seen` lists the requests (path, headers)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Route] = {}
        self.seen: list[SeenRequest] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the stdlib's method name
                owner.seen.append(SeenRequest(self.path, dict(self.headers.items())))
                route = owner.routes.get(self.path, Route(404, b"not found"))
                if route.delay:
                    time.sleep(route.delay)
                self.send_response(route.status)
                for name, value in route.headers.items():
                    self.send_header(name, value.replace("{port}", str(owner.port)))
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                try:
                    self.wfile.write(route.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client read only what it needed

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> HttpServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def self_signed_tls(directory: Path) -> ssl.SSLContext:
    """A server TLS context with a throwaway self-signed certificate for localhost."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "tls.crt", directory / "tls.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context


@contextmanager
def closed_port() -> Iterator[int]:
    """A 127.0.0.1 port nothing listens on (bound, never listening, while in use)."""
    import socket

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    try:
        yield int(holder.getsockname()[1])
    finally:
        holder.close()


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)
