"""A container's stdio pipes, seen from the supervisor's loop.

`OutputPipe` is the read end of its stdout or stderr (or the master of its
terminal): every chunk read goes through a `LineFramer` into the container's
`LogFile`; at end of file the unfinished line
is written as a partial record and the pipe closes. `StdinPipe` is the write end of
its stdin, kept when the container was created with one: writes are queued (at most
`MAX_STDIN_BACKLOG` bytes) and flushed when the pipe has room, so a container that
does not read never blocks the loop. Both ends are non-blocking on the supervisor's
side only (O_NONBLOCK belongs to the open file, and the container has its own).
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable

from cri.supervisor.errors import InvalidState
from cri.supervisor.logs import LineFramer, LogFile
from cri.supervisor.reactor import Reactor

log = logging.getLogger(__name__)

MAX_STDIN_BACKLOG = 1024 * 1024
_READ_SIZE = 64 * 1024
_DRAIN_READS = 256  # 16 MiB


class OutputPipe:
    """The read end of a container's stdout or stderr pipe, copied to its log."""

    __slots__ = ("_framer", "_log", "_on_close", "_reactor", "fd", "on_data", "stream")

    def __init__(
        self,
        reactor: Reactor,
        fd: int,
        stream: bytes,
        log_file: LogFile,
        on_close: Callable[[], None],
    ) -> None:
        self._reactor = reactor
        self.fd = fd
        self.stream = stream
        self._log = log_file
        self._framer = LineFramer()
        self._on_close = on_close
        # Also told of every chunk: the attached clients (cri.supervisor.attach).
        self.on_data: Callable[[bytes, bytes], None] | None = None
        os.set_blocking(fd, False)
        reactor.add_reader(fd, self.on_readable)

    @property
    def open(self) -> bool:
        return self.fd >= 0

    def on_readable(self) -> None:
        self._read(reads=1)

    def drain(self) -> None:
        """Read what is in the pipe now (closing it at end of file); bounded, as a
        process outside the container's pid namespace may still be writing."""
        self._read(reads=_DRAIN_READS)

    def _read(self, *, reads: int) -> None:
        for _ in range(reads):
            if self.fd < 0:
                return
            try:
                data = os.read(self.fd, _READ_SIZE)
            except BlockingIOError:
                return
            except OSError as e:
                # EIO is how a terminal's master ends once its last slave is closed.
                if e.errno != errno.EIO:
                    log.warning("read container %s: %s", self.stream.decode(), e)
                data = b""
            if not data:
                self.close()
                return
            self._log.write(self.stream, self._framer.feed(data))
            if self.on_data is not None:
                self.on_data(self.stream, data)

    def close(self) -> None:
        if self.fd < 0:
            return
        self._log.write(self.stream, self._framer.flush())
        self._reactor.remove(self.fd)
        os.close(self.fd)
        self.fd = -1
        self._on_close()


class QueuedWriter:
    """A non-blocking fd we write to, with at most `limit` bytes queued; flushed when
    it has room. A write error (EPIPE: the reader is gone) closes it and calls
    `on_broken`."""

    __slots__ = ("_backlog", "_closing", "_on_broken", "_reactor", "fd", "limit")

    def __init__(
        self,
        reactor: Reactor,
        fd: int,
        *,
        limit: int,
        on_broken: Callable[[], None] | None = None,
    ) -> None:
        self._reactor = reactor
        self.fd = fd
        self.limit = limit
        self._on_broken = on_broken
        self._backlog = bytearray()
        self._closing = False
        os.set_blocking(fd, False)

    @property
    def open(self) -> bool:
        return self.fd >= 0 and not self._closing

    def queue(self, data: bytes) -> bool:
        """Queue and flush `data`; False (nothing queued) if it would pass the limit."""
        if len(self._backlog) + len(data) > self.limit:
            return False
        self._backlog += data
        self._flush()
        return True

    def _flush(self) -> None:
        if self.fd < 0:
            return
        try:
            while self._backlog:
                written = os.write(self.fd, self._backlog)
                del self._backlog[:written]
        except BlockingIOError:
            self._reactor.add_writer(self.fd, self._flush)
            return
        except OSError:  # EPIPE: nobody reads any more
            self.close()
            if self._on_broken is not None:
                self._on_broken()
            return
        self._reactor.remove_writer(self.fd)
        if self._closing:
            self.close()

    def close_when_flushed(self) -> None:
        self._closing = True
        if not self._backlog:
            self.close()

    def close(self) -> None:
        if self.fd >= 0:
            self._reactor.remove(self.fd)
            os.close(self.fd)
            self.fd = -1
            self._backlog.clear()


class StdinPipe(QueuedWriter):
    """The write end of a container's stdin pipe, with a bounded backlog."""

    __slots__ = ()

    def __init__(self, reactor: Reactor, fd: int) -> None:
        super().__init__(reactor, fd, limit=MAX_STDIN_BACKLOG)

    def write(self, data: bytes, *, close: bool, what: str) -> None:
        if not self.open:
            raise InvalidState(f"{what}: stdin is closed")
        if not self.queue(data):
            raise InvalidState(f"{what}: stdin backlog full (the container does not read)")
        if close:
            self.close_when_flushed()
