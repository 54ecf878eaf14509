"""Container logs as /containerLogs serves them: the CRI log file of a container read
with the kubelet's options (follow, tailLines, sinceSeconds/sinceTime, timestamps,
limitBytes).

The CRI log format is one record a line: `<RFC3339Nano> <stream> <tags> <text>`, tags
`F` (the text ends a line) or `P` (a partial line, continued by the next record; a
runtime splits long lines so). Partial records are joined into their line; a line's
time is that of its first record. Lines that are not records are skipped (logged).

Order of the options, as the kubelet applies them: tailLines picks the last N lines
of the file, then lines older than the since time are left out, then output stops
after limitBytes. With follow, reading goes on as the file grows (a partial line is
held until its end comes) until the container is no longer running and the file has
been read to its end, the client goes away (a write fails) or the server stops; a
file replaced under the same path (a rotation: ReopenContainerLog) is followed from
its start.
"""

from __future__ import annotations

import collections
import datetime
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from kubelet.stats.times import parse_time_ns

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1
STATE_CHECK_SECONDS = 1.0


class LogOptionsError(ValueError):
    """A query parameter of /containerLogs is invalid (400)."""


@dataclass(frozen=True, slots=True)
class LogOptions:
    follow: bool = False
    previous: bool = False
    tail_lines: int | None = None
    since_ns: int | None = None
    timestamps: bool = False
    limit_bytes: int | None = None


