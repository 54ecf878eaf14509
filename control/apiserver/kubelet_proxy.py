"""The API server's way to the kubelets: pods' `log`, `exec`, `attach` and
`portforward` subresources and `nodes/<name>/proxy/...`, passed on to the kubelet of
the pod's node as the kube-apiserver does.

    GET  /api/v1/namespaces/<ns>/pods/<pod>/log?container=&follow=...
         -> GET https://<node>:<port>/containerLogs/<ns>/<pod>/<container>?follow=...
    GET|POST /api/v1/namespaces/<ns>/pods/<pod>/{exec,attach}?container=&command=...
         -> /exec|/attach/<ns>/<pod>/<container>?command=...&input=1&output=1&tty=1
    GET|POST /api/v1/namespaces/<ns>/pods/<pod>/portforward?ports=...
         -> /portForward/<ns>/<pod>?ports=...
    *    /api/v1/nodes/<node>/proxy/<path>  -> https://<node>:<port>/<path>

The node is reached at the first of its `status.addresses` whose type is preferred
(`--kubelet-preferred-address-types`, InternalIP then Hostname by default) and at
`status.daemonEndpoints.kubeletEndpoint.port` (10250 when unset), over HTTPS with
the API server's kubelet-client certificate. The kubelet's serving certificate is
checked only when a CA is configured (`--kubelet-certificate-authority`), as
kube-apiserver does; `?insecureSkipTLSVerifyBackend=true` on a log request skips
that check for the one request.

Logs stream through as they come (chunked), so `kubectl logs -f` sees each line when
it is written. Exec, attach and port-forward are upgrades (SPDY/3.1 or WebSocket,
whichever the client asks for and the kubelet accepts): the client's request goes to
the kubelet without its credentials, and once the kubelet answers 101 both
connections are joined byte for byte until either side closes. This proxy does not
speak the streaming protocols; an answer other than 101 is relayed as it is, so a
client that offered WebSocket to a kubelet that only speaks SPDY falls back as it
would against a real cluster.
"""

from __future__ import annotations

import datetime
import http.client
import http.server
import json
import logging
import select
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from control.apiserver import errors
from control.apiserver.auth import Authenticator, User
from control.apiserver.errors import ApiError, Target
from control.apiserver.objects import Registry
from control.apiserver.resources import ResourceType, lookup
from control.apiserver.validation import Cause

log = logging.getLogger(__name__)

DEFAULT_KUBELET_PORT = 10250
DEFAULT_ADDRESS_TYPES = ("InternalIP", "Hostname")
ADDRESS_TYPES = ("Hostname", "InternalDNS", "InternalIP", "ExternalDNS", "ExternalIP")
HOSTNAME_LABEL = "kubernetes.io/hostname"
# How much of a kubelet's error answer is read into the Status message.
MAX_ERROR_BODY = 64 * 1024
MAX_HEAD = 64 * 1024
CHUNK = 64 * 1024
UPGRADE_SUBRESOURCES = ("exec", "attach", "portforward")
# Never sent on to a kubelet: the client's credentials are for the API server only,
# and hop-by-hop headers belong to each connection.
_DROPPED_REQUEST_HEADERS = frozenset({"authorization", "host", "proxy-authorization"})
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade", "te",
     "trailer", "proxy-connection"}
)  # fmt: skip


@dataclass(frozen=True)
class KubeletClientConfig:
    """How the API server talks to kubelets (kube-apiserver's --kubelet-* flags)."""

    certificate: Path | None = None
    key: Path | None = None
    certificate_authority: Path | None = None  # None: the kubelet's cert is not checked
    preferred_address_types: tuple[str, ...] = DEFAULT_ADDRESS_TYPES
    timeout: float = 5.0


def parse_address_types(text: str) -> tuple[str, ...]:
    """`--kubelet-preferred-address-types` ("InternalIP,Hostname"); ValueError naming
    an unknown type."""
    types = tuple(t.strip() for t in text.split(",") if t.strip())
    if not types:
        raise ValueError("--kubelet-preferred-address-types: give at least one address type")
    for kind in types:
        if kind not in ADDRESS_TYPES:
            raise ValueError(
                f"--kubelet-preferred-address-types: unknown address type {kind!r} "
                f"(one of {', '.join(ADDRESS_TYPES)})"
            )
    return types


