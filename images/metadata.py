"""Image records: what an image is (config digest, layers, config), which names point
at it, which blobs it keeps alive, and who uses it. SQLite in WAL mode, one
transaction per change, so a crash leaves the old or the new record, never half.

What it owns: the database file and the :class:`Image` value the rest of kubeling
reads (the CRI builds a container's config from :class:`ImageConfig`). What it
doesn't: blobs (images/content.py), snapshots (images/snapshots/), pulling.

Schema (``PRAGMA user_version`` = :data:`SCHEMA_VERSION`; a change means a version
bump and a migration in :func:`_migrate`)::

    images(id TEXT PRIMARY KEY,            -- config digest, the image id
           manifest_digest TEXT NOT NULL,  -- the platform manifest
           platform TEXT NOT NULL,         -- "linux/amd64"
           size INTEGER NOT NULL,          -- config + compressed layers, bytes
           config BLOB NOT NULL,           -- the image config JSON as stored
           layers TEXT NOT NULL,           -- JSON [{digest, media_type, size, diff_id, chain_id}]
           created REAL NOT NULL)          -- when first recorded (time.time())
    names(name TEXT PRIMARY KEY,           -- "docker.io/library/busybox:latest" or "...@sha256:..."
          kind TEXT NOT NULL,              -- "tag" | "digest"
          image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
          updated REAL NOT NULL)           -- when this name was last (re)pointed
    image_blobs(image_id TEXT REFERENCES images(id) ON DELETE CASCADE, digest TEXT,
                PRIMARY KEY (image_id, digest))  -- index, manifest, config, layers
    users(image_id TEXT REFERENCES images(id) ON DELETE CASCADE, user TEXT,
          PRIMARY KEY (image_id, user))    -- containers/snapshots using the image (CRI fills)

Concurrency: one connection per :class:`MetadataDB`, guarded by a lock (threads);
SQLite's own locking (``BEGIN IMMEDIATE``, busy timeout) between processes.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from images.errors import NotFound

SCHEMA_VERSION = 1
NameKind = Literal["tag", "digest"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    manifest_digest TEXT NOT NULL,
    platform TEXT NOT NULL,
    size INTEGER NOT NULL,
    config BLOB NOT NULL,
    layers TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS names (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('tag', 'digest')),
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS names_image ON names(image_id);
CREATE TABLE IF NOT EXISTS image_blobs (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    PRIMARY KEY (image_id, digest)
);
CREATE INDEX IF NOT EXISTS image_blobs_digest ON image_blobs(digest);
CREATE TABLE IF NOT EXISTS users (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    user TEXT NOT NULL,
    PRIMARY KEY (image_id, user)
);
"""


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """OCI chain ids: chain(0) = diff(0); chain(n) = sha256(chain(n-1) + " " + diff(n))."""
    out: list[str] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            text = f"{out[-1]} {diff_id}".encode()
            out.append("sha256:" + hashlib.sha256(text).hexdigest())
    return out


@dataclass(frozen=True, slots=True)
class LayerRecord:
    digest: str  # the (compressed) blob
    media_type: str
    size: int
    diff_id: str  # sha256 of the uncompressed tar
    chain_id: str  # the committed snapshot holding this layer over its parents

    def to_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "media_type": self.media_type,
            "size": self.size,
            "diff_id": self.diff_id,
            "chain_id": self.chain_id,
        }


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """The runtime part of an OCI image config (its ``config`` object)."""

    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    stop_signal: str = ""

    @classmethod
    def from_json(cls, config: Mapping[str, Any] | None) -> ImageConfig:
        c = config or {}
        return cls(
            env=tuple(c.get("Env") or ()),
            entrypoint=tuple(c.get("Entrypoint") or ()),
            cmd=tuple(c.get("Cmd") or ()),
            working_dir=c.get("WorkingDir") or "",
            user=c.get("User") or "",
            exposed_ports=tuple(sorted(c.get("ExposedPorts") or {})),
            volumes=tuple(sorted(c.get("Volumes") or {})),
            labels=dict(c.get("Labels") or {}),
            stop_signal=c.get("StopSignal") or "",
        )


@dataclass(frozen=True, slots=True)
class Image:
    id: str  # config digest
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    size: int
    config: ImageConfig
    layers: tuple[LayerRecord, ...]
    platform: str
    manifest_digest: str
    raw_config: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def diff_ids(self) -> tuple[str, ...]:
        return tuple(layer.diff_id for layer in self.layers)

    @property
    def chain_ids(self) -> tuple[str, ...]:
        return tuple(layer.chain_id for layer in self.layers)

    @property
    def top_layer(self) -> str | None:
        """The chain id of the top layer: the parent of a container's snapshot."""
        return self.layers[-1].chain_id if self.layers else None

    @property
    def short_id(self) -> str:
        return self.id.removeprefix("sha256:")[:12]

    def to_json(self) -> dict[str, Any]:
        """What ``kubeling images inspect`` prints."""
        return {
            "id": self.id,
            "repoTags": list(self.repo_tags),
            "repoDigests": list(self.repo_digests),
            "size": self.size,
            "platform": self.platform,
            "manifestDigest": self.manifest_digest,
            "layers": [layer.to_json() for layer in self.layers],
            "config": dict(self.raw_config),
        }


@dataclass(frozen=True, slots=True)
class NewImage:
    """What a pull or import records: the image and the names pointing at it."""

    id: str
    manifest_digest: str
    platform: str
    size: int
    config_json: bytes
    layers: tuple[LayerRecord, ...]
    blobs: frozenset[str]
    names: tuple[tuple[str, NameKind], ...]


