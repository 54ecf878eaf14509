"""Registries config: where to fetch a reference from, and with which credentials.

Owns kubeling's TOML config (read with tomllib) and turning a Reference into the
ordered endpoints skopeo should try; it does not run skopeo (images/pull.py does).

    [[registry]]
    prefix = "registry.k8s.io"          # defaults to location
    location = "127.0.0.1:5000"         # defaults to prefix
    insecure = true                     # plain HTTP or unverified TLS
    mirror-by-digest-only = false       # true: mirrors only for name@digest pulls

    [[registry.mirror]]
    location = "127.0.0.1:5000/k8s"
    insecure = true

    [auth."127.0.0.1:5000"]
    username = "u"
    password = "p"                      # or: identitytoken = "..."

Rules, as in containers-registries.conf(5) unless noted:

- a [[registry]] applies when its prefix equals the reference's normalised name
  (docker.io/library/busybox) or is a '/'-bounded leading part of it; the longest prefix
  wins. Prefixes are host[:port][/path] without tag or digest, matched against the
  normalised name, so Docker Hub official images need prefix "docker.io/library/...";
- endpoints are the mirrors in order, then the registry's location; each is the
  location followed by the rest of the name after the prefix, then ":tag", or
  "@digest" when the reference has a digest (the tag is dropped: skopeo's docker://
  transport refuses references with both);
- a host on the loopback interface (localhost, 127.0.0.0/8, [::1]) is always insecure,
  as dockerd's default insecure-registries and containerd's localhost fallback make it;
- unknown keys are errors, so a typo does not silently mean "secure, no mirror".

Secrets: Credentials never shows its password or token in repr() or str(); errors
never quote values from the [auth] tables. write_auth_file() writes credentials for
skopeo's --authfile/--src-authfile as a 0600 file in a 0700 directory; the caller
deletes it right after use (auth_file() does both).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import os
import stat
import tempfile
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from images.errors import InvalidConfig, InvalidReference
from images.reference import DEFAULT_DOMAIN, DEFAULT_TAG, Reference, parse, split_location

log = logging.getLogger(__name__)

TOKEN_USERNAME = "<token>"  # docker's username for identity-token entries
_DOCKER_HUB_ALIASES = frozenset({"index.docker.io", "registry-1.docker.io"})


@dataclass(frozen=True, slots=True)
class Mirror:
    location: str
    insecure: bool = False


@dataclass(frozen=True, slots=True)
class Registry:
    prefix: str
    location: str
    insecure: bool = False
    mirrors: tuple[Mirror, ...] = ()
    mirror_by_digest_only: bool = False

    def rest_of(self, name: str) -> str | None:
        """What follows the prefix in name ("" or "/..."), or None if it doesn't match."""
        if name == self.prefix:
            return ""
        if name.startswith(self.prefix + "/"):
            return name[len(self.prefix) :]
        return None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One place to fetch from: reference_string is what skopeo gets after docker://."""

    reference_string: str
    insecure: bool
    host: str


@dataclass(frozen=True, slots=True, repr=False)
class Credentials:
    """A username and password, or an identity token (username then optional)."""

    username: str = ""
    password: str = ""
    identity_token: str = ""

    def __post_init__(self) -> None:
        if ":" in self.username:
            raise InvalidConfig("credentials: username must not contain ':'")
        if self.identity_token:
            if self.password:
                raise InvalidConfig("credentials: give a password or an identity token, not both")
        elif not (self.username and self.password):
            raise InvalidConfig("credentials: need a username and a password, or an identity token")

    def __repr__(self) -> str:
        secret = "identity_token" if self.identity_token else "password"
        return f"Credentials(username={self.username!r}, {secret}=<redacted>)"


