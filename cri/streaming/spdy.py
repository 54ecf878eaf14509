"""SPDY/3.1 sessions as Kubernetes streaming uses them.

client-go (exec, attach, port-forward) upgrades an HTTP/1.1 connection to
`SPDY/3.1` and then opens one SPDY stream per channel: the client sends SYN_STREAM
with headers such as `streamtype: stdout`, the server answers SYN_REPLY, and both
sides send DATA frames; a frame with the FIN flag half-closes the stream, RST_STREAM
aborts it. Header blocks are zlib-compressed with the SPDY/3 dictionary, one zlib
context per direction for the whole session. The peers Kubernetes uses (moby's
spdystream) neither send nor honour WINDOW_UPDATE, so there is no flow control here
either: a received WINDOW_UPDATE or SETTINGS is ignored, a PING is echoed.

Frames (all integers big-endian):

    control: 1 bit 1, 15 bits version (3), 16 bits type, 8 bits flags, 24 bits length
    data:    1 bit 0, 31 bits stream id,                  8 bits flags, 24 bits length

`Session` runs one connection: `serve()` reads frames on the calling thread until the
peer goes away; streams opened by the peer are handed to `on_stream` (from that
thread: it must not block). Writes come from any thread, one frame at a time under a
lock. A `Stream`'s `read` blocks until data, FIN or the end of the session.
"""

from __future__ import annotations

import logging
import struct
import threading
import zlib
from collections.abc import Callable, Mapping

from cri.streaming.transport import ExactReader, InboundBuffer, Transport

log = logging.getLogger(__name__)

VERSION = 3
UPGRADE = "SPDY/3.1"

SYN_STREAM = 1
SYN_REPLY = 2
RST_STREAM = 3
SETTINGS = 4
PING = 6
GOAWAY = 7
HEADERS = 8
WINDOW_UPDATE = 9

FLAG_FIN = 0x01

# RST_STREAM status codes.
PROTOCOL_ERROR = 1
INVALID_STREAM = 2
REFUSED_STREAM = 3
CANCEL = 5
INTERNAL_ERROR = 6

MAX_FRAME = (1 << 24) - 1
# Data is sent in frames of at most this size, so that streams interleave.
DATA_CHUNK = 32 * 1024
MAX_HEADER_BLOCK = 1 << 20


def _dictionary() -> bytes:
    """The header compression dictionary of the SPDY/3 draft (section 2.6.10.1):
    length-prefixed header names and values, then common value fragments."""
    names = (
        "options head post put delete trace accept accept-charset accept-encoding "
        "accept-language accept-ranges age allow authorization cache-control connection "
        "content-base content-encoding content-language content-length content-location "
        "content-md5 content-range content-type date etag expect expires from host "
        "if-match if-modified-since if-none-match if-range if-unmodified-since "
        "last-modified location max-forwards pragma proxy-authenticate "
        "proxy-authorization range referer retry-after server te trailer "
        "transfer-encoding upgrade user-agent vary via warning www-authenticate method "
        "get status"
    )
    words = [*names.split(), "200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie",
             "keep-alive", "origin"]  # fmt: skip
    tail = (
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417"
        "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently"
        "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error"
        "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept "
        "Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,"
        "image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
        "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8"
        "charset=iso-8859-1,utf-,*,enq=0."
    )
    prefixed = b"".join(struct.pack(">I", len(w)) + w.encode() for w in words)
    return prefixed + tail.encode()


DICTIONARY = _dictionary()


class SpdyError(Exception):
    """The peer broke the protocol; the session ends."""


def encode_headers(headers: Mapping[str, str]) -> bytes:
    """A header block before compression: names lower-cased."""
    parts = [struct.pack(">I", len(headers))]
    for name, value in headers.items():
        raw_name, raw_value = name.lower().encode(), value.encode()
        parts.append(struct.pack(">I", len(raw_name)) + raw_name)
        parts.append(struct.pack(">I", len(raw_value)) + raw_value)
    return b"".join(parts)


def decode_headers(block: bytes) -> dict[str, str]:
    """A decompressed header block; several values of one name (NUL-separated) are
    kept joined by NUL."""
    try:
        (count,) = struct.unpack_from(">I", block, 0)
        offset = 4
        headers: dict[str, str] = {}
        for _ in range(count):
            (length,) = struct.unpack_from(">I", block, offset)
            name = block[offset + 4 : offset + 4 + length].decode()
            offset += 4 + length
            (length,) = struct.unpack_from(">I", block, offset)
            value = block[offset + 4 : offset + 4 + length].decode()
            offset += 4 + length
            if offset > len(block):
                raise SpdyError("header block truncated")
            headers[name.lower()] = value
        return headers
    except (struct.error, UnicodeDecodeError) as e:
        raise SpdyError(f"malformed header block: {e}") from None


