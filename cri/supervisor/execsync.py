"""ExecSync: run a command in a running container and capture its output.

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
from cri.supervisor.errors import InvalidArgument, InvalidState, error_from_wire
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
            try:
                reported = json.loads(error)
                failure = error_from_wire(str(reported["kind"]), str(reported["message"]))
            except (ValueError, KeyError, TypeError):
                failure = error_from_wire("internal", error.decode(errors="replace"))
            self.reply.fail(failure)
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
        return {"exec_sync": self.exec_sync}

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

    def exec_sync(self, args: Args, reply: Reply) -> None:
        container = self.containers.get(args.text("id"), "exec_sync")
        command = args.strings("args")
        env = args.strings("env", [])
        timeout = args.number("timeout", 0.0) or 0.0
        what = f"exec_sync {container.id}"
        if not command:
            raise InvalidArgument(f"{what}: field 'args' is empty")
        if container.record.status is not Status.RUNNING:
            raise InvalidState(f"{what}: container is {container.record.status.value}")
        process = self.process(container.id, command, env)
        pid_file = os.path.join(self.work_dir, f"exec-{next(self._sequence)}.pid")
        fds: list[int] = []
        try:
            for _ in range(3):
                fds.extend(os.pipe())
            out_read, out_write, err_read, err_write, error_read, error_write = fds
            pid = os.fork()
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        if pid == 0:
            _helper(
                self.runtime, container.id, process, pid_file, out_write, err_write, error_write
            )
        for fd in (out_write, err_write, error_write):
            os.close(fd)
        job = ExecJob(
            reactor=self.reactor, reply=reply, container_id=container.id, helper_pid=pid,
            pid_file=pid_file, stdout_fd=out_read, stderr_fd=err_read, error_fd=error_read,
        )  # fmt: skip
        self.children.watch(pid, job.finish)
        if timeout > 0:
            job.timer = self.reactor.call_later(timeout, job.expire)


def _helper(
    runtime: Runtime,
    container_id: str,
    process: dict[str, Any],
    pid_file: str,
    stdout: int,
    stderr: int,
    error: int,
) -> NoReturn:
    """The forked helper: never returns into the supervisor's code."""
    try:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDONLY)
        # Moved out of the way first: any of them may sit on a target fd.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in (null, stdout, stderr, error, 2)]
        for target, fd in enumerate(high):
            os.dup2(fd, target)
        os.closerange(5, os.sysconf("SC_OPEN_MAX"))
        runtime_log.configure(path="/proc/self/fd/4")
        code = runtime.exec(container_id, process, pid_file=pid_file)
    except BaseException as e:
        try:
            failure = translate(e)
            message = {"kind": failure.kind, "message": f"exec_sync {container_id}: {failure}"}
            os.write(3, json.dumps(message).encode())
        finally:
            os._exit(HELPER_FAILED)
    os._exit(code & 0xFF)
