"""The blocking client of the supervisor, and `ensure_supervisor` that starts one.

`SupervisorClient` opens one connection per call (connect, one request line, one
response line, close), so it holds no shared state and any number of threads may use
one instance at once; a call costs about a tenth of a millisecond more than on a
kept connection (see the figures in `cri.supervisor`). `events()` keeps its own
connection open for the event stream.

`ensure_supervisor(state_dir)` connects if a supervisor listens there, else starts
one: under an flock on `<state>/supervisor.lock` (so two callers, threads or
processes, start one between them) it posix_spawns
`python -m cri.supervisor --state DIR --daemonize` in a new session, with
stdout/stderr appended to `<state>/supervisor.log`, and waits for that short-lived
process: it exits once the real supervisor (its child, re-parented to init) listens.
posix_spawn, not fork: the caller may be the multi-threaded gRPC server, and the
supervisor must not inherit its threads, locks or memory.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import signal as signals
import socket
import struct
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from cri.supervisor import protocol
from cri.supervisor.errors import SupervisorError, Unavailable
from cri.supervisor.protocol import ContainerInfo, Event, ExecResult

SOCKET_NAME = "supervisor.sock"
LOCK_FILE_NAME = "supervisor.lock"
LOG_FILE_NAME = "supervisor.log"
PID_FILE_NAME = "supervisor.pid"
# struct flock on 64-bit Linux: l_type, l_whence, l_start, l_len, l_pid, padding.
_STRUCT_FLOCK = "hhqqi4x"
DEFAULT_TIMEOUT = 60.0
# Added to the time a call asks the supervisor to wait (stop, wait, exec_sync): a
# forced kill may take up to 10 s more.
_GRACE = 30.0
_RECV_SIZE = 256 * 1024
# The directory that holds the `cri` package, for the spawned interpreter's path.
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _LineReader:
    __slots__ = ("_buffer", "_sock")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()

    def readline(self) -> bytes:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line
            if len(self._buffer) > protocol.MAX_LINE:
                raise SupervisorError("message from the supervisor too long")
            chunk = self._sock.recv(_RECV_SIZE)
            if not chunk:
                raise Unavailable("the supervisor closed the connection")
            self._buffer += chunk


class SupervisorClient:
    def __init__(self, socket_path: str | os.PathLike[str], *, timeout: float = DEFAULT_TIMEOUT):
        self.socket_path = os.fspath(socket_path)
        self.timeout = timeout
        self._ids = itertools.count(1)

    def __repr__(self) -> str:
        return f"SupervisorClient({self.socket_path!r})"

    def _connect(self, timeout: float | None) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.settimeout(timeout)
        try:
            sock.connect(self.socket_path)
        except OSError as e:
            sock.close()
            raise Unavailable(f"connect to the supervisor at {self.socket_path}: {e}") from None
        return sock

    def alive(self) -> bool:
        """Whether a supervisor listens on the socket (it accepts connections)."""
        try:
            self._connect(self.timeout).close()
        except Unavailable:
            return False
        return True

    def call(
        self,
        op: str,
        args: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = -1.0,
        fds: Sequence[int] = (),
    ) -> dict[str, Any]:
        """One request; its result, or the typed error the supervisor answered.
        `timeout` None waits forever; by default it is the client's timeout. `fds`
        go along with the request (the supervisor gets copies; ours stay open)."""
        if timeout is not None and timeout < 0:
            timeout = self.timeout
        request_id = next(self._ids)
        sock = self._connect(timeout)
        try:
            values = dict(args or {})
            if fds:
                values["fds"] = len(fds)
            line = protocol.request(request_id, op, values)
            if fds:
                # The descriptors ride on the first bytes; the rest follows as usual.
                sent = socket.send_fds(sock, [line], list(fds))
                sock.sendall(line[sent:])
            else:
                sock.sendall(line)
            reader = _LineReader(sock)
            while True:
                response_id, result = protocol.parse_response(protocol.decode(reader.readline()))
                if response_id == request_id:
                    return result
        except TimeoutError:
            raise Unavailable(f"{op}: no answer from the supervisor within {timeout} s") from None
        except OSError as e:
            raise Unavailable(f"{op}: connection to the supervisor failed: {e}") from None
        finally:
            sock.close()

    # -- operations ----------------------------------------------------------------

    def ping(self) -> dict[str, Any]:
        return self.call("ping")

    def create(
        self, container_id: str, bundle: str, *, log_path: str = "", stdin: bool = False
    ) -> ContainerInfo:
        args = {"id": container_id, "bundle": bundle, "log_path": log_path, "stdin": stdin}
        return ContainerInfo.from_wire(self.call("create", args))

    def start(self, container_id: str) -> ContainerInfo:
        return ContainerInfo.from_wire(self.call("start", {"id": container_id}))

    def kill(
        self, container_id: str, signal: int = signals.SIGTERM, *, all_processes: bool = False
    ) -> None:
        self.call("kill", {"id": container_id, "signal": int(signal), "all": all_processes})

    def stop(
        self, container_id: str, *, timeout: float = 10.0, signal: int = signals.SIGTERM
    ) -> ContainerInfo:
        """Signal, SIGKILL after `timeout` seconds; returns once it has exited."""
        args = {"id": container_id, "timeout": timeout, "signal": int(signal)}
        return ContainerInfo.from_wire(self.call("stop", args, timeout=timeout + _GRACE))

    def wait(self, container_id: str, *, timeout: float | None = None) -> ContainerInfo:
        """Its info once stopped, or when `timeout` runs out (then still running)."""
        call_timeout = None if timeout is None else timeout + _GRACE
        args = {"id": container_id, "timeout": timeout}
        return ContainerInfo.from_wire(self.call("wait", args, timeout=call_timeout))

    def delete(self, container_id: str, *, force: bool = False) -> None:
        self.call("delete", {"id": container_id, "force": force})

    def state(self, container_id: str) -> ContainerInfo:
        return ContainerInfo.from_wire(self.call("state", {"id": container_id}))

    def list(self) -> list[ContainerInfo]:
        return [ContainerInfo.from_wire(c) for c in self.call("list")["containers"]]

    def reopen_log(self, container_id: str) -> None:
        self.call("reopen_log", {"id": container_id})

    def write_stdin(self, container_id: str, data: bytes, *, close: bool = False) -> None:
        self.call("stdin", {"id": container_id, "data": protocol.b64(data), "close": close})

    def exec_sync(
        self,
        container_id: str,
        args: Sequence[str],
        *,
        env: Sequence[str] = (),
        timeout: float = 0.0,
    ) -> ExecResult:
        """Run `args` in the container; `timeout` 0 waits as long as it runs."""
        request = {"id": container_id, "args": list(args), "env": list(env), "timeout": timeout}
        call_timeout = None if timeout <= 0 else timeout + _GRACE
        return ExecResult.from_wire(self.call("exec_sync", request, timeout=call_timeout))

    def exec(
        self,
        container_id: str,
        args: Sequence[str],
        *,
        stdio: tuple[int, int, int],
        env: Sequence[str] = (),
        tty: bool = False,
        console_socket: str = "",
    ) -> int:
        """Run `args` in the container with `stdio` as its fds 0-2 (or, with `tty`,
        a terminal whose master the runtime sends to `console_socket`); blocks until
        it has ended and returns its exit code."""
        request = {
            "id": container_id, "args": list(args), "env": list(env), "tty": tty,
            "console_socket": console_socket,
        }  # fmt: skip
        return int(self.call("exec", request, timeout=None, fds=stdio)["exit_code"])

    def attach(
        self,
        container_id: str,
        *,
        stdin: int = -1,
        stdout: int = -1,
        stderr: int = -1,
        stdin_once: bool = False,
    ) -> None:
        """Copy the container's output to `stdout`/`stderr` (write ends) and `stdin`
        (a read end) to its stdin, until it exits or the pipes break (-1: not
        attached). Blocks meanwhile."""
        fds = [fd for fd in (stdin, stdout, stderr) if fd >= 0]
        request = {
            "id": container_id, "stdin": stdin >= 0, "stdout": stdout >= 0,
            "stderr": stderr >= 0, "stdin_once": stdin_once,
        }  # fmt: skip
        self.call("attach", request, timeout=None, fds=fds)

    def resize(self, container_id: str, width: int, height: int) -> None:
        """Set the size of the container's terminal."""
        self.call("resize", {"id": container_id, "width": width, "height": height})

    def events(self) -> EventStream:
        """Subscribe: the events from now on, until the stream is closed."""
        sock = self._connect(self.timeout)
        try:
            sock.sendall(protocol.request(0, "subscribe", {}))
            reader = _LineReader(sock)
            protocol.parse_response(protocol.decode(reader.readline()))
        except BaseException:
            sock.close()
            raise
        return EventStream(sock, reader)


