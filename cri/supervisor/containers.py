"""The containers the supervisor owns: their lifecycle through `runtime.container.Runtime`,
their output pipes and log files, their exits, and re-adoption after a restart.

Lifecycle of one container (statuses of `protocol.Status`):

    create: record saved as "creating" -> runtime.create(monitor=False, stdio=pipes)
            -> record "created"; init is now our child (we are its subreaper)
    start:  runtime.start -> "running"
    exit:   reaped (SIGCHLD) -> output drained -> Runtime.record_exit -> "stopped",
            event "exited", stop/wait callers answered
    delete: runtime.delete -> record removed, pipes and log closed, event "deleted"

The output of a container is copied to its log as it arrives (`OutputPipe`); when
init is reaped, every process of its pid namespace is already gone, so draining the
pipes then gets all of its output before the exit is reported. A pipe still open
after that (a process outside the namespace holds it) is read until it closes.

Requests are handled one at a time on the loop's thread; `create`, `start`, `kill`
and `delete` block the loop while the runtime works (tens of milliseconds; a forced
delete waits up to 10 s for the container to die), which is the price of a single
thread with no locks. Nothing else may reap children meanwhile (`reactor.ChildWatcher`).

Re-adoption (`adopt_all`, at start): records still "created" or "running" whose init
lives are watched through a pidfd (we are no longer their parent, so no SIGCHLD and
no wait status); when it fires, the exit code is the one the runtime recorded if
any, else the zombie's (read from /proc/<pid>/stat if its new parent has not reaped
it yet), else unknown (255). Their stdout/stderr pipes died with the old supervisor:
their output is no longer logged, `reopen_log` and `stdin` refuse, and a container
that writes to its stdout gets EPIPE (or SIGPIPE). A record still "creating" is an
interrupted create: the runtime's leftovers are deleted.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import select
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cri.supervisor.attach import Attachment
from cri.supervisor.errors import (
    AlreadyExists,
    InvalidArgument,
    InvalidState,
    NotFound,
    SupervisorError,
)
from cri.supervisor.logs import STDERR, STDOUT, LogFile
from cri.supervisor.pipes import OutputPipe, StdinPipe
from cri.supervisor.protocol import (
    UNKNOWN_EXIT_CODE,
    Args,
    ContainerInfo,
    Event,
    EventKind,
    Status,
)
from cri.supervisor.reactor import ChildWatcher, Reactor, Timer
from cri.supervisor.records import ContainerRecord, RecordStore
from cri.supervisor.server import Handler, Reply
from runtime import errors as runtime_errors
from runtime import state as runtime_state
from runtime.container import Runtime
from runtime.tty import receive_console, set_window_size

log = logging.getLogger(__name__)

MAX_ID_LENGTH = 128
KILL_WAIT_SECONDS = 10.0
CONSOLE_WAIT_SECONDS = 5.0


def exit_code(status: int) -> int:
    """The exit code of a wait status, 128 + the signal for a killed process."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def parse_signal(value: Any, op: str) -> int:
    """A signal given as a number or a name (TERM, SIGTERM, sigterm)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 < value < signal.NSIG:
            return value
    elif isinstance(value, str):
        name = value.upper()
        name = name if name.startswith("SIG") else f"SIG{name}"
        try:
            return int(signal.Signals[name])
        except KeyError:
            pass
    raise InvalidArgument(f"{op}: field 'signal': {value!r} is not a signal")


def validate_id(container_id: str, op: str) -> None:
    try:
        runtime_state.validate_id(container_id)
    except runtime_errors.InvalidState:
        raise InvalidArgument(f"{op}: invalid container id {container_id!r}") from None
    if len(container_id) > MAX_ID_LENGTH or container_id.startswith("."):
        raise InvalidArgument(f"{op}: invalid container id {container_id!r}")


def zombie_status(pid: int, start_time: int) -> int | None:
    """The wait status of `pid` if it is a zombie started at `start_time` (field 52 of
    /proc/<pid>/stat, Linux 3.5 and later), else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    if len(fields) < 50 or fields[0] != b"Z" or int(fields[19]) != start_time:
        return None
    return int(fields[49])