class Stream:
    """One SPDY stream. `read` returns b"" once the peer half-closed it (FIN), reset
    it, or the session ended."""

    def __init__(self, session: Session, stream_id: int, headers: dict[str, str]) -> None:
        self.session = session
        self.id = stream_id
        self.headers = headers
        self._inbound = InboundBuffer()
        self._local_closed = False
        self.reset_by_peer = False
        self.accepted = False  # the peer's SYN_REPLY came (a reset after it is no refusal)
        self.replied = threading.Event()

    def __repr__(self) -> str:
        return f"Stream({self.id}, {self.headers.get('streamtype', '')!r})"

    # -- from the session's reader ----------------------------------------------------

    def _received(self, data: bytes, fin: bool) -> None:
        if data:
            self._inbound.feed(data)
        if fin:
            self._inbound.close()

    def _ended(self, *, reset: bool = False) -> None:
        if reset:
            self._local_closed = True
            self.reset_by_peer = True
        self._inbound.close()

    # -- for users --------------------------------------------------------------------

    def read(self, size: int = 65536) -> bytes:
        return self._inbound.read(size)

    def read_all(self) -> bytes:
        chunks = []
        while data := self.read():
            chunks.append(data)
        return b"".join(chunks)

    def write(self, data: bytes) -> None:
        """Send `data`; SpdyError once the stream or session is closed."""
        if self._local_closed:
            raise SpdyError(f"stream {self.id} is closed for writing")
        view = memoryview(data)
        for start in range(0, len(view), DATA_CHUNK):
            self.session.send_data(self.id, bytes(view[start : start + DATA_CHUNK]))

    def close(self) -> None:
        """Half-close: our side sends no more (a FIN). Idempotent."""
        if self._local_closed:
            return
        self._local_closed = True
        try:
            self.session.send_data(self.id, b"", fin=True)
        except (SpdyError, OSError):
            pass

    def reset(self, status: int = CANCEL) -> None:
        """Abort the stream both ways."""
        self._local_closed = True
        self._ended()
        try:
            self.session.send_reset(self.id, status)
        except (SpdyError, OSError):
            pass

    @property
    def remote_closed(self) -> bool:
        return self._inbound.drained


