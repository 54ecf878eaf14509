"""Domain errors of the images package.

Every error raised on purpose by images/ is an ImageError, so a caller (the CLI, the
CRI image service) can catch one base class and translate it at its edge. Messages
are lower-case, have no trailing period and name the operation and the object, for
example ``pull 127.0.0.1:5000/busybox:1: unauthorized: ...``. No message ever carries
a password or token.
"""

from __future__ import annotations


class ImageError(Exception):
    """Base class of every error images/ raises on purpose."""


class InvalidReference(ImageError):
    """An image reference (or a registry prefix/location) that does not parse."""


class InvalidConfig(ImageError):
    """A registries config file, or credentials, that cannot be used."""


class NotFound(ImageError):
    """An image, blob or snapshot that does not exist."""


class AlreadyExists(ImageError):
    """An object that already exists (for content, callers treat it as success)."""


class InUse(ImageError):
    """An image still used by a snapshot or container."""


class PullError(ImageError):
    """A pull that failed at every endpoint."""


class UnsafeLayer(ImageError):
    """A layer entry that would write outside its destination; the message names it."""


class DigestMismatch(ImageError):
    """Content whose digest or size is not the expected one."""