@dataclass(frozen=True, slots=True)
class RegistryConfig:
    registries: tuple[Registry, ...] = ()
    auths: Mapping[str, Credentials] = field(default_factory=dict, hash=False)

    @classmethod
    def load(cls, path: Path | None) -> RegistryConfig:
        """Read a TOML config; None or a missing file is the empty config."""
        if path is None:
            return cls()
        where = f"registries config {path}"
        try:
            data = path.read_bytes()
            mode = path.stat().st_mode
        except FileNotFoundError:
            log.debug("no registries config", extra={"path": str(path)})
            return cls()
        except OSError as e:
            raise InvalidConfig(f"read {where}: {e.strerror}") from e
        try:
            document = tomllib.loads(data.decode())
        except UnicodeDecodeError:
            raise InvalidConfig(f"parse {where}: not utf-8") from None
        except tomllib.TOMLDecodeError as e:
            raise InvalidConfig(f"parse {where}: {e}") from None
        config = cls.from_dict(document, where=where)
        if config.auths and mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("%s holds credentials and is readable by group or others", where)
        hosts = sorted(config.auths)
        extra = {"path": str(path), "registries": len(config.registries), "auth_hosts": hosts}
        log.debug("loaded registries config", extra=extra)
        return config

    @classmethod
    def from_dict(
        cls, data: Mapping[str, object], *, where: str = "registries config"
    ) -> RegistryConfig:
        """Build a config from parsed TOML; raise InvalidConfig naming where and the key."""
        _only_keys(data, {"registry", "auth"}, where)
        registries: list[Registry] = []
        for number, entry in enumerate(_tables(data.get("registry", []), "registry", where), 1):
            registry = _parse_registry(entry, f"{where}: [[registry]] #{number}")
            if any(r.prefix == registry.prefix for r in registries):
                raise InvalidConfig(f"{where}: prefix {registry.prefix!r} is defined twice")
            registries.append(registry)
        raw_auths = data.get("auth", {})
        if not isinstance(raw_auths, Mapping):
            raise InvalidConfig(f'{where}: auth must be a table of [auth."host"] tables')
        auths: dict[str, Credentials] = {}
        for host, entry in raw_auths.items():
            at = f'{where}: [auth."{host}"]'
            key = _auth_key(_check_host(host, at))
            if key in auths:
                raise InvalidConfig(f"{at}: credentials for {key} are given twice")
            auths[key] = _parse_credentials(entry, at)
        return cls(tuple(registries), auths)

    def endpoints(self, ref: Reference) -> list[Endpoint]:
        """Where to fetch ref from, in order: mirrors first, then the registry itself."""
        suffix = f"@{ref.digest}" if ref.digest is not None else f":{ref.tag or DEFAULT_TAG}"
        best: Registry | None = None
        rest = ""
        for registry in self.registries:
            found = registry.rest_of(ref.name)
            if found is not None and (best is None or len(registry.prefix) > len(best.prefix)):
                best, rest = registry, found
        if best is None:
            return [_endpoint(ref.domain, "/" + ref.path, suffix, insecure=False)]
        endpoints = []
        if ref.digest is not None or not best.mirror_by_digest_only:
            for mirror in best.mirrors:
                endpoints.append(_endpoint(mirror.location, rest, suffix, insecure=mirror.insecure))
        endpoints.append(_endpoint(best.location, rest, suffix, insecure=best.insecure))
        return endpoints

    def credentials(self, host: str) -> Credentials | None:
        """The credentials configured for a registry host[:port], if any."""
        return self.auths.get(_auth_key(host))


def write_auth_file(directory: Path, host: str, creds: Credentials) -> Path:
    """Write a containers-auth.json for host into directory and return its path.

    directory is created 0700 if missing; an existing one that group or others can
    enter is refused. The file is new (unique name), 0600, and holds
    {"auths": {host: {"auth": base64("user:password")}}}, or for an identity token
    base64("<username or <token>>:") plus "identitytoken" (containers/image needs the
    "auth" part to be present to use the token). The caller deletes it after use.
    """
    key = _auth_key(_check_host(host, "write auth file"))
    if creds.identity_token:
        user = creds.username or TOKEN_USERNAME
        entry = {"auth": _b64(f"{user}:"), "identitytoken": creds.identity_token}
    else:
        entry = {"auth": _b64(f"{creds.username}:{creds.password}")}
    payload = json.dumps({"auths": {key: entry}}, indent=1).encode()
    _private_directory(directory)
    fd, name = tempfile.mkstemp(prefix="auth-", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), 0o600)  # mkstemp's mode already, said once more
            file.write(payload)
    except BaseException:
        os.unlink(name)
        raise
    log.debug("wrote auth file", extra={"path": name, "host": key})
    return Path(name)


