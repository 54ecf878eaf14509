"""The supervisor's typed errors, the same classes on both sides of the socket.

The supervisor answers a failed request with `{"kind": ..., "message": ...}`; the
client raises the class registered for that kind, with the supervisor's message
(which names the operation and the container, as runtime errors do). They become gRPC
codes only in the CRI server, never here.
"""

from __future__ import annotations

from typing import ClassVar


class SupervisorError(Exception):
    """Anything else that failed (the kind "internal"): the message says what."""

    kind: ClassVar[str] = "internal"


class NotFound(SupervisorError):
    """No container with that id."""

    kind = "not_found"


class AlreadyExists(SupervisorError):
    """A container with that id exists already."""

    kind = "already_exists"


class InvalidState(SupervisorError):
    """The container's state does not allow the operation (start a stopped one)."""

    kind = "invalid_state"


class InvalidArgument(SupervisorError):
    """The request is malformed: a missing or mistyped field, a bad id or path."""

    kind = "invalid_argument"


class Unavailable(SupervisorError):
    """The client could not reach the supervisor (not running, socket gone, timed out).
    Raised by the client only; the supervisor never sends it."""

    kind = "unavailable"


ERROR_CLASSES: dict[str, type[SupervisorError]] = {
    cls.kind: cls
    for cls in (
        SupervisorError,
        NotFound,
        AlreadyExists,
        InvalidState,
        InvalidArgument,
        Unavailable,
    )
}


def error_from_wire(kind: str, message: str) -> SupervisorError:
    """The exception for an error the supervisor sent (unknown kinds: the base class)."""
    return ERROR_CLASSES.get(kind, SupervisorError)(message)