@dataclass(frozen=True)
class Endpoint:
    """Where one node's kubelet listens."""

    node: str
    host: str
    port: int

    @property
    def netloc(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return f"https://{self.netloc}{path}"


def node_endpoint(node: Mapping[str, Any], preferred: Sequence[str]) -> Endpoint:
    """The kubelet endpoint of `node`: its first address of the first preferred type
    that it has, and its kubelet port."""
    name = str((node.get("metadata") or {}).get("name", ""))
    status = node.get("status") or {}
    addresses = [a for a in status.get("addresses") or [] if isinstance(a, dict)]
    host = ""
    for kind in preferred:
        host = next((str(a.get("address")) for a in addresses if a.get("type") == kind
                     and a.get("address")), "")  # fmt: skip
        if not host and kind == "Hostname":  # as kube-apiserver: the hostname label stands in
            host = str(((node.get("metadata") or {}).get("labels") or {}).get(HOSTNAME_LABEL, ""))
        if host:
            break
    if not host:
        known = " ".join(f"{{{a.get('type')} {a.get('address')}}}" for a in addresses)
        raise ApiError(
            500, "InternalError", f"no preferred addresses found; known addresses: [{known}]"
        )
    endpoints = status.get("daemonEndpoints") or {}
    port = (endpoints.get("kubeletEndpoint") or {}).get("Port") or (
        endpoints.get("kubeletEndpoint") or {}
    ).get("port")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        port = DEFAULT_KUBELET_PORT
    return Endpoint(name, host, port)


class KubeletClient:
    """TLS connections to kubelets with the API server's client certificate."""

    def __init__(self, config: KubeletClientConfig) -> None:
        self.config = config
        self._verified = self._context(verify=True)
        self._unverified = (
            self._context(verify=False) if config.certificate_authority else self._verified
        )

    def _context(self, *, verify: bool) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if verify and self.config.certificate_authority is not None:
            context.load_verify_locations(self.config.certificate_authority)
        else:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.config.certificate is not None:
            context.load_cert_chain(self.config.certificate, self.config.key)
        return context

    @property
    def timeout(self) -> float:
        return self.config.timeout

    def context(self, *, insecure: bool = False) -> ssl.SSLContext:
        return self._unverified if insecure else self._verified

    def connection(
        self, endpoint: Endpoint, *, insecure: bool = False
    ) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            endpoint.host, endpoint.port, timeout=self.timeout,
            context=self.context(insecure=insecure),
        )  # fmt: skip

    def open(self, endpoint: Endpoint, *, insecure: bool = False) -> ssl.SSLSocket:
        """A TLS socket to the kubelet (for upgraded connections)."""
        raw = socket.create_connection((endpoint.host, endpoint.port), timeout=self.timeout)
        try:
            return self.context(insecure=insecure).wrap_socket(raw, server_hostname=endpoint.host)
        except BaseException:
            raw.close()
            raise

    def get(self, endpoint: Endpoint, path: str) -> bytes:
        """The body of a GET on the kubelet; KubeletError for a failure or a non-200."""
        connection = self.connection(endpoint)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as e:
            raise KubeletError(f'Get "{endpoint.url(path)}": {e}') from None
        finally:
            connection.close()
        if response.status != 200:
            text = body[:MAX_ERROR_BODY].decode(errors="replace").strip()
            raise KubeletError(f'Get "{endpoint.url(path)}": {response.status}: {text}')
        return body


class KubeletError(Exception):
    """A kubelet could not be asked, or answered with an error."""


# -- what a request asks for --------------------------------------------------------


@dataclass(frozen=True)
class ProxyTarget:
    """A request for a kubelet: a pod subresource, or the node proxy with its path."""

    kind: str  # "log", "exec", "attach", "portforward", "proxy"
    namespace: str
    name: str
    path: str = ""  # for the node proxy: the kubelet path, starting with "/"


def parse_target(path: str) -> ProxyTarget | None:
    """The kubelet request a REST path names, None if it names none."""
    raw_parts = path.split("/")[1:] if path.startswith("/") else path.split("/")
    parts = [urllib.parse.unquote(p) for p in raw_parts]
    if parts[:2] != ["api", "v1"]:
        return None
    rest = parts[2:]
    if (
        len(rest) == 5 and rest[0] == "namespaces" and rest[2] == "pods" and rest[1] and rest[3]
        and rest[4] in ("log", *UPGRADE_SUBRESOURCES)
    ):  # fmt: skip
        return ProxyTarget(rest[4], rest[1], rest[3])
    if len(rest) >= 3 and rest[0] == "nodes" and rest[2] == "proxy" and rest[1]:
        # The rest of the path goes to the kubelet as it came (still escaped).
        after = "/".join(raw_parts[5:])
        return ProxyTarget("proxy", "", rest[1], "/" + after)
    return None


