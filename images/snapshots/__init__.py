"""Snapshotters (overlay, native) and ``open_snapshotter``, which picks one by name.

Turning an image's layers into committed snapshots is images/layers.py's job."""

from __future__ import annotations

from pathlib import Path

from images.errors import ImageError
from images.snapshots.base import (
    BaseSnapshotter,
    Info,
    Kind,
    Mount,
    SnapshotStateError,
    Snapshotter,
    Usage,
    disk_usage,
)
from images.snapshots.native import NativeSnapshotter
from images.snapshots.overlay import OverlaySnapshotter

KINDS = ("overlay", "native")


def open_snapshotter(kind: str, root: Path) -> BaseSnapshotter:
    """The snapshotter named ``kind`` ("overlay" or "native") over ``root``."""
    if kind == "overlay":
        return OverlaySnapshotter(root)
    if kind == "native":
        return NativeSnapshotter(root)
    raise ImageError(f"unknown snapshotter {kind!r}: want one of {', '.join(KINDS)}")


__all__ = [
    "KINDS",
    "BaseSnapshotter",
    "Info",
    "Kind",
    "Mount",
    "NativeSnapshotter",
    "OverlaySnapshotter",
    "SnapshotStateError",
    "Snapshotter",
    "Usage",
    "disk_usage",
    "open_snapshotter",
]
