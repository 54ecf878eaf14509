"""A small Kubernetes REST client on dicts: what the scheduler, the controllers and the
kubelet need of an API server, and nothing of this project's server (it talks HTTP
only, so it runs the same against a real kube-apiserver).

    client = Client.from_kubeconfig("admin.kubeconfig")
    pod = client.get("/api/v1/namespaces/default/pods/web")
    pods = client.list("/api/v1/pods", fieldSelector="spec.nodeName=")
    client.patch(".../pods/web/status", {"status": {...}})          # merge patch
    for event in client.watch("/api/v1/nodes"):                      # forever
        ...

Paths are the REST paths as the API serves them; query parameters are keyword
arguments. Bodies and results are plain dicts (JSON). A non-2xx answer raises
`ApiError` with the `metav1.Status` the server sent (`.code`, `.reason`).

Kubeconfig: the current context's cluster (server, certificate-authority-data or
certificate-authority) and user (token, or client-certificate/key data or files).
JSON is read directly (`kubeling apiserver` writes JSON); YAML through PyYAML, which
the `kubernetes` dependency brings.

Concurrency: a `Client` is shared by threads. Each request takes a kept-alive
connection from a small pool (or opens one) and gives it back once the answer is
read; a failed connection is dropped and the request retried once on a new one
when it is safe to (the request may not have reached the server: a connection
that the server had closed while idle). A watch holds a connection of its own for
its whole life; `Watch.close()` (from any thread) ends it.

Watch semantics (like client-go's reflector, flattened into one iterator): with no
resource version, `watch` lists first and yields one `{"type": "RELISTED",
"object": <the List>}` (the caller replaces its cache with the list's items), then
the events from the list's resourceVersion on. The stream is re-opened from the
last resourceVersion seen (bookmarks included) when it ends or breaks; when that
version is too old (410 Gone, as a response or an ERROR event) it lists again and
yields another RELISTED. It never ends on its own: only `close()` ends it.
"""

from __future__ import annotations

import base64
import http.client
import importlib
import json
import logging
import os
import ssl
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

Object = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"

POOL_SIZE = 8
WATCH_TIMEOUT_SECONDS = 300  # the server ends each watch after this; we re-open it


class ApiError(Exception):
    """A non-2xx answer: the server's Status (or one made up from the HTTP status)."""

    def __init__(self, method: str, path: str, code: int, status: Object) -> None:
        self.method = method
        self.path = path
        self.code = code
        self.status = status
        self.reason = str(status.get("reason", ""))
        super().__init__(f"{method} {path}: {code} {self.reason}: {status.get('message', '')}")


@dataclass(frozen=True)
class Config:
    """Where the API server is and how to authenticate to it."""

    server: str
    ca_data: bytes = b""  # PEM; empty: the system's trust store
    token: str = ""
    client_certificate: bytes = b""
    client_key: bytes = b""
    insecure: bool = False


def _load_document(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        yaml: Any = importlib.import_module("yaml")
        return yaml.safe_load(text)


def _data_or_file(entry: dict[str, Any], key: str, base: Path) -> bytes:
    if entry.get(f"{key}-data"):
        return base64.b64decode(entry[f"{key}-data"])
    if entry.get(key):
        return (base / str(entry[key])).read_bytes()
    return b""


def load_kubeconfig(path: str | os.PathLike[str], *, context: str = "") -> Config:
    """The `Config` of `context` (default: current-context) in the kubeconfig at `path`."""
    file = Path(path)
    document = _load_document(file.read_text())
    if not isinstance(document, dict):
        raise ValueError(f"kubeconfig {file}: not a mapping")

    def named(section: str, name: str) -> dict[str, Any]:
        for entry in document.get(section) or []:
            if entry.get("name") == name:
                return dict(entry.get(section.rstrip("s")) or {})
        raise ValueError(f"kubeconfig {file}: no {section.rstrip('s')} {name!r}")

    current = named("contexts", context or str(document.get("current-context", "")))
    cluster = named("clusters", str(current.get("cluster", "")))
    user = named("users", str(current.get("user", ""))) if current.get("user") else {}
    token = str(user.get("token", ""))
    if not token and user.get("tokenFile"):
        token = (file.parent / str(user["tokenFile"])).read_text().strip()
    return Config(
        server=str(cluster["server"]).rstrip("/"),
        ca_data=_data_or_file(cluster, "certificate-authority", file.parent),
        token=token,
        client_certificate=_data_or_file(user, "client-certificate", file.parent),
        client_key=_data_or_file(user, "client-key", file.parent),
        insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
    )


def _ssl_context(config: Config) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=config.ca_data.decode() if config.ca_data else None)
    if config.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if config.client_certificate:
        # load_cert_chain reads files only: write the pair to a private temporary file.
        with tempfile.NamedTemporaryFile("wb", suffix=".pem") as pair:
            pair.write(config.client_certificate + b"\n" + config.client_key)
            pair.flush()
            context.load_cert_chain(pair.name)
    return context


