"""The API server's way to the kubelets, end to end: a real `kubeling apiserver`
process, a fake kubelet in the test (HTTPS on 127.0.0.1 with a certificate from the
cluster CA, requiring the API server's client certificate), Node and Pod objects
pointing at it, and the `kubectl` on the machine: logs (also -f), exec, port-forward,
top, the raw node proxy, and a raw upgraded connection through the API server.

The fake answers exec and port-forward upgrades with kubeling's CRI streaming server
(SPDY/WebSocket), running the command as a local process and forwarding to a local
echo server, and answers an `Upgrade: kubeling-echo` with a 101 that echoes bytes."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from control.apiserver import certs
from control.apiserver.kubelet_proxy import splice
from cri.streaming.remotecommand import ProcessIO, StreamOptions
from cri.streaming.server import StreamingServer
from tests.integration.control.support import free_port, stop, wait_for

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl")

KUBELING = str(Path(sys.executable).parent / "kubeling")
LOG_LINES = b"one\ntwo\nthree\n"
CPU_PER_SCRAPE = {"node": 0.25, "web": 0.01}  # seconds of cpu per (synthetic) second
NODE_MEMORY, WEB_MEMORY = 50 * 2**20, 10 * 2**20


@dataclass
class FakeKubelet:
    """What the fake saw, and the switches a test flips."""

    ca: certs.KeyPair
    pki: Path
    stop_following: threading.Event = field(default_factory=threading.Event)
    requests: list[dict[str, Any]] = field(default_factory=list)
    scrapes: int = 0
    started_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    echo_port: int = 0
    port: int = 0
    following: int = 0  # log streams the fake is writing now

    def metrics(self) -> str:
        """/metrics/resource: counters that grow by a fixed amount per scrape, with
        timestamps a second apart, so the rates are exact whenever it is scraped."""
        self.scrapes += 1
        n = self.scrapes
        ts = self.started_ms + n * 1000
        node_cpu, web_cpu = CPU_PER_SCRAPE["node"] * n, CPU_PER_SCRAPE["web"] * n
        labels = 'container="web",namespace="default",pod="web"'
        return (
            "# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time\n"
            "# TYPE node_cpu_usage_seconds_total counter\n"
            f"node_cpu_usage_seconds_total {node_cpu} {ts}\n"
            "# TYPE node_memory_working_set_bytes gauge\n"
            f"node_memory_working_set_bytes {NODE_MEMORY:e} {ts}\n"
            f"container_cpu_usage_seconds_total{{{labels}}} {web_cpu} {ts}\n"
            f"container_memory_working_set_bytes{{{labels}}} {WEB_MEMORY} {ts}\n"
            f"container_start_time_seconds{{{labels}}} 1.7e9 {ts}\n"
            "scrape_error 0\n"
        )


def _handler(fake: FakeKubelet, streaming: StreamingServer) -> type:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _reply(self, code: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _serve(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            subject = dict(x[0] for x in self.connection.getpeercert()["subject"])
            fake.requests.append({
                "method": self.command, "path": url.path, "query": query,
                "user": subject.get("commonName"), "group": subject.get("organizationName"),
                "authorization": self.headers.get("Authorization"),
            })  # fmt: skip
            parts = url.path.strip("/").split("/")
            if url.path == "/metrics/resource":
                self._reply(200, fake.metrics().encode(), "text/plain; version=0.0.4")
            elif url.path == "/stats/summary":
                summary = {"node": {"nodeName": "fake", "cpu": {"usageNanoCores": 7}}, "pods": []}
                self._reply(200, json.dumps(summary).encode(), "application/json")
            elif parts[0] == "containerLogs" and len(parts) == 4:
                self._logs(parts[3], query)
            elif parts[0] in ("exec", "attach", "portForward"):
                self._stream(parts[0], query)
            else:
                self._reply(404, b"404 page not found\n")

        def _logs(self, container: str, query: dict[str, list[str]]) -> None:
            if container != "web":
                self._reply(404, f'container "{container}" not found in pod\n'.encode())
                return
            if query.get("follow") != ["true"]:
                self._reply(200, LOG_LINES)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            number = 0
            fake.following += 1
            try:
                while not fake.stop_following.is_set() and number < 600:
                    number += 1
                    line = f"line {number}\n".encode()
                    self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                    self.wfile.flush()
                    fake.stop_following.wait(0.2)
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                self.close_connection = True  # the API server hung up: the follower left
            finally:
                fake.following -= 1

        def _stream(self, kind: str, query: dict[str, list[str]]) -> None:
            upgrade = self.headers.get("Upgrade", "")
            if upgrade == "kubeling-echo":
                self.send_response_only(101, "Switching Protocols")
                self.send_header("Connection", "Upgrade")
                self.send_header("Upgrade", "kubeling-echo")
                self.end_headers()
                self.wfile.flush()
                self.close_connection = True
                while data := self.connection.recv(65536):
                    self.connection.sendall(data)
                return
            if upgrade.lower() not in ("spdy/3.1", "websocket"):
                self._reply(400, b"Upgrade request required\n")
                return
            if kind == "portForward":
                url = streaming.port_forward_url(
                    lambda port: socket.create_connection(("127.0.0.1", fake.echo_port)), "pod"
                )
            else:
                # An attach joins the container's main process; here it says hello.
                command = query.get("command", []) if kind == "exec" else ["echo", "attached"]
                flags = {k: query.get(k) == ["1"] for k in ("input", "output", "error", "tty")}
                options = StreamOptions(flags["input"], flags["output"], flags["error"],
                                        flags["tty"])  # fmt: skip

                def run(io: ProcessIO) -> int:
                    return subprocess.run(
                        command, stdin=io.stdin if io.stdin >= 0 else subprocess.DEVNULL,
                        stdout=io.stdout if io.stdout >= 0 else subprocess.DEVNULL,
                        stderr=io.stderr if io.stderr >= 0 else subprocess.DEVNULL, check=False,
                    ).returncode  # fmt: skip

                url = (
                    streaming.exec_url(options, run, " ".join(command)) if kind == "exec"
                    else streaming.attach_url(options, run, "web")
                )  # fmt: skip
            # Hand the upgrade to the streaming server, as the kubelet does with the
            # CRI's streaming URL.
            target = urllib.parse.urlsplit(url)
            backend = socket.create_connection((target.hostname, target.port))
            head = [f"{self.command} {target.path} HTTP/1.1", f"Host: {target.netloc}"]
            head += [f"{k}: {v}" for k, v in self.headers.items() if k.lower() != "host"]
            backend.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
            self.close_connection = True
            try:
                splice(self.connection, backend)
            finally:
                backend.close()

    return Handler


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


def _echo_server() -> tuple[socket.socket, threading.Thread]:
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return

            def echo(connection: socket.socket = connection) -> None:
                with connection:
                    while data := connection.recv(65536):
                        connection.sendall(data)

            threading.Thread(target=echo, daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


@dataclass
class Cluster:
    data: Path
    port: int
    token: str
    fake: FakeKubelet
    node: str
    kubectl_env: dict[str, str]

    def kubectl(
        self,
        *args: str,
        check: bool = True,
        stdin: str = "",
        token: str = "",
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        extra = ["--token", token] if token else []
        result = subprocess.run(
            ["kubectl", *extra, *args], capture_output=True, text=True, timeout=60,
            env={**self.kubectl_env, **(env or {})}, input=stdin,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr}")
        return result

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.data / "pki" / "ca.crt"))

    def request(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, Any]:
        connection = socket.create_connection(("127.0.0.1", self.port), timeout=15)
        with self.context().wrap_socket(connection, server_hostname="127.0.0.1") as tls:
            data = json.dumps(body).encode() if body is not None else b""
            auth = f"Authorization: Bearer {self.token if token is None else token}\r\n"
            tls.sendall(
                f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth if token != '' else ''}"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + data
            )
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
        head, _, payload = answer.partition(b"\r\n\r\n")
        code = int(head.split(b" ")[1])
        if b"transfer-encoding: chunked" in head.lower():
            payload = _unchunk(payload)
        try:
            return code, json.loads(payload)
        except ValueError:
            return code, payload


def _unchunk(data: bytes) -> bytes:
    body = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        body, data = body + data[:size], data[size + 2 :]
    return body


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("kubelet-proxy")
    data = tmp / "control"
    data.mkdir(mode=0o700)
    tokens = data / "tokens.csv"
    tokens.write_text('viewer-token,viewer,viewer,""\n')
    policy = tmp / "policy.json"
    policy.write_text(json.dumps({"rules": [
        {"groups": ["system:masters"], "verbs": ["*"], "resources": ["*"]},
        {"users": ["viewer"], "verbs": ["get", "list"], "resources": ["pods", "nodes"]},
    ]}))  # fmt: skip
    port = free_port()
    process = subprocess.Popen(
        [KUBELING, "apiserver", "--data-dir", str(data), "--store", "memory://",
         "--listen", f"127.0.0.1:{port}", "--log-level", "warning", "--token-file", str(tokens),
         "--policy-file", str(policy), "--metric-resolution", "1s", "--kubelet-timeout", "3s"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    streaming = StreamingServer("127.0.0.1:0")
    echo, _ = _echo_server()
    http_server: _Server | None = None
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "serving the API on" in line, line
        pki = data / "pki"
        ca = certs.KeyPair(pki / "ca.crt", pki / "ca.key")
        serving = certs.issue(
            ca, certs.KeyPair(tmp / "kubelet.crt", tmp / "kubelet.key"), common_name="fake-kubelet",
            ip_addresses=("127.0.0.1",), server=True,
        )  # fmt: skip
        fake = FakeKubelet(ca, pki, echo_port=int(echo.getsockname()[1]))
        streaming.start()
        http_server = _Server(("127.0.0.1", 0), _handler(fake, streaming))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(serving.certificate, serving.key)
        context.load_verify_locations(ca.certificate)
        context.verify_mode = ssl.CERT_REQUIRED  # anonymous callers get no further
        http_server.socket = context.wrap_socket(http_server.socket, server_side=True)
        fake.port = int(http_server.server_address[1])
        threading.Thread(target=http_server.serve_forever, daemon=True).start()

        token = next(t.split(",")[0] for t in tokens.read_text().splitlines() if ",admin," in t)
        env = {**os.environ, "KUBECONFIG": str(data / "admin.kubeconfig"),
               "KUBECACHEDIR": str(tmp / "kube-cache")}  # fmt: skip
        running = Cluster(data, port, token, fake, f"fake-{port}", env)
        _create_objects(running)
        yield running
    finally:
        stop(process)
        if process.stdout is not None:
            process.stdout.close()
        if http_server is not None:
            http_server.shutdown()
            http_server.server_close()
        streaming.stop()
        echo.close()


def _create_objects(cluster: Cluster) -> None:
    node: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": cluster.node, "labels": {"kubernetes.io/hostname": cluster.node}},
        "status": {
            "addresses": [{"type": "Hostname", "address": cluster.node},
                          {"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": cluster.fake.port}},
            "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
            "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
        },
    }  # fmt: skip
    code, created = cluster.request("POST", "/api/v1/nodes", node)
    assert code == 201, created
    if created.get("status", {}).get("addresses") != node["status"]["addresses"]:
        created["status"] = node["status"]
        code, updated = cluster.request("PUT", f"/api/v1/nodes/{cluster.node}/status", created)
        assert code == 200, updated
    for name, containers, node_name in (
        ("web", ["web"], cluster.node), ("two", ["a", "b"], cluster.node),
        ("pending", ["web"], ""), ("elsewhere", ["web"], "no-such-node"),
    ):  # fmt: skip
        spec: dict[str, Any] = {"containers": [{"name": c, "image": "busybox"} for c in containers]}
        if node_name:
            spec["nodeName"] = node_name
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels":
               {"app": name}}, "spec": spec}  # fmt: skip
        code, created = cluster.request("POST", "/api/v1/namespaces/default/pods", pod)
        assert code == 201, created
        created["status"] = {"phase": "Running"}
        path = f"/api/v1/namespaces/default/pods/{name}/status"
        assert cluster.request("PUT", path, created)[0] == 200


def test_logs_go_to_the_pods_kubelet_with_the_client_certificate(cluster: Cluster) -> None:
    result = cluster.kubectl("logs", "web", "--tail=2", "--timestamps")
    assert result.stdout.encode() == LOG_LINES
    seen = [r for r in cluster.fake.requests if r["path"] == "/containerLogs/default/web/web"][-1]
    assert seen["query"] == {"tailLines": ["2"], "timestamps": ["true"]}
    assert seen["user"] == "kube-apiserver-kubelet-client"
    assert seen["group"] == "system:masters"
    assert seen["authorization"] is None  # the client's token stays at the API server


def test_logs_follow_sees_each_line_as_it_is_written(cluster: Cluster) -> None:
    cluster.fake.stop_following.clear()
    follower = subprocess.Popen(
        ["kubectl", "logs", "-f", "web"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=cluster.kubectl_env,
    )  # fmt: skip
    try:
        assert follower.stdout is not None
        started = time.monotonic()
        lines = [follower.stdout.readline() for _ in range(3)]
        assert lines == ["line 1\n", "line 2\n", "line 3\n"]
        # Three lines written 0.2 s apart arrive while the stream is still open.
        assert follower.poll() is None
        assert time.monotonic() - started < 10
        cluster.fake.stop_following.set()
        assert follower.wait(15) == 0
    finally:
        cluster.fake.stop_following.set()
        stop(follower)
        for pipe in (follower.stdout, follower.stderr):
            if pipe is not None:
                pipe.close()


def test_a_follower_that_leaves_ends_the_kubelet_stream(cluster: Cluster) -> None:
    cluster.fake.stop_following.clear()
    follower = subprocess.Popen(
        ["kubectl", "logs", "-f", "web"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True, env=cluster.kubectl_env,
    )  # fmt: skip
    try:
        assert follower.stdout is not None
        assert follower.stdout.readline() == "line 1\n"
        assert cluster.fake.following == 1
        stop(follower)
        # The API server notices the client is gone and hangs up on the kubelet.
        wait_for(lambda: cluster.fake.following == 0, timeout=10)
    finally:
        cluster.fake.stop_following.set()
        stop(follower)
        if follower.stdout is not None:
            follower.stdout.close()


def test_log_errors_answer_as_kubernetes_does(cluster: Cluster) -> None:
    base = "/api/v1/namespaces/default/pods"
    code, status = cluster.request("GET", f"{base}/two/log")
    assert (code, status["reason"]) == (400, "BadRequest")
    assert (
        status["message"] == "a container name must be specified for pod two, choose one of: [a b]"
    )
    code, status = cluster.request("GET", f"{base}/web/log?container=nope")
    assert (code, status["message"]) == (400, "container nope is not valid for pod web")
    code, status = cluster.request("GET", f"{base}/missing/log")
    assert (code, status["reason"]) == (404, "NotFound")
    code, status = cluster.request("GET", f"{base}/pending/log")
    assert (code, status["message"]) == (400, "pod pending does not have a host assigned")
    code, status = cluster.request("GET", f"{base}/web/log?tailLines=-1")
    assert (code, status["reason"]) == (422, "Invalid")
    # The kubelet's own error (a container it does not know) comes back as a Status.
    code, status = cluster.request("GET", f"{base}/two/log?container=a")
    assert (code, status["reason"], status["kind"]) == (404, "NotFound", "Status")
    assert 'container "a" not found in pod' in status["message"]
    code, status = cluster.request("GET", f"{base}/elsewhere/log")
    assert (code, status["reason"]) == (404, "NotFound")  # its node does not exist
    assert cluster.request("GET", f"{base}/web/log", token="")[0] == 401
    assert cluster.request("GET", f"{base}/web/log", token="wrong")[0] == 401
    code, status = cluster.request("GET", f"{base}/web/log", token="viewer-token")
    assert (code, status["reason"]) == (403, "Forbidden")
    assert 'cannot get resource "pods/log"' in status["message"]
    code, status = cluster.request("POST", f"{base}/web/exec?command=true&stdout=1",
                                   token="viewer-token")  # fmt: skip
    assert (code, status["reason"]) == (403, "Forbidden")
    assert 'cannot create resource "pods/exec"' in status["message"]


def test_an_unreachable_kubelet_is_an_internal_error(cluster: Cluster) -> None:
    closed = free_port()  # nothing listens there
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"dead-{closed}"},
            "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": closed}}}}  # fmt: skip
    code, created = cluster.request("POST", "/api/v1/nodes", node)
    assert code == 201, created
    if not created.get("status", {}).get("addresses"):
        created["status"] = node["status"]
        assert cluster.request("PUT", f"/api/v1/nodes/dead-{closed}/status", created)[0] == 200
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"stranded-{closed}"},
        "spec": {"nodeName": f"dead-{closed}", "containers": [{"name": "c", "image": "x"}]},
    }
    assert cluster.request("POST", "/api/v1/namespaces/default/pods", pod)[0] == 201
    base = f"/api/v1/namespaces/default/pods/stranded-{closed}"
    code, status = cluster.request("GET", f"{base}/log")
    assert (code, status["reason"]) == (500, "InternalError")
    assert (
        f'Get "https://127.0.0.1:{closed}/containerLogs/default/stranded-{closed}/c"'
        in (status["message"])
    )
    code, status = cluster.request("POST", f"{base}/exec?command=ls&stdout=1")
    assert (code, status["reason"]) == (500, "InternalError")
    assert f"error dialing backend: dial tcp 127.0.0.1:{closed}" in status["message"]
    code, status = cluster.request("GET", f"/api/v1/nodes/dead-{closed}/proxy/healthz")
    assert (code, status["reason"]) == (503, "ServiceUnavailable")


def test_node_proxy_reaches_the_kubelet(cluster: Cluster) -> None:
    raw = cluster.kubectl("get", "--raw", f"/api/v1/nodes/{cluster.node}/proxy/stats/summary")
    assert json.loads(raw.stdout)["node"]["cpu"]["usageNanoCores"] == 7
    assert cluster.fake.requests[-1]["path"] == "/stats/summary"
    code, status = cluster.request("GET", f"/api/v1/nodes/{cluster.node}/proxy/nothing")
    assert (code, status["reason"]) == (404, "NotFound")
    code, status = cluster.request("GET", "/api/v1/nodes/ghost/proxy/stats/summary")
    assert (code, status["message"]) == (404, 'nodes "ghost" not found')
    code, status = cluster.request("GET", f"/api/v1/nodes/{cluster.node}/proxy/stats/summary",
                                   token="viewer-token")  # fmt: skip
    assert code == 403 and 'cannot get resource "nodes/proxy"' in status["message"]


def test_upgraded_connection_is_spliced_both_ways(cluster: Cluster) -> None:
    connection = socket.create_connection(("127.0.0.1", cluster.port), timeout=10)
    with cluster.context().wrap_socket(connection, server_hostname="127.0.0.1") as tls:
        tls.sendall(
            b"POST /api/v1/namespaces/default/pods/web/exec?command=cat&command=-u&stdin=true"
            b"&stdout=true HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Authorization: Bearer {cluster.token}\r\n".encode()
            + b"Connection: Upgrade\r\nUpgrade: kubeling-echo\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += tls.recv(1)
        assert head.startswith(b"HTTP/1.1 101 "), head
        assert b"upgrade: kubeling-echo" in head.lower()
        for message in (b"ping", b"x" * 100_000):
            tls.sendall(message)
            echoed = b""
            while len(echoed) < len(message):
                echoed += tls.recv(65536)
            assert echoed == message
    seen = [r for r in cluster.fake.requests if r["path"] == "/exec/default/web/web"][-1]
    assert seen["method"] == "POST" and seen["authorization"] is None
    assert seen["query"]["command"] == ["cat", "-u"]
    assert seen["query"]["input"] == ["1"] and seen["query"]["output"] == ["1"]
    # Not an upgrade: the kubelet's answer comes back as it is.
    code, body = cluster.request("POST", "/api/v1/namespaces/default/pods/web/exec?command=true"
                                 "&stdout=true")  # fmt: skip
    assert (code, body) == (400, b"Upgrade request required\n")
    code, status = cluster.request("POST", "/api/v1/namespaces/default/pods/web/exec?stdout=true")
    assert (code, status["message"]) == (
        400,
        "you must specify at least one command for the container",
    )


def test_kubectl_exec_and_port_forward(cluster: Cluster) -> None:
    assert cluster.kubectl("exec", "web", "--", "echo", "hello").stdout == "hello\n"
    assert cluster.kubectl("exec", "-i", "web", "--", "cat", stdin="abc\n").stdout == "abc\n"
    failed = cluster.kubectl("exec", "web", "--", "sh", "-c", "exit 3", check=False)
    assert failed.returncode == 3
    # kubectl's fallback, SPDY/3.1 over a POST, goes through the same splice.
    spdy = cluster.kubectl("exec", "-i", "web", "--", "cat", stdin="over spdy\n",
                           env={"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"})  # fmt: skip
    assert spdy.stdout == "over spdy\n"
    assert cluster.fake.requests[-1]["method"] == "POST"
    assert cluster.kubectl("attach", "web").stdout == "attached\n"
    assert cluster.fake.requests[-1]["path"] == "/attach/default/web/web"
    local = free_port()
    forward = subprocess.Popen(
        ["kubectl", "port-forward", "pod/web", f"{local}:80"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=cluster.kubectl_env,
    )  # fmt: skip
    try:
        assert forward.stdout is not None
        assert "Forwarding from 127.0.0.1" in forward.stdout.readline()

        def echoed() -> bytes:
            with socket.create_connection(("127.0.0.1", local), timeout=10) as connection:
                connection.sendall(b"through the tunnel")
                connection.shutdown(socket.SHUT_WR)
                received = b""
                while len(received) < 18 and (chunk := connection.recv(100)):
                    received += chunk
                return received

        assert wait_for(echoed, timeout=15) == b"through the tunnel"
    finally:
        stop(forward)
        for pipe in (forward.stdout, forward.stderr):
            if pipe is not None:
                pipe.close()


def test_kubectl_top_shows_the_kubelets_figures(cluster: Cluster) -> None:
    pods = cluster.kubectl("top", "pod", "web").stdout.splitlines()
    assert pods[0].split() == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    assert pods[1].split() == ["web", "10m", "10Mi"]
    nodes = cluster.kubectl("top", "node").stdout.splitlines()
    assert nodes[0].split() == ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
    assert nodes[1].split() == [cluster.node, "250m", "12%", "50Mi", "1%"]

    code, metrics = cluster.request("GET", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods")
    assert code == 200 and metrics["kind"] == "PodMetricsList"
    (web,) = metrics["items"]
    assert web["metadata"]["name"] == "web" and web["window"] == "1s"
    assert web["containers"] == [{"name": "web", "usage": {"cpu": "10000000n",
                                                          "memory": "10240Ki"}}]  # fmt: skip
    code, node = cluster.request("GET", f"/apis/metrics.k8s.io/v1beta1/nodes/{cluster.node}")
    assert code == 200 and node["usage"] == {"cpu": "250000000n", "memory": "51200Ki"}
    selected = cluster.request("GET", "/apis/metrics.k8s.io/v1beta1/pods?labelSelector=app%3Dnone")
    assert selected[1]["items"] == []
    code, status = cluster.request(
        "GET", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/two"
    )
    assert (code, status["message"]) == (404, 'podmetrics.metrics.k8s.io "default/two" not found')
    # The background scraper keeps asking (every second here).
    before = cluster.fake.scrapes
    wait_for(lambda: cluster.fake.scrapes >= before + 2, timeout=10)


def test_the_python_client_reads_logs(cluster: Cluster) -> None:
    from kubernetes import client, config

    api_client = config.new_client_from_config(str(cluster.data / "admin.kubeconfig"))
    try:
        core = client.CoreV1Api(api_client)
        assert core.read_namespaced_pod_log("web", "default", tail_lines=3) == LOG_LINES.decode()
        cluster.fake.stop_following.clear()
        streamed = core.read_namespaced_pod_log(
            "web", "default", follow=True, _preload_content=False
        )
        try:
            assert next(streamed.stream(16)).startswith(b"line 1\n")
        finally:
            cluster.fake.stop_following.set()
            streamed.release_conn()
    finally:
        api_client.rest_client.pool_manager.clear()  # close() leaves the pooled sockets
        api_client.close()


def test_kubelet_certificate_checked_against_the_given_ca(cluster: Cluster, tmp_path: Path) -> None:
    """A second API server with the first one's kubelet-client pair (the override
    flags) and a CA that did not sign the kubelet's certificate: refused, unless the
    request skips the check."""
    other_ca = certs.ensure_ca(tmp_path / "other-ca")
    data = tmp_path / "control"
    port = free_port()
    pki = cluster.data / "pki"
    process = subprocess.Popen(
        [KUBELING, "apiserver", "--data-dir", str(data), "--store", "memory://",
         "--listen", f"127.0.0.1:{port}", "--log-level", "error",
         "--kubelet-client-certificate", str(pki / "apiserver-kubelet-client.crt"),
         "--kubelet-client-key", str(pki / "apiserver-kubelet-client.key"),
         "--kubelet-certificate-authority", str(other_ca.certificate)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        assert "serving the API on" in process.stdout.readline()
        assert not (data / "pki" / "apiserver-kubelet-client.crt").exists()
        token = next(
            t.split(",")[0]
            for t in (data / "tokens.csv").read_text().splitlines()
            if ",admin," in t
        )
        second = Cluster(data, port, token, cluster.fake, cluster.node, cluster.kubectl_env)
        _create_objects(second)
        code, status = second.request("GET", "/api/v1/namespaces/default/pods/web/log")
        assert (code, status["reason"]) == (500, "InternalError")
        assert "CERTIFICATE_VERIFY_FAILED" in status["message"]
        code, body = second.request(
            "GET", "/api/v1/namespaces/default/pods/web/log?insecureSkipTLSVerifyBackend=true"
        )
        assert (code, body) == (200, LOG_LINES)
    finally:
        stop(process)
        if process.stdout is not None:
            process.stdout.close()