class EventStream:
    """Events, one at a time; `close()` may be called from another thread."""

    def __init__(self, sock: socket.socket, reader: _LineReader) -> None:
        self._sock = sock
        self._reader = reader

    def next(self, timeout: float | None = None) -> Event:
        """The next event; TimeoutError after `timeout` seconds without one,
        `Unavailable` once the stream is closed."""
        self._sock.settimeout(timeout)
        try:
            line = self._reader.readline()
        except TimeoutError:
            raise
        except OSError as e:
            raise Unavailable(f"event stream: {e}") from None
        return Event.from_wire(protocol.decode(line))

    def __iter__(self) -> Iterator[Event]:
        while True:
            try:
                yield self.next()
            except Unavailable:
                return

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


# -- starting a supervisor -----------------------------------------------------------


@contextmanager
def _flock(path: str, timeout: float) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise Unavailable(f"lock {path}: still held after {timeout} s") from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)  # releases the lock


def spawn_supervisor(state_dir: str, *, runtime_root: str = "") -> None:
    """Start a supervisor on `state_dir` and return once it listens (see the module
    docstring); raises `SupervisorError` with its reason if it could not start."""
    # -P: the caller's working directory must not shadow the `cri` package.
    argv = [sys.executable, "-P", "-m", "cri.supervisor", "--state", state_dir, "--daemonize"]
    if runtime_root:
        argv += ["--runtime-root", runtime_root]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")]))
    log_path = os.path.join(state_dir, LOG_FILE_NAME)
    file_actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    pid = os.posix_spawn(sys.executable, argv, env, file_actions=file_actions, setsid=True)
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:  # reaped by someone else (SIGCHLD ignored): ask the socket
        return
    if os.waitstatus_to_exitcode(status) != 0:
        raise SupervisorError(f"start a supervisor on {state_dir}: {_last_error(log_path)}")