class Watch:
    """An iterator of watch events; `close()` ends it from any thread."""

    def __init__(self, events: Callable[[Watch], Iterator[Object]]) -> None:
        self._lock = threading.Lock()
        self._connection: http.client.HTTPConnection | None = None
        self.closed = False
        self._events = events(self)

    def __iter__(self) -> Iterator[Object]:
        return self._events

    def __next__(self) -> Object:
        return next(self._events)

    def _attach(self, connection: http.client.HTTPConnection | None) -> None:
        with self._lock:
            self._connection = connection
            if self.closed and connection is not None:
                _shutdown(connection)

    def close(self) -> None:
        with self._lock:
            self.closed = True
            if self._connection is not None:
                _shutdown(self._connection)


def _shutdown(connection: http.client.HTTPConnection) -> None:
    """End the connection's reads from another thread: shut the socket down, and let
    the reading thread (which gets EOF) close it."""
    sock = connection.sock
    if sock is not None:
        try:
            sock.shutdown(2)
        except OSError:
            pass


class Client:
    """A thread-safe REST client of one API server (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        *,
        timeout: float = 30.0,
        pool_size: int = POOL_SIZE,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        url = urllib.parse.urlsplit(config.server)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"server {config.server!r}: expected http(s)://host[:port]")
        self.config = config
        self._https = url.scheme == "https"
        self._host = url.hostname
        self._port = url.port or (443 if self._https else 80)
        self._prefix = url.path.rstrip("/")
        self._timeout = timeout
        self._pool_size = pool_size
        self._sleep = sleep
        self._context = _ssl_context(config) if self._https else None
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    @classmethod
    def from_kubeconfig(cls, path: str | os.PathLike[str], **kwargs: Any) -> Client:
        return cls(load_kubeconfig(path), **kwargs)

    # -- connections ------------------------------------------------------------------

    def _connect(self, timeout: float | None) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout, context=self._context
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self._connect(self._timeout), False

    def _give_back(self, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < self._pool_size:
                self._idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        """Close the idle connections (watches close themselves)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def _headers(self, content_type: str = "") -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "kubeling/control"}
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def url(self, path: str, query: dict[str, Any] | None = None) -> str:
        """The request target of `path` with `query` (None values dropped)."""
        given = {k: _query_value(v) for k, v in (query or {}).items() if v is not None}
        encoded = urllib.parse.urlencode(given)
        return f"{self._prefix}{path}" + (f"?{encoded}" if encoded else "")

    # -- verbs --------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        query: dict[str, Any] | None = None,
    ) -> Object:
        """One request; the decoded JSON answer. Raises ApiError on a non-2xx."""
        target = self.url(path, query)
        data = json.dumps(body).encode() if body is not None else None
        headers = self._headers(content_type if data is not None else "")
        for attempt in (1, 2):
            connection, reused = self._take()
            try:
                connection.request(method, target, body=data, headers=headers)
                response = connection.getresponse()
                payload = response.read()
            except (http.client.HTTPException, OSError):
                connection.close()
                # A kept-alive connection the server closed while idle: the request
                # never got there, so sending it again on a new connection is safe.
                if reused and attempt == 1:
                    continue
                raise
            if response.will_close:
                connection.close()
            else:
                self._give_back(connection)
            return self._decode(method, path, response.status, payload)
        raise AssertionError("unreachable")

    @staticmethod
    def _decode(method: str, path: str, code: int, payload: bytes) -> Object:
        try:
            decoded = json.loads(payload) if payload else {}
        except json.JSONDecodeError:
            decoded = {"message": payload[:200].decode(errors="replace")}
        if not isinstance(decoded, dict):
            decoded = {"items": decoded}
        if code >= 300:
            raise ApiError(method, path, code, decoded)
        return decoded

    def get(self, path: str, **query: Any) -> Object:
        return self.request("GET", path, query=query)

    def list(self, path: str, **query: Any) -> Object:
        """The List at `path` (all pages when the server paginates)."""
        result = self.request("GET", path, query=query)
        while result.get("metadata", {}).get("continue"):
            page = self.request(
                "GET", path, query={**query, "continue": result["metadata"]["continue"]}
            )
            result["items"].extend(page.get("items") or [])
            result["metadata"] = page.get("metadata", {})
        return result

    def create(self, path: str, body: Object, **query: Any) -> Object:
        return self.request("POST", path, body, query=query)

    def update(self, path: str, body: Object, **query: Any) -> Object:
        return self.request("PUT", path, body, query=query)

    def patch(
        self, path: str, body: Any, *, content_type: str = MERGE_PATCH, **query: Any
    ) -> Object:
        return self.request("PATCH", path, body, content_type=content_type, query=query)

    def delete(self, path: str, body: Object | None = None, **query: Any) -> Object:
        return self.request("DELETE", path, body, query=query)

    # -- watch --------------------------------------------------------------------------

    def watch(self, path: str, resource_version: str = "", **query: Any) -> Watch:
        """Events of the collection at `path` (see the module docstring)."""
        return Watch(lambda handle: self._events(handle, path, resource_version, query))

    def _events(
        self, handle: Watch, path: str, resource_version: str, query: dict[str, Any]
    ) -> Iterator[Object]:
        version = resource_version
        failures = 0
        while not handle.closed:
            if not version:
                try:
                    listed = self.list(path, **query)
                except (ApiError, http.client.HTTPException, OSError) as e:
                    failures += 1
                    log.warning("list %s failed: %s", path, e)
                    self._sleep(min(0.2 * 2**failures, 5.0))
                    continue
                version = str(listed.get("metadata", {}).get("resourceVersion", ""))
                yield {"type": "RELISTED", "object": listed}
            try:
                for event in self._stream(handle, path, version, query):
                    failures = 0
                    if event.get("type") == "ERROR":
                        status = event.get("object") or {}
                        if status.get("code") == 410:
                            version = ""
                            break
                        raise ApiError("WATCH", path, int(status.get("code") or 500), status)
                    version = str(
                        (event.get("object") or {}).get("metadata", {}).get("resourceVersion")
                        or version
                    )
                    if event.get("type") != "BOOKMARK":
                        yield event
            except ApiError as e:
                if e.code == 410:
                    version = ""
                    continue
                failures += 1
                log.warning("watch %s failed: %s", path, e)
                self._sleep(min(0.2 * 2**failures, 5.0))
            except (http.client.HTTPException, OSError, ValueError) as e:
                if handle.closed:
                    break
                failures += 1
                log.debug("watch %s broke: %s", path, e)
                self._sleep(min(0.1 * 2**failures, 5.0))

    def _stream(
        self, handle: Watch, path: str, version: str, query: dict[str, Any]
    ) -> Iterator[Object]:
        connection = self._connect(None)
        handle._attach(connection)
        try:
            target = self.url(path, {
                **query, "watch": "true", "resourceVersion": version,
                "allowWatchBookmarks": "true", "timeoutSeconds": WATCH_TIMEOUT_SECONDS,
            })  # fmt: skip
            connection.request("GET", target, headers=self._headers())
            response = connection.getresponse()
            if response.status != 200:
                self._decode("WATCH", path, response.status, response.read())
            while True:
                line = response.readline()
                if not line:
                    return
                if line.strip():
                    event = json.loads(line)
                    if isinstance(event, dict):
                        yield event
        finally:
            handle._attach(None)
            connection.close()


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
