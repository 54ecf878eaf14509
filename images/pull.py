"""Fetching images with skopeo: resolve a reference to a manifest (choosing the
platform from a manifest list or OCI index), then copy its blobs into the content
store's ``blobs/sha256`` directory (skopeo's ``--dest-shared-blob-dir``).

What it owns: skopeo's command lines, turning skopeo's errors into one clear line
(never with a secret: credentials only travel in a 0600 auth file, and any password
that shows up in output is masked), platform selection, and watching a copy's
progress. What it doesn't: which endpoints to try (images/registries.py), recording
images or unpacking layers (images/store.py).

skopeo writes each blob to a temporary file in the *destination layout* directory
and renames it into the shared blob dir once complete and verified, so a killed
skopeo leaves no partial blob under ``blobs/sha256``: only debris in the temporary
layout, which the caller deletes. The temporary layout must live on the same file
system as the content store for that rename to work.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform as _platform
import re
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from images.errors import DigestMismatch, PullError

log = logging.getLogger(__name__)

MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_TYPES = frozenset({MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST})
MANIFEST_TYPES = frozenset({MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST})

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le"}


@dataclass(frozen=True, slots=True)
class Platform:
    os: str = "linux"
    architecture: str = "amd64"
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    @classmethod
    def host(cls) -> Platform:
        machine = _platform.machine()
        return cls("linux", _ARCH.get(machine, machine), "v8" if machine == "aarch64" else "")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def media_type_of(document: dict[str, Any]) -> str:
    """A manifest's media type, guessing from its shape when the field is absent (OCI
    allows that)."""
    media = document.get("mediaType")
    if isinstance(media, str) and media:
        return media
    if document.get("schemaVersion") == 1:
        return "application/vnd.docker.distribution.manifest.v1+json"
    if "manifests" in document:
        return MEDIA_OCI_INDEX
    return MEDIA_OCI_MANIFEST


def select_manifest(index: dict[str, Any], want: Platform) -> dict[str, Any]:
    """The entry of a manifest list / OCI index for ``want`` (os and architecture must
    match; an exact variant is preferred, then an entry without variant, then any)."""
    candidates: list[tuple[int, int, dict[str, Any]]] = []
    offered: list[str] = []
    for entry in index.get("manifests", []):
        plat = entry.get("platform") or {}
        offered.append(
            "/".join(
                p for p in (plat.get("os"), plat.get("architecture"), plat.get("variant")) if p
            )
            or "unknown"
        )
        if plat.get("os") != want.os or plat.get("architecture") != want.architecture:
            continue
        if entry.get("mediaType", MEDIA_OCI_MANIFEST) not in MANIFEST_TYPES:
            continue
        variant = plat.get("variant") or ""
        rank = 0 if variant == want.variant else 1 if not variant else 2
        candidates.append((rank, len(candidates), entry))
    if not candidates:
        have = ", ".join(offered) or "nothing"
        raise PullError(f"no {want} image in the manifest list (it has: {have})")
    return min(candidates, key=lambda c: (c[0], c[1]))[2]


# ---- skopeo --------------------------------------------------------------------------------

_MSG_RE = re.compile(r'msg="((?:[^"\\]|\\.)*)"')
_NOISE = (
    re.compile(r'^Error parsing image name "[^"]*": '),
    re.compile(r"^initializing source [^:]+://[^:]*(?::[^:]*)?: "),
    re.compile(r"^Error initializing source [^:]+://\S+: "),
    re.compile(r"^reading manifest \S+ in \S+: "),
    re.compile(r"^copying system image from manifest list: "),
    re.compile(r"^Error reading manifest \S+ in \S+: "),
)


def skopeo_error(stderr: str, returncode: int, *, secrets: Sequence[str] = ()) -> str:
    """The useful part of skopeo's stderr: the ``msg`` of its last fatal line without
    the "Error parsing image name ..." wrapping, secrets masked."""
    text = ""
    for line in reversed(stderr.strip().splitlines()):
        match = _MSG_RE.search(line)
        if match:
            text = match.group(1).encode().decode("unicode_escape", errors="replace")
            break
        if line.strip():
            text = line.strip()
            break
    for pattern in _NOISE:
        text = pattern.sub("", text)
    text = text.strip() or f"skopeo exited with status {returncode}"
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


@dataclass(frozen=True, slots=True)
class Source:
    """What skopeo reads: ``docker://<reference>`` with its TLS and auth settings."""

    reference: str  # host/path:tag or host/path@digest (no transport)
    insecure: bool = False
    authfile: Path | None = None
    secrets: tuple[str, ...] = ()  # masked out of any message


