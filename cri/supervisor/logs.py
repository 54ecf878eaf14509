"""Container logs in the CRI format, as the kubelet reads them.

One record per line:

    <timestamp> <stdout|stderr> <F|P> <content>\\n

`F` ends a line of the container's output (its newline is the record's own), `P` is
part of a longer line continued by the next record of the same stream. As
containerd (`max_container_log_line_size` = 16 KiB), a line longer than
`MAX_RECORD_BYTES` is cut into `P` records of at most that many bytes and a final
`F`; output that ends without a newline (the stream closed) is written as a `P`
record. A partial record is emitted only when more than 16 KiB are waiting without a
newline, never because output paused. A cut never splits a UTF-8 sequence (it moves
back to the sequence's first byte), so each record is valid UTF-8 when the output is;
other bytes are copied as they are. `\\r` is kept, as containerd keeps it.

Timestamps are RFC 3339 in UTC with nanoseconds, always 9 digits
(`2024-05-01T12:00:00.123456789Z`): the kubelet parses them with Go's RFC3339Nano.

`LineFramer` is pure (bytes in, records out); `LogFile` owns the file: created
0640 (with its directory, if missing), opened O_APPEND, reopened on request after the
kubelet rotated it. A failing write (disk full) drops that output and is logged once
per file until a write succeeds again: the container is never blocked on its log.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)

MAX_RECORD_BYTES = 16 * 1024
STDOUT = b"stdout"
STDERR = b"stderr"
FULL = b"F"
PARTIAL = b"P"

Record = tuple[bytes, bytes]
"""(tag, content): FULL or PARTIAL and the bytes of the line without its newline."""


def utf8_cut(data: bytes | bytearray, start: int, cut: int) -> int:
    """`cut`, or the first byte of the UTF-8 sequence that `cut` would split (if that
    is after `start`). Sequences are at most 4 bytes, so at most 3 bytes move."""
    for back in range(1, 4):
        i = cut - back
        if i <= start:
            break
        byte = data[i]
        if byte & 0xC0 == 0x80:  # a continuation byte: look further back
            continue
        if byte >= 0xC0:  # a lead byte: 2, 3 or 4 bytes long
            length = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return i if i + length > cut else cut
        break  # ASCII: nothing is split
    return cut


class LineFramer:
    """Cuts one stream's output into CRI records, keeping an unfinished line until
    its newline arrives or it grows past `max_bytes`."""

    __slots__ = ("_max", "_pending")

    def __init__(self, max_bytes: int = MAX_RECORD_BYTES) -> None:
        if max_bytes < 4:
            raise ValueError("max_bytes must hold a UTF-8 sequence (at least 4)")
        self._max = max_bytes
        self._pending = bytearray()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def feed(self, data: bytes) -> list[Record]:
        buffer = self._pending
        buffer += data
        records: list[Record] = []
        position, end, limit = 0, len(buffer), self._max
        while position < end:
            newline = buffer.find(b"\n", position, position + limit + 1)
            if newline >= 0:
                records.append((FULL, bytes(buffer[position:newline])))
                position = newline + 1
            elif end - position > limit:
                cut = utf8_cut(buffer, position, position + limit)
                records.append((PARTIAL, bytes(buffer[position:cut])))
                position = cut
            else:
                break
        del buffer[:position]
        return records

    def flush(self) -> list[Record]:
        """At the end of the stream: what is left, as a partial record."""
        if not self._pending:
            return []
        record = (PARTIAL, bytes(self._pending))
        self._pending.clear()
        return [record]


class Timestamps:
    """RFC 3339 UTC timestamps with nanoseconds; the date and time part is formatted
    once per second."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = b""

    def format(self, ns: int) -> bytes:
        second, nanos = divmod(ns, 1_000_000_000)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)).encode()
        return b"%s.%09dZ" % (self._prefix, nanos)


def format_records(timestamp: bytes, stream: bytes, records: Iterable[Record]) -> bytes:
    return b"".join(
        b"%s %s %s %s\n" % (timestamp, stream, tag, content) for tag, content in records
    )


def parse_record(line: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """(timestamp, stream, tag, content) of one record, its newline removed."""
    if line.endswith(b"\n"):
        line = line[:-1]
    parts = line.split(b" ", 3)
    if len(parts) != 4 or parts[1] not in (STDOUT, STDERR) or parts[2] not in (FULL, PARTIAL):
        raise ValueError(f"not a CRI log record: {line[:80]!r}")
    timestamp, stream, tag, content = parts
    return timestamp, stream, tag, content


class LogFile:
    """The log file of one container, shared by its two streams. An empty path
    discards the output (a container created without a log path)."""

    __slots__ = ("_clock", "_failing", "_fd", "_timestamps", "path")

    def __init__(self, path: str, *, clock: Callable[[], int] = time.time_ns) -> None:
        self.path = path
        self._clock = clock
        self._timestamps = Timestamps()
        self._fd = -1
        self._failing = False
        self._open()

    def _open(self) -> None:
        if not self.path:
            return
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, mode=0o755, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    def write(self, stream: bytes, records: list[Record]) -> None:
        if self._fd < 0 or not records:
            return
        data = format_records(self._timestamps.format(self._clock()), stream, records)
        try:
            while data:
                written = os.write(self._fd, data)
                data = data[written:]
            self._failing = False
        except OSError as e:
            if not self._failing:
                log.warning("write container log %s: %s (output dropped)", self.path, e)
            self._failing = True

    def reopen(self) -> None:
        """Close and open the path again (the old file was renamed by the rotation)."""
        self.close()
        self._open()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
