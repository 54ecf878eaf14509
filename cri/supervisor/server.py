"""The supervisor's socket side: accepts connections, splits them into JSON lines,
dispatches each request to its handler and writes the responses and events back
(`cri.supervisor.protocol` describes the messages).

Everything is non-blocking and runs on the reactor's thread. A handler gets the
request's `Args` and a `Reply`, and either answers at once or keeps the `Reply` and
answers later (stop, wait, exec_sync); an exception it raises becomes the error
response, translated here from the runtime's errors to the supervisor's kinds.
A reply to a connection that has gone away is dropped. Descriptors a request
carries are the handler's to keep (it removes them from `Args.fds`); the rest are
closed once it returns. A subscriber that stops
reading (more than `MAX_SUBSCRIBER_BACKLOG` unsent bytes) is disconnected.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any

from cri.supervisor import protocol
from cri.supervisor.errors import (
    AlreadyExists,
    InvalidArgument,
    InvalidState,
    NotFound,
    SupervisorError,
)
from cri.supervisor.protocol import Args
from cri.supervisor.reactor import Reactor
from runtime import errors as runtime_errors

log = logging.getLogger(__name__)

MAX_SUBSCRIBER_BACKLOG = 4 * 1024 * 1024
_RECV_SIZE = 256 * 1024
MAX_FDS_PER_READ = 16


def translate(error: BaseException) -> SupervisorError:
    """The supervisor's error for an exception a handler raised."""
    if isinstance(error, SupervisorError):
        return error
    message = str(error)
    if isinstance(error, runtime_errors.NotFound):
        return NotFound(message)
    if isinstance(error, runtime_errors.AlreadyExists):
        return AlreadyExists(message)
    if isinstance(error, runtime_errors.InvalidState):
        return InvalidState(message)
    if isinstance(error, runtime_errors.SpecError):
        return InvalidArgument(message)
    if isinstance(error, runtime_errors.RuntimeFailure | OSError):
        return SupervisorError(message)
    log.error("unexpected error", exc_info=error)
    return SupervisorError(f"{type(error).__name__}: {message}")


class Reply:
    """The pending answer to one request; the first `ok` or `fail` wins."""

    __slots__ = ("connection", "done", "request_id")

    def __init__(self, connection: Connection, request_id: int) -> None:
        self.connection = connection
        self.request_id = request_id
        self.done = False

    def ok(self, result: Mapping[str, Any] | None = None) -> None:
        if not self.done:
            self.done = True
            self.connection.send(protocol.response_ok(self.request_id, result or {}))

    def fail(self, error: BaseException) -> None:
        if not self.done:
            self.done = True
            self.connection.send(protocol.response_error(self.request_id, translate(error)))


Handler = Callable[[Args, Reply], None]


class Connection:
    __slots__ = ("_fds", "_inbox", "_outbox", "_server", "closed", "fd", "sock", "subscribed")

    def __init__(self, server: Server, sock: socket.socket) -> None:
        self._server = server
        self.sock = sock
        self.fd = sock.fileno()
        self._inbox = bytearray()
        self._outbox = bytearray()
        # Descriptors received and not yet claimed by a request, in arrival order.
        self._fds: list[int] = []
        self.subscribed = False
        self.closed = False

    def on_readable(self) -> None:
        try:
            data, fds, _, _ = socket.recv_fds(
                self.sock, _RECV_SIZE, MAX_FDS_PER_READ, socket.MSG_CMSG_CLOEXEC
            )
        except BlockingIOError:
            return
        except OSError:
            data, fds = b"", []
        self._fds.extend(fds)
        if not data:
            self.close()
            return
        self._inbox += data
        while not self.closed:
            end = self._inbox.find(b"\n")
            if end < 0:
                break
            line = bytes(self._inbox[:end])
            del self._inbox[: end + 1]
            self._server.dispatch(self, line)
        if len(self._inbox) > protocol.MAX_LINE:
            self.send(protocol.response_error(0, InvalidArgument("message too long")))
            self.close()

    def send(self, message: Mapping[str, Any]) -> None:
        if self.closed:
            return
        self._outbox += protocol.encode(message)
        if self.subscribed and len(self._outbox) > MAX_SUBSCRIBER_BACKLOG:
            log.warning("disconnect a subscriber that does not read its events")
            self.close()
            return
        self._flush()

    def _flush(self) -> None:
        try:
            while self._outbox:
                sent = self.sock.send(self._outbox)
                del self._outbox[:sent]
        except BlockingIOError:
            pass
        except OSError:  # the peer is gone
            self.close()
            return
        if self._outbox:
            self._server.reactor.add_writer(self.fd, self._flush)
        else:
            self._server.reactor.remove_writer(self.fd)

    def take_fds(self, count: int) -> list[int]:
        """The next `count` received descriptors (they arrive with the first byte of
        the line that claims them, so they are here when it is dispatched)."""
        if count < 0 or count > len(self._fds):
            raise InvalidArgument(f"{count} file descriptors claimed, {len(self._fds)} received")
        taken, self._fds = self._fds[:count], self._fds[count:]
        return taken

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._server.reactor.remove(self.fd)
        self._server.forget(self)
        self.sock.close()
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()


class Server:
    def __init__(
        self, reactor: Reactor, listener: socket.socket, handlers: Mapping[str, Handler]
    ) -> None:
        self.reactor = reactor
        self._listener = listener
        self._handlers = dict(handlers)
        self._handlers["subscribe"] = self._subscribe
        self.connections: dict[int, Connection] = {}
        listener.setblocking(False)
        reactor.add_reader(listener.fileno(), self._accept)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as e:  # EMFILE and the like: keep serving the others
                log.warning("accept a connection: %s", e)
                return
            sock.setblocking(False)
            connection = Connection(self, sock)
            self.connections[connection.fd] = connection
            self.reactor.add_reader(connection.fd, connection.on_readable)

    def forget(self, connection: Connection) -> None:
        if self.connections.get(connection.fd) is connection:
            del self.connections[connection.fd]

    def dispatch(self, connection: Connection, line: bytes) -> None:
        try:
            request = protocol.parse_request(line)
        except SupervisorError as e:
            connection.send(protocol.response_error(0, e))
            return
        reply = Reply(connection, request.id)
        args = request.args
        try:
            claimed = args.integer("fds", 0)
            args.fds = connection.take_fds(claimed)
        except SupervisorError as e:
            reply.fail(e)
            return
        handler = self._handlers.get(request.op)
        try:
            if handler is None:
                raise InvalidArgument(f"{request.op}: not supported by this supervisor")
            handler(args, reply)
        except Exception as e:
            reply.fail(e)
        finally:
            # A handler that keeps a descriptor takes it out of args.fds.
            for fd in args.fds:
                os.close(fd)
            args.fds = []

    def _subscribe(self, _args: Args, reply: Reply) -> None:
        reply.ok()
        reply.connection.subscribed = True

    def broadcast(self, message: Mapping[str, Any]) -> None:
        for connection in list(self.connections.values()):
            if connection.subscribed:
                connection.send(message)

    def close(self) -> None:
        for connection in list(self.connections.values()):
            connection.close()
        self.reactor.remove(self._listener.fileno())
        self._listener.close()
