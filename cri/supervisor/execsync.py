"""ExecSync and Exec: run a command in a running container, its output captured
(exec_sync) or on descriptors the caller passed (exec, the streaming Exec).

`Runtime.exec` runs the command with the caller's stdin/stdout/stderr and, in the
foreground, waits for it as a child subreaper. So each command gets a *helper*
forked from the supervisor (single-threaded, so forking is safe): the helper puts
/dev/null and two pipes on fds 0-2, calls `Runtime.exec(..., pid_file=...)` and exits
with the command's exit code. The supervisor meanwhile keeps serving: it reads the
pipes from its loop, reaps the helper (SIGCHLD), and answers. Setting the exec up
thus never blocks the loop.

    supervisor --fork--> helper --Runtime.exec--> (intermediate) --> command
                         fds 0-2: /dev/null, stdout pipe, stderr pipe
                         fd 3: error pipe (why exec failed, as JSON)
                         fd 4: the supervisor's stderr (the runtime's warnings)

Timeout: SIGKILL to the command (its pid from the pid file) or, before it exists,
to the helper; the answer then says `timed_out`, with the exit code the kill gave
and the output read so far. Output is read until the helper has exited (by then the
command has); what processes the command left behind write later is not waited for.
Each stream keeps at most `MAX_OUTPUT` bytes; the rest is read and dropped.

`exec` forks the same helper with the three descriptors the request carried (the
CRI server's pipes) on fds 0-2, or, for a terminal, /dev/null there and the console
socket the runtime sends the pty master to; it answers the exit code when the
helper has exited. It has no timeout: the client ends it by ending the command.
"""

from __future__ import annotations

import fcntl
import functools
import importlib
import itertools
import json
import logging
import os
import signal
from typing import Any, NoReturn

from cri.supervisor.containers import ContainerManager, exit_code
from cri.supervisor.errors import InvalidArgument, InvalidState, SupervisorError, error_from_wire
from cri.supervisor.protocol import Args, ExecResult, Status
from cri.supervisor.reactor import ChildWatcher, Reactor, Timer
from cri.supervisor.server import Handler, Reply, translate
from runtime import log as runtime_log
from runtime.container import Runtime

log = logging.getLogger(__name__)

MAX_OUTPUT = 16 * 1024 * 1024
# The helper's exit code when Runtime.exec raised (its error pipe says why).
HELPER_FAILED = 255
_READ_SIZE = 64 * 1024
_FINAL_READS = MAX_OUTPUT // _READ_SIZE