def wait_for_exit(pid: int, timeout: float) -> bool:
    """Block until `pid` has exited (it may be a zombie), at most `timeout` seconds."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        return bool(poller.poll(timeout * 1000))
    finally:
        os.close(pidfd)


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


class ContainerManager:
    def __init__(
        self,
        *,
        runtime: Runtime,
        store: RecordStore,
        reactor: Reactor,
        children: ChildWatcher,
        publish: Callable[[Event], None],
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.runtime = runtime
        self.store = store
        self.reactor = reactor
        self.children = children
        self._publish = publish
        self._clock = clock
        self.containers: dict[str, Container] = {}
        # What `Runtime.create` imports on first use, loaded now: the first create is
        # not slower than the others, and every fork shares them.
        for module in ("runtime.channel", "runtime.fork", "runtime.init", "runtime.cgroups"):
            importlib.import_module(module)

    def handlers(self) -> dict[str, Handler]:
        return {
            "create": self.create, "start": self.start, "kill": self.kill,
            "stop": self.stop, "wait": self.wait, "delete": self.delete,
            "state": self.state, "list": self.list, "reopen_log": self.reopen_log,
            "stdin": self.write_stdin, "attach": self.attach, "resize": self.resize,
        }  # fmt: skip

    def get(self, container_id: str, op: str) -> Container:
        container = self.containers.get(container_id)
        if container is None:
            raise NotFound(f"{op} {container_id}: no such container")
        return container

    def _event(self, kind: EventKind, container: Container, code: int | None = None) -> None:
        record = container.record
        self._publish(Event(kind, record.id, record.pid, self._clock(), code))

    # -- create and start ----------------------------------------------------------

    def create(self, args: Args, reply: Reply) -> None:
        container_id = args.text("id")
        bundle = args.text("bundle")
        log_path = args.text("log_path", "")
        with_stdin = args.flag("stdin", False)
        what = f"create {container_id}"
        validate_id(container_id, "create")
        if container_id in self.containers:
            raise AlreadyExists(f"{what}: container exists already")
        if not os.path.isabs(bundle) or not os.path.isdir(bundle):
            raise InvalidArgument(f"{what}: bundle {bundle!r} is not a directory")
        if log_path and not os.path.isabs(log_path):
            raise InvalidArgument(f"{what}: log path {log_path!r} is not absolute")
        record = ContainerRecord(
            id=container_id, bundle=bundle, log_path=log_path, stdin=with_stdin,
            created_at=self._clock(),
        )  # fmt: skip
        self.store.save(record)
        terminal = _wants_terminal(bundle)
        ours: list[int] = []  # the supervisor's ends, closed if create fails
        try:
            try:
                log_file = LogFile(log_path)
            except OSError as e:
                raise SupervisorError(f"{what}: open log {log_path}: {e.strerror}") from None
            try:
                if terminal:
                    created, master = self._create_with_terminal(container_id, bundle)
                    ours.append(master)
                    out_read, err_read = os.dup(master), -1
                    ours.append(out_read)
                    in_write = os.dup(master) if with_stdin else -1
                    if with_stdin:
                        ours.append(in_write)
                else:
                    master = -1
                    created, out_read, err_read, in_write = self._create_with_pipes(
                        container_id, bundle, with_stdin, ours
                    )
            except BaseException:
                log_file.close()
                raise
        except BaseException:
            for fd in ours:
                os.close(fd)
            self.store.remove(container_id)
            raise
        record.pid = created.pid
        record.status = Status.CREATED
        container = Container(record, log=log_file, terminal=master)
        container.pipes = [
            OutputPipe(self.reactor, fd, stream, log_file, lambda: self._pipe_closed(container))
            for fd, stream in ((out_read, STDOUT), (err_read, STDERR))
            if fd >= 0
        ]
        for pipe in container.pipes:
            pipe.on_data = container.output
        if with_stdin:
            container.stdin = StdinPipe(self.reactor, in_write)
        self.containers[container_id] = container
        self.children.watch(record.pid, lambda status: self._exited(container, status))
        self.store.save(record)
        log.info("created container %s (pid %d)", container_id, record.pid)
        self._event(EventKind.CREATED, container)
        reply.ok(container.info().to_wire())

    def _create_with_pipes(
        self, container_id: str, bundle: str, with_stdin: bool, ours: list[int]
    ) -> tuple[runtime_state.ContainerState, int, int, int]:
        """Create with three pipes as stdio; (created, stdout and stderr read ends,
        stdin write end or -1). Our ends are appended to `ours` as they are made."""
        out_read, out_write = os.pipe()
        ours.append(out_read)
        err_read, err_write = os.pipe()
        ours.append(err_read)
        in_write = -1
        if with_stdin:
            in_read, in_write = os.pipe()
            ours.append(in_write)
        else:
            in_read = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            created = self.runtime.create(
                container_id, bundle, monitor=False, stdio=(in_read, out_write, err_write)
            )
        finally:
            for fd in (in_read, out_write, err_write):
                os.close(fd)
        return created, out_read, err_read, in_write

    def _create_with_terminal(
        self, container_id: str, bundle: str
    ) -> tuple[runtime_state.ContainerState, int]:
        """Create a container whose process has a terminal: the runtime sends the pty
        master to a console socket of ours. (created, the master)."""
        directory = tempfile.mkdtemp(prefix="kubeling-console-")
        path = os.path.join(directory, "console.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            listener.bind(path)
            listener.listen(1)
            null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            try:
                created = self.runtime.create(
                    container_id, bundle, monitor=False, console_socket=path,
                    stdio=(null, null, null),
                )  # fmt: skip
            finally:
                os.close(null)
            try:
                # The runtime connected before it forked and init has sent the
                # master by the time create returns: no waiting here.
                master = receive_console(listener, CONSOLE_WAIT_SECONDS)
            except OSError as e:
                self.runtime.delete(container_id, force=True)
                raise SupervisorError(f"create {container_id}: no terminal: {e}") from None
        finally:
            listener.close()
            shutil.rmtree(directory, ignore_errors=True)
        return created, master

    def start(self, args: Args, reply: Reply) -> None:
        container = self.get(args.text("id"), "start")
        record = container.record
        if record.status is not Status.CREATED:
            raise InvalidState(f"start {record.id}: container is {record.status.value}")
        self.runtime.start(record.id)
        record.status = Status.RUNNING
        record.started_at = self._clock()
        self.store.save(record)
        self._event(EventKind.STARTED, container)
        reply.ok(container.info().to_wire())

    # -- signals, stop, wait ------------------------------------------------------

    def kill(self, args: Args, reply: Reply) -> None:
        container = self.get(args.text("id"), "kill")
        signum = parse_signal(args.values.get("signal", signal.SIGTERM), "kill")
        if container.record.status is Status.STOPPED:
            raise InvalidState(f"kill {container.id}: container is stopped")
        self.runtime.kill(container.id, signum, all_processes=args.flag("all", False))
        reply.ok()

    def stop(self, args: Args, reply: Reply) -> None:
        container = self.get(args.text("id"), "stop")
        timeout = args.number("timeout", 10.0) or 0.0
        signum = parse_signal(args.values.get("signal", signal.SIGTERM), "stop")
        if container.record.status is Status.STOPPED:
            reply.ok(container.info().to_wire())
            return
        container.waiters.append(lambda: reply.ok(container.info().to_wire()))
        if timeout <= 0:
            self._force_kill(container)
            return
        try:
            self.runtime.kill(container.id, signum)
        except runtime_errors.InvalidState:
            pass  # it has just died; the reaper will tell
        deadline = self.reactor.now() + timeout
        timer = container.stop_timer
        if timer is None or timer.cancelled or timer.deadline > deadline:
            if timer is not None:
                timer.cancel()
            container.stop_timer = self.reactor.call_later(
                timeout, lambda: self._force_kill(container)
            )

    def _force_kill(self, container: Container) -> None:
        if container.record.status is Status.STOPPED:
            return
        try:
            self.runtime.kill(container.id, signal.SIGKILL, all_processes=True)
        except (runtime_errors.InvalidState, runtime_errors.NotFound):
            pass

    def wait(self, args: Args, reply: Reply) -> None:
        container = self.get(args.text("id"), "wait")
        timeout = args.number("timeout", None)
        if container.record.status is Status.STOPPED:
            reply.ok(container.info().to_wire())
            return

        def answer() -> None:
            reply.ok(container.info().to_wire())

        container.waiters.append(answer)
        if timeout is not None:

            def expire() -> None:
                if answer in container.waiters:
                    container.waiters.remove(answer)
                answer()

            self.reactor.call_later(timeout, expire)

    # -- exits ---------------------------------------------------------------------

    def _exited(self, container: Container, status: int | None) -> None:
        """Init has been reaped (`status`), or found gone without a status (None)."""
        record = container.record
        if record.status is Status.STOPPED:
            return
        for pipe in container.pipes:
            pipe.drain()
        container.detach_all()
        if container.stdin is not None:
            container.stdin.close()
        known = status is not None
        wait_status = status if status is not None else UNKNOWN_EXIT_CODE << 8
        try:
            code = self.runtime.record_exit(self.runtime.load(record.id), wait_status)
        except (runtime_errors.RuntimeFailure, OSError) as e:
            log.warning("record the exit of %s: %s", record.id, e)
            code = exit_code(wait_status)
        record.status = Status.STOPPED
        record.exit_code = code
        record.finished_at = self._clock()
        self.store.save(record)
        if container.stop_timer is not None:
            container.stop_timer.cancel()
            container.stop_timer = None
        self._close_pidfd(container)
        self._maybe_close_log(container)
        log.info("container %s exited with %s", record.id, code if known else f"{code} (unknown)")
        self._event(EventKind.EXITED, container, code)
        waiters, container.waiters = container.waiters, []
        for waiter in waiters:
            waiter()

    def _pipe_closed(self, container: Container) -> None:
        self._maybe_close_log(container)

    def _maybe_close_log(self, container: Container) -> None:
        if (
            container.log is not None
            and container.record.status is Status.STOPPED
            and not any(pipe.open for pipe in container.pipes)
        ):
            container.log.close()

    # -- delete --------------------------------------------------------------------

    def delete(self, args: Args, reply: Reply) -> None:
        container = self.get(args.text("id"), "delete")
        record = container.record
        if record.status is not Status.STOPPED:
            if not args.flag("force", False):
                raise InvalidState(
                    f"delete {record.id}: container is {record.status.value} "
                    "(stop it first, or force)"
                )
            self._kill_now(container)
        try:
            self.runtime.delete(record.id, force=True)
        except runtime_errors.NotFound:
            pass
        self._discard(container)
        log.info("deleted container %s", record.id)
        self._event(EventKind.DELETED, container)
        reply.ok()

    def _kill_now(self, container: Container) -> None:
        """SIGKILL every process of the container and handle its exit before
        returning (a forced delete)."""
        pid = container.record.pid
        self._force_kill(container)
        if not wait_for_exit(pid, KILL_WAIT_SECONDS):
            log.warning("container %s: init %d still alive after SIGKILL", container.id, pid)
        if container.adopted:
            self._adopted_exited(container)
            return
        try:
            reaped, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            reaped, status = 0, 0
        if reaped:
            self.children.unwatch(pid)
            self._exited(container, status)
        # else: the reaper will see it later; the container is discarded by then.

    def _discard(self, container: Container) -> None:
        self.children.unwatch(container.record.pid)
        self._close_pidfd(container)
        if container.stop_timer is not None:
            container.stop_timer.cancel()
        _close_io(container)
        container.detach_all()
        for waiter in container.waiters:
            waiter()
        container.waiters.clear()
        self.store.remove(container.id)
        del self.containers[container.id]

    # -- queries and the rest --------------------------------------------------------

    def state(self, args: Args, reply: Reply) -> None:
        reply.ok(self.get(args.text("id"), "state").info().to_wire())

    def list(self, _args: Args, reply: Reply) -> None:
        containers = [c.info().to_wire() for c in self.containers.values()]
        reply.ok({"containers": containers})

    def reopen_log(self, args: Args, reply: Reply) -> None:
        container = self.get(args.text("id"), "reopen_log")
        what = f"reopen_log {container.id}"
        if container.record.status is not Status.RUNNING:
            raise InvalidState(f"{what}: container is not running")
        if container.log is None:
            raise InvalidState(f"{what}: output not captured since the supervisor restarted")
        container.log.reopen()
        reply.ok()

    def write_stdin(self, args: Args, reply: Reply) -> None:
        container = self.get(args.text("id"), "stdin")
        what = f"stdin {container.id}"
        data = args.data("data", b"")
        close = args.flag("close", False)
        if container.stdin is None:
            raise InvalidState(f"{what}: container has no stdin")
        if container.record.status is Status.STOPPED:
            raise InvalidState(f"{what}: container is stopped")
        container.stdin.write(data, close=close, what=what)
        reply.ok()

    def attach(self, args: Args, reply: Reply) -> None:
        """Copy the container's output to the client's pipes and its stdin into the
        container's until the container exits or the client leaves (cri.supervisor.attach)."""
        container = self.get(args.text("id"), "attach")
        what = f"attach {container.id}"
        wanted = [args.flag(name, False) for name in ("stdin", "stdout", "stderr")]
        if len(args.fds) != sum(wanted):
            raise InvalidArgument(f"{what}: {sum(wanted)} file descriptors expected")
        if container.record.status is not Status.RUNNING:
            raise InvalidState(f"{what}: container is {container.record.status.value}")
        if container.log is None:
            raise InvalidState(f"{what}: output not captured since the supervisor restarted")
        given = iter(args.fds)
        stdin, stdout, stderr = (next(given) if flag else -1 for flag in wanted)
        if stdin >= 0 and container.stdin is None:
            stdin = -1  # the container has no stdin: the client's is not read
        args.fds = [fd for fd in args.fds if fd != -1 and fd not in (stdin, stdout, stderr)]
        attachment = Attachment(
            reactor=self.reactor, reply=reply, container_stdin=container.stdin,
            stdin=stdin, stdout=stdout, stderr=stderr,
            stdin_once=args.flag("stdin_once", False),
            on_finish=container.attachments.remove,
        )  # fmt: skip
        container.attachments.append(attachment)
        if stdin < 0 and stdout < 0 and stderr < 0:
            attachment.finish()

    def resize(self, args: Args, reply: Reply) -> None:
        """Set the size of the container's terminal (an attached client's window)."""
        container = self.get(args.text("id"), "resize")
        width, height = args.integer("width"), args.integer("height")
        what = f"resize {container.id}"
        if container.terminal < 0:
            raise InvalidState(f"{what}: container has no terminal")
        if not (0 < width < 65536 and 0 < height < 65536):
            raise InvalidArgument(f"{what}: {width}x{height} is not a terminal size")
        set_window_size(container.terminal, width, height)
        reply.ok()

    # -- re-adoption ---------------------------------------------------------------

    def adopt_all(self) -> None:
        for record in self.store.load_all():
            try:
                self._adopt(record)
            except Exception:
                log.exception("re-adopt container %s", record.id)

    def _adopt(self, record: ContainerRecord) -> None:
        if record.status is Status.CREATING:
            log.warning("container %s: its create was interrupted; removing it", record.id)
            try:
                self.runtime.delete(record.id, force=True)
            except runtime_errors.NotFound:
                pass
            self.store.remove(record.id)
            return
        container = Container(record, adopted=True)
        self.containers[record.id] = container
        if record.status is Status.STOPPED:
            return
        try:
            created = self.runtime.load(record.id)
        except runtime_errors.NotFound:
            log.warning("container %s: the runtime no longer knows it", record.id)
            self._exited(container, None)
            return
        try:
            pidfd = os.pidfd_open(created.pid)
        except ProcessLookupError:
            pidfd = -1
        # Checked after opening the pidfd: it then surely refers to this init.
        if pidfd >= 0 and not created.init_alive():
            os.close(pidfd)
            pidfd = -1
        if pidfd < 0:
            self._adopted_exited(container)
            return
        container.pidfd = pidfd
        self.reactor.add_reader(pidfd, lambda: self._adopted_exited(container))
        if record.status is Status.CREATED and self.runtime.status(created) == "running":
            record.status = Status.RUNNING
            self.store.save(record)
        log.info(
            "re-adopted container %s (pid %d, %s); its output is no longer captured",
            record.id, record.pid, record.status.value,
        )  # fmt: skip

    def _adopted_exited(self, container: Container) -> None:
        self._close_pidfd(container)
        status: int | None = None
        try:
            created = self.runtime.load(container.id)
        except runtime_errors.RuntimeFailure:
            created = None
        if created is not None:
            recorded = created.exit_status()
            if recorded is not None:
                code, signum = recorded
                status = signum if signum else code << 8
            else:
                status = zombie_status(created.pid, created.record["init_start_time"])
        self._exited(container, status)

    def _close_pidfd(self, container: Container) -> None:
        if container.pidfd >= 0:
            self.reactor.remove(container.pidfd)
            os.close(container.pidfd)
            container.pidfd = -1

    def close(self) -> None:
        """Let go of every container (they keep running): the supervisor exits."""
        for container in self.containers.values():
            self._close_pidfd(container)
            _close_io(container)


def _wants_terminal(bundle: str) -> bool:
    """Whether the bundle's process asks for a terminal (config.json process.terminal);
    an unreadable config is left for the runtime to report."""
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            config = json.load(f)
        return bool((config.get("process") or {}).get("terminal"))
    except (OSError, ValueError, AttributeError):
        return False


def _close_io(container: Container) -> None:
    """Flush what the container wrote to its log, then close its pipes and log."""
    for pipe in container.pipes:
        pipe.drain()
        pipe.close()
    if container.stdin is not None:
        container.stdin.close()
    if container.terminal >= 0:
        os.close(container.terminal)
        container.terminal = -1
    if container.log is not None:
        container.log.close()
