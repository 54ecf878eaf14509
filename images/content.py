"""Content-addressed blob store (containerd's ``plugins/content/local``, smaller).

Layout under ``root``::

    blobs/sha256/<hex>            immutable blobs, mode 0444, named by their sha256
    ingest/<sha256(ref)>/data     bytes received so far for an in-progress write
    ingest/<sha256(ref)>/ref      the writer's ref (e.g. "layer-sha256:...")
    ingest/<sha256(ref)>/total    the expected size, when known

What it owns: writing blobs so that a blob is visible only once complete and verified
(write into ingest/, fsync, check size and digest, rename into blobs/, fsync the
directory), resuming interrupted writes by ref, reading, verifying and deleting blobs.
What it doesn't: which blobs are still referenced (the image store's garbage
collection decides and calls delete), fetching from registries.

``blobs/`` doubles as skopeo's ``--dest-shared-blob-dir``: skopeo writes
``blobs/sha256/<hex>`` itself, through a temporary file it renames, so a crash leaves
no partial blob under a digest name; its temporary files are not listed by
``digests()`` (only 64-hex names are).

Concurrency: one writer per ref at a time (an exclusive ``flock`` on the ingest data,
so it holds across threads and processes; a second writer gets InUse). Two writers
with different refs may race to commit the same digest: both verify their bytes, the
first rename wins and the second gets AlreadyExists, which callers treat as success.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, NewType

from images.errors import AlreadyExists, DigestMismatch, ImageError, InUse, NotFound

log = logging.getLogger(__name__)

Digest = NewType("Digest", str)

_DIGEST_RE = re.compile(r"sha256:([0-9a-f]{64})")
_HEX_RE = re.compile(r"[0-9a-f]{64}")
_READ = 1 << 20


def parse_digest(digest: str) -> str:
    """The hex part of a ``sha256:<64 hex>`` digest; ImageError for anything else."""
    m = _DIGEST_RE.fullmatch(digest)
    if m is None:
        raise ImageError(f"invalid digest {digest!r}: want sha256:<64 lower-case hex>")
    return m.group(1)


def digest_of(data: bytes) -> Digest:
    return Digest("sha256:" + hashlib.sha256(data).hexdigest())


@dataclass(frozen=True, slots=True)
class IngestStatus:
    """An unfinished write: ``offset`` bytes received of ``total`` (None: unknown)."""

    ref: str
    offset: int
    total: int | None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Writer:
    """Writes one blob into ingest/ and commits it; get one from ContentStore.writer.

    As a context manager, leaving without commit() keeps the bytes for a later writer
    with the same ref to resume (``offset`` says where), and releases the ref."""

    def __init__(
        self,
        store: ContentStore,
        ref: str,
        expected: str,
        expected_size: int | None,
    ) -> None:
        self._store = store
        self.ref = ref
        self.expected = Digest(expected)
        self.expected_size = expected_size
        self._dir = store.ingest_path(ref)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO | None = open(self._dir / "data", "ab")  # noqa: SIM115
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            self._file = None
            raise InUse(f"write {expected} as {ref!r}: another writer holds the ref") from None
        (self._dir / "ref").write_text(ref)
        if expected_size is not None:
            (self._dir / "total").write_text(str(expected_size))
        self._hash = hashlib.sha256()
        self.offset = 0
        with open(self._dir / "data", "rb") as existing:  # resume: rehash what is there
            while chunk := existing.read(_READ):
                self._hash.update(chunk)
                self.offset += len(chunk)
        if expected_size is not None and self.offset > expected_size:
            self._discard()
            raise DigestMismatch(
                f"write {expected}: {self.offset} bytes in ingest {ref!r}, expected {expected_size}"
            )

    def __enter__(self) -> Writer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _open_file(self) -> BinaryIO:
        if self._file is None:
            raise ImageError(f"write {self.expected} as {self.ref!r}: writer is closed")
        return self._file

    def write(self, data: bytes) -> None:
        f = self._open_file()
        if self.expected_size is not None and self.offset + len(data) > self.expected_size:
            self._discard()
            raise DigestMismatch(
                f"write {self.expected}: more than the expected {self.expected_size} bytes"
            )
        f.write(data)
        self._hash.update(data)
        self.offset += len(data)

    def commit(self) -> Digest:
        """Make the blob visible under its digest. DigestMismatch (the ingest is
        discarded, or kept when merely short so a retry can resume); AlreadyExists when
        the blob is there already (the ingest is discarded; treat it as success)."""
        f = self._open_file()
        f.flush()
        os.fsync(f.fileno())
        if self.expected_size is not None and self.offset != self.expected_size:
            self.close()
            raise DigestMismatch(
                f"commit {self.expected}: got {self.offset} bytes, expected {self.expected_size}"
            )
        actual = "sha256:" + self._hash.hexdigest()
        if actual != self.expected:
            self._discard()
            raise DigestMismatch(f"commit {self.expected}: content is {actual}")
        target = self._store.path(self.expected)
        if target.exists():
            self._discard()
            raise AlreadyExists(f"commit {self.expected}: blob exists")
        os.fchmod(f.fileno(), 0o444)
        os.rename(self._dir / "data", target)
        _fsync_dir(target.parent)
        self._discard()
        log.debug("committed blob %s", self.expected, extra={"digest": self.expected})
        return self.expected

    def _discard(self) -> None:
        self.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()  # releases the flock
            self._file = None


class ContentStore:
    """Blobs under ``root``; see the module docstring."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs_dir = self.root / "blobs"  # skopeo --dest-shared-blob-dir
        self._sha256 = self.blobs_dir / "sha256"
        self._ingest = self.root / "ingest"
        self._sha256.mkdir(parents=True, exist_ok=True)
        self._ingest.mkdir(mode=0o700, parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        """Where the blob lives (whether or not it exists)."""
        return self._sha256 / parse_digest(digest)

    def ingest_path(self, ref: str) -> Path:
        return self._ingest / hashlib.sha256(ref.encode()).hexdigest()

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def writer(self, ref: str, expected_digest: str, expected_size: int | None = None) -> Writer:
        """A writer for ``expected_digest`` under ``ref`` (resuming a previous one)."""
        parse_digest(expected_digest)
        return Writer(self, ref, expected_digest, expected_size)

    def add(self, data: bytes, expected_digest: str | None = None) -> Digest:
        """Store ``data`` in one go; returns its digest (existing blobs are fine)."""
        digest = expected_digest or digest_of(data)
        ref = f"add-{digest}-{os.getpid()}-{os.urandom(4).hex()}"
        with self.writer(ref, digest, len(data)) as w:
            w.write(data)
            try:
                return w.commit()
            except AlreadyExists:
                return Digest(digest)

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def read_bytes(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def delete(self, digest: str) -> None:
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def digests(self) -> Iterator[Digest]:
        """Every stored blob (skopeo's temporary files excluded), in no set order."""
        with os.scandir(self._sha256) as it:
            for entry in it:
                if _HEX_RE.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                    yield Digest("sha256:" + entry.name)

    def verify(self, digest: str) -> bool:
        """Whether the blob exists and its content matches its digest."""
        h = hashlib.sha256()
        try:
            with open(self.path(digest), "rb") as f:
                while chunk := f.read(_READ):
                    h.update(chunk)
        except FileNotFoundError:
            return False
        return "sha256:" + h.hexdigest() == digest

    def ingests(self) -> list[IngestStatus]:
        """Unfinished writes, for resuming or aborting."""
        out = []
        with os.scandir(self._ingest) as it:
            for entry in it:
                d = Path(entry.path)
                try:
                    ref = (d / "ref").read_text()
                    offset = (d / "data").stat().st_size
                except FileNotFoundError:
                    continue
                total_file = d / "total"
                total = int(total_file.read_text()) if total_file.exists() else None
                out.append(IngestStatus(ref, offset, total))
        return out

    def abort(self, ref: str) -> None:
        """Drop an unfinished write; NotFound if there is none, InUse if it is active."""
        d = self.ingest_path(ref)
        try:
            fd = os.open(d / "data", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f"ingest {ref!r} not found") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise InUse(f"abort ingest {ref!r}: a writer holds it") from None
            shutil.rmtree(d)
        finally:
            os.close(fd)

    def total_size(self) -> int:
        total = 0
        for digest in self.digests():
            with contextlib.suppress(FileNotFoundError):
                total += self.path(digest).stat().st_size
        return total


__all__ = [
    "ContentStore",
    "Digest",
    "IngestStatus",
    "Writer",
    "digest_of",
    "parse_digest",
]
