"""Snapshots: the interface, its values, and the directory + SQLite machinery that the
overlay and native snapshotters share (containerd ``core/snapshots/snapshotter.go``
and ``core/snapshots/storage``).

A snapshot is *active* (prepare: writable, becomes a layer or a container's rootfs),
a *view* (read-only, never committed) or *committed* (immutable, the parent of others;
image layers are committed under their chain id). Snapshotters only compute mounts;
runtime/ performs them (tests use util-linux ``mount``).

On disk, under ``root``::

    metadata.db          SQLite, WAL, schema below
    snapshots/<id>/fs    the snapshot's directory (overlay: its upper dir; native: the tree)
    snapshots/<id>/work  overlay workdir of an active snapshot

Ids are small integers (AUTOINCREMENT: never reused), which keeps overlay option
strings short. Schema, version 1 (``meta.schema_version``; a change bumps the version
and adds a migration to ``_MIGRATIONS``)::

    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE snapshots (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,  -- directory name under snapshots/
        name      TEXT NOT NULL UNIQUE,     -- key (active, view) or name (committed)
        parent_id INTEGER REFERENCES snapshots(id),   -- a committed snapshot, or NULL
        kind      TEXT NOT NULL CHECK (kind IN ('active', 'view', 'committed')),
        created   REAL NOT NULL,            -- unix time
        updated   REAL NOT NULL,
        size      INTEGER NOT NULL DEFAULT 0,   -- usage, recorded at commit
        inodes    INTEGER NOT NULL DEFAULT 0);
    CREATE INDEX snapshots_parent ON snapshots(parent_id);

Ordering rules: a directory is created as ``snapshots/new-*`` and renamed to its id
inside the write transaction that inserts its row; removal deletes the row first, then
the directory. A crash between the two leaves a directory without a row, which the
next open removes (``cleanup``). Writers serialize on SQLite's write lock
(``BEGIN IMMEDIATE``), across threads and processes.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import shutil
import sqlite3
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from images.errors import AlreadyExists, ImageError, InUse, NotFound
from images.unpack import Whiteouts

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

_SCHEMA_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE snapshots (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    name      TEXT NOT NULL UNIQUE,
    parent_id INTEGER REFERENCES snapshots(id),
    kind      TEXT NOT NULL CHECK (kind IN ('active', 'view', 'committed')),
    created   REAL NOT NULL,
    updated   REAL NOT NULL,
    size      INTEGER NOT NULL DEFAULT 0,
    inodes    INTEGER NOT NULL DEFAULT 0);
CREATE INDEX snapshots_parent ON snapshots(parent_id);
INSERT INTO meta (key, value) VALUES ('schema_version', '1');
"""

# version -> SQL taking the database from version-1 to version (none yet)
_MIGRATIONS: dict[int, str] = {}


class Kind(enum.Enum):
    ACTIVE = "active"
    VIEW = "view"
    COMMITTED = "committed"


class SnapshotStateError(ImageError):
    """The snapshot exists but is of the wrong kind for the operation (containerd's
    FailedPrecondition): commit of a view, a parent that is not committed, ..."""


@dataclass(frozen=True, slots=True)
class Mount:
    """One mount to perform, in order: bind (source a directory, options ("rbind",
    "rw"|"ro")) or overlay (source "overlay", options lowerdir=/upperdir=/workdir=)."""

    type: str
    source: str
    options: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Info:
    name: str  # key of an active or view snapshot, name of a committed one
    parent: str | None
    kind: Kind
    created: float
    updated: float


@dataclass(frozen=True, slots=True)
class Usage:
    size: int  # bytes of disk used (allocated blocks; hard links counted once)
    inodes: int


