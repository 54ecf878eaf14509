"""Domain errors to gRPC status codes, in one place.

Every RPC handler is wrapped with `rpc` (`rpc_stream` for a server-streaming one): it
logs the call at debug level, maps the image store's and the runtime's errors to the
code a CRI client expects, and turns anything unexpected into INTERNAL with the
message (never a traceback on the wire).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypeVar

import grpc

from images import errors as image_errors
from runtime import errors as runtime_errors

log = logging.getLogger(__name__)

Handler = TypeVar("Handler", bound=Callable[..., Any])
StreamHandler = TypeVar("StreamHandler", bound=Callable[..., Iterator[Any]])


class InvalidArgument(Exception):
    """A request field is missing or malformed; the message names the field."""


class Unimplemented(Exception):
    """This server does not serve the RPC (a server without a node runs no pods)."""


class NameTaken(Exception):
    """A sandbox or container name (or id) is reserved for another one."""


class DeadlineExceeded(Exception):
    """The operation did not finish in the time the request allowed (ExecSync)."""


class Unavailable(Exception):
    """The server cannot serve this now (it is shutting down); the client may retry."""


class ResourceExhausted(Exception):
    """The client fell too far behind a stream; it may subscribe again."""


_CODES: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (NameTaken, grpc.StatusCode.ALREADY_EXISTS),
    (DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (Unimplemented, grpc.StatusCode.UNIMPLEMENTED),
    (image_errors.InvalidReference, grpc.StatusCode.INVALID_ARGUMENT),
    (image_errors.InvalidConfig, grpc.StatusCode.INVALID_ARGUMENT),
    (image_errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (image_errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (image_errors.InUse, grpc.StatusCode.FAILED_PRECONDITION),
    (runtime_errors.SpecError, grpc.StatusCode.INVALID_ARGUMENT),
    (runtime_errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (runtime_errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (runtime_errors.InvalidState, grpc.StatusCode.FAILED_PRECONDITION),
    (image_errors.ImageError, grpc.StatusCode.UNKNOWN),
    (runtime_errors.RuntimeFailure, grpc.StatusCode.UNKNOWN),
)


def status_code(error: BaseException) -> grpc.StatusCode:
    for kind, code in _CODES:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.INTERNAL


def rpc(handler: Handler) -> Handler:
    """Wrap a servicer method: errors become gRPC statuses with their message."""

    @functools.wraps(handler)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        name = handler.__name__
        log.debug("rpc %s", name)
        try:
            return handler(self, request, context)
        except Exception as e:
            _abort(context, name, e)

    return wrapper  # type: ignore[return-value]


def rpc_stream(handler: StreamHandler) -> StreamHandler:
    """`rpc` for a server-streaming method (a generator): an error raised before or
    between the messages ends the stream with its status."""

    @functools.wraps(handler)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        name = handler.__name__
        log.debug("rpc %s", name)
        try:
            yield from handler(self, request, context)
        except Exception as e:
            _abort(context, name, e)

    return wrapper  # type: ignore[return-value]


def _abort(context: grpc.ServicerContext, name: str, error: Exception) -> NoReturn:
    code = status_code(error)
    if code is grpc.StatusCode.INTERNAL:
        log.exception("rpc %s failed", name)
    else:
        log.info("rpc %s: %s: %s", name, code.name, error)
    context.abort(code, f"{name}: {error}")
