"""WebSocket (RFC 6455) connections for the streaming server.

Only what Kubernetes streaming needs: the opening handshake's accept key and
subprotocol choice, binary and text messages (fragmented or not), ping/pong and
close. The server never masks its frames; a client must mask (tests use
`WebSocket(client=True)`). Messages larger than `MAX_MESSAGE` end the connection.

Reading happens on one thread (`receive`); sending from any thread, one frame at a
time under a lock. A ping is answered from the reading thread.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
import threading
from collections.abc import Callable

from cri.streaming.transport import ExactReader

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

CONTINUATION = 0x0
TEXT = 0x1
BINARY = 0x2
CLOSE = 0x8
PING = 0x9
PONG = 0xA

NORMAL_CLOSURE = 1000
PROTOCOL_ERROR = 1002
MESSAGE_TOO_BIG = 1009

MAX_MESSAGE = 16 * 1024 * 1024


class WebSocketError(Exception):
    pass


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for the client's Sec-WebSocket-Key."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def choose_protocol(offered: str, supported: list[str]) -> str | None:
    """The first protocol the client offered (comma-separated) that we support."""
    for name in (part.strip() for part in offered.split(",")):
        if name in supported:
            return name
    return None


def _mask(data: bytes, key: bytes) -> bytes:
    # One big XOR through int arithmetic: fast enough for tens of MB/s.
    if not data:
        return data
    repeated = (key * (len(data) // 4 + 1))[: len(data)]
    value = int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")
    return value.to_bytes(len(data), "big")


def encode_frame(opcode: int, payload: bytes, *, masked: bool, fin: bool = True) -> bytes:
    first = (0x80 if fin else 0) | opcode
    length = len(payload)
    mask_bit = 0x80 if masked else 0
    if length < 126:
        header = struct.pack(">BB", first, mask_bit | length)
    elif length < 1 << 16:
        header = struct.pack(">BBH", first, mask_bit | 126, length)
    else:
        header = struct.pack(">BBQ", first, mask_bit | 127, length)
    if masked:
        key = os.urandom(4)
        return header + key + _mask(payload, key)
    return header + payload


class WebSocket:
    def __init__(
        self,
        recv: Callable[[int], bytes],
        sendall: Callable[[bytes], None],
        close: Callable[[], None],
        *,
        client: bool = False,
    ) -> None:
        self._sendall = sendall
        self._close_transport = close
        self.client = client
        self._reader = ExactReader(recv)
        self._write_lock = threading.Lock()
        self.close_sent = False
        self.closed = False

    def _frame(self) -> tuple[bool, int, bytes]:
        first, second = self._reader.read_exactly(2)
        fin, opcode = bool(first & 0x80), first & 0x0F
        masked, length = bool(second & 0x80), second & 0x7F
        if length == 126:
            (length,) = struct.unpack(">H", self._reader.read_exactly(2))
        elif length == 127:
            (length,) = struct.unpack(">Q", self._reader.read_exactly(8))
        if length > MAX_MESSAGE:
            self.send_close(MESSAGE_TOO_BIG, "message too big")
            raise WebSocketError(f"frame of {length} bytes is too big")
        if masked == self.client:
            raise WebSocketError("masking is the client's, and only the client's")
        key = self._reader.read_exactly(4) if masked else b""
        payload = self._reader.read_exactly(length)
        return fin, opcode, _mask(payload, key) if masked else payload

    def receive(self) -> tuple[int, bytes] | None:
        """The next message (TEXT or BINARY, payload); None once the peer closed the
        connection (its close frame is answered) or the transport ended."""
        message = bytearray()
        kind = None
        try:
            while True:
                fin, opcode, payload = self._frame()
                if opcode == PING:
                    self._send(PONG, payload)
                    continue
                if opcode == PONG:
                    continue
                if opcode == CLOSE:
                    self.send_close(NORMAL_CLOSURE)
                    return None
                if opcode == CONTINUATION:
                    if kind is None:
                        raise WebSocketError("continuation frame without a message")
                elif opcode in (TEXT, BINARY):
                    if kind is not None:
                        raise WebSocketError("new message inside a fragmented one")
                    kind = opcode
                else:
                    raise WebSocketError(f"unknown opcode {opcode}")
                message += payload
                if len(message) > MAX_MESSAGE:
                    raise WebSocketError("message too big")
                if fin:
                    return kind, bytes(message)
        except (EOFError, OSError):
            return None
        except WebSocketError:
            self.send_close(PROTOCOL_ERROR)
            return None

    def _send(self, opcode: int, payload: bytes) -> None:
        frame = encode_frame(opcode, payload, masked=self.client)
        with self._write_lock:
            if self.close_sent and opcode != CLOSE:
                raise WebSocketError("connection closed")
            self._sendall(frame)

    def send_binary(self, payload: bytes) -> None:
        self._send(BINARY, payload)

    def send_close(self, code: int = NORMAL_CLOSURE, reason: str = "") -> None:
        """Send a close frame once (further sends fail)."""
        with self._write_lock:
            if self.close_sent:
                return
            self.close_sent = True
            try:
                payload = struct.pack(">H", code) + reason.encode()[:120]
                self._sendall(encode_frame(CLOSE, payload, masked=self.client))
            except OSError:
                pass

    def close(self) -> None:
        """Close frame if not sent yet, then the transport."""
        self.send_close()
        if not self.closed:
            self.closed = True
            try:
                self._close_transport()
            except OSError:
                pass


class WebSocketTransport:
    """The byte stream carried by a WebSocket's binary messages: how port-forward
    tunnels a SPDY session over WebSocket (subprotocol SPDY/3.1+portforward.k8s.io)."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self._pending = b""

    def recv(self, size: int) -> bytes:
        while not self._pending:
            message = self.websocket.receive()
            if message is None:
                return b""
            self._pending = message[1]
        data, self._pending = self._pending[:size], self._pending[size:]
        return data

    def sendall(self, data: bytes) -> None:
        try:
            self.websocket.send_binary(data)
        except WebSocketError as e:
            raise OSError(str(e)) from None

    def close(self) -> None:
        self.websocket.close()