def parse_bool(query: Mapping[str, Sequence[str]], name: str) -> bool:
    """A boolean query parameter as Go's strconv.ParseBool reads it; 400 otherwise."""
    values = query.get(name)
    if not values:
        return False
    text = values[-1]
    if text in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if text in ("", "0", "f", "F", "false", "FALSE", "False"):
        return False
    raise errors.bad_request(f'{name}: invalid value "{text}": not a boolean')


def _optional_int(query: Mapping[str, Sequence[str]], name: str) -> int | None:
    values = query.get(name)
    if not values or values[-1] == "":
        return None
    try:
        return int(values[-1])
    except ValueError:
        raise errors.bad_request(f'{name}: invalid value "{values[-1]}": not an integer') from None


def _all_container_names(pod: Mapping[str, Any]) -> list[str]:
    """Init, regular and ephemeral containers, in the order Kubernetes visits them."""
    spec = pod.get("spec") or {}
    names: list[str] = []
    for key in ("initContainers", "containers", "ephemeralContainers"):
        names += [str(c.get("name")) for c in spec.get(key) or [] if isinstance(c, dict)]
    return names


def choose_container(pod: Mapping[str, Any], container: str) -> str:
    """The container a request means, as the kube-apiserver decides it: the one given
    (which must be in the pod), or the pod's only container; 400 otherwise."""
    name = str((pod.get("metadata") or {}).get("name", ""))
    if container:
        if container not in _all_container_names(pod):
            raise errors.bad_request(f"container {container} is not valid for pod {name}")
        return container
    containers = [c for c in (pod.get("spec") or {}).get("containers") or [] if isinstance(c, dict)]
    if len(containers) == 1:
        return str(containers[0].get("name"))
    if not containers:
        raise errors.bad_request(f"a container name must be specified for pod {name}")
    choices = " ".join(_all_container_names(pod))
    raise errors.bad_request(
        f"a container name must be specified for pod {name}, choose one of: [{choices}]"
    )


def _check_rfc3339(text: str) -> None:
    try:
        datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise errors.bad_request(
            f'sinceTime: invalid value "{text}": not an RFC 3339 time'
        ) from None


def log_path(namespace: str, pod: str, container: str, query: Mapping[str, Sequence[str]]) -> str:
    """The kubelet's /containerLogs path and query for a pods/log request, after the
    checks of PodLogOptions (422 Invalid, as the kube-apiserver answers)."""
    since_seconds = _optional_int(query, "sinceSeconds")
    tail_lines = _optional_int(query, "tailLines")
    limit_bytes = _optional_int(query, "limitBytes")
    since_time = (query.get("sinceTime") or [""])[-1]
    causes: list[Cause] = []
    if tail_lines is not None and tail_lines < 0:
        causes.append(Cause("FieldValueInvalid", "must be greater than or equal to 0", "tailLines"))
    if limit_bytes is not None and limit_bytes < 1:
        causes.append(Cause("FieldValueInvalid", "must be greater than 0", "limitBytes"))
    if since_seconds is not None and since_time:
        causes.append(Cause(
            "FieldValueForbidden", "at most one of `sinceTime` or `sinceSeconds` may be specified",
            "",
        ))  # fmt: skip
    if since_seconds is not None and since_seconds < 1:
        causes.append(Cause("FieldValueInvalid", "must be greater than 0", "sinceSeconds"))
    if causes:
        raise errors.invalid("PodLogOptions", Target("pods", pod), causes)
    if since_time:
        _check_rfc3339(since_time)
    params: list[tuple[str, str]] = []
    for flag in ("follow", "previous", "timestamps"):
        if parse_bool(query, flag):
            params.append((flag, "true"))
    if since_seconds is not None:
        params.append(("sinceSeconds", str(since_seconds)))
    if since_time:
        params.append(("sinceTime", since_time))
    if tail_lines is not None:
        params.append(("tailLines", str(tail_lines)))
    if limit_bytes is not None:
        params.append(("limitBytes", str(limit_bytes)))
    path = f"/containerLogs/{_segment(namespace)}/{_segment(pod)}/{_segment(container)}"
    return path + ("?" + urllib.parse.urlencode(params) if params else "")


