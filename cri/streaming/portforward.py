"""Port forwarding, server side (protocol `portforward.k8s.io` over SPDY).

For each connection the client opens two streams with the same `requestid` and
`port` headers: `streamtype: error` (which the client half-closes at once and reads
until we close it) and `streamtype: data`. Once both are there, a thread connects to
the port in the pod's network namespace (through `connect`, from the CRI side) and
copies both ways: EOF from the client (FIN on the data stream) shuts the socket's
write side, EOF from the pod FINs the data stream. A failure to connect is written
on the error stream as text. Then both streams are closed.

The same session also arrives tunnelled over a WebSocket (subprotocol
`SPDY/3.1+portforward.k8s.io`, client-go's default since Kubernetes 1.31): the SPDY
bytes are the WebSocket's binary messages (see `websocket.WebSocketTransport`).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable

from cri.streaming.spdy import SpdyError, Stream

log = logging.getLogger(__name__)

PROTOCOL = "portforward.k8s.io"
TUNNEL_PROTOCOL = f"SPDY/3.1+{PROTOCOL}"

Connect = Callable[[int], socket.socket]


class PortForwardError(Exception):
    """Connecting to the pod's port failed; the message goes to the client."""


def parse_port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise PortForwardError(f"invalid port {text!r}") from None
    if not 0 < port < 65536:
        raise PortForwardError(f"invalid port {port}")
    return port


class PortForwarder:
    """Pairs the streams of one session and serves each pair on a thread."""

    def __init__(self, connect: Connect, *, what: str) -> None:
        self._connect = connect
        self._what = what
        self._lock = threading.Lock()
        self._pending: dict[str, dict[str, Stream]] = {}

    def on_stream(self, stream: Stream) -> None:
        """Called from the session's reader thread for each new stream."""
        kind = stream.headers.get("streamtype", "")
        if kind not in ("error", "data"):
            stream.reset()
            return
        request_id = stream.headers.get("requestid")
        if request_id is None:
            # Old clients send no request id: a data stream follows its error stream.
            request_id = f"stream-{stream.id if kind == 'error' else stream.id - 2}"
        key = f"{stream.headers.get('port', '')}/{request_id}"
        with self._lock:
            pair = self._pending.setdefault(key, {})
            if kind in pair:
                stream.reset()
                return
            pair[kind] = stream
            if len(pair) < 2:
                return
            del self._pending[key]
        threading.Thread(
            target=self._serve, args=(pair["error"], pair["data"]),
            name="kubeling-portforward", daemon=True,
        ).start()  # fmt: skip

    def _serve(self, error: Stream, data: Stream) -> None:
        try:
            port = parse_port(data.headers.get("port", ""))
            try:
                connection = self._connect(port)
            except OSError as e:
                raise PortForwardError(
                    f"{self._what}: connect to port {port}: {e.strerror or e}"
                ) from None
        except PortForwardError as e:
            log.info("port forward: %s", e)
            try:
                error.write(str(e).encode())
            except SpdyError:
                pass
            error.close()
            data.reset()
            return
        with connection:
            upstream = threading.Thread(
                target=_client_to_pod, args=(data, connection), daemon=True,
                name="kubeling-portforward-in",
            )  # fmt: skip
            upstream.start()
            _pod_to_client(connection, data)
            upstream.join()
        error.close()


def _client_to_pod(data: Stream, connection: socket.socket) -> None:
    try:
        while chunk := data.read():
            connection.sendall(chunk)
        connection.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _pod_to_client(connection: socket.socket, data: Stream) -> None:
    try:
        while chunk := connection.recv(65536):
            data.write(chunk)
    except (OSError, SpdyError):
        pass
    data.close()
