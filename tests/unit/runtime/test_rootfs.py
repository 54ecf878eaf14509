from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime import rootfs
from runtime import syscalls as sc
from runtime.bundle import default_spec
from runtime.testing import MountCall, RecordingSyscalls


def test_plan_translates_options() -> None:
    plan = rootfs.plan_mount(
        {
            "destination": "/dev/pts/",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "rslave"],
        },
        "/bundle",
    )
    assert plan.destination == "/dev/pts"
    assert plan.fstype == "devpts"
    assert plan.flags == sc.MS_NOSUID | sc.MS_NOEXEC
    assert plan.data == "newinstance,ptmxmode=0666"
    assert plan.propagation == [sc.MS_SLAVE | sc.MS_REC]


def test_plan_bind_relative_source_and_clearing_flags() -> None:
    plan = rootfs.plan_mount(
        {
            "destination": "/data",
            "type": "bind",
            "source": "data",
            "options": ["ro", "rw", "rbind"],
        },
        "/bundle",
    )
    assert plan.source == "/bundle/data"
    assert plan.fstype == ""
    assert plan.flags == sc.MS_BIND | sc.MS_REC
    assert plan.is_bind


def test_secure_join_never_leaves_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.symlink("/../../../etc", root / "escape")
    os.symlink("../../..", root / "etc" / "up")
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    assert rootfs.secure_join(str(root), "/escape/passwd") == f"{root}/etc/passwd"
    assert rootfs.secure_join(str(root), "/etc/up/etc/x") == f"{root}/etc/x"
    assert rootfs.secure_join(str(root), "../../x") == f"{root}/x"
    with pytest.raises(OSError):
        rootfs.secure_join(str(root), "/loop1/x")


def test_mount_one_bind_remounts_read_only(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    source = tmp_path / "file"
    source.write_text("x")
    calls = RecordingSyscalls()
    plan = rootfs.plan_mount(
        {"destination": "/etc/hosts", "source": str(source), "options": ["bind", "ro"]}, "/"
    )
    rootfs.mount_one(calls, plan, str(root))
    target = f"{root}/etc/hosts"
    assert (root / "etc" / "hosts").is_file()  # a file target for a file source
    assert calls.mounts[0] == MountCall(str(source), target, "", sc.MS_BIND, "")
    remount = calls.mounts[1]
    assert remount.target == target
    assert remount.flags & (sc.MS_RDONLY | sc.MS_BIND | sc.MS_REMOUNT) == (
        sc.MS_RDONLY | sc.MS_BIND | sc.MS_REMOUNT
    )


def test_mount_sequence_of_default_spec(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    calls = RecordingSyscalls()
    config = default_spec(["sh"])
    rootfs.prepare_root(calls, str(root), None)
    for mount in config["mounts"]:
        rootfs.mount_one(calls, rootfs.plan_mount(mount, str(tmp_path)), str(root))
    targets = [m.target for m in calls.mounts]
    assert targets == [
        "/",
        calls.mounts[1].target,  # the mount holding the rootfs, made private
        str(root),
        f"{root}/proc",
        f"{root}/dev",
        f"{root}/dev/pts",
        f"{root}/dev/shm",
        f"{root}/dev/mqueue",
        f"{root}/sys",
    ]
    assert calls.mounts[0].flags == sc.MS_SLAVE | sc.MS_REC
    assert calls.mounts[1].flags == sc.MS_PRIVATE
    assert os.path.ismount(calls.mounts[1].target)
    assert calls.mounts[-1].flags & sc.MS_RDONLY


def test_sysfs_falls_back_to_bind_when_refused(tmp_path: Path) -> None:
    calls = RecordingSyscalls()
    calls.fail("mount", nth=1)
    plan = rootfs.plan_mount({"destination": "/sys", "type": "sysfs", "source": "sysfs"}, "/")
    rootfs.mount_one(calls, plan, str(tmp_path))
    assert calls.mounts == [MountCall("/sys", f"{tmp_path}/sys", "", sc.MS_BIND | sc.MS_REC, "")]


def test_devices_and_symlinks(tmp_path: Path) -> None:
    calls = RecordingSyscalls()
    extra = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o600,
              "uid": 0, "gid": 0}]  # fmt: skip
    rootfs.create_devices(calls, str(tmp_path), extra, defaults=True, bind_from_host=False)
    rootfs.create_dev_symlinks(str(tmp_path), ptmx=True)
    made = {c.args[0]: c.args for c in calls.of("mknod")}
    assert f"{tmp_path}/dev/null" in made
    assert made[f"{tmp_path}/dev/null"][2] == os.makedev(1, 3)
    assert made[f"{tmp_path}/dev/fuse"][1] & 0o7777 == 0o600
    assert os.readlink(tmp_path / "dev" / "ptmx") == "pts/ptmx"
    assert os.readlink(tmp_path / "dev" / "fd") == "/proc/self/fd"


def test_devices_bound_from_host_in_user_namespace(tmp_path: Path) -> None:
    calls = RecordingSyscalls()
    rootfs.create_devices(calls, str(tmp_path), [], defaults=True, bind_from_host=True)
    assert not calls.of("mknod")
    assert MountCall("/dev/null", f"{tmp_path}/dev/null", "", sc.MS_BIND, "") in calls.mounts


def test_mask_path(tmp_path: Path) -> None:
    calls = RecordingSyscalls()
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("")
    rootfs.mask_path(calls, str(tmp_path / "dir"))
    rootfs.mask_path(calls, str(tmp_path / "file"))
    rootfs.mask_path(calls, str(tmp_path / "missing"))
    assert calls.mounts == [
        MountCall("tmpfs", f"{tmp_path}/dir", "tmpfs", sc.MS_RDONLY, ""),
        MountCall("/dev/null", f"{tmp_path}/file", "", sc.MS_BIND, ""),
    ]


def test_mount_point_of_reads_mountinfo(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "27 1 254:0 / / rw - ext4 /dev/vda rw\n"
        "40 27 254:0 /data /srv/ctr/rootfs rw - ext4 /dev/vda rw\n"
        "41 27 0:50 / /srv/with\\040space rw - tmpfs tmpfs rw\n"
    )
    # A bind mount within one filesystem: os.path.ismount cannot see it.
    assert rootfs.mount_point_of("/srv/ctr/rootfs", str(mountinfo)) == "/srv/ctr/rootfs"
    assert rootfs.mount_point_of("/srv/ctr/rootfs/etc", str(mountinfo)) == "/srv/ctr/rootfs"
    assert rootfs.mount_point_of("/srv/ctr/rootfs2", str(mountinfo)) == "/"
    assert rootfs.mount_point_of("/srv/with space/x", str(mountinfo)) == "/srv/with space"