def stream_path(
    kind: str, namespace: str, pod: str, container: str, query: Mapping[str, Sequence[str]]
) -> str:
    """The kubelet path and query for exec, attach or portforward. The stream flags go
    as the kube-apiserver sends them (input, output, error, tty = "1") and under their
    API names too (stdin, stdout, stderr), so a kubelet reading either finds them."""
    if kind == "portforward":
        ports = [("ports", p) for p in query.get("ports", [])]
        path = f"/portForward/{_segment(namespace)}/{_segment(pod)}"
        return path + ("?" + urllib.parse.urlencode(ports) if ports else "")
    stdin, stdout = parse_bool(query, "stdin"), parse_bool(query, "stdout")
    stderr, tty = parse_bool(query, "stderr"), parse_bool(query, "tty")
    commands = list(query.get("command", [])) if kind == "exec" else []
    if kind == "exec" and not commands:
        raise errors.bad_request("you must specify at least one command for the container")
    if not (stdin or stdout or stderr):
        raise errors.bad_request("you must specify at least 1 of stdin, stdout, stderr")
    if tty and stdout and stderr:
        # A terminal has one output stream; kubectl never asks for both with one.
        stderr = False
    params: list[tuple[str, str]] = [("command", c) for c in commands]
    for kube_name, api_name, wanted in (("input", "stdin", stdin), ("output", "stdout", stdout),
                                        ("error", "stderr", stderr)):  # fmt: skip
        if wanted:
            params += [(kube_name, "1"), (api_name, "1")]
    if tty:
        params.append(("tty", "1"))
    path = f"/{kind}/{_segment(namespace)}/{_segment(pod)}/{_segment(container)}"
    return path + "?" + urllib.parse.urlencode(params)


def _segment(text: str) -> str:
    return urllib.parse.quote(text, safe="")


# -- the proxy ------------------------------------------------------------------------


