"""The overlayfs snapshotter (containerd ``plugins/snapshots/overlay/overlay.go``).

Each snapshot has ``snapshots/<id>/fs`` (a layer's upper directory: what it changed,
whiteouts as 0/0 character devices, opaque directories by ``trusted.overlay.opaque``)
and, while active, ``snapshots/<id>/work`` (overlayfs' workdir). The metadata database,
its schema and the crash rules are in images/snapshots/base.py.

Mounts, as containerd computes them:

- active without parent: bind ``fs`` rw; view without parent: bind its empty ``fs`` ro;
- view with one parent: bind the parent's ``fs`` ro;
- active with parents: overlay ``lowerdir=<parents, nearest first>``, ``upperdir``,
  ``workdir``; view with several parents: overlay ``lowerdir`` only (read-only).

Deep chains: mount(2) takes the option string in one page, so ``lowerdir`` plus the
rest must fit in 4095 bytes. Ids are short numbers, but every lower path repeats the
root (``<root>/snapshots/<id>/fs``): about ``len(root) + 16`` bytes a layer, so a
30-byte root allows some 90 layers. prepare/view/mounts refuse a longer chain with an
error naming the sizes, rather than leave runtime/ a mount that fails with EINVAL.
(Relative lowerdirs after a chdir, as containerd does for long chains, would need the
mounting process to cooperate; runtime/ mounts with absolute paths.)
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from images.errors import ImageError
from images.snapshots.base import BaseSnapshotter, Kind, Mount, _Row
from images.unpack import Whiteouts

#: mount(2) copies at most one page of options, NUL included
MAX_OPTIONS_BYTES = 4095
#: overlayfs' own limit on lower layers (OVL_MAX_STACK)
MAX_LOWER_DIRS = 500


class OverlaySnapshotter(BaseSnapshotter):
    """Snapshots as overlayfs layers under ``root``.

    ``mount_options`` are appended to every overlay mount (e.g. ``("index=off",)``)."""

    whiteouts = Whiteouts.OVERLAY

    def __init__(self, root: Path, *, mount_options: tuple[str, ...] = ()) -> None:
        self._extra = tuple(mount_options)
        super().__init__(root)

    def _populate(self, new_dir: Path, kind: Kind, parents: list[int]) -> None:
        if kind is Kind.ACTIVE:
            (new_dir / "work").mkdir(mode=0o711)
            if parents:
                # overlayfs shows the upper directory's owner and mode for the merged
                # root: take them from the layer below (containerd copies the owner)
                st = os.lstat(self._fs(parents[0]))
                if os.geteuid() == 0:
                    os.chown(new_dir / "fs", st.st_uid, st.st_gid)
                os.chmod(new_dir / "fs", stat.S_IMODE(st.st_mode))

    def _mounts(self, row: _Row, parents: list[int]) -> list[Mount]:
        if not parents:
            mode = "rw" if row.kind is Kind.ACTIVE else "ro"
            return [Mount("bind", str(self._fs(row.id)), ("rbind", mode))]
        if row.kind is Kind.VIEW and len(parents) == 1:
            return [Mount("bind", str(self._fs(parents[0])), ("rbind", "ro"))]
        if len(parents) > MAX_LOWER_DIRS:
            raise ImageError(
                f"snapshot {row.name!r}: {len(parents)} layers, overlayfs stacks at most "
                f"{MAX_LOWER_DIRS}"
            )
        options = ["lowerdir=" + ":".join(str(self._fs(p)) for p in parents)]
        if row.kind is Kind.ACTIVE:
            options += [f"upperdir={self._fs(row.id)}", f"workdir={self._work(row.id)}"]
        options += self._extra
        size = len(",".join(options))
        if size > MAX_OPTIONS_BYTES:
            raise ImageError(
                f"snapshot {row.name!r}: overlay options for {len(parents)} layers are "
                f"{size} bytes, over the {MAX_OPTIONS_BYTES}-byte mount limit; use a "
                f"shorter snapshotter root than {self.root} ({len(str(self.root))} bytes)"
            )
        return [Mount("overlay", "overlay", tuple(options))]
