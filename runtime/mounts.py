"""Mounting a container's root filesystem from a snapshotter's mount list.

An image store (images.snapshots) describes a rootfs as mounts to perform — a bind
mount of one directory, or an overlay of layer directories — and leaves performing
them to the runtime: only runtime/ calls mount(2). The CRI mounts a container's
rootfs with `mount_rootfs` before `Runtime.create` and unmounts it after delete.

A mount is a mapping with "type" ("bind" or a filesystem type such as "overlay"),
"source" and "options" (a list of strings, as in an OCI config.json mount).
"""

from __future__ import annotations

import os

from runtime import syscalls as sc
from runtime.errors import SpecError, SyscallError
from runtime.rootfs import mount_point_of, plan_mount

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

    from runtime.syscalls import Syscalls


def mount_rootfs(
    mounts: Sequence[Mapping[str, Any]], target: str, syscalls: Syscalls | None = None
) -> None:
    """Perform `mounts` in order on `target` (created if missing). On failure the
    mounts already made are undone, so the target is left as it was."""
    syscalls = syscalls or _linux()
    if not mounts:
        raise SpecError(f"mount rootfs at {target}: no mounts given")
    os.makedirs(target, mode=0o755, exist_ok=True)
    done = 0
    try:
        for index, mount in enumerate(mounts):
            kind = mount.get("type") or ""
            options = list(mount.get("options") or [])
            if kind == "bind" and "bind" not in options and "rbind" not in options:
                options.append("rbind")
            plan = plan_mount(
                {"destination": "/", "type": kind, "source": mount.get("source") or "",
                 "options": options},
                "/",
            )  # fmt: skip
            if not plan.source:
                raise SpecError(f"mount rootfs at {target}: mounts[{index}] has no source")
            if plan.is_bind:
                syscalls.mount(plan.source, target, "", plan.flags & (sc.MS_BIND | sc.MS_REC), "")
                done += 1
                extra = plan.flags & ~(sc.MS_BIND | sc.MS_REC)
                if extra:
                    syscalls.mount("", target, "", extra | sc.MS_BIND | sc.MS_REMOUNT, "")
            else:
                syscalls.mount(plan.source, target, plan.fstype, plan.flags, plan.data)
                done += 1
            for flag in plan.propagation:
                syscalls.mount("", target, "", flag, "")
    except BaseException:
        for _ in range(done):
            try:
                syscalls.umount(target, sc.MNT_DETACH)
            except SyscallError:
                break
        raise


def unmount_rootfs(target: str, syscalls: Syscalls | None = None) -> None:
    """Unmount everything stacked on `target`; a target that is not mounted is fine."""
    syscalls = syscalls or _linux()
    target = os.path.normpath(target)
    # mountinfo, not os.path.ismount: a bind mount within one filesystem is one too.
    while mount_point_of(target) == target:
        try:
            syscalls.umount(target, sc.MNT_DETACH)
        except SyscallError as e:
            if e.errno in (22, 2):  # EINVAL: not a mount point any more; ENOENT
                return
            raise


def _linux() -> Syscalls:
    from runtime.syscalls import LinuxSyscalls

    return LinuxSyscalls()