@dataclass
class KubeletProxy:
    """Serves the kubelet-backed requests for the API server's request handler."""

    registry: Registry
    authenticator: Authenticator
    kubelet: KubeletClient
    _pods: ResourceType = field(init=False)
    _nodes: ResourceType = field(init=False)

    def __post_init__(self) -> None:
        pods, nodes = lookup("", "v1", "pods"), lookup("", "v1", "nodes")
        assert pods is not None and nodes is not None
        self._pods, self._nodes = pods, nodes

    def serve(
        self,
        handler: http.server.BaseHTTPRequestHandler,
        method: str,
        target: ProxyTarget,
        raw_query: str,
        body: bytes,
        user: User,
    ) -> None:
        """Answer one request; an ApiError raised here means nothing was sent yet."""
        query = urllib.parse.parse_qs(raw_query, keep_blank_values=True)
        if target.kind == "proxy":
            self._node_proxy(handler, method, target, raw_query, body, user)
        elif target.kind == "log":
            if method != "GET":
                raise errors.method_not_allowed()
            self.authenticator.authorize(user, "get", self._pods, target.namespace,
                                         target.name, "log")  # fmt: skip
            self._log(handler, target, query)
        else:
            if method not in ("GET", "POST"):
                raise errors.method_not_allowed()
            upgrade = "upgrade" in handler.headers.get("Connection", "").lower()
            # POST, or a WebSocket GET, starts a session: "create", as kube-apiserver
            # authorizes it; only a plain GET is a "get".
            verb = "create" if method == "POST" or upgrade else "get"
            self.authenticator.authorize(user, verb, self._pods, target.namespace,
                                         target.name, target.kind)  # fmt: skip
            self._upgrade(handler, method, target, query, body)

    # -- lookups ----------------------------------------------------------------------

    def _pod_endpoint(
        self, target: ProxyTarget, container: str | None
    ) -> tuple[dict[str, Any], Endpoint, str]:
        """The pod, its node's kubelet, and the container meant (None: no container)."""
        pod = self.registry.get(self._pods, target.namespace, target.name)
        chosen = choose_container(pod, container) if container is not None else ""
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            raise errors.bad_request(f"pod {target.name} does not have a host assigned")
        node = self.registry.get(self._nodes, "", str(node_name))
        return pod, node_endpoint(node, self.kubelet.config.preferred_address_types), chosen

    # -- logs -------------------------------------------------------------------------

    def _log(
        self,
        handler: http.server.BaseHTTPRequestHandler,
        target: ProxyTarget,
        query: Mapping[str, Sequence[str]],
    ) -> None:
        container = (query.get("container") or [""])[-1]
        insecure = parse_bool(query, "insecureSkipTLSVerifyBackend")
        follow = parse_bool(query, "follow")
        # Checked before the pod is looked up, as PodLogOptions are decoded first.
        log_path(target.namespace, target.name, container or "-", query)
        _, endpoint, chosen = self._pod_endpoint(target, container)
        path = log_path(target.namespace, target.name, chosen, query)
        connection = self.kubelet.connection(endpoint, insecure=insecure)
        try:
            response = _send(connection, "GET", path, {}, b"", endpoint)
            if response.status != 200:
                raise relayed_error(response, Target("pods", target.name))
            if follow and connection.sock is not None:
                connection.sock.settimeout(None)  # a follower waits as long as it likes
            _stream(handler, response, connection, "text/plain")
        finally:
            connection.close()

    # -- node proxy -------------------------------------------------------------------

    def _node_proxy(
        self,
        handler: http.server.BaseHTTPRequestHandler,
        method: str,
        target: ProxyTarget,
        raw_query: str,
        body: bytes,
        user: User,
    ) -> None:
        verb = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update",
                "PATCH": "patch", "DELETE": "delete"}.get(method)  # fmt: skip
        if verb is None:
            raise errors.method_not_allowed()
        self.authenticator.authorize(user, verb, self._nodes, "", target.name, "proxy")
        node = self.registry.get(self._nodes, "", target.name)
        endpoint = node_endpoint(node, self.kubelet.config.preferred_address_types)
        path = target.path + (f"?{raw_query}" if raw_query else "")
        headers = {k: v for k, v in handler.headers.items()
                   if k.lower() not in _DROPPED_REQUEST_HEADERS | _HOP_BY_HOP}  # fmt: skip
        connection = self.kubelet.connection(endpoint)
        try:
            try:
                response = _send(connection, method, path, headers, body, endpoint)
            except ApiError as e:  # as the upgrade-aware proxy words it
                raise ApiError(
                    503, "ServiceUnavailable", f"error trying to reach service: {e}"
                ) from None
            if response.status >= 400:
                raise relayed_error(response, Target("nodes", target.name))
            _stream(handler, response, connection, "", status=response.status)
        finally:
            connection.close()

    # -- exec, attach, port-forward -----------------------------------------------------

    def _upgrade(
        self,
        handler: http.server.BaseHTTPRequestHandler,
        method: str,
        target: ProxyTarget,
        query: Mapping[str, Sequence[str]],
        body: bytes,
    ) -> None:
        container = None if target.kind == "portforward" else (query.get("container") or [""])[-1]
        if target.kind != "portforward":
            # Flags first (400 before a lookup), as kube-apiserver decodes the options.
            stream_path(target.kind, target.namespace, target.name, "-", query)
        _, endpoint, chosen = self._pod_endpoint(target, container)
        path = stream_path(target.kind, target.namespace, target.name, chosen, query)
        try:
            kubelet = self.kubelet.open(endpoint)
        except OSError as e:
            raise ApiError(
                500, "InternalError", f"error dialing backend: dial tcp {endpoint.netloc}: {e}"
            ) from None
        try:
            head = _request_head(method, path, endpoint, handler.headers.items(), len(body))
            try:
                kubelet.sendall(head + body)
                status, raw_head, headers, rest = _read_head(kubelet)
            except (OSError, ValueError) as e:
                raise ApiError(
                    500, "InternalError", f"error proxying to the kubelet: {e}"
                ) from None
            if status != 101:
                _relay_plain(handler, kubelet, status, raw_head, headers, rest)
                return
            # From here on the connection is the client's and the kubelet's; the
            # HTTP server must neither read nor write on it again.
            handler.close_connection = True
            client = handler.connection
            early = _drain_buffered(handler, client)
            client.sendall(raw_head + rest)
            if early:
                kubelet.sendall(early)
            kubelet.settimeout(None)
            splice(client, kubelet)
        finally:
            kubelet.close()


