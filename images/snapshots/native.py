"""The copy snapshotter, for where overlayfs is unavailable (containerd's ``native``).

Every snapshot's ``snapshots/<id>/fs`` is a complete tree: prepare and view copy the
parent's tree (``cp -a``: owners, modes, times, hard links, xattrs, devices; reflinks
where the filesystem has them) and every mount is a bind of the snapshot's own
directory. Layers are applied to it in DELETE whiteout mode (whiteouts remove from the
copied tree). Slower and larger than overlay; nothing here needs a kernel feature.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from images.errors import ImageError
from images.snapshots.base import BaseSnapshotter, Kind, Mount, _Row
from images.unpack import Whiteouts


def copy_tree(src: Path, dst: Path) -> None:
    """Copy the content of directory ``src`` into the existing directory ``dst``,
    preserving everything ``cp -a`` preserves (dst takes src's own attributes too)."""
    proc = subprocess.run(
        ["cp", "-a", "--reflink=auto", "--", f"{src}/.", f"{dst}/"],
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise ImageError(f"copy {src} to {dst}: {err[-1] if err else proc.returncode}")


class NativeSnapshotter(BaseSnapshotter):
    """Snapshots as full copies under ``root``."""

    whiteouts = Whiteouts.DELETE

    def _populate(self, new_dir: Path, kind: Kind, parents: list[int]) -> None:
        if parents:
            copy_tree(self._fs(parents[0]), new_dir / "fs")

    def _mounts(self, row: _Row, parents: list[int]) -> list[Mount]:
        mode = "rw" if row.kind is Kind.ACTIVE else "ro"
        return [Mount("bind", str(self._fs(row.id)), ("rbind", mode))]
