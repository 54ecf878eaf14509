"""runtime.mounts on the real kernel: an overlay of two layer directories with an
upper dir, the merged view, and unmounting."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime.mounts import mount_rootfs, unmount_rootfs

pytestmark = pytest.mark.root


def test_overlay_rootfs_merges_layers_and_unmounts(tmp_path: Path) -> None:
    lower1, lower2, upper, work = (tmp_path / n for n in ("l1", "l2", "upper", "work"))
    for directory in (lower1, lower2, upper, work):
        directory.mkdir()
    (lower1 / "base").write_text("1")
    (lower1 / "shadowed").write_text("old")
    (lower2 / "shadowed").write_text("new")
    target = tmp_path / "rootfs"
    options = [f"lowerdir={lower2}:{lower1}", f"upperdir={upper}", f"workdir={work}"]
    mount_rootfs([{"type": "overlay", "source": "overlay", "options": options}], str(target))
    try:
        assert os.path.ismount(target)
        assert (target / "base").read_text() == "1"
        assert (target / "shadowed").read_text() == "new"
        (target / "written").write_text("x")
        assert (upper / "written").read_text() == "x"
    finally:
        unmount_rootfs(str(target))
    assert not os.path.ismount(target)
    assert not (lower1 / "written").exists()
    unmount_rootfs(str(target))  # not mounted: fine
