"""The node API against a real kubeling CRI server and busybox containers (root):
/containerLogs (tail, follow until the container exits), /exec through the streaming
proxy with a WebSocket client over TLS, and /stats/summary and /metrics/cadvisor
showing the container's memory. The CRI server: conftest.py's `cri` fixture; the
pods() source is a hand-written pod matching the labels the CRI objects carry."""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cri.api import api_pb2
from cri.streaming.websocket import WebSocket
from kubelet.config import KubeletConfig
from kubelet.cri_client import CriClient
from kubelet.server import NodeServer
from kubelet.server.proxy import pipe
from tests.integration.cri.support import NEEDS_CRI, Cri, wait_for
from tests.unit.cri.streaming import clients
from tests.unit.kubelet.server.certs import Identity, make_ca, make_client

pytestmark = NEEDS_CRI

NAMESPACE = "default"
POD = "web"
UID = "uid-node-server"


def labels(container: str = "") -> dict[str, str]:
    found = {
        "io.kubernetes.pod.name": POD,
        "io.kubernetes.pod.namespace": NAMESPACE,
        "io.kubernetes.pod.uid": UID,
    }
    if container:
        found["io.kubernetes.container.name"] = container
    return found


def manifest() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": POD, "namespace": NAMESPACE, "uid": UID},
        "spec": {
            "containers": [
                {"name": "main", "image": "busybox"},
                {"name": "ticker", "image": "busybox"},
            ]
        },
        "status": {"phase": "Running"},
    }


@dataclass
class Node:
    cri: Cri
    server: NodeServer
    client: Identity
    sandbox_config: api_pb2.PodSandboxConfig
    sandbox_id: str

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(
            cafile=str(self.server.config.root_dir / "pki" / "kubelet.crt")
        )
        context.load_cert_chain(self.client.cert, self.client.key)
        return context

    def get(self, path: str) -> tuple[int, bytes]:
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.server.port, context=self.context(), timeout=30
        )
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def start(self, name: str, command: list[str]) -> str:
        config = api_pb2.ContainerConfig(
            metadata={"name": name},
            image={"image": self.cri.image},
            command=command,
            log_path=f"{name}/0.log",
            labels=labels(name),
        )
        request = api_pb2.CreateContainerRequest(
            pod_sandbox_id=self.sandbox_id, config=config, sandbox_config=self.sandbox_config
        )
        container_id = str(self.cri.runtime.CreateContainer(request).container_id)
        self.cri.start_container(container_id)
        return container_id


@pytest.fixture
def node(cri: Cri, tmp_path: Path) -> Iterator[Node]:
    certs = tmp_path / "certs"
    certs.mkdir()
    ca_file, ca_key, ca_cert = make_ca(certs, "cluster-ca")
    client = make_client(certs, ca_key, ca_cert, "kube-apiserver-kubelet-client")
    sandbox_config = api_pb2.PodSandboxConfig(
        metadata={"name": POD, "namespace": NAMESPACE, "uid": UID},
        hostname=POD,
        log_directory=str(cri.logs / POD),
        linux={"cgroup_parent": f"{cri.cgroup_parent}/kubepods/besteffort/pod{UID}"},
        labels=labels(),
    )
    sandbox_id = str(
        cri.runtime.RunPodSandbox(
            api_pb2.RunPodSandboxRequest(config=sandbox_config)
        ).pod_sandbox_id
    )
    config = KubeletConfig(
        kubeconfig="",
        node_name="node-server-test",
        root_dir=tmp_path / "kubelet",
        container_runtime_endpoint=f"unix://{cri.socket}",
        address="127.0.0.1",
        port=0,
        node_ip="127.0.0.1",
        client_ca_file=ca_file,
        cgroup_root=cri.cgroup_parent,
    )
    cri_client = CriClient(config.container_runtime_endpoint, timeout=30)
    server = NodeServer(config, cri_client, lambda: [manifest()])
    server.start()
    try:
        yield Node(cri, server, client, sandbox_config, sandbox_id)
    finally:
        server.stop()
        cri_client.close()


