"""The kubelet's node HTTP API (port 10250): HTTPS, client certificates, and the
endpoints the API server and monitoring use.

    GET  /healthz                                  "ok" (anonymous)
    GET  /pods                                     v1 PodList of the pods the kubelet runs
    GET  /containerLogs/{ns}/{pod}/{container}     the container's log (kubelet/server/logs.py)
    GET|POST /exec/{ns}/{pod}[/{uid}]/{container}  proxied to the runtime's streaming URL
    GET|POST /attach/{ns}/{pod}[/{uid}]/{container}
    GET|POST /portForward/{ns}/{pod}[/{uid}]
    GET  /stats/summary                            Summary API (kubelet/stats/summary.py)
    GET  /metrics/cadvisor, /metrics/resource      Prometheus text (kubelet/stats/prometheus.py)
    GET  /metrics                                  this server's own kubelet_* metrics

Authentication: a client certificate the client CA (--client-ca-file) signed; every
authenticated client may do everything (the kubelet's webhook authorization, a
SubjectAccessReview per request, is not done, and neither is bearer-token
authentication, which needs the API server's TokenReview). Without a client CA only
/healthz answers; the rest is 401 Unauthorized, as for a client without a certificate.

Concurrency: one thread per connection (the TLS handshake is on that thread, not the
accepting one); log follows and streaming sessions hold their thread until they end.
`stop()` ends follows and closes the listener; proxied sessions end with their peers.
"""

from __future__ import annotations

import json
import logging
import select
import socket
import ssl
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc

from cri.api import api_pb2
from kubelet.config import KubeletConfig
from kubelet.server import lookup, proxy
from kubelet.server.logs import LogOptionsError, parse_options, write_logs
from kubelet.server.lookup import RequestError
from kubelet.server.tls import node_address, self_signed, server_context
from kubelet.stats import prometheus
from kubelet.stats.collector import Cri, StatsCollector
from kubelet.stats.summary import summary

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 10.0
KEEPALIVE_TIMEOUT = 120.0
PodsSource = Callable[[], list[dict[str, Any]]]


