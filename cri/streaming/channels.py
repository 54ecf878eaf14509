"""The channels of one exec or attach session, over SPDY streams or a WebSocket.

Kubernetes' remote-command protocols carry up to five channels: stdin (client to
server), stdout, stderr, error (server to client: how the command ended) and resize
(client to server: terminal sizes as JSON `{"Width": 80, "Height": 24}`, one after
another). Over SPDY each is a stream the client opens, named by its `streamtype`
header; over WebSocket they share the connection, each message starting with the
channel's number (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize; with
v5.channel.k8s.io the message `255 <n>` closes channel n, which is how a client says
stdin has ended).

`Channels` is what the session handler sees: a readable stdin, writable stdout and
stderr, terminal sizes, and `finish(status)` that writes the error channel and ends
the session.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cri.streaming.spdy import SpdyError, Stream
from cri.streaming.transport import InboundBuffer
from cri.streaming.websocket import WebSocket, WebSocketError

log = logging.getLogger(__name__)

STDIN = 0
STDOUT = 1
STDERR = 2
ERROR = 3
RESIZE = 4
CLOSE_SIGNAL = 255


@dataclass(frozen=True, slots=True)
class TerminalSize:
    width: int
    height: int


class Reader(Protocol):
    def read(self, size: int = 65536) -> bytes: ...


class Writer(Protocol):
    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class Channels:
    """The channels one session has; any of stdin, stdout, stderr may be None.
    Terminal sizes arrive on `resizes` (a None ends them)."""

    def __init__(
        self,
        *,
        stdin: Reader | None,
        stdout: Writer | None,
        stderr: Writer | None,
        finish: Callable[[bytes], None],
    ) -> None:
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.resizes: queue.Queue[TerminalSize | None] = queue.Queue()
        self._finish = finish
        self._finished = False

    def finish(self, error: bytes) -> None:
        """Write `error` (may be empty) on the error channel and end the session."""
        if self._finished:
            return
        self._finished = True
        for writer in (self.stdout, self.stderr):
            if writer is not None:
                try:
                    writer.close()
                except (OSError, SpdyError, WebSocketError):
                    pass
        self.resizes.put(None)
        self._finish(error)


def parse_sizes(data: bytes, pending: bytearray) -> list[TerminalSize]:
    """Terminal sizes from the resize channel's bytes (JSON values back to back,
    possibly split across reads); `pending` keeps an incomplete tail."""
    pending += data
    sizes = []
    decoder = json.JSONDecoder()
    text = pending.decode(errors="replace")
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            break
        try:
            value, end = decoder.raw_decode(text, position)
        except ValueError:
            break
        position = end
        if isinstance(value, dict):
            try:
                sizes.append(TerminalSize(int(value["Width"]), int(value["Height"])))
            except (KeyError, TypeError, ValueError):
                log.info("ignored a malformed terminal size %r", value)
    del pending[: len(text[:position].encode())]
    return sizes


def pump_resizes(stream: Reader, sizes: queue.Queue[TerminalSize | None]) -> None:
    """Copy terminal sizes from a resize stream to `sizes` until it ends."""
    pending = bytearray()
    while data := stream.read():
        for size in parse_sizes(data, pending):
            sizes.put(size)


# -- SPDY -----------------------------------------------------------------------------------


class StreamWriter:
    """A SPDY stream as a writer: close() half-closes it (FIN)."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream

    def write(self, data: bytes) -> None:
        self.stream.write(data)

    def close(self) -> None:
        self.stream.close()


def spdy_channels(streams: dict[str, Stream], finish: Callable[[bytes], None]) -> Channels:
    """Channels over the SPDY streams a client opened, keyed by streamtype."""
    error = streams["error"]

    def finish_session(message: bytes) -> None:
        try:
            if message:
                error.write(message)
            error.close()
        except (SpdyError, OSError):
            pass
        stdin = streams.get("stdin")
        if stdin is not None:
            stdin.close()  # the client waits for the server to close stdin too
        finish(message)

    stdout, stderr = streams.get("stdout"), streams.get("stderr")
    channels = Channels(
        stdin=streams.get("stdin"),
        stdout=StreamWriter(stdout) if stdout else None,
        stderr=StreamWriter(stderr) if stderr else None,
        finish=finish_session,
    )
    resize = streams.get("resize")
    if resize is not None:
        threading.Thread(
            target=pump_resizes, args=(resize, channels.resizes), daemon=True,
            name="kubeling-resize",
        ).start()  # fmt: skip
    return channels


# -- WebSocket ---------------------------------------------------------------------------


class ChannelWriter:
    """One outbound channel of a WebSocket: each write is a message `<n><data>`."""

    def __init__(self, websocket: WebSocket, channel: int) -> None:
        self.websocket = websocket
        self.prefix = bytes([channel])

    def write(self, data: bytes) -> None:
        self.websocket.send_binary(self.prefix + data)

    def close(self) -> None:
        pass  # channels end with the connection (v5 clients ignore a close signal)


def websocket_channels(
    websocket: WebSocket,
    *,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    finish: Callable[[bytes], None],
) -> tuple[Channels, Callable[[], None]]:
    """Channels over a WebSocket, and the read loop to run on a thread of its own
    (it returns when the client closes the connection)."""
    inbound = InboundBuffer() if stdin else None
    pending = bytearray()

    def finish_session(message: bytes) -> None:
        try:
            websocket.send_binary(bytes([ERROR]) + message)
        except (WebSocketError, OSError):
            pass
        finish(message)

    channels = Channels(
        stdin=inbound,
        stdout=ChannelWriter(websocket, STDOUT) if stdout else None,
        stderr=ChannelWriter(websocket, STDERR) if stderr else None,
        finish=finish_session,
    )

    def read_loop() -> None:
        try:
            while (message := websocket.receive()) is not None:
                payload = message[1]
                if not payload:
                    continue
                channel, data = payload[0], payload[1:]
                if channel == STDIN and inbound is not None:
                    inbound.feed(data)
                elif channel == RESIZE:
                    for size in parse_sizes(data, pending):
                        channels.resizes.put(size)
                elif channel == CLOSE_SIGNAL and data[:1] == bytes([STDIN]) and inbound is not None:
                    inbound.close()
        finally:
            if inbound is not None:
                inbound.close()
            channels.resizes.put(None)

    return channels, read_loop