def test_container_logs(node: Node) -> None:
    started = time.monotonic()
    node.start(
        "main", ["sh", "-c", "for i in 1 2 3; do echo line $i; done; echo oops >&2; exec sleep 600"]
    )
    wait_for(
        lambda: node.get("/containerLogs/default/web/main")[1].count(b"\n") == 4,
        "the container's output in its log",
    )
    assert node.get("/containerLogs/default/web/main") == (200, b"line 1\nline 2\nline 3\noops\n")
    assert node.get("/containerLogs/default/web/main?tailLines=2") == (200, b"line 3\noops\n")
    status, body = node.get("/containerLogs/default/web/main?tailLines=1&timestamps=true")
    assert status == 200 and body.endswith(b"Z oops\n") and body[:4].isdigit()

    # follow: lines as they come, and the end of the response when the container exits.
    node.start("ticker", ["sh", "-c", "for i in 1 2 3 4 5; do echo tick $i; sleep 0.3; done"])
    status, body = node.get("/containerLogs/default/web/ticker?follow=true")
    assert status == 200
    assert body == b"".join(f"tick {i}\n".encode() for i in range(1, 6))
    assert time.monotonic() - started < 30


def websocket_exec(node: Node, query: str) -> tuple[bytes, bytes, dict[str, Any]]:
    """An exec over WebSocket (v5.channel.k8s.io) through the node API, as client-go's
    WebSocket executor sends it; (stdout, stderr, status)."""
    raw = socket.create_connection(("127.0.0.1", node.server.port), timeout=30)
    tls = node.context().wrap_socket(raw, server_hostname="127.0.0.1")
    key = base64.b64encode(os.urandom(16)).decode()
    tls.sendall(
        f"GET /exec/default/web/main?{query} HTTP/1.1\r\nHost: node\r\n"
        "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = tls.recv(4096)
        assert chunk, head
        head += chunk
    head, _, leftover = head.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    assert b"v5.channel.k8s.io" in head
    pending = [leftover]

    def recv(size: int) -> bytes:
        if pending and pending[0]:
            data, pending[0] = pending[0][:size], pending[0][size:]
            return data
        return tls.recv(size)

    ws = WebSocket(recv, tls.sendall, tls.close, client=True)
    ws.send_binary(b"\x00from stdin\n")
    ws.send_binary(b"\xff\x00")  # v5: stdin has ended
    out, err, error = bytearray(), bytearray(), bytearray()
    while (message := ws.receive()) is not None:
        payload = message[1]
        if payload:
            {1: out, 2: err, 3: error}.get(payload[0], bytearray()).extend(payload[1:])
    ws.close()
    return bytes(out), bytes(err), json.loads(error)


def test_exec_through_the_proxy(node: Node) -> None:
    node.start("main", ["sleep", "600"])
    query = (
        "command=sh&command=-c&command=cat%3B%20echo%20out%3B%20echo%20err%20%3E%262%3B"
        "%20exit%203&stdin=true&stdout=true&stderr=true"
    )
    stdout, stderr, status = websocket_exec(node, query)
    assert stdout == b"from stdin\nout\n"
    assert stderr == b"err\n"
    assert status["status"] == "Failure" and status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"][0]["message"] == "3"


class TlsBridge:
    """A plain-TCP listener whose connections are piped (kubelet.server.proxy.pipe) to
    the node API over TLS with the client certificate: lets the plain-socket
    streaming clients of the CRI tests speak to the node API."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                plain, _ = self.listener.accept()
            except OSError:
                return  # closed
            raw = socket.create_connection(("127.0.0.1", self.node.server.port), timeout=30)
            tls = self.node.context().wrap_socket(raw, server_hostname="127.0.0.1")
            threading.Thread(target=self._pipe, args=(plain, tls), daemon=True).start()

    def _pipe(self, plain: socket.socket, tls: ssl.SSLSocket) -> None:
        with plain, tls:
            pipe(plain, tls)

    def close(self) -> None:
        self.listener.close()


@pytest.mark.parametrize("tunnel", [False, True])
def test_port_forward_through_the_proxy(node: Node, tunnel: bool) -> None:
    serve = "mkdir -p /www && echo hello-pf > /www/index.html && exec httpd -f -p 8080 -h /www"
    node.start("main", ["sh", "-c", serve])
    bridge = TlsBridge(node)
    try:
        url = f"{bridge.base_url}/portForward/{NAMESPACE}/{POD}"

        def fetched() -> bytes:
            session = clients.port_forward_session(url, tunnel=tunnel)
            try:
                request = b"GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n"
                received, error = clients.forward_once(session, 8080, 0, request)
            finally:
                session.close()
            return received if not error else b""

        received = wait_for(fetched, "httpd to answer through the port forward")
        assert received.startswith(b"HTTP/1.") and received.endswith(b"hello-pf\n")
    finally:
        bridge.close()


def test_stats_show_the_container(node: Node) -> None:
    container_id = node.start("main", ["sh", "-c", "exec sleep 600"])
    node.start("ticker", ["sh", "-c", "while :; do :; done"])  # busy: a CPU rate to see

    def main_stats() -> dict[str, Any] | None:
        status, body = node.get("/stats/summary")
        assert status == 200
        pods = [p for p in json.loads(body)["pods"] if p["podRef"]["uid"] == UID]
        containers = [c for p in pods for c in p["containers"] if c["name"] == "main"]
        return containers[0] if containers else None

    main = wait_for(main_stats, "the container in the summary")

    def busy_rate() -> int:
        _, body = node.get("/stats/summary")
        (pod,) = [p for p in json.loads(body)["pods"] if p["podRef"]["uid"] == UID]
        ticker = [c for c in pod["containers"] if c["name"] == "ticker"]
        return int(ticker[0]["cpu"].get("usageNanoCores", 0)) if ticker else 0

    # Two samples at least a second apart give a rate; the busy loop takes most of a core.
    assert wait_for(lambda: busy_rate() > 200_000_000, "the busy container's CPU rate")
    assert main["memory"]["workingSetBytes"] > 0
    assert main["cpu"]["usageCoreNanoSeconds"] > 0
    assert main["rootfs"]["capacityBytes"] > 0
    status, body = node.get("/stats/summary")
    summary = json.loads(body)
    assert summary["node"]["memory"]["workingSetBytes"] > 0
    (pod,) = [p for p in summary["pods"] if p["podRef"]["uid"] == UID]
    assert pod["podRef"] == {"name": POD, "namespace": NAMESPACE, "uid": UID}
    assert pod["memory"]["workingSetBytes"] > 0
    assert pod["network"]["name"] == "eth0"
    assert "pods" in [c["name"] for c in summary["node"]["systemContainers"]]

    status, body = node.get("/metrics/cadvisor")
    assert status == 200
    series = [
        line
        for line in body.decode().splitlines()
        if line.startswith("container_memory_working_set_bytes{")
        and f'name="{container_id}"' in line
    ]
    assert len(series) == 1, body.decode()[:2000]
    assert 'container="main"' in series[0] and f'pod="{POD}"' in series[0]
    assert int(series[0].split()[1]) > 0
    received = [
        line
        for line in body.decode().splitlines()
        if line.startswith("container_network_receive_bytes_total{") and f'pod="{POD}"' in line
    ]
    assert (
        len(received) == 1 and 'interface="eth0"' in received[0] and 'container=""' in received[0]
    )
    status, body = node.get("/metrics/resource")
    assert status == 200
    assert (
        f'container_memory_working_set_bytes{{container="main",namespace="{NAMESPACE}",'
        f'pod="{POD}"}}' in body.decode()
    )
