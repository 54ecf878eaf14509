"""Exec and attach sessions: Kubernetes' remote-command protocol, server side.

A session is negotiated on the HTTP upgrade (`upgrade_spdy` / `upgrade_websocket` in
cri.streaming.server), then `serve_spdy` or `serve_websocket` gathers the channels
and `run_process` connects them to the process:

- through pipes: the runner (the CRI side) hands their far ends to the process
  (`ProcessIO.stdin/stdout/stderr`), and threads here copy between the pipes and
  the channels (an exec without a terminal; an attach, where the supervisor holds
  the container's own terminal if it has one and gets the sizes from the runner);
- through a console socket, for an exec with a terminal: the runtime sends the pty
  master there (`ProcessIO.console_socket`), threads copy between it and the
  channels, and terminal sizes from the resize channel are applied to it.

The runner blocks until the process has ended and returns its exit code (None for
an attach, which reports none). Then the output still in the pipes is copied (for
at most `DRAIN_SECONDS`: a process left in the background may hold a pipe open),
and the error channel says how it ended: with the v4 and v5 protocols a
`metav1.Status` (`Success`, or `Failure` with reason `NonZeroExitCode` and the code
as an `ExitCode` cause), with older ones the message as text.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import select
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cri.streaming.channels import Channels, Reader, TerminalSize, Writer
from cri.streaming.spdy import SpdyError
from cri.streaming.websocket import WebSocketError
from runtime.tty import receive_console, set_window_size

log = logging.getLogger(__name__)

V1 = "channel.k8s.io"
V2 = "v2.channel.k8s.io"
V3 = "v3.channel.k8s.io"
V4 = "v4.channel.k8s.io"
V5 = "v5.channel.k8s.io"
# In the order the kubelet prefers them; the client's order decides (negotiation
# takes the first of the client's list that the server speaks).
PROTOCOLS = [V5, V4, V3, V2, V1]

DRAIN_SECONDS = 2.0
STREAM_WAIT_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class StreamOptions:
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool

    def expected_streams(self, protocol: str) -> set[str]:
        """The SPDY streams a client opens for these options (client-go's order:
        error, stdin, stdout, stderr unless tty, resize with tty from v3 on)."""
        names = {"error"}
        if self.stdin:
            names.add("stdin")
        if self.stdout:
            names.add("stdout")
        if self.stderr and not self.tty:
            names.add("stderr")
        if self.tty and protocol not in (V1, V2):
            names.add("resize")
        return names


class ProcessFailed(Exception):
    """The process could not be run (no such container, exec failed ...): the
    message goes to the client on the error channel."""


@dataclass
class ProcessIO:
    """What the runner hands to the process: fds (-1 for none: /dev/null) or, with a
    console, the socket the runtime sends the pty master to. Without a console,
    `resizes` has the client's terminal sizes (an attach to a container that has a
    terminal of its own); a None ends them."""

    stdin: int = -1
    stdout: int = -1
    stderr: int = -1
    console_socket: str = ""
    resizes: queue.Queue[TerminalSize | None] | None = None


Runner = Callable[[ProcessIO], "int | None"]


# -- the error channel ------------------------------------------------------------------


def status_message(protocol: str, exit_code: int | None, error: str, command: str) -> bytes:
    """What the error channel carries when the process ended."""
    structured = protocol in (V4, V5)
    if error:
        if not structured:
            return error.encode()
        status: dict[str, Any] = {
            "metadata": {}, "status": "Failure", "message": error,
            "reason": "InternalError", "details": {"causes": [{"message": error}]},
            "code": 500,
        }  # fmt: skip
        return json.dumps(status).encode()
    if not exit_code:
        return json.dumps({"metadata": {}, "status": "Success"}).encode() if structured else b""
    message = (
        "command terminated with non-zero exit code: error executing command "
        f"{command}, exit code {exit_code}"
    )
    if not structured:
        return message.encode()
    status = {
        "metadata": {}, "status": "Failure", "message": message, "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(exit_code)}]},
    }  # fmt: skip
    return json.dumps(status).encode()


# -- copying ----------------------------------------------------------------------------


def _copy_in(source: Reader, fd: int) -> None:
    """Client -> process, until the client's stdin ends; then close `fd`."""
    try:
        while data := source.read():
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
    except OSError:
        pass  # the process closed its stdin
    finally:
        os.close(fd)


