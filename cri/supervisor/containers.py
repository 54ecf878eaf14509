"""The containers the supervisor owns: their lifecycle through `runtime.container.Runtime`
and their exits (`ContainerManager`, which holds each as a `Container`, container.py).
How create has the runtime make one, with pipes or a terminal, is creation.py's; the
requests on its stdio (reopen_log, stdin, attach, resize) are stdio.py's; taking them
back after a restart is adoption.py's.

Lifecycle of one container (statuses of `protocol.Status`):

    create: record saved as "creating" -> runtime create (monitor=False, stdio=pipes)
            -> record "created"; init is now our child (we are its subreaper)
    start:  runtime.start -> "running"
    exit:   reaped (SIGCHLD) -> output drained -> Runtime.record_exit -> "stopped",
            event "exited", stop/wait callers answered
    delete: runtime.delete -> record removed, pipes and log closed, event "deleted"

The output of a container is copied to its log as it arrives (`OutputPipe`); when
init is reaped, every process of its pid namespace is already gone, so draining the
pipes then gets all of its output before the exit is reported. A pipe still open
after that (a process outside the namespace holds it) is read until it closes.

Requests are handled one at a time on the loop's thread. A create runs in steps
(`PipedCreation`): between them, while init sets itself up (most of a create), the
loop serves other requests and other creates; the id is taken meanwhile
(`creating`). `start`, `kill` and `delete` block the loop while the runtime works
(milliseconds; a forced delete waits up to 10 s for the container to die), which is
the price of a single thread with no locks. Nothing else may reap children
meanwhile (`reactor.ChildWatcher`): a stepped create leaves the reaping of what it
forks to the loop.
"""

from __future__ import annotations

import importlib
import logging
import os
import select
import signal
import time
from collections.abc import Callable
from typing import Any

from cri.supervisor.adoption import adopted_exited
from cri.supervisor.container import Container
from cri.supervisor.creation import PipedCreation, create_with_terminal, wants_terminal
from cri.supervisor.errors import (
    AlreadyExists,
    InvalidArgument,
    InvalidState,
    NotFound,
    SupervisorError,
)
from cri.supervisor.logs import STDERR, STDOUT, LogFile
from cri.supervisor.pipes import OutputPipe, StdinPipe
from cri.supervisor.protocol import UNKNOWN_EXIT_CODE, Args, Event, EventKind, Status
from cri.supervisor.reactor import ChildWatcher, Reactor
from cri.supervisor.records import ContainerRecord, RecordStore
from cri.supervisor.server import Handler, Reply
from runtime import errors as runtime_errors
from runtime import state as runtime_state
from runtime.container import Runtime

log = logging.getLogger(__name__)

MAX_ID_LENGTH = 128
KILL_WAIT_SECONDS = 10.0


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


