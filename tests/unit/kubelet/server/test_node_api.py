"""The node API over real HTTPS on loopback, against a fake CRI: TLS and client
certificates (made here), routes and errors, logs, stats, and the streaming proxy to
a fake streaming server."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cri.api import api_pb2
from kubelet.config import KubeletConfig
from kubelet.server import NodeServer
from kubelet.server.tls import self_signed
from tests.unit.kubelet.server.certs import Identity, make_ca, make_client
from tests.unit.kubelet.stats.fakes import CONTAINER, FakeCri, pod, write
from tests.unit.kubelet.stats.test_stats import collector


@dataclass
class Running:
    server: NodeServer
    cri: FakeCri
    client: Identity
    stranger: Identity
    pods: list[dict[str, Any]]

    def context(self, identity: Identity | None) -> ssl.SSLContext:
        context = ssl.create_default_context(
            cafile=str(self.server.config.root_dir / "pki" / "kubelet.crt")
        )
        if identity is not None:
            context.load_cert_chain(identity.cert, identity.key)
        return context

    def get(
        self, path: str, identity: Identity | None = None, method: str = "GET"
    ) -> tuple[int, bytes, dict[str, str]]:
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.server.port, context=self.context(identity), timeout=10
        )
        try:
            connection.request(method, path)
            response = connection.getresponse()
            return response.status, response.read(), dict(response.getheaders())
        finally:
            connection.close()

    def authorized(self, path: str) -> tuple[int, bytes, dict[str, str]]:
        return self.get(path, self.client)


def make_server(tmp_path: Path, *, client_ca: bool = True) -> Iterator[Running]:
    stats, cri, _ = collector(tmp_path)
    certs = tmp_path / "certs"
    certs.mkdir()
    ca_file, ca_key, ca_cert = make_ca(certs, "cluster-ca")
    _, other_key, other_cert = make_ca(certs, "other-ca")
    pods = [pod()]
    config = KubeletConfig(
        kubeconfig="", node_name="node-1", root_dir=tmp_path / "root", address="127.0.0.1",
        port=0, node_ip="127.0.0.1", client_ca_file=ca_file if client_ca else None,
    )  # fmt: skip
    server = NodeServer(config, cri, lambda: pods, stats=stats)
    server.start()
    try:
        yield Running(
            server, cri, make_client(certs, ca_key, ca_cert, "kube-apiserver-kubelet-client"),
            make_client(certs, other_key, other_cert, "stranger"), pods,
        )  # fmt: skip
    finally:
        server.stop()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    yield from make_server(tmp_path)


def test_serving_certificate_names_the_node_and_is_kept(tmp_path: Path) -> None:
    cert_file, key_file = self_signed(tmp_path / "pki", "node-1", "10.1.2.3")
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == {"node-1", "localhost"}
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {
        "10.1.2.3",
        "127.0.0.1",
    }
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert self_signed(tmp_path / "pki", "node-1", "10.1.2.3") == (cert_file, key_file)
    assert cert_file.read_bytes() == cert.public_bytes(serialization.Encoding.PEM)  # not remade
    self_signed(tmp_path / "pki", "node-2", "10.1.2.3")  # another name: made again
    assert cert_file.read_bytes() != cert.public_bytes(serialization.Encoding.PEM)


def test_authentication(running: Running) -> None:
    assert running.get("/healthz")[:2] == (200, b"ok\n")  # anonymous
    assert running.get("/pods")[:2] == (401, b"Unauthorized\n")
    assert running.get("/stats/summary")[0] == 401
    assert running.get("/no/such/path")[0] == 401  # nothing is revealed anonymously
    status, body, _ = running.authorized("/pods")
    assert status == 200
    listed = json.loads(body)
    assert listed["kind"] == "PodList" and listed["items"] == running.pods
    # A certificate another CA signed does not get through the handshake.
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        running.get("/pods", running.stranger)


def test_without_a_client_ca_everything_but_healthz_is_unauthorized(tmp_path: Path) -> None:
    for served in make_server(tmp_path, client_ca=False):
        assert served.get("/healthz")[0] == 200
        assert served.get("/pods", served.client)[:2] == (401, b"Unauthorized\n")


def test_unknown_paths_and_methods(running: Running) -> None:
    for path in ("/nothing", "/stats", "/containerLogs/default/web", "/metrics/other", "/exec/x"):
        assert running.authorized(path)[:2] == (404, b"404 page not found\n"), path
    assert running.get("/pods", running.client, method="POST")[0] == 405


def test_container_logs(running: Running, tmp_path: Path) -> None:
    write(tmp_path / "logs" / "main" / "1.log",
          "2023-11-14T22:15:00Z stdout F hello\n2023-11-14T22:15:01Z stderr F world\n")  # fmt: skip
    write(tmp_path / "logs" / "main" / "0.log", "2023-11-14T22:14:00Z stdout F before\n")
    running.cri.runtime.state[CONTAINER] = api_pb2.CONTAINER_EXITED  # follow ends at EOF
    assert running.authorized("/containerLogs/default/web/main")[:2] == (200, b"hello\nworld\n")
    status, body, _ = running.authorized(
        "/containerLogs/default/web/main?tailLines=1&timestamps=true&follow=true"
    )
    assert (status, body) == (200, b"2023-11-14T22:15:01.000000000Z world\n")
    assert running.authorized("/containerLogs/default/web/main?previous=true")[1] == b"before\n"
    assert running.authorized("/containerLogs/default/web/main?limitBytes=3")[1] == b"hel"
    status, body, _ = running.authorized("/containerLogs/default/web/main?tailLines=-2")
    assert status == 400 and b"tailLines" in body
    assert running.authorized("/containerLogs/default/nope/main")[:2] == (
        404, b'pod "nope" does not exist\n',
    )  # fmt: skip
    assert running.authorized("/containerLogs/default/web/other")[:2] == (
        404, b'container "other" not found in pod "web"\n',
    )  # fmt: skip
    running.pods[0]["status"]["containerStatuses"] = [
        {"name": "main", "state": {"waiting": {"reason": "ContainerCreating"}}}
    ]
    assert running.authorized("/containerLogs/default/web/main")[:2] == (
        400, b'container "main" in pod "web" is waiting to start: ContainerCreating\n',
    )  # fmt: skip
    running.pods[0]["status"]["containerStatuses"] = [
        {"name": "main", "state": {"running": {}}, "containerID": f"kubeling://{CONTAINER}"}
    ]
    assert running.authorized("/containerLogs/default/web/main?previous=true")[:2] == (
        400, b'previous terminated container "main" in pod "web" not found\n',
    )  # fmt: skip
    assert running.authorized("/containerLogs/default/web/main")[1] == b"hello\nworld\n"


def test_a_follow_ends_when_the_client_goes_away(
    running: Running, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("kubelet.server.logs.STATE_CHECK_SECONDS", 0.05)
    write(tmp_path / "logs" / "main" / "1.log", "2023-11-14T22:15:00Z stdout F hello\n")
    raw = socket.create_connection(("127.0.0.1", running.server.port), timeout=10)
    tls = running.context(running.client).wrap_socket(raw, server_hostname="127.0.0.1")
    tls.sendall(b"GET /containerLogs/default/web/main?follow=true HTTP/1.1\r\nHost: n\r\n\r\n")
    received = b""
    while b"hello" not in received:
        received += tls.recv(4096)
    assert b"Transfer-Encoding: chunked" in received
    tls.close()
    runtime = running.cri.runtime

    def settled() -> bool:
        before = runtime.status_calls
        time.sleep(0.3)
        return runtime.status_calls == before

    deadline = time.monotonic() + 5
    while not settled():  # the follow polls the container's state while the client is there
        assert time.monotonic() < deadline, "the follow went on after the client left"


def test_stats_and_metrics(running: Running) -> None:
    status, body, headers = running.authorized("/stats/summary")
    assert status == 200 and headers["Content-Type"] == "application/json"
    result = json.loads(body)
    assert result["node"]["nodeName"] == "node-1"
    assert result["pods"][0]["containers"][0]["memory"]["workingSetBytes"] == 3000
    status, body, headers = running.authorized("/metrics/cadvisor")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert b'container_memory_working_set_bytes{container="main"' in body
    status, body, _ = running.authorized("/metrics/resource")
    assert b"\nresource_scrape_error 0\n" in body
    status, body, _ = running.authorized("/metrics")
    assert b'kubelet_http_requests_total{long_running="false",method="GET",path="metrics"' in body
    assert b"\nkubelet_running_pods 1\n" in body


class FakeStreaming:
    """A streaming server: answers an upgrade with 101, then echoes bytes upper-cased
    until the client's end."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/exec/token123"
        self.request = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        connection, _ = self.listener.accept()
        with connection:
            while b"\r\n\r\n" not in self.request:
                self.request += connection.recv(4096)
            connection.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                               b"Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io"
                               b"\r\n\r\n")  # fmt: skip
            while data := connection.recv(4096):
                connection.sendall(data.upper())

    def close(self) -> None:
        self.listener.close()
        self.thread.join(10)


