"""The HTTP side of the API server: routing Kubernetes REST paths to the registry,
discovery, watch streams, authentication, and errors as `Status` objects.

Paths (as the kube-apiserver serves them):

    /api, /api/v1, /apis, /apis/<group>, /apis/<group>/<version>     discovery
    /api/v1/<resource>[/<name>[/<subresource>]]                       cluster scope, or
                                                                      every namespace
    /api/v1/namespaces/<ns>/<resource>[/<name>[/<subresource>]]      one namespace
    /apis/<group>/<version>/...                                       the same, other groups
    /healthz /livez /readyz /version
    pods/<name>/{log,exec,attach,portforward}, nodes/<name>/proxy/...  to the node's
                                                                      kubelet (kubelet_proxy.py)
    /apis/metrics.k8s.io/v1beta1/...                                  from the kubelets'
                                                                      figures (metrics.py)

Verbs: GET (get, list, and watch with `?watch=1`), POST (create), PUT (update),
PATCH (json, merge and strategic merge patches), DELETE (delete; on a collection,
deletecollection). `Accept: application/json;as=Table;g=meta.k8s.io;v=v1` gets a
Table (tables.py). Request bodies are JSON or, for creates, updates and deletes, Kubernetes
protobuf (protobuf.py), at most `MAX_BODY` bytes.

Each request runs on a thread of its own (ThreadingHTTPServer); a watch holds its
thread until the client goes away, `timeoutSeconds` passes, or the server stops.
Authentication is a bearer token from the token file (auth.py) or a client
certificate the server's CA signed; an anonymous request gets 401.
"""

from __future__ import annotations

import http.server
import json
import logging
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from control.apiserver import (
    discovery,
    errors,
    kubelet_proxy,
    metrics,
    protobuf,
    subresources,
    tables,
)
from control.apiserver.auth import Authenticator, User
from control.apiserver.errors import ApiError, Target
from control.apiserver.objects import Registry, Selectors, WatchEvent
from control.apiserver.openapi import OpenApi, check_fields, warning_header
from control.apiserver.patch import (
    SUPPORTED_PATCH_TYPES,
    PatchError,
    UnsupportedPatchType,
    apply_patch,
    media_type,
)
from control.apiserver.resources import RESOURCES, ResourceType, lookup
from control.apiserver.selectors import (
    FieldSelector,
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)

log = logging.getLogger(__name__)

MAX_BODY = 3 * 1024 * 1024
VERSION_INFO = {
    "major": "1", "minor": "32", "gitVersion": "v1.32.0-kubeling", "gitCommit": "",
    "gitTreeState": "clean", "buildDate": "", "goVersion": "", "compiler": "kubeling",
    "platform": "linux/amd64",
}  # fmt: skip
# A watch longer than this (without timeoutSeconds) ends; clients re-watch, as
# with the kube-apiserver's --min-request-timeout spread.
MAX_WATCH_SECONDS = 1800
BOOKMARK_SECONDS = 60.0


@dataclass(frozen=True)
class Request:
    """A parsed resource request."""

    resource: ResourceType
    namespace: str
    name: str
    subresource: str


def parse_path(path: str) -> Request | None:
    """The resource a REST path names; None if it names none (discovery, unknown)."""
    parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if not rest:
        return None
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    plural, name, sub = rest[0], rest[1] if len(rest) > 1 else "", rest[2] if len(rest) > 2 else ""
    if len(rest) > 3:
        return None
    resource = lookup(group, version, plural)
    if resource is None:
        return None
    if not resource.namespaced and namespace:
        return None
    return Request(resource, namespace, name, sub)