class Skopeo:
    """Runs the ``skopeo`` binary (a path or a name on PATH)."""

    def __init__(self, binary: str = "skopeo", *, timeout: float = 600.0) -> None:
        self.binary = binary
        self.timeout = timeout

    def inspect_raw(self, source: Source) -> bytes:
        argv = [self.binary, "inspect", "--raw", "--retry-times", "1"]
        if source.insecure:
            argv.append("--tls-verify=false")
        if source.authfile is not None:
            argv += ["--authfile", str(source.authfile)]
        argv.append(f"docker://{source.reference}")
        result = self._run(argv, source.secrets)
        return result

    def copy(
        self,
        source: str,
        destination: str,
        *,
        insecure: bool = False,
        authfile: Path | None = None,
        shared_blob_dir: Path | None = None,
        secrets: Sequence[str] = (),
        on_spawn: Callable[[subprocess.Popen[bytes]], None] | None = None,
        platform: Platform | None = None,
        extra: Sequence[str] = (),
    ) -> None:
        """``skopeo copy source destination`` (both with their transport); ``platform``
        chooses from a source that is a manifest list (instead of the host's)."""
        argv = [self.binary]
        if platform is not None:
            argv += ["--override-os", platform.os, "--override-arch", platform.architecture]
            if platform.variant:
                argv += ["--override-variant", platform.variant]
        argv += ["copy", "--quiet", "--dest-oci-accept-uncompressed-layers"]
        if insecure:
            argv.append("--src-tls-verify=false")
        if authfile is not None:
            argv += ["--src-authfile", str(authfile)]
        if shared_blob_dir is not None:
            argv += ["--dest-shared-blob-dir", str(shared_blob_dir)]
        argv += [*extra, source, destination]
        log.debug("skopeo copy", extra={"source": source, "destination": destination})
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        with process:
            if on_spawn is not None:
                on_spawn(process)
            try:
                _, err = process.communicate(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
                raise SkopeoFailed(f"skopeo copy timed out after {self.timeout:.0f}s") from None
        if process.returncode != 0:
            text = err.decode(errors="replace")
            raise SkopeoFailed(skopeo_error(text, process.returncode, secrets=secrets))

    def _run(self, argv: list[str], secrets: Sequence[str]) -> bytes:
        log.debug("skopeo", extra={"argv": argv[1:]})
        try:
            result = subprocess.run(
                argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=self.timeout
            )
        except FileNotFoundError:
            raise SkopeoFailed(
                f"{self.binary} not found (install the Debian package skopeo)"
            ) from None
        except subprocess.TimeoutExpired:
            raise SkopeoFailed(f"skopeo {argv[1]} timed out after {self.timeout:.0f}s") from None
        if result.returncode != 0:
            text = result.stderr.decode(errors="replace")
            raise SkopeoFailed(skopeo_error(text, result.returncode, secrets=secrets))
        return result.stdout


class SkopeoFailed(Exception):
    """One skopeo run failed; the message is already cleaned (see skopeo_error)."""


# ---- resolving -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resolved:
    """A reference resolved at one endpoint: what its tag (or digest) points to and the
    platform manifest chosen from it."""

    source: Source
    repository: str  # host/path at the endpoint, for fetching by digest
    top_digest: str  # digest of what the tag points to: the repo digest
    top_raw: bytes  # the manifest or index as served
    manifest_digest: str
    manifest_raw: bytes
    manifest: dict[str, Any]

    @property
    def is_index(self) -> bool:
        return self.top_digest != self.manifest_digest

    def layer_descriptors(self) -> list[dict[str, Any]]:
        return list(self.manifest.get("layers", []))

    @property
    def config_digest(self) -> str:
        return str(self.manifest["config"]["digest"])


# What a manifest HEAD accepts: every index and manifest type a pull understands.
HEAD_ACCEPT = (*sorted(INDEX_TYPES), *sorted(MANIFEST_TYPES))


def head_digest(reference: str, *, insecure: bool, timeout: float = 5.0) -> str | None:
    """The digest a registry serves for ``host/path:tag`` (its Docker-Content-Digest
    answer to a manifest HEAD), or None when that cannot be had without skopeo:
    credentials asked for, an error, no digest header. Pulls of an image already
    in the store use it to skip skopeo (a process start of ~20 ms); anything unusual
    falls back to the full resolve."""
    import http.client
    import ssl

    host, _, rest = reference.partition("/")
    path, _, tag = rest.rpartition(":")
    if not path or not tag or "@" in reference or host in ("docker.io", "index.docker.io"):
        return None
    connection: http.client.HTTPConnection
    if insecure:
        connection = http.client.HTTPConnection(host, timeout=timeout)
    else:
        connection = http.client.HTTPSConnection(
            host, timeout=timeout, context=ssl.create_default_context()
        )
    try:
        connection.request(
            "HEAD", f"/v2/{path}/manifests/{tag}", headers={"Accept": ", ".join(HEAD_ACCEPT)}
        )
        response = connection.getresponse()
        response.read()
        digest = response.getheader("Docker-Content-Digest")
        if response.status != 200 or not digest or not digest.startswith("sha256:"):
            return None
        return digest
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        connection.close()


def resolve(
    skopeo: Skopeo,
    source: Source,
    *,
    repository: str,
    expected_digest: str | None,
    want: Platform,
) -> Resolved:
    """``skopeo inspect --raw`` the reference; when it is an index, pick ``want`` and
    inspect that manifest too. Digests are checked against what was asked for."""
    top_raw = skopeo.inspect_raw(source)
    top_digest = sha256_digest(top_raw)
    if expected_digest is not None and top_digest != expected_digest:
        raise DigestMismatch(f"{source.reference}: registry served {top_digest}")
    top = _load(top_raw, source.reference)
    media = media_type_of(top)
    if media in INDEX_TYPES:
        entry = select_manifest(top, want)
        manifest_digest = str(entry["digest"])
        by_digest = Source(
            f"{repository}@{manifest_digest}", source.insecure, source.authfile, source.secrets
        )
        manifest_raw = skopeo.inspect_raw(by_digest)
        if sha256_digest(manifest_raw) != manifest_digest:
            raise DigestMismatch(
                f"{repository}@{manifest_digest}: registry served {sha256_digest(manifest_raw)}"
            )
        manifest = _load(manifest_raw, f"{repository}@{manifest_digest}")
        media = media_type_of(manifest)
    else:
        manifest_digest, manifest_raw, manifest = top_digest, top_raw, top
    if media not in MANIFEST_TYPES:
        raise PullError(f"unsupported manifest type {media}")
    return Resolved(
        source=source,
        repository=repository,
        top_digest=top_digest,
        top_raw=top_raw,
        manifest_digest=manifest_digest,
        manifest_raw=manifest_raw,
        manifest=manifest,
    )


def _load(raw: bytes, where: str) -> dict[str, Any]:
    try:
        document = json.loads(raw)
    except ValueError:
        raise PullError(f"{where}: manifest is not JSON") from None
    if not isinstance(document, dict):
        raise PullError(f"{where}: manifest is not a JSON object")
    return document


# ---- progress ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Progress:
    """A pull's progress, reported to the caller's callback. ``phase`` is one of
    "resolved", "fetching", "fetched", "unpacked", "done"."""

    reference: str
    phase: str
    bytes_done: int
    bytes_total: int
    layers_done: int  # layers fetched (phase fetching/fetched) or unpacked (unpacked/done)
    layers_total: int
    digest: str = ""


ProgressCallback = Callable[[Progress], None]


class BlobWatcher:
    """Polls the shared blob dir (and the temporary layout, where skopeo's partial
    blobs grow) while a copy runs: calls ``on_blob(digest)`` once for each expected
    blob as soon as it is complete, and reports byte progress."""

    def __init__(
        self,
        *,
        blobs_dir: Path,
        staging_dir: Path,
        expected: dict[str, int],
        on_blob: Callable[[str], None],
        on_progress: Callable[[int, int], None] | None = None,
        interval: float = 0.01,
    ) -> None:
        self.blobs_dir = blobs_dir
        self.staging_dir = staging_dir
        self.expected = dict(expected)
        self.on_blob = on_blob
        self.on_progress = on_progress
        self.interval = interval
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="blob-watcher", daemon=True)
        self._last_report = 0.0

    def start(self) -> BlobWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.poll(final=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def poll(self, *, final: bool = False) -> None:
        done_bytes = 0
        for digest, size in self.expected.items():
            if digest in self.seen:
                done_bytes += size
            elif (self.blobs_dir / digest.removeprefix("sha256:")).exists():
                self.seen.add(digest)
                done_bytes += size
                self.on_blob(digest)
        if self.on_progress is None:
            return
        partial = 0
        try:
            for entry in self.staging_dir.iterdir():
                if "put-blob" in entry.name:  # oci-put-blob*, dir-put-blob*
                    try:
                        partial += entry.stat().st_size
                    except FileNotFoundError:
                        pass
        except FileNotFoundError:
            pass
        now = time.monotonic()
        if final or now - self._last_report >= 0.1:
            self._last_report = now
            self.on_progress(done_bytes + partial, len(self.seen))
