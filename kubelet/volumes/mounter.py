"""The only kernel calls of the volume manager: tmpfs mounts, bind mounts of an open
file descriptor (safe subPaths), unmounts, whether a tmpfs is mounted on a directory
(a stat: every pod sync asks, and mountinfo on a node with 100 pods is hundreds of
lines for the kernel to format and us to parse), and the list of mount points under
a directory (from mountinfo, which sees bind mounts too: for teardown).
`LinuxMounter` makes them with libc; tests use `kubelet.volumes.testing.RecordingMounter`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

MS_BIND = 0x1000
MS_REC = 0x4000
MNT_DETACH = 0x2


class Mounter(Protocol):
    def mount_tmpfs(self, target: Path, *, size_bytes: int | None) -> None: ...

    def bind_fd(self, fd: int, target: Path) -> None:
        """Bind-mounts what the open (O_PATH) descriptor `fd` names at `target`."""
        ...

    def unmount(self, target: Path) -> None: ...

    def mount_points(self, under: Path) -> list[Path]:
        """Mount points at or below `under`, deepest first."""
        ...

    def is_mount_point(self, path: Path) -> bool:
        """Whether a filesystem of its own (a tmpfs) is mounted on `path`; a bind
        mount within one filesystem is not seen."""
        ...


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040 ...)."""
    out = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mount_points(mountinfo: str, under: Path) -> list[Path]:
    """The mount points of a mountinfo text at or below `under`, deepest first."""
    prefix = str(under).rstrip("/")
    found = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        point = _unescape(fields[4])
        if point == prefix or point.startswith(prefix + "/"):
            found.append(Path(point))
    # Deepest first, and a point mounted twice comes out twice (both need unmounting).
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


class LinuxMounter:
    """mount(2) and umount2(2) through libc, in the kubelet's mount namespace."""

    def __init__(self, mountinfo: Path = Path("/proc/self/mountinfo")) -> None:
        self._libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self._mountinfo = mountinfo

    def _mount(self, source: str, target: Path, fstype: str | None, flags: int, data: str) -> None:
        log.debug("mount %s at %s (%s, %#x, %s)", source, target, fstype, flags, data)
        result = self._libc.mount(
            source.encode(), os.fsencode(target), fstype.encode() if fstype else None,
            ctypes.c_ulong(flags), data.encode() if data else None,
        )  # fmt: skip
        if result != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"mount {source} at {target}: {errno.errorcode.get(code, code)}")

    def mount_tmpfs(self, target: Path, *, size_bytes: int | None) -> None:
        self._mount("tmpfs", target, "tmpfs", 0, f"size={size_bytes}" if size_bytes else "")

    def bind_fd(self, fd: int, target: Path) -> None:
        self._mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC, "")

    def unmount(self, target: Path) -> None:
        log.debug("unmount %s", target)
        if self._libc.umount2(os.fsencode(target), 0) == 0:
            return
        code = ctypes.get_errno()
        if code == errno.EBUSY:  # still in use by a process here: let it go when unused
            if self._libc.umount2(os.fsencode(target), MNT_DETACH) == 0:
                return
            code = ctypes.get_errno()
        if code == errno.EINVAL and not os.path.ismount(target):
            return  # not (or no longer) a mount point
        raise OSError(code, f"unmount {target}: {errno.errorcode.get(code, code)}")

    def mount_points(self, under: Path) -> list[Path]:
        return parse_mount_points(self._mountinfo.read_text(), under)

    def is_mount_point(self, path: Path) -> bool:
        return os.path.ismount(path)