class ApiServer:
    """Serves the API on `address` until `stop()`. TLS when `tls` is given."""

    def __init__(
        self,
        registry: Registry,
        authenticator: Authenticator,
        *,
        host: str = "127.0.0.1",
        port: int = 6443,
        tls: ssl.SSLContext | None = None,
        kubelet: kubelet_proxy.KubeletClient | None = None,
        metric_resolution: float = metrics.DEFAULT_RESOLUTION,
    ) -> None:
        self.registry = registry
        self.authenticator = authenticator
        # Without a client certificate kubelets answer 401: logs, exec and metrics
        # need the one main.py issues.
        self.kubelet = kubelet or kubelet_proxy.KubeletClient(kubelet_proxy.KubeletClientConfig())
        self.kubelet_proxy = kubelet_proxy.KubeletProxy(registry, authenticator, self.kubelet)
        self.metrics = metrics.MetricsApi(
            registry, authenticator, self.kubelet, resolution=metric_resolution
        )
        self.openapi = OpenApi(RESOURCES)  # the documents are built on first use
        self._stopping = threading.Event()
        handler = type("Handler", (_Handler,), {"api": self})
        self.http = _Server((host, port), handler)
        if tls is not None:
            self.http.socket = tls.wrap_socket(self.http.socket, server_side=True)
        self.host, self.port = str(self.http.server_address[0]), int(self.http.server_address[1])
        self.scheme = "https" if tls is not None else "http"
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.http.serve_forever, name="kubeling-apiserver", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self.metrics.stop()
        if self._thread is not None:
            self.http.shutdown()
            self._thread.join()
        self.http.server_close()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def _wants_table(accept: str) -> bool:
    return any("as=Table" in part for part in accept.split(","))


