"""Turning an image's layer blobs into committed snapshots named by chain id, while
the blobs are still arriving.

What it owns: when and where each layer is unpacked, and committing the layer
snapshots bottom first (a layer whose chain id is committed already is skipped; a
racing commit of the same chain id by another pull is success). What it doesn't:
fetching (images/pull.py), reading tar streams (images/unpack.py), snapshot storage
(images/snapshots/). Blobs that are all present already (an archive import) take the
same path: ``finish`` starts whatever ``blob_ready`` has not.

Ordering rules: overlay-style snapshotters (``whiteouts`` OVERLAY) unpack every
missing layer on its own into ``work`` (same file system as the snapshots), several
at once in a thread pool (the unpacker's syscalls and decompression release the
GIL); ``finish`` then prepares each snapshot over its parent, renames the tree onto
the snapshot's empty diff dir, checks the diff id and commits. Copy-style
snapshotters (DELETE) apply each layer in order onto a copy of its parent in
``finish``. Active snapshots are named ``extract-...``: a crash leaves them for the
image store's clean-up.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from images.content import ContentStore
from images.errors import AlreadyExists, DigestMismatch
from images.metadata import LayerRecord
from images.snapshots.base import Kind, Snapshotter
from images.unpack import LayerStats, Whiteouts, copy_parent_attributes, unpack_layer

EXTRACT_PREFIX = "extract-"


class LayerUnpacker:
    """Unpacks the layers of one image into committed snapshots named by chain id.

    Overlay-style snapshotters (``whiteouts`` OVERLAY): each layer is unpacked on its
    own into ``work`` as soon as its blob exists, several at once in a thread pool;
    :meth:`finish` then creates the snapshots in order, renaming each tree onto the
    snapshot's (empty) diff dir. Copy-style snapshotters (DELETE): each layer is
    applied in order onto its snapshot, which starts as a copy of its parent."""

    def __init__(
        self,
        *,
        content: ContentStore,
        snapshots: Snapshotter,
        work: Path,
        layers: list[dict[str, Any]],
        allow_devices: bool = False,
        workers: int = 4,
    ) -> None:
        self.content = content
        self.snapshots = snapshots
        self.work = work
        self.allow_devices = allow_devices
        self.workers = workers
        self.parallel = snapshots.whiteouts is Whiteouts.OVERLAY
        self.layers = {str(d["digest"]): d for d in layers}
        self._futures: dict[str, Future[tuple[Path, LayerStats]]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._present = self._committed()

    def _committed(self) -> set[str]:
        return {i.name for i in self.snapshots.walk() if i.kind is Kind.COMMITTED}

    def blob_ready(self, digest: str) -> None:
        """Start unpacking the layer ``digest`` (called as blobs land)."""
        if not self.parallel:
            return
        with self._lock:
            desc = self.layers.get(digest)
            if desc is None or digest in self._futures or self._closed:
                return
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="unpack")
            dest = self.work / f"layer-{len(self._futures)}"
            self._futures[digest] = self._pool.submit(
                self._unpack_alone, self.content.path(digest), dest, desc
            )

    def _unpack_alone(
        self, blob: Path, dest: Path, desc: dict[str, Any]
    ) -> tuple[Path, LayerStats]:
        stats = unpack_layer(
            blob,
            dest,
            media_type=str(desc.get("mediaType", "")),
            allow_devices=self.allow_devices,
            whiteouts=Whiteouts.OVERLAY,
        )
        return dest, stats

    def finish(self, records: list[LayerRecord], on_layer: Callable[[int], None]) -> None:
        try:
            self._finish(records, on_layer)
        finally:
            self.close()

    def close(self) -> None:
        """Stop the pool: queued unpacks are cancelled, running ones waited for (so
        the caller can remove the work directory)."""
        with self._lock:
            pool, self._pool = self._pool, None
            self._closed = True
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> LayerUnpacker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _finish(self, records: list[LayerRecord], on_layer: Callable[[int], None]) -> None:
        snapshots = self.snapshots
        for record in records:
            if record.chain_id not in self._present:
                self.blob_ready(record.digest)
        parent: str | None = None
        for n, record in enumerate(records, 1):
            if record.chain_id in self._present or record.chain_id in self._committed():
                parent = record.chain_id
                on_layer(n)
                continue
            key = f"{EXTRACT_PREFIX}{uuid.uuid4().hex[:12]}-{n}"
            snapshots.prepare(key, parent)
            try:
                diff_dir = snapshots.diff_dir(key)
                parents = snapshots.parent_dirs(key)
                if self.parallel:
                    tree, stats = self._futures[record.digest].result()
                    if stats.diff_id != record.diff_id:
                        raise DigestMismatch(
                            f"layer {record.digest}: uncompressed content is "
                            f"{stats.diff_id}, the image config says {record.diff_id}"
                        )
                    os.rename(tree, diff_dir)  # onto the empty directory
                    if parents and stats.implicit_dirs:
                        copy_parent_attributes(diff_dir, stats.implicit_dirs, parents)
                else:
                    unpack_layer(
                        self.content.path(record.digest),
                        diff_dir,
                        media_type=record.media_type,
                        allow_devices=self.allow_devices,
                        whiteouts=snapshots.whiteouts,
                        expected_diff_id=record.diff_id,
                        parents=parents,
                    )
                snapshots.commit(record.chain_id, key)
            except AlreadyExists:
                snapshots.remove(key)  # a concurrent pull committed the same layer
            except BaseException:
                with contextlib.suppress(Exception):
                    snapshots.remove(key)
                raise
            parent = record.chain_id
            on_layer(n)
