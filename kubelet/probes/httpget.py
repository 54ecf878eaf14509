"""The HTTP GET of httpGet probes and lifecycle hooks, with the kubelet's client rules:

- HTTPS without certificate verification (pods serve self-signed certificates);
- no proxy, no keep-alive (`Connection: close`), no compression;
- `User-Agent: kube-probe/<major.minor>` (`kube-lifecycle/…` for hooks) and
  `Accept: */*` unless the action's httpHeaders set them; a `Host` header there
  becomes the request's host;
- redirects are followed (at most 10) only while they stay on the original host name;
  a redirect elsewhere ends the request with that 3xx answer, which the probe counts
  as a success with a warning;
- one deadline for the whole exchange, redirects included;
- at most 10 KiB of the body is read: it is only a message.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from kubelet.probes.spec import resolve_port

KUBE_VERSION = "1.32"  # the Kubernetes minor version kubeling's API serves
PROBE_USER_AGENT = f"kube-probe/{KUBE_VERSION}"
LIFECYCLE_USER_AGENT = f"kube-lifecycle/{KUBE_VERSION}"
MAX_BODY_BYTES = 10 * 1024
MAX_REDIRECTS = 10
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})


class HttpGetError(Exception):
    """The request got no answer (connection refused, timeout, TLS, too many
    redirects); the message reads like the kubelet's: `Get "<url>": <why>`."""


@dataclass(frozen=True, slots=True)
class HttpRequest:
    scheme: str  # "http" or "https"
    host: str
    port: int
    target: str  # path and query, starting with "/"
    headers: tuple[tuple[str, str], ...]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.target}"


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: bytes  # at most MAX_BODY_BYTES
    url: str  # of the answer that ended the request (after same-host redirects)


def build_request(
    action: dict[str, Any], container: dict[str, Any], pod_ip: str, *, user_agent: str
) -> HttpRequest:
    """The request an httpGet action describes. ValueError for a port that does not
    resolve or a missing host."""
    host = str(action.get("host") or pod_ip)
    if not host:
        raise ValueError("no host: the action sets none and the pod has no IP yet")
    port = resolve_port(action.get("port"), container)
    target = str(action.get("path") or "/")
    if not target.startswith("/"):
        target = "/" + target
    headers: list[tuple[str, str]] = []
    for header in action.get("httpHeaders") or []:
        name = str(header.get("name", "")).strip()
        if not name:
            raise ValueError("httpHeaders: a header without a name")
        headers.append((name, str(header.get("value", ""))))
    present = {name.lower() for name, _ in headers}
    if "user-agent" not in present:
        headers.append(("User-Agent", user_agent))
    if "accept" not in present:
        headers.append(("Accept", "*/*"))
    scheme = str(action.get("scheme") or "HTTP").lower()
    return HttpRequest(scheme, host, port, target, tuple(headers))


def _unverified_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _exchange(request: HttpRequest, deadline: float) -> tuple[int, str | None, bytes]:
    """One GET: its status, its Location header and at most MAX_BODY_BYTES of body."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("timed out")
    connection: http.client.HTTPConnection
    if request.scheme == "https":
        connection = http.client.HTTPSConnection(
            request.host, request.port, timeout=remaining, context=_unverified_tls()
        )
    else:
        connection = http.client.HTTPConnection(request.host, request.port, timeout=remaining)
    try:
        own_host = any(name.lower() == "host" for name, _ in request.headers)
        connection.putrequest("GET", request.target, skip_host=own_host, skip_accept_encoding=True)
        for name, value in request.headers:
            connection.putheader(name, value)
        connection.putheader("Connection", "close")
        connection.endheaders()
        if connection.sock is not None:
            connection.sock.settimeout(max(deadline - time.monotonic(), 0.001))
        response = connection.getresponse()
        body = response.read(MAX_BODY_BYTES)
        return response.status, response.getheader("Location"), body
    finally:
        connection.close()


def _why(error: BaseException, request: HttpRequest) -> str:
    address = f"{request.host}:{request.port}"
    if isinstance(error, TimeoutError | socket.timeout):
        return f"dial or read {address}: timed out"
    if isinstance(error, ConnectionRefusedError):
        return f"dial tcp {address}: connect: connection refused"
    if isinstance(error, ssl.SSLError):
        return f"tls with {address}: {error.reason or error}"
    if isinstance(error, OSError) and error.strerror:
        return f"dial tcp {address}: {error.strerror.lower()}"
    return f"{address}: {error}"


def http_get(request: HttpRequest, timeout: float) -> HttpResponse:
    """GET `request` within `timeout` seconds, following same-host redirects.
    HttpGetError when there is no answer to report."""
    deadline = time.monotonic() + timeout
    original_host = request.host.lower()
    current = request
    for _ in range(MAX_REDIRECTS + 1):
        try:
            status, location, body = _exchange(current, deadline)
        except (OSError, http.client.HTTPException, ValueError) as e:
            # ValueError: http.client refusing a header name or value (a newline in it)
            raise HttpGetError(f'Get "{current.url}": {_why(e, current)}') from e
        if status not in REDIRECT_CODES or not location:
            return HttpResponse(status, body, current.url)
        following = _redirected(current, location)
        if following is None or following.host.lower() != original_host:
            return HttpResponse(status, body, current.url)  # leaves the host: stop here
        current = following
    raise HttpGetError(f'Get "{current.url}": stopped after {MAX_REDIRECTS} redirects')


def _redirected(request: HttpRequest, location: str) -> HttpRequest | None:
    """The request a Location header points to (None when it is not http(s)). A
    relative Location keeps the request's own Host header; an absolute one drops it."""
    target = urllib.parse.urlsplit(urllib.parse.urljoin(request.url, location))
    if target.scheme not in ("http", "https") or not target.hostname:
        return None
    try:
        port = target.port or (443 if target.scheme == "https" else 80)
    except ValueError:  # a port out of range or not a number
        return None
    path = (target.path or "/") + (f"?{target.query}" if target.query else "")
    relative = not urllib.parse.urlsplit(location).netloc
    headers = tuple(
        (name, value) for name, value in request.headers if relative or name.lower() != "host"
    )
    return HttpRequest(target.scheme, target.hostname, port, path, headers)