class Snapshotter(Protocol):
    """What the image store and the CRI server use; one conformance suite tests every
    implementation (tests/conformance/test_snapshotter.py)."""

    #: how layers must be applied to ``diff_dir`` (images.unpack.unpack_layer)
    whiteouts: Whiteouts

    def prepare(self, key: str, parent: str | None = None) -> list[Mount]: ...
    def view(self, key: str, parent: str | None = None) -> list[Mount]: ...
    def commit(self, name: str, key: str) -> None: ...
    def remove(self, key: str) -> None: ...
    def mounts(self, key: str) -> list[Mount]: ...
    def walk(self) -> list[Info]: ...
    def usage(self, key: str) -> Usage: ...
    def stat(self, key: str) -> Info: ...
    def diff_dir(self, key: str) -> Path: ...
    def parent_dirs(self, key: str) -> list[Path]: ...
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class _Row:
    id: int
    name: str
    parent_id: int | None
    kind: Kind
    created: float
    updated: float
    size: int
    inodes: int


class MetaStore:
    """The snapshots table (schema in the module docstring) behind one connection."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=60)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate(path)
        except BaseException:
            self._db.close()
            raise

    def _migrate(self, path: Path) -> None:
        with self.tx(write=True) as db:
            has_meta = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
            ).fetchone()
            if not has_meta:
                for statement in _SCHEMA_V1.split(";"):
                    if statement.strip():
                        db.execute(statement)
                return
            (version,) = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(version)
            if version > SCHEMA_VERSION:
                raise ImageError(
                    f"open snapshot metadata {path}: schema version {version} is newer "
                    f"than this kubeling ({SCHEMA_VERSION})"
                )
            while version < SCHEMA_VERSION:
                version += 1
                db.executescript(_MIGRATIONS[version])
                db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(version),))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def tx(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @staticmethod
    def _row(r: tuple[int, str, int | None, str, float, float, int, int]) -> _Row:
        return _Row(r[0], r[1], r[2], Kind(r[3]), r[4], r[5], r[6], r[7])

    def get(self, db: sqlite3.Connection, name: str) -> _Row:
        r = db.execute(
            "SELECT id, name, parent_id, kind, created, updated, size, inodes"
            " FROM snapshots WHERE name=?",
            (name,),
        ).fetchone()
        if r is None:
            raise NotFound(f"snapshot {name!r} not found")
        return self._row(r)

    def by_id(self, db: sqlite3.Connection, id_: int) -> _Row:
        r = db.execute(
            "SELECT id, name, parent_id, kind, created, updated, size, inodes"
            " FROM snapshots WHERE id=?",
            (id_,),
        ).fetchone()
        if r is None:
            raise NotFound(f"snapshot id {id_} not found")
        return self._row(r)

    def chain(self, db: sqlite3.Connection, parent_id: int | None) -> list[int]:
        """Ids from ``parent_id`` down to the base layer, nearest first."""
        if parent_id is None:
            return []
        rows = db.execute(
            "WITH RECURSIVE c(id, parent_id, depth) AS ("
            " SELECT id, parent_id, 0 FROM snapshots WHERE id=?"
            " UNION ALL SELECT s.id, s.parent_id, c.depth + 1"
            " FROM snapshots s JOIN c ON s.id = c.parent_id)"
            " SELECT id FROM c ORDER BY depth",
            (parent_id,),
        ).fetchall()
        return [r[0] for r in rows]

    def all(self, db: sqlite3.Connection) -> list[_Row]:
        rows = db.execute(
            "SELECT id, name, parent_id, kind, created, updated, size, inodes"
            " FROM snapshots ORDER BY id"
        ).fetchall()
        return [self._row(r) for r in rows]


def disk_usage(path: Path) -> Usage:
    """Allocated bytes and inodes below ``path`` (hard links once), like containerd's
    fs.DiskUsage; symlinks are not followed."""
    seen: set[tuple[int, int]] = set()
    size = 0
    stack = [str(path)]
    st = os.lstat(path)
    seen.add((st.st_dev, st.st_ino))
    size += st.st_blocks * 512
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                st = entry.stat(follow_symlinks=False)
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
                size += st.st_blocks * 512
                if stat.S_ISDIR(st.st_mode):
                    stack.append(entry.path)
    return Usage(size=size, inodes=len(seen))


class BaseSnapshotter:
    """Metadata, directories and the kind rules shared by overlay and native; the
    subclasses fill a new snapshot's directory and compute its mounts."""

    whiteouts: Whiteouts = Whiteouts.OVERLAY

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()
        if any(c in str(self.root) for c in ",:"):
            raise ImageError(
                f"snapshotter root {self.root}: ',' and ':' cannot be in mount options"
            )
        self._snapshots = self.root / "snapshots"
        self._snapshots.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._meta = MetaStore(self.root / "metadata.db")
        try:
            self.cleanup()
        except BaseException:
            self._meta.close()
            raise

    # -- context management

    def close(self) -> None:
        self._meta.close()

    def __enter__(self) -> BaseSnapshotter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- paths

    def _fs(self, id_: int) -> Path:
        return self._snapshots / str(id_) / "fs"

    def _work(self, id_: int) -> Path:
        return self._snapshots / str(id_) / "work"

    # -- subclass hooks

    def _populate(self, new_dir: Path, kind: Kind, parents: list[int]) -> None:
        """Fill a new snapshot's directory (``new_dir/fs`` exists, empty)."""
        raise NotImplementedError

    def _mounts(self, row: _Row, parents: list[int]) -> list[Mount]:
        raise NotImplementedError

    # -- operations

    def prepare(self, key: str, parent: str | None = None) -> list[Mount]:
        """A writable snapshot ``key`` over the committed ``parent``."""
        return self._create(Kind.ACTIVE, key, parent)

    def view(self, key: str, parent: str | None = None) -> list[Mount]:
        """A read-only snapshot ``key`` of the committed ``parent``."""
        return self._create(Kind.VIEW, key, parent)

    def _create(self, kind: Kind, key: str, parent: str | None) -> list[Mount]:
        if not key:
            raise ImageError("prepare snapshot: empty key")
        now = time.time()
        new_dir: Path | None = None
        final: Path | None = None
        try:
            with self._meta.tx(write=True) as db:
                parent_id = None
                if parent:
                    prow = self._meta.get(db, parent)
                    if prow.kind is not Kind.COMMITTED:
                        raise SnapshotStateError(
                            f"prepare {key!r}: parent {parent!r} is not committed"
                        )
                    parent_id = prow.id
                if db.execute("SELECT 1 FROM snapshots WHERE name=?", (key,)).fetchone():
                    raise AlreadyExists(f"prepare {key!r}: snapshot exists")
                parents = self._meta.chain(db, parent_id)
                cur = db.execute(
                    "INSERT INTO snapshots (name, parent_id, kind, created, updated)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (key, parent_id, kind.value, now, now),
                )
                assert cur.lastrowid is not None
                row = _Row(cur.lastrowid, key, parent_id, kind, now, now, 0, 0)
                mounts = self._mounts(row, parents)  # fails early on too deep a chain
                new_dir = Path(tempfile.mkdtemp(prefix="new-", dir=self._snapshots))
                (new_dir / "fs").mkdir(mode=0o755)
                self._populate(new_dir, kind, parents)
                final = self._snapshots / str(row.id)
                os.rename(new_dir, final)
                new_dir = None
        except BaseException:
            if new_dir is not None:
                shutil.rmtree(new_dir, ignore_errors=True)
            if final is not None:
                shutil.rmtree(final, ignore_errors=True)
            raise
        log.debug("%s snapshot %s", kind.value, key, extra={"snapshot": key})
        return mounts

    def commit(self, name: str, key: str) -> None:
        """Turn the active snapshot ``key`` into the committed ``name``."""
        with self._meta.tx(write=False) as db:
            row = self._check_commit(db, name, key)
        usage = disk_usage(self._fs(row.id))  # outside the write lock: may take a while
        with self._meta.tx(write=True) as db:
            if self._check_commit(db, name, key).id != row.id:
                raise SnapshotStateError(f"commit {key!r}: snapshot changed meanwhile")
            db.execute(
                "UPDATE snapshots SET name=?, kind='committed', updated=?, size=?, inodes=?"
                " WHERE id=?",
                (name, time.time(), usage.size, usage.inodes, row.id),
            )

    def _check_commit(self, db: sqlite3.Connection, name: str, key: str) -> _Row:
        row = self._meta.get(db, key)
        if row.kind is not Kind.ACTIVE:
            raise SnapshotStateError(
                f"commit {key!r} as {name!r}: snapshot is {row.kind.value}, not active"
            )
        if db.execute("SELECT 1 FROM snapshots WHERE name=?", (name,)).fetchone():
            raise AlreadyExists(f"commit {key!r}: snapshot {name!r} exists")
        return row

    def remove(self, key: str) -> None:
        """Remove a snapshot without children (InUse otherwise) and its directory."""
        with self._meta.tx(write=True) as db:
            row = self._meta.get(db, key)
            child = db.execute(
                "SELECT name FROM snapshots WHERE parent_id=? LIMIT 1", (row.id,)
            ).fetchone()
            if child:
                raise InUse(f"remove snapshot {key!r}: it is the parent of {child[0]!r}")
            db.execute("DELETE FROM snapshots WHERE id=?", (row.id,))
        self._remove_dir(self._snapshots / str(row.id))

    def _remove_dir(self, path: Path) -> None:
        doomed = self._snapshots / f"rm-{path.name}-{os.urandom(4).hex()}"
        try:
            os.rename(path, doomed)
        except FileNotFoundError:
            return
        shutil.rmtree(doomed, ignore_errors=True)

    def mounts(self, key: str) -> list[Mount]:
        """The mounts of an active or view snapshot (again)."""
        with self._meta.tx(write=False) as db:
            row = self._meta.get(db, key)
            if row.kind is Kind.COMMITTED:
                raise SnapshotStateError(f"mounts of {key!r}: snapshot is committed")
            parents = self._meta.chain(db, row.parent_id)
        return self._mounts(row, parents)

    def stat(self, key: str) -> Info:
        with self._meta.tx(write=False) as db:
            row = self._meta.get(db, key)
            parent = self._meta.by_id(db, row.parent_id).name if row.parent_id else None
        return Info(row.name, parent, row.kind, row.created, row.updated)

    def walk(self) -> list[Info]:
        """Every snapshot, oldest first."""
        with self._meta.tx(write=False) as db:
            rows = self._meta.all(db)
        names = {r.id: r.name for r in rows}
        return [
            Info(
                r.name,
                names.get(r.parent_id) if r.parent_id else None,
                r.kind,
                r.created,
                r.updated,
            )
            for r in rows
        ]

    def usage(self, key: str) -> Usage:
        """Disk used by the snapshot's own directory: recorded at commit for
        committed snapshots, measured now for active and view ones."""
        with self._meta.tx(write=False) as db:
            row = self._meta.get(db, key)
        if row.kind is Kind.COMMITTED:
            return Usage(row.size, row.inodes)
        return disk_usage(self._fs(row.id))

    def diff_dir(self, key: str) -> Path:
        """The directory an active snapshot's changes go to without mounting: where
        a layer is unpacked (with ``self.whiteouts``) before commit."""
        with self._meta.tx(write=False) as db:
            row = self._meta.get(db, key)
        if row.kind is not Kind.ACTIVE:
            raise SnapshotStateError(f"diff dir of {key!r}: snapshot is {row.kind.value}")
        return self._fs(row.id)

    def parent_dirs(self, key: str) -> list[Path]:
        """The directories of the committed snapshots below ``key``, nearest first."""
        with self._meta.tx(write=False) as db:
            row = self._meta.get(db, key)
            parents = self._meta.chain(db, row.parent_id)
        return [self._fs(i) for i in parents]

    def cleanup(self) -> list[Path]:
        """Remove directories that have no snapshot row (crash leftovers)."""
        with self._meta.tx(write=True) as db:
            ids = {str(r[0]) for r in db.execute("SELECT id FROM snapshots")}
            removed = []
            with os.scandir(self._snapshots) as it:
                for entry in it:
                    if entry.name not in ids:
                        removed.append(Path(entry.path))
            for path in removed:
                log.info("remove leftover snapshot directory %s", path)
                shutil.rmtree(path, ignore_errors=True)
        return removed
