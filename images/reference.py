"""Image references: parse, validate and normalise them as docker and containerd do.

Owns the grammar of ``[host[:port]/]path[:tag][@digest]`` and its normal form; it does
not know about registries config, mirrors or credentials (images/registries.py).

Normalisation (distribution/reference ``ParseNormalizedNamed``):

- the first ``/``-separated component is the registry host when it contains ``.`` or
  ``:`` or is ``localhost``; otherwise the host is ``docker.io`` and the whole name is
  the path (``user/repo`` -> ``docker.io/user/repo``);
- ``index.docker.io`` is written ``docker.io``; a one-component path on ``docker.io``
  gets ``library/`` (``busybox`` -> ``docker.io/library/busybox``);
- path components are lowercase ``[a-z0-9]+`` joined by ``.``, ``_``, ``__`` or ``-``
  runs; the whole name is at most 255 characters. Unlike newer docker, an uppercase
  first component is not taken for a host: ``User/repo`` is rejected as not lowercase;
- a tag is ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``; a digest is ``sha256:`` and 64
  lowercase hex characters (the only algorithm the content store keeps);
- ``latest`` is added only when there is neither a tag nor a digest. A reference may
  keep both a tag and a digest (``str()`` prints ``name:tag@digest``); the digest is
  what gets fetched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from images.errors import InvalidReference

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_MAX = 255

_HOST_PART = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN_RE = re.compile(rf"(?:{_HOST_PART}(?:\.{_HOST_PART})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?")
_COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_HEX64_RE = re.compile(r"[a-f0-9]{64}")


@dataclass(frozen=True, slots=True)
class Reference:
    """A validated, normalised image reference; build one with parse()."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    def __post_init__(self) -> None:
        problem = _problem(self.domain, self.path, self.tag, self.digest)
        if problem is not None:
            raise InvalidReference(f"invalid reference {str(self)!r}: {problem}")

    @property
    def name(self) -> str:
        """The repository with its host and no tag or digest: docker.io/library/busybox."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar(self) -> str:
        """The short form docker prints: busybox:latest, user/repo:1, quay.io/x/y:1."""
        if self.domain != DEFAULT_DOMAIN:
            name = self.name
        elif self.path.startswith(OFFICIAL_PREFIX) and "/" not in self.path[len(OFFICIAL_PREFIX) :]:
            name = self.path[len(OFFICIAL_PREFIX) :]
        else:
            name = self.path
        return name + _suffix(self)

    def __str__(self) -> str:
        return self.name + _suffix(self)


def parse(text: str) -> Reference:
    """Parse and normalise text; raise InvalidReference naming text and the reason."""

    def invalid(reason: str) -> InvalidReference:
        return InvalidReference(f"invalid reference {text!r}: {reason}")

    if not text:
        raise invalid("empty")
    if "://" in text:
        raise invalid("a reference has no scheme (such as 'http://'): write host[:port]/path:tag")
    if any(c.isspace() or not c.isprintable() for c in text):
        raise invalid("contains whitespace or control characters")
    if _HEX64_RE.fullmatch(text):
        raise invalid("a 64-character hex string is an image id, not a repository name")
    remainder, at, digest_text = text.partition("@")
    digest = digest_text if at else None
    colon = remainder.rfind(":")
    if colon > remainder.rfind("/"):
        name, tag = remainder[:colon], remainder[colon + 1 :]
    else:
        name, tag = remainder, None
    domain, path = _split_domain(name)
    problem = _problem(domain, path, tag, digest)
    if problem is not None:
        raise invalid(problem)
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest)


def parse_digest(text: str) -> str:
    """Return text if it is a sha256 digest (sha256:<64 lowercase hex>), else raise."""
    problem = _digest_problem(text)
    if problem is not None:
        raise InvalidReference(f"invalid digest {text!r}: {problem}")
    return text


def split_location(text: str) -> tuple[str, str]:
    """Split a registry location or prefix, host[:port][/path], into (host, path).

    The host is mandatory (it must contain '.' or ':' or be localhost), the path may be
    empty, and there is no tag or digest. Used by images/registries.py.
    """
    host, _, path = text.partition("/")
    problem = None
    if not (host == "localhost" or "." in host or ":" in host):
        problem = "must start with a registry host (host[:port], with a '.' or ':', or localhost)"
    elif not _DOMAIN_RE.fullmatch(host):
        problem = f"invalid registry host {host!r}"
    elif path or text.endswith("/"):
        problem = _path_problem(path)
    if problem is not None:
        raise InvalidReference(f"invalid registry location {text!r}: {problem}")
    return host, path


def _split_domain(name: str) -> tuple[str, str]:
    first, slash, rest = name.partition("/")
    if not slash:
        return DEFAULT_DOMAIN, OFFICIAL_PREFIX + name
    if first == "localhost" or "." in first or ":" in first:
        domain, path = first, rest
    else:
        domain, path = DEFAULT_DOMAIN, name
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_PREFIX + path
    return domain, path


def _problem(domain: str, path: str, tag: str | None, digest: str | None) -> str | None:
    if not _DOMAIN_RE.fullmatch(domain):
        return f"invalid registry host {domain!r}"
    problem = _path_problem(path)
    if problem is not None:
        return problem
    if len(domain) + 1 + len(path) > NAME_MAX:
        return f"repository name longer than {NAME_MAX} characters"
    if tag is not None and not _TAG_RE.fullmatch(tag):
        return f"invalid tag {tag!r}: want 1 to 128 of A-Z a-z 0-9 _ . -, not starting with . or -"
    if digest is not None:
        problem = _digest_problem(digest)
        if problem is not None:
            return f"invalid digest {digest!r}: {problem}"
    return None


def _path_problem(path: str) -> str | None:
    for component in path.split("/"):
        if _COMPONENT_RE.fullmatch(component):
            continue
        if _COMPONENT_RE.fullmatch(component.lower()):
            return "repository name must be lowercase"
        if not component:
            return "empty path component"
        return (
            f"invalid path component {component!r}: want lowercase letters and digits "
            "separated by '.', '_', '__' or '-'"
        )
    return None


def _digest_problem(digest: str) -> str | None:
    algorithm, colon, encoded = digest.partition(":")
    if not colon or not algorithm:
        return "want sha256:<64 hex characters>"
    if algorithm != "sha256":
        return f"unsupported algorithm {algorithm!r}: only sha256"
    if len(encoded) != 64:
        return f"sha256 wants 64 hex characters, got {len(encoded)}"
    if not _HEX64_RE.fullmatch(encoded):
        return "sha256 wants lowercase hex characters"
    return None


def _suffix(ref: Reference) -> str:
    tag = f":{ref.tag}" if ref.tag is not None else ""
    digest = f"@{ref.digest}" if ref.digest is not None else ""
    return tag + digest