def _send(
    connection: http.client.HTTPSConnection,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    endpoint: Endpoint,
) -> http.client.HTTPResponse:
    try:
        connection.request(method, path, body=body or None, headers=dict(headers))
        return connection.getresponse()
    except (OSError, http.client.HTTPException) as e:
        verb = method.capitalize()
        raise ApiError(500, "InternalError", f'{verb} "{endpoint.url(path)}": {e}') from None


def relayed_error(response: http.client.HTTPResponse, target: Target) -> ApiError:
    """A kubelet's error answer as the Status the client gets: the kubelet's own
    Status if it sent one, else its text under the code's reason."""
    data = response.read(MAX_ERROR_BODY)
    return error_from_body(response.status, data, target)


def error_from_body(code: int, data: bytes, target: Target) -> ApiError:
    text = data.decode(errors="replace").strip()
    try:
        status = json.loads(text)
    except ValueError:
        status = None
    if isinstance(status, dict) and status.get("kind") == "Status":
        return ApiError(int(status.get("code") or code), str(status.get("reason") or
                        _reason(code)), str(status.get("message") or text), target)  # fmt: skip
    return ApiError(code, _reason(code), text or _reason(code), target)


def _reason(code: int) -> str:
    """The Status reason kube-apiserver gives a backend's HTTP code."""
    return {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
            405: "MethodNotAllowed", 409: "Conflict", 410: "Gone", 422: "Invalid",
            429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
            504: "Timeout"}.get(code, "InternalError" if code >= 500 else "BadRequest")  # fmt: skip


def _stream(
    handler: http.server.BaseHTTPRequestHandler,
    response: http.client.HTTPResponse,
    connection: http.client.HTTPSConnection,
    default_type: str,
    *,
    status: int = 200,
) -> None:
    """The kubelet's body to the client, chunk by chunk as it arrives. Stops when the
    kubelet ends it, or when the client goes away (a follower pressing ^C)."""
    handler.send_response(status)
    content_type = response.getheader("Content-Type") or default_type
    if content_type:
        handler.send_header("Content-Type", content_type)
    handler.send_header("Transfer-Encoding", "chunked")
    handler.send_header("Cache-Control", "no-cache, private")
    handler.end_headers()
    handler.wfile.flush()
    done = threading.Event()
    watcher = threading.Thread(
        target=_close_when_client_leaves, args=(handler.connection, connection, done),
        name="kubelet-proxy-watch", daemon=True,
    )  # fmt: skip
    watcher.start()
    ended = False
    try:
        while True:
            data = response.read1(CHUNK)
            if not data:
                ended = True
                break
            handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            handler.wfile.flush()
    except (OSError, http.client.HTTPException, ValueError) as e:
        log.debug("streaming from the kubelet ended: %s", e)
    finally:
        done.set()
        watcher.join()
    if not ended:  # an unfinished body: the client must not take it for a whole one
        handler.close_connection = True
        return
    try:
        handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()
    except OSError:
        handler.close_connection = True


def _close_when_client_leaves(
    client: socket.socket, connection: http.client.HTTPSConnection, done: threading.Event
) -> None:
    """While a body streams the client sends nothing; its socket turning readable
    means it closed, so the kubelet connection is shut to end the stream."""
    while not done.is_set():
        try:
            readable, _, _ = select.select([client], [], [], 0.5)
        except (OSError, ValueError):
            return
        if readable and not done.is_set():
            sock = connection.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            return