@contextmanager
def auth_file(directory: Path, host: str, creds: Credentials) -> Iterator[Path]:
    """write_auth_file(), then delete the file when the block ends, however it ends."""
    path = write_auth_file(directory, host, creds)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and [::1], with or without a port."""
    bracketed = host.startswith("[")
    address = host[1:].partition("]")[0] if bracketed else host.partition(":")[0]
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _endpoint(location: str, rest: str, suffix: str, *, insecure: bool) -> Endpoint:
    name = location + rest
    text = name + suffix
    try:
        if "/" not in name:
            raise InvalidReference("no repository path after the host")
        parse(text)  # a rewrite must still be a reference skopeo accepts
    except InvalidReference as e:
        raise InvalidConfig(f"registry location {location!r} rewrites to {text!r}: {e}") from None
    host = name.partition("/")[0]
    return Endpoint(reference_string=text, insecure=insecure or is_loopback(host), host=host)


def _parse_registry(entry: Mapping[str, object], at: str) -> Registry:
    _only_keys(entry, {"prefix", "location", "insecure", "mirror", "mirror-by-digest-only"}, at)
    prefix = _string(entry, "prefix", at)
    location = _string(entry, "location", at)
    if prefix is None and location is None:
        raise InvalidConfig(f"{at}: needs a prefix or a location")
    prefix = _check_location(prefix or location or "", "prefix", at)
    location = _check_location(location or prefix, "location", at)
    mirrors = []
    for number, raw in enumerate(_tables(entry.get("mirror", []), "mirror", at), 1):
        mirror_at = f"{at}: [[registry.mirror]] #{number}"
        _only_keys(raw, {"location", "insecure"}, mirror_at)
        mirror_location = _string(raw, "location", mirror_at)
        if mirror_location is None:
            raise InvalidConfig(f"{mirror_at}: needs a location")
        mirrors.append(
            Mirror(
                location=_check_location(mirror_location, "location", mirror_at),
                insecure=_bool(raw, "insecure", mirror_at),
            )
        )
    return Registry(
        prefix=prefix,
        location=location,
        insecure=_bool(entry, "insecure", at),
        mirrors=tuple(mirrors),
        mirror_by_digest_only=_bool(entry, "mirror-by-digest-only", at),
    )


def _parse_credentials(entry: object, at: str) -> Credentials:
    if not isinstance(entry, Mapping):
        raise InvalidConfig(f"{at}: must be a table")
    _only_keys(entry, {"username", "password", "identitytoken"}, at)
    try:
        return Credentials(
            username=_string(entry, "username", at) or "",
            password=_string(entry, "password", at) or "",
            identity_token=_string(entry, "identitytoken", at) or "",
        )
    except InvalidConfig as e:
        raise InvalidConfig(f"{at}: {e}") from None


def _tables(value: object, key: str, at: str) -> list[Mapping[str, object]]:
    if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
        raise InvalidConfig(f"{at}: {key} must be an array of tables ([[{key}]])")
    return value


def _only_keys(table: Mapping[str, object], allowed: set[str], at: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise InvalidConfig(
            f"{at}: unknown key {unknown[0]!r} (known: {', '.join(sorted(allowed))})"
        )


def _string(table: Mapping[str, object], key: str, at: str) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidConfig(f"{at}: {key} must be a non-empty string")  # never quote the value
    return value


def _bool(table: Mapping[str, object], key: str, at: str) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise InvalidConfig(f"{at}: {key} must be true or false")
    return value


def _check_location(text: str, key: str, at: str) -> str:
    try:
        split_location(text)
    except InvalidReference as e:
        raise InvalidConfig(f"{at}: {key}: {e}") from None
    return text


def _check_host(host: str, at: str) -> str:
    try:
        _, path = split_location(host)
    except InvalidReference as e:
        raise InvalidConfig(f"{at}: {e}") from None
    if path:
        raise InvalidConfig(f"{at}: {host!r} is not a host[:port]")
    return host


def _auth_key(host: str) -> str:
    return DEFAULT_DOMAIN if host in _DOCKER_HUB_ALIASES else host


def _private_directory(directory: Path) -> None:
    try:
        directory.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        st = directory.stat()
        if (
            not stat.S_ISDIR(st.st_mode)
            or st.st_mode & (stat.S_IRWXG | stat.S_IRWXO)
            or st.st_uid != os.geteuid()
        ):
            raise InvalidConfig(
                f"write auth file: {directory} must be a directory that only we can enter "
                f"(mode {stat.S_IMODE(st.st_mode):o}, uid {st.st_uid})"
            ) from None
    else:
        os.chmod(directory, 0o700)  # whatever the umask


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")