def upgrade(running: Running, path: str) -> tuple[ssl.SSLSocket, bytes]:
    raw = socket.create_connection(("127.0.0.1", running.server.port), timeout=10)
    tls = running.context(running.client).wrap_socket(raw, server_hostname="127.0.0.1")
    tls.sendall(f"POST {path} HTTP/1.1\r\nHost: node\r\nConnection: Upgrade\r\n"
                "Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n"
                "X-Stream-Protocol-Version: v3.channel.k8s.io\r\n\r\n".encode())  # fmt: skip
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = tls.recv(4096)
        assert chunk, head
        head += chunk
    return tls, head


def test_exec_is_proxied_to_the_streaming_url(running: Running) -> None:
    upstream = FakeStreaming()
    running.cri.runtime.exec_url = upstream.url
    try:
        tls, head = upgrade(running, "/exec/default/web/main?command=sh&command=-c&command=echo"
                                     "&stdin=true&stdout=true&stderr=true&tty=true")  # fmt: skip
        with tls:
            assert head.startswith(b"HTTP/1.1 101 ")
            assert b"X-Stream-Protocol-Version: v4.channel.k8s.io" in head
            tls.sendall(b"hello through the proxy")
            echoed = b""
            while len(echoed) < len(b"hello through the proxy"):
                echoed += tls.recv(4096)
            assert echoed == b"HELLO THROUGH THE PROXY"
    finally:
        upstream.close()
    request = upstream.request.decode()
    assert request.startswith("POST /exec/token123 HTTP/1.1\r\n")
    assert "Upgrade: SPDY/3.1" in request
    assert request.count("X-Stream-Protocol-Version:") == 2  # repeated headers stay repeated
    (exec_request,) = running.cri.runtime.requests
    assert list(exec_request.cmd) == ["sh", "-c", "echo"]
    assert exec_request.container_id == CONTAINER
    assert (exec_request.stdin, exec_request.stdout, exec_request.stderr, exec_request.tty) == (
        True, True, False, True,  # a terminal has no separate stderr
    )  # fmt: skip


