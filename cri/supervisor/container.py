"""`Container`: one container as the supervisor holds it (ContainerManager, in
containers.py, keeps them by id): its record (saved on disk, records.py) and what lives
only as long as this supervisor does: the log file and the output pipes that feed it,
the stdin pipe or the terminal, the attached clients, the stop timer, the callers
waiting for its exit and, for a re-adopted container (adoption.py), the pidfd that
tells of that exit.

A container created by this supervisor has a log (possibly discarding, without a log
path) and its pipes or terminal; a re-adopted one has none of these (`adopted`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from cri.supervisor.attach import Attachment
from cri.supervisor.logs import LogFile
from cri.supervisor.pipes import OutputPipe, StdinPipe
from cri.supervisor.protocol import ContainerInfo
from cri.supervisor.reactor import Timer
from cri.supervisor.records import ContainerRecord


@dataclass(eq=False)
class Container:
    record: ContainerRecord
    log: LogFile | None = None
    pipes: list[OutputPipe] = field(default_factory=list)
    stdin: StdinPipe | None = None
    adopted: bool = False
    pidfd: int = -1
    stop_timer: Timer | None = None
    waiters: list[Callable[[], None]] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    # The pty master of a container whose process has a terminal (-1: pipes). Its
    # output (one stream, stdout) is read through a dup of it, its input written to
    # another.
    terminal: int = -1

    def output(self, stream: bytes, data: bytes) -> None:
        for attachment in self.attachments:
            attachment.output(stream, data)

    def detach_all(self) -> None:
        for attachment in list(self.attachments):
            attachment.finish()

    @property
    def id(self) -> str:
        return self.record.id

    def info(self) -> ContainerInfo:
        return self.record.info(adopted=self.adopted)

    def close_io(self) -> None:
        """Flush what the container wrote to its log, then close its pipes and log."""
        for pipe in self.pipes:
            pipe.drain()
            pipe.close()
        if self.stdin is not None:
            self.stdin.close()
        if self.terminal >= 0:
            os.close(self.terminal)
            self.terminal = -1
        if self.log is not None:
            self.log.close()