class _Handler(http.server.BaseHTTPRequestHandler):
    api: ApiServer
    protocol_version = "HTTP/1.1"
    server_version = "kubeling-apiserver"

    def setup(self) -> None:
        # Headers and body go out in separate writes: with Nagle's algorithm the
        # second waits for the client's delayed ACK (40 ms a request on loopback).
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # -- responses ----------------------------------------------------------------

    def _send_json(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_error(self, error: ApiError) -> None:
        headers = {"Retry-After": str(error.retry_after)} if error.retry_after else None
        self._send_json(error.code, error.status(), headers)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (a malformed request line, an unknown method, headers
        too large) go out as a Status too, not as HTML."""
        self.close_connection = True
        try:
            reason = http.HTTPStatus(code).phrase.replace(" ", "")
        except ValueError:
            reason = ""
        self._send_error(ApiError(code, reason, message or reason))

    # -- dispatch -----------------------------------------------------------------

    def _handle(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = {
            k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()
        }
        try:
            body = self._read_body()
            user = self.api.authenticator.authenticate(self.headers, self.connection)
            if url.path in ("/healthz", "/livez", "/readyz"):
                self._send_text(200, "ok")
                return
            if url.path == "/version":
                self._send_json(200, VERSION_INFO)
                return
            if url.path.startswith("/openapi/"):
                self._openapi(method, url.path, query)
                return
            document = discovery.document(url.path)
            if document is not None:
                if method != "GET":
                    raise errors.method_not_allowed()
                self._send_json(200, document)
                return
            if url.path.startswith(metrics.PREFIX + "/"):
                if method != "GET":
                    raise errors.method_not_allowed()
                self._send_json(200, self.api.metrics.get(url.path, query, user))
                return
            proxied = kubelet_proxy.parse_target(url.path)
            if proxied is not None:  # logs, exec, attach, port-forward, node proxy
                self.api.kubelet_proxy.serve(self, method, proxied, url.query, body, user)
                return
            request = parse_path(url.path)
            if request is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            self._resource(method, request, query, body, user)
        except ApiError as e:
            self._send_error(e)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:
            log.exception("request %s %s failed", method, url.path)
            self._send_error(ApiError(500, "InternalError", f"Internal error occurred: {e}"))

    def _send_text(self, code: int, text: str) -> None:
        data = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _read_body(self) -> bytes:
        text = self.headers.get("Content-Length") or "0"
        if not text.strip().isdigit():
            self.close_connection = True
            raise errors.bad_request(f"invalid Content-Length {text!r}")
        length = int(text)
        if length > MAX_BODY:
            self.close_connection = True
            raise errors.too_large(MAX_BODY)
        return self.rfile.read(length) if length else b""

    def _json_body(self, body: bytes) -> dict[str, Any]:
        content_type = (self.headers.get("Content-Type") or "application/json").split(";")[0]
        if content_type.strip().lower() == protobuf.MEDIA_TYPE:  # Go clients' typed writes
            return protobuf.request_body(body)
        if content_type not in ("application/json", "*/*", ""):
            raise protobuf.unsupported_body_type(content_type)
        try:
            value = json.loads(body or b"null")
        except ValueError as e:
            raise errors.bad_request(f"the request body is not valid JSON: {e}") from None
        if not isinstance(value, dict):
            raise errors.bad_request("the request body must be a JSON object")
        return value

    def _resource(
        self,
        method: str,
        request: Request,
        query: dict[str, str],
        body: bytes,
        user: User,
    ) -> None:
        resource, registry = request.resource, self.api.registry
        namespace = request.namespace
        if resource.kind == "Namespace" and request.name:
            namespace = ""
        if resource.kind == "Namespace" and request.subresource == "finalize" and request.name:
            # namespaces/<name>/finalize: PUT only (subresources.finalize_namespace).
            if method != "PUT":
                raise errors.method_not_allowed()
            self.api.authenticator.authorize(user, "update", resource, "", request.name,
                                             "finalize")  # fmt: skip
            self._send_object(subresources.finalize_namespace(
                registry, resource, request.name, self._json_body(body)), resource)  # fmt: skip
            return
        if request.subresource and request.subresource not in resource.subresources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if request.subresource in ("binding", "eviction", "scale"):
            self._subresource(method, request, namespace, body, user)
            return
        if request.subresource and request.subresource not in ("status",):
            # log/exec/attach/portforward and nodes/proxy went to the kubelet above.
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        verb = _verb(method, request, query)
        if query.get("dryRun") and verb in (
            "create",
            "update",
            "patch",
            "delete",
            "deletecollection",
        ):
            # Refused rather than ignored: a dry run must never store anything.
            raise errors.bad_request("dryRun is not supported by this server yet")
        if resource.namespaced and not namespace and verb not in ("list", "watch"):
            if request.name:  # /api/v1/pods/<name>: no such path
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            raise errors.method_not_allowed()
        self.api.authenticator.authorize(
            user, verb, resource, namespace, request.name, request.subresource
        )
        if verb == "watch":
            self._watch(request, query)
        elif verb == "list":
            listed = registry.list(
                resource, namespace, selectors=_selectors(resource, query),
                limit=_int(query, "limit"), continue_token=query.get("continue", ""),
            )  # fmt: skip
            self._send_object(listed, resource, list_=True)
        elif verb == "get":
            self._send_object(registry.get(resource, namespace, request.name), resource)
        elif verb == "create":
            obj = self._checked(query, resource, self._json_body(body), "create")
            created = registry.create(resource, namespace, obj)
            self._send_object(created, resource, code=201)
        elif verb == "update":
            obj = self._checked(query, resource, self._json_body(body), "update")
            updated = registry.update(
                resource, namespace, request.name, obj, subresource=request.subresource,
            )  # fmt: skip
            self._send_object(updated, resource)
        elif verb == "patch":
            self._send_object(self._patch(request, namespace, body, query), resource)
        elif verb == "delete":
            options = self._json_body(body) if body else {}
            grace = options.get("gracePeriodSeconds", _optional_int(query, "gracePeriodSeconds"))
            if grace is not None and (not isinstance(grace, int) or isinstance(grace, bool)):
                raise errors.bad_request(f"gracePeriodSeconds: {grace!r} is not an integer")
            deleted = registry.delete(
                resource, namespace, request.name,
                grace_period=None if grace is None else int(grace),
                propagation=str(options.get("propagationPolicy")
                                or query.get("propagationPolicy", "")),
                preconditions=options.get("preconditions"),
            )  # fmt: skip
            self._send_object(deleted, resource)
        elif verb == "deletecollection":
            # Each matching object is deleted as a DELETE of it would (graceful pods,
            # finalizers); the answer is the list of what was deleted or marked.
            options = self._json_body(body) if body else {}
            grace = options.get("gracePeriodSeconds", _optional_int(query, "gracePeriodSeconds"))
            if grace is not None and (not isinstance(grace, int) or isinstance(grace, bool)):
                raise errors.bad_request(f"gracePeriodSeconds: {grace!r} is not an integer")
            listed = registry.list(resource, namespace, selectors=_selectors(resource, query))
            items = []
            for item in listed["items"]:
                meta = item["metadata"]
                try:
                    items.append(registry.delete(
                        resource, meta.get("namespace", ""), meta["name"], grace_period=grace,
                        propagation=str(options.get("propagationPolicy") or ""),
                    ))  # fmt: skip
                except ApiError as e:
                    if e.code != 404:  # deleted meanwhile: nothing to do
                        raise
            listed["items"] = items
            self._send_object(listed, resource, list_=True)
        else:
            raise errors.method_not_allowed()

    def _subresource(
        self, method: str, request: Request, namespace: str, body: bytes, user: User
    ) -> None:
        """binding and eviction (POST), scale (GET, PUT, PATCH): subresources.py."""
        resource, registry, name = request.resource, self.api.registry, request.name
        verb = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch"}.get(method)
        allowed = ("create",) if request.subresource in ("binding", "eviction") else (
            "get", "update", "patch")  # fmt: skip
        if verb not in allowed:
            raise errors.method_not_allowed()
        self.api.authenticator.authorize(
            user, str(verb), resource, namespace, name, request.subresource
        )
        if request.subresource == "binding":
            bound = subresources.bind(registry, resource, namespace, name, self._json_body(body))
            self._send_json(201, bound)
        elif request.subresource == "eviction":
            evicted = subresources.evict(registry, resource, namespace, name, self._json_body(body))
            self._send_json(201, evicted)
        elif verb == "get":
            self._send_json(200, subresources.get_scale(registry, resource, namespace, name))
        else:
            scale = (
                self._json_body(body) if verb == "update"
                else self._patched_scale(request, namespace, body)
            )  # fmt: skip
            self._send_json(200, subresources.set_scale(registry, resource, namespace, name, scale))

    def _patched_scale(self, request: Request, namespace: str, body: bytes) -> dict[str, Any]:
        current = subresources.get_scale(
            self.api.registry, request.resource, namespace, request.name
        )
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        try:
            patched = apply_patch(current, body, content_type)
        except UnsupportedPatchType:
            raise errors.unsupported_media_type(content_type) from None
        except PatchError as e:
            raise errors.ApiError(422, "Invalid", f"the request is invalid: {e}") from None
        if not isinstance(patched, dict):
            raise errors.bad_request("the patch must leave a Scale object")
        return patched

    def _patch(
        self, request: Request, namespace: str, body: bytes, query: dict[str, str] | None = None
    ) -> dict[str, Any]:
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        resource = request.resource
        if media_type(content_type) not in SUPPORTED_PATCH_TYPES:
            raise errors.unsupported_media_type(content_type)
        try:
            json.loads(body)
        except ValueError as e:  # upstream: 400 for a body that does not decode
            raise errors.bad_request(f"the patch is not valid JSON: {e}") from None

        def change(current: dict[str, Any]) -> dict[str, Any]:
            try:
                patched = apply_patch(current, body, content_type)
            except UnsupportedPatchType:
                raise errors.unsupported_media_type(content_type) from None
            except PatchError as e:
                raise errors.ApiError(422, "Invalid", f"the request is invalid: {e}") from None
            if not isinstance(patched, dict) or not isinstance(patched.get("metadata"), dict):
                raise errors.bad_request("the patch must leave an object with metadata")
            self._checked(query or {}, resource, patched, "patch")
            wanted = patched["metadata"].get("resourceVersion")
            if wanted and wanted != current["metadata"]["resourceVersion"]:
                raise errors.conflict(
                    Target(resource.plural, request.name, resource.group),
                    "the object has been modified; please apply your changes to the latest "
                    "version and try again",
                )  # fmt: skip
            patched["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            return self.api.registry._merge_update(resource, current, patched, request.subresource)

        return self.api.registry.guaranteed_update(resource, namespace, request.name, change)

    def _send_object(
        self, obj: dict[str, Any], resource: ResourceType, *, code: int = 200, list_: bool = False
    ) -> None:
        if _wants_table(self.headers.get("Accept", "")):
            self._send_json(code, tables.table(resource, obj, list_=list_))
        else:
            self._send_json(code, obj)

    # -- OpenAPI and field validation (openapi.py) ----------------------------------

    _warnings: tuple[str, ...] = ()  # `Warning` headers for the response being made

    def _openapi(self, method: str, path: str, query: dict[str, str]) -> None:
        found = self.api.openapi.document(path, query)
        if found is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if method != "GET":
            raise errors.method_not_allowed()
        data, content_type, headers = found
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _checked(
        self, query: dict[str, str], resource: ResourceType, obj: dict[str, Any], verb: str
    ) -> dict[str, Any]:
        """`obj` after ?fieldValidation (unknown fields: 400, or dropped with warnings)."""
        mode = query.get("fieldValidation", "")
        self._warnings = tuple(check_fields(mode, resource, obj, verb=verb))
        return obj

    def end_headers(self) -> None:
        for text in self._warnings:
            self.send_header("Warning", warning_header(text))
        self._warnings = ()
        super().end_headers()

    # -- watch --------------------------------------------------------------------

    def _watch(self, request: Request, query: dict[str, str]) -> None:
        resource = request.resource
        timeout = _optional_int(query, "timeoutSeconds")
        deadline = time.monotonic() + (timeout if timeout is not None else MAX_WATCH_SECONDS)
        selectors = _selectors(resource, query)
        if request.name:
            name_selector = parse_field_selector(f"metadata.name={request.name}")
            given = selectors.fields.requirements if selectors.fields is not None else ()
            selectors = Selectors(
                selectors.labels, FieldSelector((*given, *name_selector.requirements))
            )
        table = _wants_table(self.headers.get("Accept", ""))
        bookmarks = query.get("allowWatchBookmarks", "").lower() in ("true", "1")
        # Errors (410, 400) raise here, before the 200, and go out as a plain response.
        events = self.api.registry.watch(
            resource, request.namespace, resource_version=query.get("resourceVersion", ""),
            selectors=selectors, stop=lambda: time.monotonic() > deadline or self.api.stopping,
            bookmark_every=BOOKMARK_SECONDS if bookmarks else 0.0,
        )  # fmt: skip
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        self.connection.settimeout(None)
        pending: list[WatchEvent] = []  # headers first: a client's watch starts at once
        try:
            while True:
                for event in pending:
                    if event.encoded is not None and not table:
                        kind = event.type.encode()
                        line = b'{"type":"' + kind + b'","object":' + event.encoded + b"}\n"
                        self._chunk(line)
                        continue
                    obj = event.object
                    if table and event.type != "BOOKMARK":
                        obj = tables.table(resource, obj, list_=False)
                    self._chunk(json.dumps({"type": event.type, "object": obj}).encode() + b"\n")
                pending = []
                following = next(events, None)
                if following is None:
                    break
                pending.append(following)
        except ApiError as e:
            self._chunk(json.dumps({"type": "ERROR", "object": e.status()}).encode() + b"\n")
        except (TimeoutError, BrokenPipeError, ConnectionResetError, ssl.SSLError):
            return
        finally:
            events.close()
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            pass

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


def _verb(method: str, request: Request, query: dict[str, str]) -> str:
    if method == "GET":
        if query.get("watch", "").lower() in ("1", "true"):
            return "watch"
        return "get" if request.name else "list"
    if method == "POST":
        if request.name:  # status and the like are not created
            raise errors.method_not_allowed()
        return "create"
    if method in ("PUT", "PATCH"):
        if not request.name:
            raise errors.method_not_allowed()
        return "update" if method == "PUT" else "patch"
    if method == "DELETE":
        if request.subresource:
            raise errors.method_not_allowed()
        return "delete" if request.name else "deletecollection"
    raise errors.method_not_allowed()


def _selectors(resource: ResourceType, query: dict[str, str]) -> Selectors:
    try:
        labels = (
            parse_label_selector(query["labelSelector"]) if query.get("labelSelector") else None
        )
        fields = (
            parse_field_selector(query["fieldSelector"], resource.kind)
            if query.get("fieldSelector")
            else None
        )
    except SelectorError as e:
        raise errors.bad_request(str(e)) from None
    return Selectors(labels, fields)


def _int(query: dict[str, str], name: str) -> int:
    value = _optional_int(query, name)
    return 0 if value is None else value


def _optional_int(query: dict[str, str], name: str) -> int | None:
    text = query.get(name)
    if text in (None, ""):
        return None
    try:
        return int(str(text))
    except ValueError:
        raise errors.bad_request(f"{name}: {text!r} is not an integer") from None


__all__ = ["ApiServer", "Request", "parse_path"]