class OutputCopier:
    """Process -> client on a thread: reads `fd` until EOF (or EIO, a pty whose last
    slave closed) or until stopped, writing to `sink`."""

    def __init__(self, fd: int, sink: Writer | None, name: str) -> None:
        self.fd = fd
        self.sink = sink
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([self.fd], [], [], 0.2)
                if not ready:
                    continue
                try:
                    data = os.read(self.fd, 65536)
                except OSError:  # EIO: the terminal's other side is gone
                    data = b""
                if not data:
                    return
                if self.sink is not None:
                    try:
                        self.sink.write(data)
                    except (SpdyError, WebSocketError, OSError):
                        self.sink = None  # the client is gone: keep draining
        finally:
            os.close(self.fd)

    def finish(self, timeout: float) -> None:
        """Wait until EOF, at most `timeout` seconds; then stop reading."""
        self._thread.join(timeout)
        self._stop.set()
        self._thread.join()


def _receive_master(listener: socket.socket, done: threading.Event) -> int:
    """The pty master the runtime sends on the console socket; -1 if the process
    ended (`done`) before one came."""
    while not done.is_set():
        try:
            return receive_console(listener, 0.2)
        except TimeoutError:
            continue
    return -1


def set_terminal_size(fd: int, size: TerminalSize) -> None:
    with contextlib.suppress(OSError):
        set_window_size(fd, size.width, size.height)


class _Terminal:
    """The pty side of a tty session: waits for the master, then copies and resizes."""

    def __init__(self, channels: Channels, listener: socket.socket) -> None:
        self.channels = channels
        self.listener = listener
        self.done = threading.Event()
        self.output: OutputCopier | None = None
        self.master = -1
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kubeling-tty", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            master = _receive_master(self.listener, self.done)
        except OSError as e:
            log.info("receive the terminal of an exec: %s", e)
            master = -1
        if master >= 0:
            self.master = master
            self.output = OutputCopier(os.dup(master), self.channels.stdout, "kubeling-tty-out")
            if self.channels.stdin is not None:
                threading.Thread(
                    target=_copy_in, args=(self.channels.stdin, os.dup(master)),
                    name="kubeling-tty-in", daemon=True,
                ).start()  # fmt: skip
            threading.Thread(target=self._resize, name="kubeling-tty-resize", daemon=True).start()
        self._ready.set()

    def _resize(self) -> None:
        while (size := self.channels.resizes.get()) is not None:
            set_terminal_size(self.master, size)

    def finish(self) -> None:
        self.done.set()
        self._ready.wait()
        if self.output is not None:
            self.output.finish(DRAIN_SECONDS)
        if self.master >= 0:
            os.close(self.master)


def run_process(
    channels: Channels, runner: Runner, *, console: bool, protocol: str, command: str
) -> None:
    """Connect the channels to the process the runner runs (through a console socket
    and the pty the runtime sends there, or through pipes), wait for it, and report
    how it ended on the error channel."""
    io = ProcessIO()
    exit_code: int | None = None
    error = ""
    with contextlib.ExitStack() as cleanup:
        terminal: _Terminal | None = None
        copiers: list[OutputCopier] = []
        process_ends: list[int] = []
        if console:
            directory = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="kubeling-tty-"))
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            cleanup.callback(listener.close)
            io.console_socket = os.path.join(directory, "console.sock")
            listener.bind(io.console_socket)
            listener.listen(1)
            terminal = _Terminal(channels, listener)
        else:
            io.resizes = channels.resizes
            if channels.stdin is not None:
                read_end, write_end = os.pipe2(os.O_CLOEXEC)
                io.stdin = read_end
                process_ends.append(read_end)
                threading.Thread(
                    target=_copy_in, args=(channels.stdin, write_end),
                    name="kubeling-stdin", daemon=True,
                ).start()  # fmt: skip
            for sink, name in ((channels.stdout, "stdout"), (channels.stderr, "stderr")):
                if sink is None:
                    continue
                read_end, write_end = os.pipe2(os.O_CLOEXEC)
                setattr(io, name, write_end)
                process_ends.append(write_end)
                copiers.append(OutputCopier(read_end, sink, f"kubeling-{name}"))
        try:
            exit_code = runner(io)
        except ProcessFailed as e:
            error = str(e)
        except Exception as e:
            log.exception("streaming session failed")
            error = f"{type(e).__name__}: {e}"
        finally:
            for fd in process_ends:
                os.close(fd)
        deadline = time.monotonic() + DRAIN_SECONDS
        for copier in copiers:
            copier.finish(max(deadline - time.monotonic(), 0.0))
        if terminal is not None:
            terminal.finish()
    channels.finish(status_message(protocol, exit_code, error, command))
