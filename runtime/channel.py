"""Messages between the runtime (parent) and the processes it forks.

Two pipes carry one JSON object per line, each with a "type". Pipes rather than a
socketpair: `socket` is a costly import and nothing here needs fd passing (the
console master goes over the caller's console socket, see `runtime.tty`).

Child -> parent, in order:
    userns_ready                the intermediate unshared a user namespace: write maps
    init_pid {pid}              init forked (host pid); the parent puts it in the cgroup
    run_hooks                   mounts are done: run prestart/createRuntime hooks
                                (only sent when the config has such hooks)
    warning {message}           something was clamped or ignored; logged by the parent
    ready                       init is blocked on exec.fifo waiting for `start`
    error {message}             setup failed; the sender exits
Parent -> child:
    mapped                      uid/gid maps written
    go                          init is in its cgroup (sent as soon as the attach is
                                done; init sets up its rootfs meanwhile and waits for
                                `go` only before it unshares its cgroup namespace)
    hooks_done                  createRuntime hooks ran

Every write is one line well under PIPE_BUF, so lines from two writers never mix.
"""

from __future__ import annotations

import os

from runtime import jsonio as json
from runtime.errors import ContainerInitError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class Channel:
    """One end: a pipe to read from and a pipe to write to."""

    __slots__ = ("_buffer", "_early", "read_fd", "write_fd")

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self._buffer = b""
        # Messages that arrived before the one being waited for (the parent sends
        # `go` whenever the cgroup attach finishes, independent of other steps).
        self._early: list[dict[str, Any]] = []

    def send(self, kind: str, **fields: Any) -> None:
        fields["type"] = kind
        try:
            os.write(self.write_fd, json.dumps(fields).encode() + b"\n")
        except BrokenPipeError:
            # The peer is gone; if it said why before exiting, that is the error.
            self.raise_reported_error()
            raise ContainerInitError(f"sending {kind}: the other side exited") from None

    def receive(self) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            if not self.read_more():
                raise EOFError("peer closed the channel")
        line, self._buffer = self._buffer.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        return message

    def read_more(self) -> bool:
        """One read from the pipe into the buffer (it blocks while the pipe is
        empty: an event loop calls it once the fd is readable); False at EOF."""
        chunk = os.read(self.read_fd, 65536)
        self._buffer += chunk
        return bool(chunk)

    def take(self, kind: str, *, on_warning: Any = None) -> dict[str, Any] | None:
        """The message of `kind` if it has arrived, from what was read already
        (nothing is read here); an `error` message raises, warnings go to
        `on_warning`, other messages are kept for a later `take`."""
        for index, early in enumerate(self._early):
            if early["type"] == kind:
                return self._early.pop(index)
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            message: dict[str, Any] = json.loads(line)
            if message["type"] == "error":
                raise ContainerInitError(message["message"])
            if message["type"] == "warning":
                if on_warning is not None:
                    on_warning(message["message"])
                continue
            if message["type"] == kind:
                return message
            self._early.append(message)
        return None

    def expect(self, kind: str, *, on_warning: Any = None) -> dict[str, Any]:
        """Read until a message of `kind` (blocking); see `take`."""
        while True:
            message = self.take(kind, on_warning=on_warning)
            if message is not None:
                return message
            if not self.read_more():
                raise ContainerInitError(f"container init exited while waiting for {kind}")

    def raise_reported_error(self) -> None:
        """If the peer reported an error before exiting, raise it (reads to EOF)."""
        while True:
            try:
                message = self.receive()
            except (EOFError, OSError, ValueError):
                return
            if message["type"] == "error":
                raise ContainerInitError(message["message"])

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass


def channel_pair() -> tuple[Channel, Channel]:
    """(parent end, child end). Both ends are close-on-exec."""
    to_child_read, to_child_write = os.pipe()
    to_parent_read, to_parent_write = os.pipe()
    return Channel(to_parent_read, to_child_write), Channel(to_child_read, to_parent_write)