class Session:
    """One SPDY connection, as the server (`server=True`: the peer opens odd-numbered
    streams) or as the client (it opens them: used by tests and tools)."""

    def __init__(
        self,
        transport: Transport,
        *,
        server: bool,
        on_stream: Callable[[Stream], None] | None = None,
    ) -> None:
        self.transport = transport
        self.server = server
        self._on_stream = on_stream
        self._write_lock = threading.Lock()
        self._compressor = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY,
                                            DICTIONARY)  # fmt: skip
        self._decompressor = zlib.decompressobj(zdict=DICTIONARY)
        self._streams: dict[int, Stream] = {}
        self._streams_lock = threading.Lock()
        self._next_id = 2 if server else 1
        self._reader = ExactReader(transport.recv)
        self.closed = threading.Event()

    # -- writing ----------------------------------------------------------------------

    def _send(self, frame: bytes) -> None:
        if self.closed.is_set():
            raise SpdyError("session closed")
        with self._write_lock:
            self.transport.sendall(frame)

    def _send_control(self, kind: int, flags: int, payload: bytes) -> None:
        header = struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload))
        self._send(header + payload)

    def _send_with_headers(
        self, kind: int, flags: int, prefix: bytes, headers: Mapping[str, str]
    ) -> None:
        # Compression and sending stay in one critical section: the peer's
        # decompressor must see the blocks in the order they were compressed.
        with self._write_lock:
            if self.closed.is_set():
                raise SpdyError("session closed")
            block = self._compressor.compress(encode_headers(headers))
            block += self._compressor.flush(zlib.Z_SYNC_FLUSH)
            payload = prefix + block
            header = struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload))
            self.transport.sendall(header + payload)

    def send_data(self, stream_id: int, data: bytes, *, fin: bool = False) -> None:
        flags = FLAG_FIN if fin else 0
        self._send(struct.pack(">II", stream_id & 0x7FFFFFFF, (flags << 24) | len(data)) + data)

    def send_reset(self, stream_id: int, status: int) -> None:
        self._send_control(RST_STREAM, 0, struct.pack(">II", stream_id, status))

    def open_stream(self, headers: Mapping[str, str], timeout: float = 30.0) -> Stream:
        """Open a stream (client side) and wait for the peer's SYN_REPLY."""
        with self._streams_lock:
            stream_id = self._next_id
            self._next_id += 2
            stream = Stream(self, stream_id, {k.lower(): v for k, v in headers.items()})
            self._streams[stream_id] = stream
        prefix = struct.pack(">IIBB", stream_id, 0, 0, 0)
        self._send_with_headers(SYN_STREAM, 0, prefix, headers)
        if not stream.replied.wait(timeout):
            raise SpdyError(f"no reply to stream {stream_id} within {timeout} s")
        # Refused: reset instead of a reply. A stream the peer accepted and then reset
        # at once (a port forward whose connect failed) is returned; it reads as ended.
        if stream.reset_by_peer and not stream.accepted:
            raise SpdyError(f"stream {stream_id} refused")
        return stream

    def ping(self, ping_id: int) -> None:
        self._send_control(PING, 0, struct.pack(">I", ping_id))

    def close(self) -> None:
        """GOAWAY, then close the transport; every stream's reader gets EOF."""
        if self.closed.is_set():
            return
        try:
            last = max((s for s in self._streams if (s % 2 == 1) == self.server), default=0)
            self._send_control(GOAWAY, 0, struct.pack(">II", last, 0))
        except (SpdyError, OSError):
            pass
        self._shutdown()

    def _shutdown(self) -> None:
        self.closed.set()
        try:
            self.transport.close()
        except OSError:
            pass
        with self._streams_lock:
            streams = list(self._streams.values())
        for stream in streams:
            stream._ended()
            stream.replied.set()

    # -- reading ----------------------------------------------------------------------

    def serve(self) -> None:
        """Read and handle frames until the peer closes the connection or breaks the
        protocol; then the session is closed."""
        try:
            while True:
                head = self._reader.read_exactly(8)
                first, second = struct.unpack(">II", head)
                flags, length = second >> 24, second & 0xFFFFFF
                payload = self._reader.read_exactly(length)
                if first & 0x80000000:
                    version, kind = (first >> 16) & 0x7FFF, first & 0xFFFF
                    if version != VERSION:
                        raise SpdyError(f"unsupported SPDY version {version}")
                    self._control(kind, flags, payload)
                else:
                    self._data(first & 0x7FFFFFFF, flags, payload)
        except (EOFError, OSError):
            pass
        except SpdyError as e:
            log.info("spdy session ended: %s", e)
        except zlib.error as e:
            log.info("spdy session ended: bad header block: %s", e)
        finally:
            self._shutdown()

    def _headers_from(self, block: bytes) -> dict[str, str]:
        raw = self._decompressor.decompress(block, MAX_HEADER_BLOCK)
        if self._decompressor.unconsumed_tail:
            raise SpdyError("header block too large")
        return decode_headers(raw)

    def _control(self, kind: int, flags: int, payload: bytes) -> None:
        if kind == SYN_STREAM:
            if len(payload) < 10:
                raise SpdyError("short SYN_STREAM")
            stream_id = struct.unpack_from(">I", payload)[0] & 0x7FFFFFFF
            headers = self._headers_from(payload[10:])
            self._syn_stream(stream_id, headers, fin=bool(flags & FLAG_FIN))
        elif kind == SYN_REPLY:
            stream_id = struct.unpack_from(">I", payload)[0] & 0x7FFFFFFF
            self._headers_from(payload[4:])  # keeps the zlib context in step
            stream = self._stream(stream_id)
            if stream is not None:
                stream.accepted = True
                stream.replied.set()
                if flags & FLAG_FIN:
                    stream._received(b"", True)
        elif kind == RST_STREAM:
            stream_id = struct.unpack_from(">I", payload)[0] & 0x7FFFFFFF
            stream = self._forget(stream_id)
            if stream is not None:
                stream._ended(reset=True)
                stream.replied.set()
        elif kind == HEADERS:
            self._headers_from(payload[4:])
        elif kind == PING:
            # Echo the peer's pings (the initiator's parity differs from ours).
            (ping_id,) = struct.unpack_from(">I", payload)
            if (ping_id % 2 == 1) == self.server:
                self.ping(ping_id)
        elif kind == GOAWAY:
            raise EOFError
        # SETTINGS, WINDOW_UPDATE and unknown types: nothing to do (see the docstring).

    def _syn_stream(self, stream_id: int, headers: dict[str, str], *, fin: bool) -> None:
        with self._streams_lock:
            if stream_id in self._streams or stream_id == 0:
                duplicate = True
            else:
                duplicate = False
                stream = Stream(self, stream_id, headers)
                stream.replied.set()
                self._streams[stream_id] = stream
        if duplicate:
            self.send_reset(stream_id, PROTOCOL_ERROR)
            return
        self._send_with_headers(SYN_REPLY, 0, struct.pack(">I", stream_id), {})
        if fin:
            stream._received(b"", True)
        if self._on_stream is None:
            stream.reset(REFUSED_STREAM)
            return
        self._on_stream(stream)

    def _data(self, stream_id: int, flags: int, payload: bytes) -> None:
        stream = self._stream(stream_id)
        if stream is None:
            return  # data for a stream already gone: dropped, as spdystream does
        stream._received(payload, bool(flags & FLAG_FIN))

    def _stream(self, stream_id: int) -> Stream | None:
        with self._streams_lock:
            return self._streams.get(stream_id)

    def _forget(self, stream_id: int) -> Stream | None:
        with self._streams_lock:
            return self._streams.pop(stream_id, None)