def _bool(query: dict[str, list[str]], name: str) -> bool:
    value = query.get(name, ["false"])[-1].strip().lower()
    if value in ("", "true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise LogOptionsError(f"{name}: Invalid value: {value!r}: must be true or false")


def _int(query: dict[str, list[str]], name: str, minimum: int) -> int | None:
    if name not in query:
        return None
    text = query[name][-1].strip()
    try:
        value = int(text)
    except ValueError:
        raise LogOptionsError(f"{name}: Invalid value: {text!r}: must be an integer") from None
    if value < minimum:
        raise LogOptionsError(
            f"{name}: Invalid value: {value}: must be greater than or equal to {minimum}"
        )
    return value


def parse_options(query: dict[str, list[str]], now: float) -> LogOptions:
    """The log options of a /containerLogs query (names as v1.PodLogOptions)."""
    since_seconds = _int(query, "sinceSeconds", 1)
    since_time = query.get("sinceTime", [""])[-1].strip()
    if since_seconds is not None and since_time:
        raise LogOptionsError("sinceSeconds, sinceTime: at most one of them may be set")
    since_ns = None
    if since_seconds is not None:
        since_ns = int((now - since_seconds) * 1e9)
    elif since_time:
        try:
            since_ns = parse_time_ns(since_time)
        except ValueError:
            raise LogOptionsError(
                f"sinceTime: Invalid value: {since_time!r}: must be an RFC 3339 time"
            ) from None
    return LogOptions(
        follow=_bool(query, "follow"),
        previous=_bool(query, "previous"),
        tail_lines=_int(query, "tailLines", 0),
        since_ns=since_ns,
        timestamps=_bool(query, "timestamps"),
        limit_bytes=_int(query, "limitBytes", 1),
    )


@dataclass(frozen=True, slots=True)
class Record:
    timestamp_ns: int
    stream: str
    partial: bool
    text: bytes


def parse_record(line: bytes) -> Record:
    """One CRI log record (without its line end); ValueError if malformed."""
    parts = line.split(b" ", 3)
    if len(parts) < 3:
        raise ValueError(f"log record {line[:80]!r}: expected '<time> <stream> <tags> <text>'")
    stream = parts[1].decode(errors="replace")
    if stream not in ("stdout", "stderr"):
        raise ValueError(f"log record {line[:80]!r}: unknown stream {stream!r}")
    tags = parts[2].split(b":")
    if tags[0] not in (b"P", b"F"):
        raise ValueError(f"log record {line[:80]!r}: unknown tag {parts[2]!r}")
    timestamp = parse_time_ns(parts[0].decode(errors="replace"))
    return Record(timestamp, stream, tags[0] == b"P", parts[3] if len(parts) > 3 else b"")


def format_timestamp(timestamp_ns: int) -> str:
    """RFC 3339 with nine fraction digits, UTC (the kubelet's RFC3339NanoFixed)."""
    seconds, nanos = divmod(timestamp_ns, 1_000_000_000)
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


@dataclass(frozen=True, slots=True)
class Line:
    timestamp_ns: int
    data: bytes  # with its "\n", unless the file ended inside the line


class _Joiner:
    """Records -> lines, holding partial records until their line ends."""

    def __init__(self) -> None:
        self.pending: list[Record] = []

    def feed(self, raw: bytes) -> Line | None:
        try:
            record = parse_record(raw)
        except ValueError as e:
            log.warning("skipped a log line: %s", e)
            return None
        self.pending.append(record)
        if record.partial:
            return None
        return self.flush(end=b"\n")

    def flush(self, end: bytes = b"") -> Line | None:
        if not self.pending:
            return None
        line = Line(self.pending[0].timestamp_ns, b"".join(r.text for r in self.pending) + end)
        self.pending = []
        return line


def _raw_lines(file: BinaryIO, *, hold_last: bool) -> Iterator[tuple[int, bytes]]:
    """(offset after, record) for each complete line from the file's position; with
    `hold_last`, an unterminated last line is left for the next read (the writer is
    mid-line)."""
    read = file.readline
    tell = file.tell
    seek = file.seek
    while True:
        start = tell()
        raw: bytes = read()
        if not raw:
            return
        if not raw.endswith(b"\n"):
            if hold_last:
                seek(start)
                return
            yield tell(), raw
            return
        yield tell(), raw[:-1]


def _tail_start(path: str, lines: int) -> int:
    """The offset where the last `lines` lines of the file start (joined lines)."""
    if lines == 0:
        return os.path.getsize(path)
    starts: collections.deque[int] = collections.deque(maxlen=lines)
    line_start = 0
    in_partial = False
    with open(path, "rb") as file:
        offset = 0
        for raw in file:
            if not in_partial:
                line_start = offset
            offset += len(raw)
            fields = raw.split(b" ", 3)
            in_partial = len(fields) > 2 and fields[2].split(b":")[0] == b"P"
            if not in_partial:
                starts.append(line_start)
    if in_partial:
        starts.append(line_start)
    return starts[0] if starts else 0


class _Limited:
    """The writer with limitBytes applied; `full` once the limit is reached."""

    def __init__(self, write: Callable[[bytes], None], limit: int | None) -> None:
        self.write_out = write
        self.left = limit
        self.full = False

    def write(self, data: bytes) -> None:
        if self.left is not None:
            data = data[: self.left]
            self.left -= len(data)
            self.full = self.left <= 0
        if data:
            self.write_out(data)


def write_logs(
    path: str,
    options: LogOptions,
    write: Callable[[bytes], None],
    *,
    running: Callable[[], bool] = lambda: False,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
) -> None:
    """Write the container's log lines to `write` (which raises once the client is
    gone). `running()` tells whether the container still runs (follow ends when it
    does not and the file is drained)."""
    out = _Limited(write, options.limit_bytes)
    joiner = _Joiner()

    def emit(line: Line | None) -> None:
        if line is None or out.full:
            return
        if options.since_ns is not None and line.timestamp_ns < options.since_ns:
            return
        if options.timestamps:
            out.write(format_timestamp(line.timestamp_ns).encode() + b" " + line.data)
        else:
            out.write(line.data)

    start = 0 if options.tail_lines is None else _tail_start(path, options.tail_lines)
    # Not a with-block: a rotation swaps the file for the new one; `finally` closes it.
    file = open(path, "rb")  # noqa: SIM115
    try:
        file.seek(start)
        identity = os.fstat(file.fileno())
        for _, raw in _raw_lines(file, hold_last=options.follow):
            emit(joiner.feed(raw))
            if out.full:
                return
        if not options.follow:
            emit(joiner.flush())
            return
        last_check = clock()
        still_running = running()
        while not out.full and (stop is None or not stop.is_set()):
            progressed = False
            for _, raw in _raw_lines(file, hold_last=True):
                progressed = True
                emit(joiner.feed(raw))
            if progressed:
                continue
            if _replaced(path, identity):
                file.close()
                file = open(path, "rb")  # noqa: SIM115
                identity = os.fstat(file.fileno())
                continue
            if not still_running:
                # Drained after the container ended: the rest of an unterminated line too.
                for _, raw in _raw_lines(file, hold_last=False):
                    emit(joiner.feed(raw))
                emit(joiner.flush())
                return
            sleep(POLL_SECONDS)
            if clock() - last_check >= STATE_CHECK_SECONDS:
                last_check = clock()
                still_running = running()
    finally:
        file.close()


def _replaced(path: str, identity: os.stat_result) -> bool:
    try:
        current = os.stat(path)
    except OSError:
        return False  # removed, not yet recreated: keep reading what we have
    return (current.st_dev, current.st_ino) != (identity.st_dev, identity.st_ino)