class MetadataDB:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            self.path, timeout=30, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self._write():
            _migrate(self._db)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # ---- writes --------------------------------------------------------------------------

    def put(self, image: NewImage) -> None:
        """Record ``image`` and point its names at it (moving them from other images)."""
        now = time.time()
        layers = json.dumps([layer.to_json() for layer in image.layers])
        with self._write() as db:
            db.execute(
                "INSERT INTO images(id, manifest_digest, platform, size, config, layers, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET"
                " manifest_digest=excluded.manifest_digest, platform=excluded.platform,"
                " size=excluded.size, config=excluded.config, layers=excluded.layers",
                (
                    image.id,
                    image.manifest_digest,
                    image.platform,
                    image.size,
                    image.config_json,
                    layers,
                    now,
                ),
            )
            db.executemany(
                "INSERT OR IGNORE INTO image_blobs(image_id, digest) VALUES (?, ?)",
                [(image.id, d) for d in sorted(image.blobs)],
            )
            db.executemany(
                "INSERT INTO names(name, kind, image_id, updated) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(name) DO UPDATE SET kind=excluded.kind,"
                " image_id=excluded.image_id, updated=excluded.updated",
                [(name, kind, image.id, now) for name, kind in image.names],
            )

    def set_name(self, name: str, kind: NameKind, image_id: str) -> None:
        with self._write() as db:
            self._require(db, image_id)
            db.execute(
                "INSERT INTO names(name, kind, image_id, updated) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(name) DO UPDATE SET kind=excluded.kind,"
                " image_id=excluded.image_id, updated=excluded.updated",
                (name, kind, image_id, time.time()),
            )

    def remove_name(self, name: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM names WHERE name = ?", (name,))

    def delete(self, image_id: str) -> None:
        """Delete the image record, its names, blob references and users."""
        with self._write() as db:
            db.execute("DELETE FROM images WHERE id = ?", (image_id,))

    def add_user(self, image_id: str, user: str) -> None:
        with self._write() as db:
            self._require(db, image_id)
            db.execute(
                "INSERT OR IGNORE INTO users(image_id, user) VALUES (?, ?)", (image_id, user)
            )

    def remove_user(self, image_id: str, user: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM users WHERE image_id = ? AND user = ?", (image_id, user))

    # ---- reads ---------------------------------------------------------------------------

    def get(self, image_id: str) -> Image:
        with self._lock:
            row = self._db.execute(
                "SELECT id, manifest_digest, platform, size, config, layers FROM images"
                " WHERE id = ?",
                (image_id,),
            ).fetchone()
            if row is None:
                raise NotFound(f"image {image_id}: not found")
            return self._image(row)

    def resolve_name(self, name: str) -> str | None:
        """The image id ``name`` points at, or None."""
        with self._lock:
            row = self._db.execute("SELECT image_id FROM names WHERE name = ?", (name,)).fetchone()
            return None if row is None else str(row[0])

    def name_updated(self, name: str) -> float | None:
        with self._lock:
            row = self._db.execute("SELECT updated FROM names WHERE name = ?", (name,)).fetchone()
            return None if row is None else float(row[0])

    def ids_with_prefix(self, prefix: str) -> list[str]:
        """Image ids starting with ``prefix`` (with or without ``sha256:``)."""
        hex_prefix = prefix.removeprefix("sha256:")
        pattern = "sha256:" + hex_prefix.replace("%", "").replace("_", "") + "%"
        with self._lock:
            rows = self._db.execute("SELECT id FROM images WHERE id LIKE ?", (pattern,))
            return [str(r[0]) for r in rows]

    def names(self, image_id: str) -> list[tuple[str, NameKind]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT name, kind FROM names WHERE image_id = ? ORDER BY name", (image_id,)
            ).fetchall()
        return [(str(n), "tag" if k == "tag" else "digest") for n, k in rows]

    def all_images(self) -> list[Image]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, manifest_digest, platform, size, config, layers FROM images ORDER BY id"
            ).fetchall()
            return [self._image(row) for row in rows]

    def users(self, image_id: str) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT user FROM users WHERE image_id = ? ORDER BY user", (image_id,)
            )
            return [str(r[0]) for r in rows]

    def referenced_blobs(self) -> set[str]:
        with self._lock:
            return {str(r[0]) for r in self._db.execute("SELECT DISTINCT digest FROM image_blobs")}

    def referenced_chain_ids(self) -> set[str]:
        out: set[str] = set()
        with self._lock:
            for (layers,) in self._db.execute("SELECT layers FROM images"):
                out.update(entry["chain_id"] for entry in json.loads(layers))
        return out

    def _image(self, row: tuple[Any, ...]) -> Image:
        image_id, manifest_digest, platform, size, config, layers = row
        names = self.names(image_id)
        raw = json.loads(config)
        return Image(
            id=image_id,
            repo_tags=tuple(n for n, k in names if k == "tag"),
            repo_digests=tuple(n for n, k in names if k == "digest"),
            size=int(size),
            config=ImageConfig.from_json(raw.get("config")),
            layers=tuple(LayerRecord(**entry) for entry in json.loads(layers)),
            platform=platform,
            manifest_digest=manifest_digest,
            raw_config=raw,
        )

    @staticmethod
    def _require(db: sqlite3.Connection, image_id: str) -> None:
        if db.execute("SELECT 1 FROM images WHERE id = ?", (image_id,)).fetchone() is None:
            raise NotFound(f"image {image_id}: not found")


def _migrate(db: sqlite3.Connection) -> None:
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"image metadata schema {version} is newer than this kubeling ({SCHEMA_VERSION})"
        )
    _create(db)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _create(db: sqlite3.Connection) -> None:
    # executescript() would COMMIT the open transaction: run statement by statement.
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)


def blob_set(digests: Iterable[str | None]) -> frozenset[str]:
    return frozenset(d for d in digests if d)
