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


def test_shared_propagation_over_a_mounted_rootfs(
    tmp_path: Path, busybox: Path, runtime_cli: object
) -> None:
    """rootfsPropagation "rshared" with a rootfs that is itself a mount (as the CRI
    mounts an overlay): pivot_root must still work."""
    from runtime import jsonio
    from runtime.bundle import default_spec

    rootfs = tmp_path / "rootfs"
    mount_rootfs([{"type": "bind", "source": str(busybox), "options": ["rbind", "ro"]}],
                 str(rootfs))  # fmt: skip
    try:
        config = default_spec(["sh", "-c", "test -x /bin/sh && echo ok"])
        config["root"]["path"] = str(rootfs)
        config["linux"]["rootfsPropagation"] = "rshared"
        cid = runtime_cli.new_id()  # type: ignore[attr-defined]
        config["linux"]["cgroupsPath"] = f"{runtime_cli.cgroup_parent}/{cid}"  # type: ignore[attr-defined]
        bundle = tmp_path / "bundle"
        bundle.mkdir()
        (bundle / "config.json").write_text(jsonio.dumps(config))
        result = runtime_cli("run", "--bundle", str(bundle), cid)  # type: ignore[operator]
        assert result.stdout.strip() == "ok"
    finally:
        unmount_rootfs(str(rootfs))
    assert not any(
        str(rootfs) in line for line in Path("/proc/self/mountinfo").read_text().splitlines()
    )
