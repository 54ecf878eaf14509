"""subPath mounts that cannot leave their volume, as the kubelet's subpath package
makes them.

A container can replace a directory of a volume it writes with a symlink to `/`.
So the kubelet never hands the runtime a path below a volume: it creates missing
directories one component at a time without following symlinks, resolves the
subPath, checks that the result is inside the volume, opens it again component by
component with O_NOFOLLOW, and bind-mounts that open descriptor at
`<pod dir>/volume-subpaths/<volume>/<container>/<index>`; the runtime mounts that.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
from pathlib import Path

from kubelet.volumes.mounter import Mounter

O_PATH = os.O_PATH


class SubPathError(ValueError):
    pass


def validate(subpath: str) -> str:
    """The subPath, normalized; SubPathError for an absolute path or `..`."""
    if subpath.startswith("/"):
        raise SubPathError(f"error SubPath `{subpath}` must not be an absolute path")
    if ".." in subpath.split("/"):
        raise SubPathError(f"unable to provision SubPath `{subpath}`: must not contain '..'")
    return posixpath.normpath(subpath)


def _components(path: str) -> list[str]:
    return [part for part in path.split("/") if part not in ("", ".")]


def make_dirs(volume: Path, subpath: str, mode: int) -> None:
    """Creates the missing directories of `subpath` below `volume` (SafeMakeDir):
    an existing component must be a directory, not a symlink."""
    fd = os.open(os.path.realpath(volume), O_PATH | os.O_DIRECTORY)
    try:
        for part in _components(subpath):
            try:
                child = os.open(part, O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY, dir_fd=fd)
            except FileNotFoundError:
                os.mkdir(part, mode, dir_fd=fd)
                child = os.open(part, O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
    finally:
        os.close(fd)


def _open_inside(base: str, resolved: str) -> int:
    """An O_PATH descriptor of `resolved` (a symlink-free path below `base`) opened
    component by component, failing if any of them became a symlink meanwhile."""
    fd = os.open(base, O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for part in _components(os.path.relpath(resolved, base)):
            child = os.open(part, O_PATH | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def bind_subpath(volume: Path, subpath: str, target: Path, mounter: Mounter) -> Path:
    """Bind-mounts `volume/subpath` (which exists) at `target` and returns `target`.
    SubPathError when the subPath resolves outside the volume."""
    base = os.path.realpath(volume)
    resolved = os.path.realpath(os.path.join(base, subpath))
    if resolved != base and not resolved.startswith(base.rstrip("/") + "/"):
        raise SubPathError(f"subpath {subpath!r} resolves outside the volume")
    fd = _open_inside(base, resolved)
    try:
        is_dir = os.path.isdir(f"/proc/self/fd/{fd}")
        if target in mounter.mount_points(target):
            mounter.unmount(target)  # a restarted container: mount the current path
        target.parent.mkdir(parents=True, exist_ok=True)
        if is_dir:
            target.mkdir(exist_ok=True)
        elif not target.exists():
            with contextlib.suppress(FileExistsError):
                target.touch(mode=0o644)
        mounter.bind_fd(fd, target)
    finally:
        os.close(fd)
    return target