def test_attach_and_port_forward_ask_the_runtime(running: Running) -> None:
    for path in ("/attach/default/web/main?stdout=1", "/portForward/default/web?port=8080"):
        upstream = FakeStreaming()
        running.cri.runtime.exec_url = upstream.url
        try:
            tls, head = upgrade(running, path)
            tls.close()
            assert head.startswith(b"HTTP/1.1 101 ")
        finally:
            upstream.close()
    attach, forward = running.cri.runtime.requests
    assert attach.container_id == CONTAINER and attach.stdout and not attach.stdin
    assert forward.pod_sandbox_id == "sandbox-1" and list(forward.port) == [8080]


def test_streaming_errors(running: Running) -> None:
    assert running.authorized("/exec/default/web/main?command=true")[:2] == (
        400, b"you must specify at least 1 of stdin, stdout, stderr\n",
    )  # fmt: skip
    assert running.authorized("/exec/default/gone/main?command=true&stdout=1")[0] == 404
    assert running.authorized("/exec/default/web/other?command=true&stdout=1")[:2] == (
        404, b'container not found ("other")\n',
    )  # fmt: skip
    running.cri.runtime.exec_url = "https://127.0.0.1:1/exec/x"
    status, body, _ = running.authorized("/exec/default/web/main?command=true&stdout=1")
    assert status == 502 and b"only http://" in body
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    running.cri.runtime.exec_url = f"http://127.0.0.1:{port}/exec/x"
    status, body, _ = running.authorized("/exec/default/web/main?command=true&stdout=1")
    assert status == 502 and b"connect to the streaming server" in body