def _request_head(
    method: str,
    path: str,
    endpoint: Endpoint,
    headers: Sequence[tuple[str, str]] | Any,
    body_length: int,
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {endpoint.netloc}"]
    for name, value in headers:
        lowered = name.lower()
        if lowered in _DROPPED_REQUEST_HEADERS or lowered.startswith("impersonate-"):
            continue
        if lowered == "content-length":
            continue
        lines.append(f"{name}: {value}")
    if body_length:
        lines.append(f"Content-Length: {body_length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _read_head(sock: socket.socket) -> tuple[int, bytes, list[tuple[str, str]], bytes]:
    """The status, the raw head, its headers and what came after it, of a response."""
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_HEAD:
            raise ValueError("the kubelet's response head is too large")
        more = sock.recv(CHUNK)
        if not more:
            raise ValueError("the kubelet closed the connection before answering")
        data += more
    end = data.index(b"\r\n\r\n") + 4
    raw_head, rest = data[:end], data[end:]
    lines = raw_head.decode("latin-1").split("\r\n")
    version, _, remainder = lines[0].partition(" ")
    code = remainder.split(" ", 1)[0]
    if not version.startswith("HTTP/") or not code.isdigit():
        raise ValueError(f"the kubelet answered {lines[0]!r}")
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    return int(code), raw_head, headers, rest


def _relay_plain(
    handler: http.server.BaseHTTPRequestHandler,
    kubelet: socket.socket,
    status: int,
    raw_head: bytes,
    headers: list[tuple[str, str]],
    rest: bytes,
) -> None:
    """A kubelet's answer that is not an upgrade, to the client as it came."""
    found = {name.lower(): value for name, value in headers}
    body = _read_body(kubelet, found, rest)
    reason = raw_head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)[2:]
    handler.close_connection = True
    handler.send_response(status, reason[0] if reason else None)
    for name, value in headers:
        if name.lower() not in _HOP_BY_HOP:
            handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.send_header("Connection", "close")
    handler.end_headers()
    handler.wfile.write(body)
    handler.wfile.flush()


def _read_body(sock: socket.socket, headers: Mapping[str, str], rest: bytes) -> bytes:
    """A response body: by Content-Length, chunked, or to the end, at most 1 MiB."""
    limit = 1 << 20
    data = rest

    def more() -> bytes:
        received = sock.recv(CHUNK)
        if not received:
            raise EOFError
        return received

    try:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = b""
            while True:
                while b"\r\n" not in data:
                    data += more()
                size_line, data = data.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    return body
                while len(data) < size + 2:
                    data += more()
                body += data[:size]
                data = data[size + 2 :]
                if len(body) > limit:
                    return body[:limit]
        length = headers.get("content-length")
        if length is not None and length.isdigit():
            wanted = min(int(length), limit)
            while len(data) < wanted:
                data += more()
            return data[:wanted]
        while len(data) < limit:
            data += more()
        return data[:limit]
    except (EOFError, OSError, ValueError):
        return data


def _drain_buffered(handler: http.server.BaseHTTPRequestHandler, client: socket.socket) -> bytes:
    """Bytes the client sent after its request head that the handler's reader holds
    already (a client that did not wait for the 101)."""
    reader = handler.rfile
    peek = getattr(reader, "peek", None)
    if peek is None:
        return b""
    previous = client.gettimeout()
    client.setblocking(False)
    try:
        buffered = peek(CHUNK)
    except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError, OSError):
        buffered = b""
    finally:
        client.settimeout(previous)
    return reader.read(len(buffered)) if buffered else b""


def splice(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways between two connected sockets (TLS or not) until either
    side closes. One thread and non-blocking reads: an SSL socket must not be read
    and written from two threads at once, and a TLS record that is not application
    data (a session ticket) must not block the other direction."""
    peer: dict[socket.socket, socket.socket] = {a: b, b: a}
    for sock in (a, b):
        sock.setblocking(False)
    try:
        while True:
            ready: list[socket.socket] = [
                s for s in (a, b) if isinstance(s, ssl.SSLSocket) and s.pending()
            ]
            if not ready:
                ready, _, _ = select.select([a, b], [], [])
            for sock in ready:
                try:
                    data = sock.recv(CHUNK)
                except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    continue
                except OSError:
                    return
                if not data:
                    return
                if not _send_all(peer[sock], data):
                    return
    finally:
        for sock in (a, b):
            try:
                sock.settimeout(5.0)
            except OSError:
                pass


def _send_all(sock: socket.socket, data: bytes) -> bool:
    """Write all of `data` to a non-blocking socket; False if it closed."""
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view)
        except (BlockingIOError, ssl.SSLWantWriteError):
            select.select([], [sock], [], 30)
            continue
        except ssl.SSLWantReadError:
            select.select([sock], [], [], 30)
            continue
        except OSError:
            return False
        view = view[sent:]
    return True


__all__ = [
    "DEFAULT_ADDRESS_TYPES",
    "Endpoint",
    "KubeletClient",
    "KubeletClientConfig",
    "KubeletError",
    "KubeletProxy",
    "ProxyTarget",
    "choose_container",
    "log_path",
    "node_endpoint",
    "parse_address_types",
    "parse_target",
    "splice",
    "stream_path",
]
