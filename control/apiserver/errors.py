"""API errors as Kubernetes `Status` objects (metav1.Status), in one place.

Every failure a handler raises is an `ApiError`: it carries the HTTP code, the
`reason` (NotFound, AlreadyExists, Conflict, Invalid, BadRequest, ...), the message
and `details` (name, group, kind, causes). The server turns it into

    {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
     "message": ..., "reason": ..., "details": {...}, "code": ...}

which is what kubectl and client libraries parse (kubectl prints `Error from server
(NotFound): pods "x" not found`). Storage errors are translated here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from control.apiserver.validation import Cause
from control.storage import errors as storage_errors


@dataclass(frozen=True)
class Target:
    """What an error is about: kind as the plural resource name, e.g. "pods"."""

    resource: str
    name: str = ""
    group: str = ""

    def qualified(self) -> str:
        return f"{self.resource}.{self.group}" if self.group else self.resource


@dataclass
class ApiError(Exception):
    code: int
    reason: str
    message: str
    target: Target | None = None
    causes: list[Cause] = field(default_factory=list)
    retry_after: int = 0

    def __str__(self) -> str:
        return self.message

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        }  # fmt: skip
        details: dict[str, Any] = {}
        if self.target is not None:
            if self.target.name:
                details["name"] = self.target.name
            if self.target.group:
                details["group"] = self.target.group
            details["kind"] = self.target.resource
        if self.causes:
            details["causes"] = [
                {"reason": c.type, "message": c.message, "field": c.field} for c in self.causes
            ]
        if self.retry_after:
            details["retryAfterSeconds"] = self.retry_after
        if details:
            body["details"] = details
        return body


def not_found(target: Target) -> ApiError:
    return ApiError(404, "NotFound", f'{target.qualified()} "{target.name}" not found', target)


def already_exists(target: Target) -> ApiError:
    message = f'{target.qualified()} "{target.name}" already exists'
    return ApiError(409, "AlreadyExists", message, target)


def conflict(target: Target, why: str) -> ApiError:
    message = f'Operation cannot be fulfilled on {target.qualified()} "{target.name}": {why}'
    return ApiError(409, "Conflict", message, target)


def invalid(kind: str, target: Target, causes: list[Cause]) -> ApiError:
    """422, as the real API words it: `Pod "x" is invalid: [spec.containers: Required
    value, ...]` (one cause: no brackets)."""
    parts = [f"{c.field}: {c.message}" if c.field else c.message for c in causes]
    joined = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    message = f'{kind} "{target.name}" is invalid: {joined}'
    # details.kind is the Kind here (kubectl prints `The Pod "x" is invalid`), the
    # resource elsewhere (`pods "x" not found`), as the real API has it.
    return ApiError(422, "Invalid", message, Target(kind, target.name, target.group), list(causes))


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed(
    message: str = "the server does not allow this method on the requested resource",
) -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json, application/json-patch+json, application/merge-patch+json, "
        f"application/strategic-merge-patch+json (got {content_type!r})",
    )


def gone(message: str) -> ApiError:
    """410 Expired: a resourceVersion compacted away (clients re-list)."""
    return ApiError(410, "Expired", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def forbidden(user: str, verb: str, target: Target, namespace: str, resource: str = "") -> ApiError:
    """403 as RBAC words it; `resource` is what was asked for, e.g. `pods/status`."""
    where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
    name = f' "{target.name}"' if target.name else ""
    message = (
        f'{target.qualified()}{name} is forbidden: User "{user}" cannot {verb} resource '
        f'"{resource or target.resource}" in API group "{target.group}"{where}'
    )
    return ApiError(403, "Forbidden", message, target)


def too_large(limit: int) -> ApiError:
    return ApiError(
        413, "RequestEntityTooLarge", f"request entity too large: limit is {limit} bytes"
    )


def from_storage(error: storage_errors.StorageError, target: Target) -> ApiError:
    """The API error for a storage error on `target`."""
    if isinstance(error, storage_errors.NotFound):
        return not_found(target)
    if isinstance(error, storage_errors.AlreadyExists):
        return already_exists(target)
    if isinstance(error, storage_errors.Conflict):
        return conflict(
            target, "the object has been modified; please apply your changes to the latest "
            "version and try again",
        )  # fmt: skip
    if isinstance(error, storage_errors.Compacted):
        return gone(f"too old resource version: {error}")
    if isinstance(error, storage_errors.FutureRevision):
        return ApiError(504, "Timeout", f"Too large resource version: {error}", retry_after=1)
    if isinstance(error, storage_errors.Unavailable):
        return ApiError(503, "ServiceUnavailable", str(error), retry_after=1)
    return ApiError(500, "InternalError", str(error))