def _last_error(log_path: str) -> str:
    try:
        with open(log_path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 8192))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return "it failed (no log)"
    for line in reversed(lines):
        if line.startswith("supervisor: "):
            return line.removeprefix("supervisor: ")
    return f"it failed (see {log_path})"


def running_supervisor(state_dir: str | os.PathLike[str]) -> int:
    """The pid of the supervisor serving `state_dir` (the process holding the lock on
    its pid file, asked with F_GETLK), or 0 if none runs."""
    try:
        fd = os.open(os.path.join(state_dir, PID_FILE_NAME), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0
    try:
        probe = struct.pack(_STRUCT_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        lock_type, _, _, _, pid = struct.unpack(
            _STRUCT_FLOCK, fcntl.fcntl(fd, fcntl.F_GETLK, probe)
        )
    finally:
        os.close(fd)
    return 0 if lock_type == fcntl.F_UNLCK else int(pid)


def _wait_listening(client: SupervisorClient, deadline: float) -> bool:
    while not client.alive():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def ensure_supervisor(
    state_dir: str | os.PathLike[str], *, runtime_root: str = "", timeout: float = 30.0
) -> SupervisorClient:
    """A client of the supervisor serving `state_dir`, started first if none runs.

    Whether one runs is decided by its instance lock, not by the socket alone: a
    container created but not yet started holds a copy of a dead supervisor's
    listening socket until it execs, so connecting may succeed with nobody serving."""
    state = os.path.abspath(os.fspath(state_dir))
    client = SupervisorClient(os.path.join(state, SOCKET_NAME))
    deadline = time.monotonic() + timeout
    if running_supervisor(state) and _wait_listening(client, deadline):
        return client
    os.makedirs(state, mode=0o711, exist_ok=True)
    with _flock(os.path.join(state, LOCK_FILE_NAME), timeout):
        if not running_supervisor(state):  # nobody else started one meanwhile
            spawn_supervisor(state, runtime_root=runtime_root)
        if not _wait_listening(client, deadline):
            raise Unavailable(f"the supervisor on {state} runs but does not listen")
    return client