class PendingCreate:
    """A create whose init is still setting itself up: what it will become, and
    the fd the loop waits on for its next step (-1 while none)."""

    __slots__ = ("creation", "fd", "log_file", "record", "reply")

    def __init__(
        self, record: ContainerRecord, log_file: LogFile, creation: PipedCreation, reply: Reply
    ) -> None:
        self.record = record
        self.log_file = log_file
        self.creation = creation
        self.reply = reply
        self.fd = -1


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
        # Creates waiting for their init, by id: not containers yet (a second create
        # finds the id taken; other requests on it are refused as InvalidState).
        self.creating: dict[str, PendingCreate] = {}
        # What `Runtime.create` imports on first use, loaded now: the first create is
        # not slower than the others, and every fork shares them.
        for module in ("runtime.channel", "runtime.fork", "runtime.init", "runtime.cgroups"):
            importlib.import_module(module)

    def handlers(self) -> dict[str, Handler]:
        return {
            "create": self.create, "start": self.start, "kill": self.kill,
            "stop": self.stop, "wait": self.wait, "delete": self.delete,
            "state": self.state, "list": self.list,
        }  # fmt: skip

    def get(self, container_id: str, op: str) -> Container:
        container = self.containers.get(container_id)
        if container is None:
            if container_id in self.creating:
                raise InvalidState(f"{op} {container_id}: container is being created")
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
        if container_id in self.containers or container_id in self.creating:
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
        try:
            log_file = LogFile(log_path)
        except OSError as e:
            self.store.remove(container_id)
            raise SupervisorError(f"{what}: open log {log_path}: {e.strerror}") from None
        if wants_terminal(bundle):
            self._create_with_terminal(record, log_file, reply)
            return
        try:
            creation = PipedCreation(
                self.runtime, container_id, bundle=bundle, with_stdin=with_stdin
            )
        except BaseException:
            log_file.close()
            self.store.remove(container_id)
            raise
        pending = PendingCreate(record, log_file, creation, reply)
        self.creating[container_id] = pending
        self._advance(pending)

    def _advance(self, pending: PendingCreate) -> None:
        """Run a create until it waits for init again, or finish it (reactor callback)."""
        creation, container_id = pending.creation, pending.record.id
        # Unwatched while the step runs: the step may close the fd (its last does).
        self._unwatch(pending)
        try:
            fd = creation.advance()
        except Exception as e:
            self.creating.pop(container_id, None)
            for ours in creation.ours:
                os.close(ours)
            pending.log_file.close()
            self.store.remove(container_id)
            pending.reply.fail(e)
            return
        if fd is not None:
            pending.fd = fd
            self.reactor.add_reader(fd, lambda: self._advance(pending))
            return
        self.creating.pop(container_id, None)
        assert creation.created is not None
        in_write = creation.in_write
        self._created(
            pending.record, creation.created, pending.log_file, pending.reply,
            pipes=(creation.out_read, creation.err_read), terminal=-1,
            stdin=in_write if in_write >= 0 else None,
        )  # fmt: skip

    def _unwatch(self, pending: PendingCreate) -> None:
        if pending.fd >= 0:
            self.reactor.remove(pending.fd)
            pending.fd = -1

    def _create_with_terminal(
        self, record: ContainerRecord, log_file: LogFile, reply: Reply
    ) -> None:
        ours: list[int] = []  # the supervisor's ends, closed if create fails
        try:
            created, master = create_with_terminal(self.runtime, record.id, record.bundle)
            ours.append(master)
            out_read = os.dup(master)
            ours.append(out_read)
            in_write = os.dup(master) if record.stdin else -1
            if record.stdin:
                ours.append(in_write)
        except BaseException:
            for fd in ours:
                os.close(fd)
            log_file.close()
            self.store.remove(record.id)
            raise
        self._created(
            record, created, log_file, reply, pipes=(out_read,), terminal=master,
            stdin=in_write if in_write >= 0 else None,
        )  # fmt: skip

    def _created(
        self,
        record: ContainerRecord,
        created: runtime_state.ContainerState,
        log_file: LogFile,
        reply: Reply,
        *,
        pipes: tuple[int, ...],
        terminal: int,
        stdin: int | None,
    ) -> None:
        record.pid = created.pid
        record.status = Status.CREATED
        container = Container(record, log=log_file, terminal=terminal)
        streams = (STDOUT, STDERR)
        container.pipes = [
            OutputPipe(self.reactor, fd, stream, log_file, lambda: self._pipe_closed(container))
            for fd, stream in zip(pipes, streams, strict=False)
        ]
        for pipe in container.pipes:
            pipe.on_data = container.output
        if stdin is not None:
            container.stdin = StdinPipe(self.reactor, stdin)
        self.containers[record.id] = container
        self.children.watch(record.pid, lambda status: self.exited(container, status))
        self.store.save(record)
        log.info("created container %s (pid %d)", record.id, record.pid)
        self._event(EventKind.CREATED, container)
        reply.ok(container.info().to_wire())

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

    def exited(self, container: Container, status: int | None) -> None:
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
        self.close_pidfd(container)
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
            adopted_exited(self, container)
            return
        try:
            reaped, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            reaped, status = 0, 0
        if reaped:
            self.children.unwatch(pid)
            self.exited(container, status)
        # else: the reaper will see it later; the container is discarded by then.

    def _discard(self, container: Container) -> None:
        self.children.unwatch(container.record.pid)
        self.close_pidfd(container)
        if container.stop_timer is not None:
            container.stop_timer.cancel()
        container.close_io()
        container.detach_all()
        for waiter in container.waiters:
            waiter()
        container.waiters.clear()
        self.store.remove(container.id)
        del self.containers[container.id]

    # -- queries and the end --------------------------------------------------------

    def state(self, args: Args, reply: Reply) -> None:
        reply.ok(self.get(args.text("id"), "state").info().to_wire())

    def list(self, _args: Args, reply: Reply) -> None:
        containers = [c.info().to_wire() for c in self.containers.values()]
        reply.ok({"containers": containers})

    def close_pidfd(self, container: Container) -> None:
        """Stop watching the pidfd of a re-adopted container, and close it."""
        if container.pidfd >= 0:
            self.reactor.remove(container.pidfd)
            os.close(container.pidfd)
            container.pidfd = -1

    def close(self) -> None:
        """Let go of every container (they keep running): the supervisor exits.
        A create not done is undone, and its record removed."""
        for pending in list(self.creating.values()):
            self._unwatch(pending)
            pending.creation.abandon()
            for fd in pending.creation.ours:
                os.close(fd)
            pending.log_file.close()
            self.store.remove(pending.record.id)
        self.creating.clear()
        for container in self.containers.values():
            self.close_pidfd(container)
            container.close_io()
