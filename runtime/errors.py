"""The runtime's domain errors. The CLI turns each into one line on stderr and a
non-zero exit; callers of the library (the CRI server) map them to their own codes."""

from __future__ import annotations

import errno as _errno
import os


class RuntimeFailure(Exception):
    """Base of every error the runtime reports to its caller."""


class SpecError(RuntimeFailure):
    """config.json is malformed or asks for something unsupported."""


class NotFound(RuntimeFailure):
    """No container with that id."""


class AlreadyExists(RuntimeFailure):
    """A container with that id exists already."""


class InvalidState(RuntimeFailure):
    """The container's state does not allow the operation (start a running one)."""


class ContainerInitError(RuntimeFailure):
    """Setting up the container process failed; the message comes from inside it."""


class SyscallError(OSError):
    """A kernel call failed; the message names the operation and its object."""

    def __init__(self, err: int, what: str) -> None:
        super().__init__(err, what)
        self.what = what

    def __str__(self) -> str:
        name = _errno.errorcode.get(self.errno or 0, str(self.errno))
        return f"{self.what}: {name} ({os.strerror(self.errno or 0)})"