class ExecJob:
    __slots__ = (
        "_error_fd", "_outputs", "_reactor", "container_id", "helper_pid", "pid_file",
        "reply", "stderr", "stdout", "timed_out", "timer",
    )  # fmt: skip

    def __init__(
        self,
        *,
        reactor: Reactor,
        reply: Reply,
        container_id: str,
        helper_pid: int,
        pid_file: str,
        stdout_fd: int,
        stderr_fd: int,
        error_fd: int,
    ) -> None:
        self._reactor = reactor
        self.reply = reply
        self.container_id = container_id
        self.helper_pid = helper_pid
        self.pid_file = pid_file
        self._error_fd = error_fd
        self._outputs: dict[int, bytearray] = {stdout_fd: bytearray(), stderr_fd: bytearray()}
        self.stdout = self._outputs[stdout_fd]
        self.stderr = self._outputs[stderr_fd]
        self.timed_out = False
        self.timer: Timer | None = None
        for fd in (stdout_fd, stderr_fd):
            os.set_blocking(fd, False)
            reactor.add_reader(fd, functools.partial(self._read, fd, reads=1))
        os.set_blocking(error_fd, False)

    def _read(self, fd: int, *, reads: int) -> None:
        """Read up to `reads` chunks (fewer if the pipe is empty or closed)."""
        buffer = self._outputs.get(fd)
        for _ in range(reads):
            if buffer is None:
                return
            try:
                data = os.read(fd, _READ_SIZE)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._close(fd)
                return
            if len(buffer) < MAX_OUTPUT:
                buffer += data[: MAX_OUTPUT - len(buffer)]

    def _close(self, fd: int) -> None:
        if fd in self._outputs:
            self._reactor.remove(fd)
            os.close(fd)
            # Keep the buffer reachable through stdout/stderr, forget the fd.
            del self._outputs[fd]

    def expire(self) -> None:
        """The timeout ran out: kill the command, or the helper if it has none yet."""
        self.timed_out = True
        try:
            with open(self.pid_file, "rb") as f:
                target = int(f.read())
        except (OSError, ValueError):
            target = self.helper_pid
        log.info("exec in %s timed out: killing process %d", self.container_id, target)
        try:
            os.kill(target, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def finish(self, status: int) -> None:
        """The helper has exited with `status`."""
        if self.timer is not None:
            self.timer.cancel()
        for fd in list(self._outputs):
            # Bounded: a process the command left behind may still be writing.
            self._read(fd, reads=_FINAL_READS)
            self._close(fd)
        try:
            error = os.read(self._error_fd, 65536)
        except OSError:
            error = b""
        os.close(self._error_fd)
        try:
            os.unlink(self.pid_file)
        except FileNotFoundError:
            pass
        code = exit_code(status)
        if error and not self.timed_out:
            self.reply.fail(_reported_error(error))
            return
        result = ExecResult(code, bytes(self.stdout), bytes(self.stderr), self.timed_out)
        self.reply.ok(result.to_wire())


class ExecRunner:
    def __init__(
        self,
        *,
        runtime: Runtime,
        reactor: Reactor,
        children: ChildWatcher,
        containers: ContainerManager,
        work_dir: str,
    ) -> None:
        self.runtime = runtime
        self.reactor = reactor
        self.children = children
        self.containers = containers
        self.work_dir = work_dir
        os.makedirs(work_dir, mode=0o700, exist_ok=True)
        self._sequence = itertools.count(1)
        # Loaded now, once: every helper inherits it instead of importing it.
        importlib.import_module("runtime.exec")

    def handlers(self) -> dict[str, Handler]:
        return {"exec_sync": self.exec_sync, "exec": self.exec}

    def process(self, container_id: str, args: list[str], env: list[str]) -> dict[str, Any]:
        """The container's process with other args (and env added), as containerd
        derives an exec's process from the container's spec."""
        config = self.runtime.load(container_id).config
        process = dict(config.get("process") or {})
        process["args"] = args
        process["terminal"] = False
        process["env"] = list(process.get("env", [])) + env
        process.pop("consoleSize", None)
        return process

    def _running(self, args: Args, op: str) -> tuple[str, list[str], list[str]]:
        container = self.containers.get(args.text("id"), op)
        command = args.strings("args")
        env = args.strings("env", [])
        if not command:
            raise InvalidArgument(f"{op} {container.id}: field 'args' is empty")
        if container.record.status is not Status.RUNNING:
            raise InvalidState(f"{op} {container.id}: container is {container.record.status.value}")
        return container.id, command, env

    def _spawn(
        self,
        container_id: str,
        process: dict[str, Any],
        stdio: tuple[int, int, int],
        *,
        pid_file: str,
        console_socket: str = "",
        op: str,
    ) -> tuple[int, int]:
        """Fork the helper that runs `process` with `stdio` on its fds 0-2; returns
        (its pid, the read end of its error pipe)."""
        error_read, error_write = os.pipe()
        try:
            pid = os.fork()
        except BaseException:
            os.close(error_read)
            os.close(error_write)
            raise
        if pid == 0:
            _helper(
                self.runtime, container_id, process, pid_file, stdio, error_write,
                console_socket=console_socket, op=op,
            )  # fmt: skip
        os.close(error_write)
        return pid, error_read

    def exec_sync(self, args: Args, reply: Reply) -> None:
        container_id, command, env = self._running(args, "exec_sync")
        timeout = args.number("timeout", 0.0) or 0.0
        process = self.process(container_id, command, env)
        pid_file = os.path.join(self.work_dir, f"exec-{next(self._sequence)}.pid")
        fds: list[int] = []
        try:
            fds.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
            for _ in range(2):
                fds.extend(os.pipe())
            null, out_read, out_write, err_read, err_write = fds
            pid, error_read = self._spawn(
                container_id, process, (null, out_write, err_write), pid_file=pid_file,
                op="exec_sync",
            )  # fmt: skip
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        for fd in (null, out_write, err_write):
            os.close(fd)
        job = ExecJob(
            reactor=self.reactor, reply=reply, container_id=container_id, helper_pid=pid,
            pid_file=pid_file, stdout_fd=out_read, stderr_fd=err_read, error_fd=error_read,
        )  # fmt: skip
        self.children.watch(pid, job.finish)
        if timeout > 0:
            job.timer = self.reactor.call_later(timeout, job.expire)

    def exec(self, args: Args, reply: Reply) -> None:
        """A command with the caller's descriptors as its stdio (the streaming Exec),
        or a terminal through the console socket; answers its exit code once it ends."""
        container_id, command, env = self._running(args, "exec")
        tty = args.flag("tty", False)
        console_socket = args.text("console_socket", "")
        if len(args.fds) != 3:
            raise InvalidArgument(f"exec {container_id}: 3 file descriptors expected")
        if tty and not console_socket:
            raise InvalidArgument(f"exec {container_id}: a terminal needs a console socket")
        process = self.process(container_id, command, env)
        process["terminal"] = tty
        pid_file = os.path.join(self.work_dir, f"exec-{next(self._sequence)}.pid")
        stdin, stdout, stderr = args.fds
        pid, error_read = self._spawn(
            container_id, process, (stdin, stdout, stderr), pid_file=pid_file,
            console_socket=console_socket, op="exec",
        )  # fmt: skip

        def finish(status: int) -> None:
            os.set_blocking(error_read, False)
            try:
                error = os.read(error_read, 65536)
            except OSError:
                error = b""
            os.close(error_read)
            try:
                os.unlink(pid_file)
            except FileNotFoundError:
                pass
            if error:
                reply.fail(_reported_error(error))
            else:
                reply.ok({"exit_code": exit_code(status)})

        self.children.watch(pid, finish)


def _reported_error(error: bytes) -> SupervisorError:
    """The error a helper wrote on its error pipe."""
    try:
        reported = json.loads(error)
        return error_from_wire(str(reported["kind"]), str(reported["message"]))
    except (ValueError, KeyError, TypeError):
        return error_from_wire("internal", error.decode(errors="replace"))


def _helper(
    runtime: Runtime,
    container_id: str,
    process: dict[str, Any],
    pid_file: str,
    stdio: tuple[int, int, int],
    error: int,
    *,
    console_socket: str,
    op: str,
) -> NoReturn:
    """The forked helper: never returns into the supervisor's code."""
    try:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        # Moved out of the way first: any of them may sit on a target fd.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in (*stdio, error, 2)]
        for target, fd in enumerate(high):
            os.dup2(fd, target)
        os.closerange(5, os.sysconf("SC_OPEN_MAX"))
        runtime_log.configure(path="/proc/self/fd/4")
        code = runtime.exec(container_id, process, pid_file=pid_file, console_socket=console_socket)
    except BaseException as e:
        try:
            failure = translate(e)
            message = {"kind": failure.kind, "message": f"{op} {container_id}: {failure}"}
            os.write(3, json.dumps(message).encode())
        finally:
            os._exit(HELPER_FAILED)
    os._exit(code & 0xFF)
