"""The supervisor process: `python -m cri.supervisor --state DIR [--daemonize]`.

Start-up, in order: take the instance lock (`<state>/supervisor.pid`, a POSIX lock:
not inherited by the containers it forks, released when the process dies, however
it dies), become the child subreaper, install the signal wake-up, re-adopt the
containers on disk, listen on `<state>/supervisor.sock` (0600), then report ready.
With `--daemonize` the process forks once more and the parent exits only when the
child is ready (0) or has failed (1, the reason on stderr), so whoever spawned it
waits for a short-lived process and the supervisor itself is re-parented to init.

SIGTERM or SIGINT stop the loop: the socket is removed and the containers keep
running (their output is no longer captured; see `cri.supervisor.adoption`).

State directory:

    <state>/supervisor.sock    the socket
    <state>/supervisor.pid     pid of the running supervisor, locked while it runs
    <state>/supervisor.lock    taken by `ensure_supervisor` while it starts one
    <state>/supervisor.log     its log when started by `ensure_supervisor`
    <state>/containers/        one record per container (`records`)
    <state>/runtime/           the runtime root (unless --runtime-root)
    <state>/exec/              pid files of running ExecSync commands
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable

from cri.supervisor.adoption import adopt_all
from cri.supervisor.client import PID_FILE_NAME, SOCKET_NAME
from cri.supervisor.containers import ContainerManager
from cri.supervisor.errors import SupervisorError
from cri.supervisor.execsync import ExecRunner
from cri.supervisor.protocol import PROTOCOL_VERSION, Args, Event
from cri.supervisor.reactor import ChildWatcher, Reactor
from cri.supervisor.records import RecordStore
from cri.supervisor.server import Reply, Server
from cri.supervisor.stdio import ContainerStdio
from runtime.container import Runtime

log = logging.getLogger(__name__)

# sun_path holds 108 bytes, the terminating NUL included.
MAX_SOCKET_PATH = 107
_STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


def acquire_instance_lock(state_dir: str) -> int:
    """Lock `<state>/supervisor.pid` and write our pid into it; the fd must stay open
    (and no other fd of that file may be opened and closed: that drops the lock)."""
    fd = os.open(
        os.path.join(state_dir, PID_FILE_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644
    )
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        other = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise SupervisorError(f"another supervisor (pid {other}) serves {state_dir}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def listen(path: str) -> socket.socket:
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise SupervisorError(f"socket path {path} is too long for a unix socket")
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    umask = os.umask(0o177)  # 0600 from the start
    try:
        sock.bind(path)
    except BaseException:
        sock.close()
        raise
    finally:
        os.umask(umask)
    sock.listen(128)
    return sock


class Supervisor:
    """Wires the reactor, the runtime, the container manager, the containers' stdio,
    ExecSync and the socket together."""

    def __init__(self, state_dir: str, *, runtime_root: str = "") -> None:
        self.state_dir = os.path.abspath(state_dir)
        self.socket_path = os.path.join(self.state_dir, SOCKET_NAME)
        self.reactor = Reactor()
        self.children = ChildWatcher()
        self.runtime = Runtime(runtime_root or os.path.join(self.state_dir, "runtime"))
        self.server: Server | None = None
        self.containers = ContainerManager(
            runtime=self.runtime, store=RecordStore(os.path.join(self.state_dir, "containers")),
            reactor=self.reactor, children=self.children, publish=self._publish,
        )  # fmt: skip
        self.stdio = ContainerStdio(containers=self.containers, reactor=self.reactor)
        self.execs = ExecRunner(
            runtime=self.runtime, reactor=self.reactor, children=self.children,
            containers=self.containers, work_dir=os.path.join(self.state_dir, "exec"),
        )  # fmt: skip

    def open(self) -> None:
        # Every container's init is re-parented to us when its intermediate exits.
        self.runtime.syscalls.set_child_subreaper()
        self.reactor.handle_signals(
            (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP), self._wakeup
        )
        adopt_all(self.containers)
        handlers = {
            "ping": self._ping, **self.containers.handlers(), **self.stdio.handlers(),
            **self.execs.handlers(),
        }  # fmt: skip
        self.server = Server(self.reactor, listen(self.socket_path), handlers)
        log.info("supervisor %d listening on %s", os.getpid(), self.socket_path)

    def _wakeup(self) -> None:
        self.children.reap()
        if self.reactor.signalled & _STOP_SIGNALS:
            log.info("stopping on a signal; containers keep running")
            self.reactor.stop()
        self.reactor.signalled.clear()

    def _publish(self, event: Event) -> None:
        if self.server is not None:
            self.server.broadcast(event.to_wire())

    def _ping(self, _args: Args, reply: Reply) -> None:
        containers = len(self.containers.containers)
        reply.ok({"pid": os.getpid(), "version": PROTOCOL_VERSION, "containers": containers})

    def run(self) -> None:
        self.reactor.run()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            try:
                os.unlink(self.socket_path)
            except FileNotFoundError:
                pass
        self.containers.close()
        self.reactor.close()


def serve(state_dir: str, *, runtime_root: str, ready: Callable[[str], None]) -> int:
    """Run a supervisor until a signal stops it; `ready("")` once it listens, or
    `ready(reason)` if it could not start."""
    try:
        os.makedirs(state_dir, mode=0o711, exist_ok=True)
        lock_fd = acquire_instance_lock(state_dir)
        supervisor = Supervisor(state_dir, runtime_root=runtime_root)
        supervisor.open()
    except (SupervisorError, OSError) as e:
        ready(str(e))
        return 1
    ready("")
    try:
        supervisor.run()
    finally:
        supervisor.close()
        os.close(lock_fd)
    return 0


def _daemonize(body: Callable[[Callable[[str], None]], int]) -> int:
    """Fork; the parent returns when the child reports ready (0) or failed (1)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid > 0:
        os.close(write_fd)
        chunks = []
        while chunk := os.read(read_fd, 4096):
            chunks.append(chunk)
        os.close(read_fd)
        message = b"".join(chunks).decode(errors="replace")
        if message == "ok":
            return 0
        sys.stderr.write(f"supervisor: {message or 'exited before it was ready'}\n")
        return 1
    os.close(read_fd)
    os.chdir("/")

    def ready(error: str) -> None:
        os.write(write_fd, error.encode() if error else b"ok")
        os.close(write_fd)

    code = 1
    try:
        code = body(ready)
    except BaseException:
        log.exception("supervisor failed")
    finally:
        os._exit(code)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cri.supervisor",
        description="kubeling's node supervisor: forks, reaps and logs the containers",
    )
    parser.add_argument("--state", required=True, help="state directory (socket, records)")
    parser.add_argument("--runtime-root", default="", help="runtime root (<state>/runtime)")
    parser.add_argument(
        "--daemonize", action="store_true", help="fork; exit once the supervisor listens"
    )
    parser.add_argument("--debug", action="store_true", help="log at debug level")
    args = parser.parse_args(argv)
    if args.daemonize:
        # Inherited fds would be held by every container until it execs.
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s supervisor[%(process)d] %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    state_dir = os.path.abspath(args.state)

    def body(ready: Callable[[str], None]) -> int:
        return serve(state_dir, runtime_root=args.runtime_root, ready=ready)

    if args.daemonize:
        return _daemonize(body)

    def report(error: str) -> None:
        if error:
            sys.stderr.write(f"supervisor: {error}\n")

    return body(report)
