"""Exec, Attach and PortForward: the RPCs answer a URL of the streaming server
(cri.streaming), and the session behind it runs here, as the kubelet's CRI streaming
server does it for containerd.

- Exec: the node supervisor runs the command in the container (cri.supervisor's
  `exec`) with the session's pipes as its stdio, or, with a terminal, gives it a pty
  whose master the runtime sends to the session's console socket. The command is a
  child of the supervisor's exec helper, like an ExecSync, not of this server.
- Attach: the supervisor copies the container's output to the session's pipes as
  well as to its log, and the session's stdin into the container's stdin (closed
  when the client's ends, if the container has `stdin_once`). A container created
  with `tty` has a pty the supervisor holds: one output stream, and the client's
  terminal sizes are applied to it.
- PortForward: a TCP connection to localhost:<port> inside the pod's network
  namespace (127.0.0.1, else ::1), made on a short-lived thread that entered the
  namespace (cri.network.netns.socket_in), then used from any thread.

The request is checked when the RPC is made (INVALID_ARGUMENT, NOT_FOUND,
FAILED_PRECONDITION as containerd answers); what goes wrong later, when the client
connects, is told on the stream's error channel.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from cri.api import api_pb2
from cri.errors import InvalidArgument, ResourceExhausted
from cri.network import netns
from cri.node import Node
from cri.store import ContainerRecord, SandboxState
from cri.streaming.remotecommand import ProcessFailed, ProcessIO, StreamOptions
from cri.streaming.server import StreamingServer, TooManyRequests
from cri.supervisor import Status, SupervisorError
from runtime import errors as runtime_errors

TYPE_CHECKING = False
if TYPE_CHECKING:
    from runtime.syscalls import Syscalls

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0


def _options(request: api_pb2.ExecRequest | api_pb2.AttachRequest) -> StreamOptions:
    if not request.container_id:
        raise InvalidArgument("container_id: required")
    if request.tty and request.stderr:
        raise InvalidArgument("tty and stderr cannot both be true")
    if not (request.stdin or request.stdout or request.stderr):
        raise InvalidArgument("one of stdin, stdout, or stderr must be set")
    return StreamOptions(
        stdin=request.stdin, stdout=request.stdout, stderr=request.stderr, tty=request.tty
    )


class _NullFds:
    """/dev/null in place of the streams a session does not have."""

    def __init__(self) -> None:
        self.opened: list[int] = []

    def fill(self, io: ProcessIO) -> tuple[int, int, int]:
        fds = []
        wanted = ((io.stdin, os.O_RDONLY), (io.stdout, os.O_WRONLY), (io.stderr, os.O_WRONLY))
        for fd, mode in wanted:
            if fd < 0:
                fd = os.open(os.devnull, mode | os.O_CLOEXEC)
                self.opened.append(fd)
            fds.append(fd)
        return fds[0], fds[1], fds[2]

    def close(self) -> None:
        for fd in self.opened:
            os.close(fd)


class Streaming:
    def __init__(self, node: Node, server: StreamingServer) -> None:
        self.node = node
        self.server = server

    def _running(self, container_id: str) -> ContainerRecord:
        """The container, which must be running (NOT_FOUND, FAILED_PRECONDITION)."""
        record = self.node.store.get_container(container_id)
        try:
            status = self.node.supervisor.state(record.id).status
        except SupervisorError:
            status = None
        if status is not Status.RUNNING:
            state = status.value if status is not None else record.state.value.lower()
            raise runtime_errors.InvalidState(f"container {record.id} is {state}, not running")
        return record

    def exec(self, request: api_pb2.ExecRequest) -> str:
        options = _options(request)
        if not request.cmd:
            raise InvalidArgument("cmd: required")
        record = self._running(request.container_id)
        supervisor = self.node.supervisor
        command = list(request.cmd)

        def run(io: ProcessIO) -> int:
            nulls = _NullFds()
            try:
                return supervisor.exec(
                    record.id, command, stdio=nulls.fill(io), tty=options.tty,
                    console_socket=io.console_socket,
                )  # fmt: skip
            except SupervisorError as e:
                raise ProcessFailed(str(e)) from None
            finally:
                nulls.close()

        return _registered(lambda: self.server.exec_url(options, run, str(command)))

    def attach(self, request: api_pb2.AttachRequest) -> str:
        options = _options(request)
        record = self._running(request.container_id)
        config = api_pb2.ContainerConfig.FromString(record.config)
        if options.tty != config.tty:
            raise InvalidArgument(
                f"tty: {options.tty} but container {record.id} was created with tty {config.tty}"
            )
        supervisor = self.node.supervisor

        def resize(io: ProcessIO) -> None:
            while io.resizes is not None and (size := io.resizes.get()) is not None:
                try:
                    supervisor.resize(record.id, size.width, size.height)
                except SupervisorError as e:
                    log.info("resize the terminal of %s: %s", record.id, e)

        def run(io: ProcessIO) -> None:
            if options.tty:
                threading.Thread(target=resize, args=(io,), daemon=True).start()
            try:
                supervisor.attach(
                    record.id, stdin=io.stdin, stdout=io.stdout, stderr=io.stderr,
                    stdin_once=config.stdin_once,
                )  # fmt: skip
            except SupervisorError as e:
                raise ProcessFailed(str(e)) from None
            return None

        return _registered(lambda: self.server.attach_url(options, run, f"container {record.id}"))

    def port_forward(self, request: api_pb2.PortForwardRequest) -> str:
        if not request.pod_sandbox_id:
            raise InvalidArgument("pod_sandbox_id: required")
        for index, port in enumerate(request.port):
            if not 0 < port < 65536:
                raise InvalidArgument(f"port[{index}]: {port} is not a port")
        sandbox = self.node.store.get_sandbox(request.pod_sandbox_id)
        if sandbox.state is not SandboxState.READY:
            raise runtime_errors.InvalidState(f"sandbox {sandbox.id} is not ready")
        config = api_pb2.PodSandboxConfig.FromString(sandbox.config)
        host_network = config.linux.security_context.namespace_options.network == api_pb2.NODE
        netns_path = "" if host_network else sandbox.netns_path
        syscalls = self.node.network.syscalls

        def connect(port: int) -> socket.socket:
            return connect_localhost(netns_path, port, syscalls)

        return _registered(lambda: self.server.port_forward_url(connect, f"sandbox {sandbox.id}"))


def _registered(register: Callable[[], str]) -> str:
    try:
        return register()
    except TooManyRequests as e:
        raise ResourceExhausted(str(e)) from None


def connect_localhost(netns_path: str, port: int, syscalls: Syscalls) -> socket.socket:
    """A TCP connection to localhost:`port` in the network namespace at `netns_path`
    (the host's when empty): 127.0.0.1 first, then ::1."""
    failure: OSError | None = None
    for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        if netns_path:
            sock = netns.socket_in(Path(netns_path), family, syscalls=syscalls)
        else:
            sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect((address, port))
        except OSError as e:
            sock.close()
            failure = failure or e
            if e.errno not in (errno.ECONNREFUSED, errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                raise
            continue
        sock.settimeout(None)
        return sock
    assert failure is not None
    raise failure