class NodeServer:
    """The node API of one kubelet. `port` is the bound port (config.port 0 picks one)."""

    def __init__(
        self,
        config: KubeletConfig,
        cri: Cri,
        pods: PodsSource,
        *,
        stats: StatsCollector | None = None,
    ) -> None:
        self.config = config
        self.cri = cri
        self.pods = pods
        if config.tls_cert_file is not None and config.tls_private_key_file is not None:
            cert_file, key_file = config.tls_cert_file, config.tls_private_key_file
        elif config.tls_cert_file is not None or config.tls_private_key_file is not None:
            raise ValueError("tls_cert_file and tls_private_key_file go together")
        else:
            cert_file, key_file = self_signed(
                config.root_dir / "pki", config.node_name, node_address(config.node_ip)
            )
        self.context = server_context(cert_file, key_file, config.client_ca_file)
        self.stats = stats or StatsCollector(
            cri,
            node_name=config.node_name,
            root_dir=config.root_dir,
            cgroup_root=config.cgroup_root,
            pods=pods,
            runtime_endpoint=config.container_runtime_endpoint,
        )
        self.stopping = threading.Event()
        self.requests: Counter[tuple[str, str]] = Counter()  # (method, first path segment)
        self.requests_lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"node": self})
        server_class = _Server6 if ":" in config.address else _Server
        self._http = server_class((config.address, config.port), handler, self.context)
        self.port: int = self._http.server_address[1]
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.stats.start()
        self._thread = threading.Thread(
            target=self._http.serve_forever, args=(0.1,), name="kubelet-server", daemon=True
        )
        self._thread.start()
        log.info("node API on https://%s:%d", self.config.address, self.port)

    def stop(self) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._http.shutdown()
            self._thread.join()
        self._http.server_close()
        self.stats.stop()

    def count(self, method: str, path: str) -> None:
        with self.requests_lock:
            self.requests[(method, path)] += 1


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], handler: type[_Handler], context: ssl.SSLContext
    ) -> None:
        self.context = context
        super().__init__(address, handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Headers and body go out in separate writes: with Nagle's algorithm the second
        # waits for the client's delayed ACK (40 ms a response).
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            connection = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            log.debug("TLS handshake with %s failed: %s", client_address, e)
            return
        handler: Any = self.RequestHandlerClass
        try:
            handler(connection, client_address, self)
        finally:
            try:
                connection.close()
            except OSError:
                pass


class _Server6(_Server):
    address_family = socket.AF_INET6


def _subject(certificate: dict[str, Any]) -> tuple[str, list[str]]:
    """(CN, O values) of a certificate as ssl's getpeercert() gives it."""
    common_name, organizations = "", []
    for rdn in certificate.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                common_name = value
            elif key == "organizationName":
                organizations.append(value)
    return common_name, organizations


class _Handler(BaseHTTPRequestHandler):
    node: NodeServer
    protocol_version = "HTTP/1.1"
    server_version = "kubelet"
    # No read-ahead past a request's head: an upgraded connection's first bytes must
    # stay in the socket for the streaming proxy.
    rbufsize = 0
    timeout = KEEPALIVE_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("node API %s: " + format, self.address_string(), *args)

    # -- responses ----------------------------------------------------------------

    def _send(
        self, code: int, body: bytes, content_type: str, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _text(self, code: int, message: str) -> None:
        self._send(code, (message + "\n").encode(), "text/plain; charset=utf-8")

    def _json(self, value: Any) -> None:
        self._send(200, json.dumps(value).encode(), "application/json")

    # -- dispatch -----------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        segments = [urllib.parse.unquote(s) for s in url.path.strip("/").split("/") if s]
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        top = segments[0] if segments else ""
        self.node.count(self.command, top)
        try:
            if url.path.rstrip("/") == "/healthz":
                self._only("GET", "HEAD")
                self._text(200, "ok")
                return
            identity = self._authenticate()
            if identity is None:
                self._text(401, "Unauthorized")
                return
            self._route(top, segments, query)
        except RequestError as e:
            if e.code == 404 and not self._is_known(top):
                self._text(404, "404 page not found")
            else:
                self._text(e.code, e.message)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, TimeoutError):
            self.close_connection = True  # the client went away
        except Exception as e:
            log.exception("node API %s %s failed", self.command, url.path)
            self.close_connection = True
            try:
                self._text(500, f"Internal Error: {e}")
            except OSError:
                pass

    def _is_known(self, top: str) -> bool:
        return top in ("pods", "containerLogs", "exec", "attach", "portForward", "stats", "metrics")

    def _only(self, *methods: str) -> None:
        if self.command not in methods:
            raise RequestError(405, f"method {self.command} not allowed")

    def _authenticate(self) -> tuple[str, list[str]] | None:
        """The client certificate's (CN, O); None without one (ssl has verified any
        certificate it let through against the client CA)."""
        if self.node.config.client_ca_file is None:
            return None
        connection = self.connection
        certificate = connection.getpeercert() if isinstance(connection, ssl.SSLSocket) else None
        if not certificate:
            return None
        return _subject(certificate)

    def _route(self, top: str, segments: list[str], query: dict[str, list[str]]) -> None:
        if segments == ["pods"]:
            self._only("GET", "HEAD")
            self._json({"kind": "PodList", "apiVersion": "v1", "metadata": {},
                        "items": self.node.pods()})  # fmt: skip
        elif top == "containerLogs" and len(segments) == 4:
            self._only("GET")
            self._container_logs(segments[1], segments[2], segments[3], query)
        elif top in ("exec", "attach") and len(segments) in (4, 5):
            self._only("GET", "POST")
            self._command(top, segments[1], segments[2], segments[-1], query)
        elif top == "portForward" and len(segments) in (3, 4):
            self._only("GET", "POST")
            self._port_forward(segments[1], segments[2], query)
        elif segments == ["stats", "summary"]:
            self._only("GET", "POST")
            only = query.get("only_cpu_and_memory", ["false"])[-1].lower() == "true"
            self._json(summary(self.node.stats.collect(), only_cpu_and_memory=only))
        elif segments == ["metrics", "cadvisor"]:
            self._only("GET", "HEAD")
            self._metrics(prometheus.cadvisor(self.node.stats.collect()))
        elif segments == ["metrics", "resource"]:
            self._only("GET", "HEAD")
            self._metrics(prometheus.resource(self.node.stats.collect()))
        elif segments == ["metrics"]:
            self._only("GET", "HEAD")
            self._metrics(self._own_metrics())
        else:
            raise RequestError(404, "404 page not found")

    def _metrics(self, text: str) -> None:
        self._send(200, text.encode(), prometheus.CONTENT_TYPE)

    def _own_metrics(self) -> str:
        requests = prometheus.Family(
            "kubelet_http_requests_total",
            "[ALPHA] Number of the http requests received since the server started",
            "counter",
        )
        with self.node.requests_lock:
            counted = sorted(self.node.requests.items())
        for (method, path), count in counted:
            labels = {"long_running": "false", "method": method, "path": path,
                      "server_type": "readwrite"}  # fmt: skip
            requests.add(labels, count)
        pods = prometheus.Family("kubelet_running_pods",
                                 "[ALPHA] Number of pods that have a running pod sandbox",
                                 "gauge")  # fmt: skip
        pods.add({}, len(self.node.pods()))
        return prometheus.render([requests, pods])

    # -- pods and containers ------------------------------------------------------------

    def _pod(self, namespace: str, name: str) -> dict[str, Any]:
        pod = lookup.find_pod(self.node.pods(), namespace, name)
        if pod is None:
            raise RequestError(404, f'pod "{name}" does not exist')
        return pod

    def _client_gone(self) -> bool:
        """Whether the client closed its side (EOF) while a response streams to it;
        bytes it sent meanwhile end the connection after this response."""
        connection = self.connection
        readable, _, _ = select.select([connection], [], [], 0)
        if not readable:
            return False
        connection.setblocking(False)
        try:
            data = connection.recv(1)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return False
        except OSError:
            return True
        finally:
            connection.settimeout(None)
        self.close_connection = True
        return not data

    def _container_logs(
        self, namespace: str, name: str, container: str, query: dict[str, list[str]]
    ) -> None:
        pod = self._pod(namespace, name)
        if container not in lookup.spec_container_names(pod):
            raise RequestError(404, f'container "{container}" not found in pod "{name}"')
        try:
            options = parse_options(query, time.time())
        except LogOptionsError as e:
            raise RequestError(400, str(e)) from None
        cri = self.node.cri
        container_id = lookup.log_container(
            cri, pod, namespace, name, container, previous=options.previous
        )
        try:
            status = cri.runtime.ContainerStatus(
                api_pb2.ContainerStatusRequest(container_id=container_id), timeout=cri.timeout
            ).status
        except grpc.RpcError as e:
            raise lookup.from_rpc(e, f'container "{container}" in pod "{name}"') from None
        if not status.log_path:
            raise RequestError(400, f'container "{container}" in pod "{name}" has no log file')
        try:
            open(status.log_path, "rb").close()
        except OSError as e:
            raise RequestError(
                400, f"failed to open log file {status.log_path!r}: {e.strerror or e}"
            ) from None

        def running() -> bool:
            if self._client_gone():
                raise BrokenPipeError("the client closed the connection")
            try:
                current = cri.runtime.ContainerStatus(
                    api_pb2.ContainerStatusRequest(container_id=container_id), timeout=cri.timeout
                ).status
            except grpc.RpcError:
                return False
            return bool(current.state == api_pb2.CONTAINER_RUNNING)

        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.connection.settimeout(None)

        def write_chunk(data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

        try:
            write_logs(status.log_path, options, write_chunk, running=running,
                       stop=self.node.stopping)  # fmt: skip
        except OSError as e:
            log.info("container log %s: %s", status.log_path, e)
            self.close_connection = True
            return
        self.wfile.write(b"0\r\n\r\n")

    def _command(
        self, kind: str, namespace: str, name: str, container: str, query: dict[str, list[str]]
    ) -> None:
        pod = self._pod(namespace, name)
        cri = self.node.cri
        container_id = lookup.running_container(cri, pod, namespace, name, container)

        def flag(*names: str) -> bool:
            for key in names:
                if key in query:
                    return query[key][-1].lower() in ("1", "true", "")
            return False

        stdin, stdout = flag("stdin", "input"), flag("stdout", "output")
        tty = flag("tty")
        stderr = flag("stderr", "error") and not tty  # a terminal has one output stream
        if not (stdin or stdout or stderr):
            raise RequestError(400, "you must specify at least 1 of stdin, stdout, stderr")
        try:
            if kind == "exec":
                command = query.get("command", [])
                if not command:
                    raise RequestError(
                        400, "you must specify at least one command for the container"
                    )
                url = cri.runtime.Exec(
                    api_pb2.ExecRequest(container_id=container_id, cmd=command, tty=tty,
                                        stdin=stdin, stdout=stdout, stderr=stderr),
                    timeout=cri.timeout,
                ).url  # fmt: skip
            else:
                url = cri.runtime.Attach(
                    api_pb2.AttachRequest(container_id=container_id, tty=tty, stdin=stdin,
                                          stdout=stdout, stderr=stderr),
                    timeout=cri.timeout,
                ).url  # fmt: skip
        except grpc.RpcError as e:
            raise lookup.from_rpc(e, f"{kind} in container {container!r}") from None
        self._proxy(url)

    def _port_forward(self, namespace: str, name: str, query: dict[str, list[str]]) -> None:
        pod = self._pod(namespace, name)
        cri = self.node.cri
        sandbox_id = lookup.ready_sandbox(cri, pod, namespace, name)
        ports = []
        for value in query.get("port", []) + query.get("ports", []):
            for part in value.split(","):
                if not part.strip().isdigit() or not 0 < int(part) < 65536:
                    raise RequestError(400, f"invalid port {part!r}")
                ports.append(int(part))
        try:
            url = cri.runtime.PortForward(
                api_pb2.PortForwardRequest(pod_sandbox_id=sandbox_id, port=ports),
                timeout=cri.timeout,
            ).url
        except grpc.RpcError as e:
            raise lookup.from_rpc(e, f"port forward to pod {name!r}") from None
        self._proxy(url)

    def _proxy(self, url: str) -> None:
        """Replay this request to the streaming URL and pipe the connection."""
        headers = list(self.headers.items())
        try:
            address, head = proxy.upstream_request(url, self.command, headers)
            upstream = proxy.connect(address)
        except proxy.ProxyError as e:
            raise RequestError(502, str(e)) from None
        self.close_connection = True  # the connection is the session's from now on
        with upstream:
            try:
                upstream.sendall(head)
            except OSError as e:
                raise RequestError(502, f"streaming server: {e}") from None
            proxy.pipe(self.connection, upstream)
