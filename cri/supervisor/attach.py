"""Attach: a client's copy of a running container's output, and its stdin.

The CRI server passes the supervisor the write ends of two pipes (stdout, stderr)
and the read end of a third (stdin). Every chunk the container writes goes to its
log as always and also to each attached client's pipe (`OutputSink`): non-blocking,
with at most `MAX_SINK_BACKLOG` bytes queued, beyond which that client misses output
rather than the container being slowed down. What the client writes is copied into
the container's stdin pipe (`StdinPipe`); when the client's stdin ends, the
container's stdin is closed if it was created with `stdin_once`, as the CRI asks.

The attach request is answered (and the client's pipes closed, which ends its
stream) when the container exits, when it is deleted, or when the client has gone
away: every output pipe it gave broke, or, attached to stdin only, its stdin ended.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from cri.supervisor.errors import InvalidState
from cri.supervisor.logs import STDERR, STDOUT
from cri.supervisor.pipes import QueuedWriter, StdinPipe
from cri.supervisor.reactor import Reactor
from cri.supervisor.server import Reply

log = logging.getLogger(__name__)

MAX_SINK_BACKLOG = 1024 * 1024
_READ_SIZE = 64 * 1024


class OutputSink(QueuedWriter):
    """A client's pipe for one output stream: output past the backlog is dropped."""

    __slots__ = ("_dropped",)

    def __init__(self, reactor: Reactor, fd: int, on_broken: Callable[[], None]) -> None:
        super().__init__(reactor, fd, limit=MAX_SINK_BACKLOG, on_broken=on_broken)
        self._dropped = False

    def write(self, data: bytes) -> None:
        if self.open and not self.queue(data) and not self._dropped:
            log.warning("an attached client does not keep up: its output is cut")
            self._dropped = True


class Attachment:
    """One attached client of one container."""

    def __init__(
        self,
        *,
        reactor: Reactor,
        reply: Reply,
        container_stdin: StdinPipe | None,
        stdin: int,
        stdout: int,
        stderr: int,
        stdin_once: bool,
        on_finish: Callable[[Attachment], None],
    ) -> None:
        self._reactor = reactor
        self._reply = reply
        self._container_stdin = container_stdin
        self._stdin_once = stdin_once
        self._on_finish = on_finish
        self.finished = False
        self.sinks: dict[bytes, OutputSink] = {}
        for stream, fd in ((STDOUT, stdout), (STDERR, stderr)):
            if fd >= 0:
                self.sinks[stream] = OutputSink(reactor, fd, self._sink_broken)
        self._stdin = stdin
        if stdin >= 0:
            os.set_blocking(stdin, False)
            reactor.add_reader(stdin, self._read_stdin)

    def output(self, stream: bytes, data: bytes) -> None:
        sink = self.sinks.get(stream)
        if sink is not None:
            sink.write(data)

    def _read_stdin(self) -> None:
        try:
            data = os.read(self._stdin, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        stdin = self._container_stdin
        if data:
            if stdin is not None and stdin.open:
                try:
                    stdin.write(data, close=False, what="attach")
                except InvalidState as e:
                    log.warning("attach: %s", e)
            return
        self._close_stdin()
        if self._stdin_once and stdin is not None and stdin.open:
            try:
                stdin.write(b"", close=True, what="attach")
            except InvalidState:
                pass
        if not self.sinks:
            self.finish()

    def _close_stdin(self) -> None:
        if self._stdin >= 0:
            self._reactor.remove(self._stdin)
            os.close(self._stdin)
            self._stdin = -1

    def _sink_broken(self) -> None:
        if not any(sink.fd >= 0 for sink in self.sinks.values()):
            self.finish()

    def finish(self) -> None:
        """The container exited or the client left: close everything, answer."""
        if self.finished:
            return
        self.finished = True
        self._close_stdin()
        for sink in self.sinks.values():
            sink.close_when_flushed()
        self._reply.ok()
        self._on_finish(self)
