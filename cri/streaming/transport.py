"""What the framing layers share: the byte stream under them, read in exact sizes,
and the buffer in which a reader thread leaves bytes for a consumer.

`Transport` is a socket, or a WebSocket carrying a SPDY session (port-forward
tunnelled over WebSocket). `ExactReader` buffers its reads so a frame's header and
payload can be taken `read_exactly`. `InboundBuffer` is what a stream or channel
holds of its peer's data until the handler reads it: `read` blocks until data, or
returns b"" once the peer ended it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol


class Transport(Protocol):
    def recv(self, size: int) -> bytes: ...

    def sendall(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class ExactReader:
    def __init__(self, recv: Callable[[int], bytes]) -> None:
        self._recv = recv
        self._buffer = bytearray()

    def read_exactly(self, size: int) -> bytes:
        """`size` bytes; EOFError if the stream ends first."""
        while len(self._buffer) < size:
            chunk = self._recv(max(65536, size - len(self._buffer)))
            if not chunk:
                raise EOFError
            self._buffer += chunk
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data


class InboundBuffer:
    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._buffer = bytearray()
        self._closed = False

    def feed(self, data: bytes) -> None:
        with self._lock:
            if not self._closed:
                self._buffer += data
                self._lock.notify_all()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()

    def read(self, size: int = 65536) -> bytes:
        with self._lock:
            while not self._buffer and not self._closed:
                self._lock.wait()
            data = bytes(self._buffer[:size])
            del self._buffer[:size]
            return data

    @property
    def drained(self) -> bool:
        """Closed, and everything fed has been read."""
        with self._lock:
            return self._closed and not self._buffer
