from __future__ import annotations

from pathlib import Path

import pytest

from runtime import syscalls as sc
from runtime.errors import SpecError
from runtime.mounts import mount_rootfs
from runtime.testing import MountCall, RecordingSyscalls


def test_overlay_options_become_mount_data(tmp_path: Path) -> None:
    calls = RecordingSyscalls()
    target = str(tmp_path / "rootfs")
    mount_rootfs(
        [{"type": "overlay", "source": "overlay",
          "options": ["lowerdir=/l2:/l1", "upperdir=/u", "workdir=/w"]}],
        target, calls,
    )  # fmt: skip
    assert calls.mounts == [
        MountCall("overlay", target, "overlay", 0, "lowerdir=/l2:/l1,upperdir=/u,workdir=/w")
    ]
    assert Path(target).is_dir()


def test_read_only_bind_is_remounted(tmp_path: Path) -> None:
    calls = RecordingSyscalls()
    target = str(tmp_path / "rootfs")
    mount_rootfs([{"type": "bind", "source": "/layers/1", "options": ["ro"]}], target, calls)
    assert calls.mounts[0] == MountCall("/layers/1", target, "", sc.MS_BIND | sc.MS_REC, "")
    assert calls.mounts[1].flags & sc.MS_RDONLY and calls.mounts[1].flags & sc.MS_REMOUNT


def test_failure_undoes_what_was_mounted(tmp_path: Path) -> None:
    calls = RecordingSyscalls()
    calls.fail("mount", nth=2)
    target = str(tmp_path / "rootfs")
    with pytest.raises(OSError):
        mount_rootfs([{"type": "bind", "source": "/a", "options": ["ro"]}], target, calls)
    assert [c.name for c in calls.of("umount")] == ["umount"]


@pytest.mark.parametrize("mounts", [[], [{"type": "overlay", "source": "", "options": []}]])
def test_bad_mount_lists_are_refused(tmp_path: Path, mounts: list[dict[str, object]]) -> None:
    with pytest.raises(SpecError, match="mount rootfs at"):
        mount_rootfs(mounts, str(tmp_path / "rootfs"), RecordingSyscalls())
