"""The narrow seam between the runtime and the kernel.

Every privileged call the container setup makes goes through an object with the
`Syscalls` shape. `LinuxSyscalls` is the only class here that touches libc;
`runtime.testing.RecordingSyscalls` records the calls for unit tests, so mount
plans, namespace order and capability sets are tested without root.

Plain file operations (mkdir, open, symlink) stay on `os`: they take the rootfs
as a parameter and unit tests run them against a temporary directory.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import resource
import struct

from runtime.errors import SyscallError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    class Syscalls(Protocol):
        def mount(self, source: str, target: str, fstype: str, flags: int, data: str) -> None: ...
        def umount(self, target: str, flags: int) -> None: ...
        def pivot_root(self, new_root: str, put_old: str) -> None: ...
        def chroot(self, path: str) -> None: ...
        def unshare(self, flags: int) -> None: ...
        def setns(self, fd: int, nstype: int) -> None: ...
        def sethostname(self, name: str) -> None: ...
        def setdomainname(self, name: str) -> None: ...
        def mknod(self, path: str, mode: int, device: int) -> None: ...
        def chown(self, path: str, uid: int, gid: int) -> None: ...
        def setgroups(self, gids: list[int]) -> None: ...
        def setresgid(self, gid: int) -> None: ...
        def setresuid(self, uid: int) -> None: ...
        def set_keep_caps(self, keep: bool) -> None: ...
        def set_no_new_privs(self) -> None: ...
        def drop_bounding_cap(self, cap: int) -> None: ...
        def capset(self, effective: int, permitted: int, inheritable: int) -> None: ...
        def clear_ambient_caps(self) -> None: ...
        def raise_ambient_cap(self, cap: int) -> None: ...
        def setrlimit(self, kind: int, soft: int, hard: int) -> None: ...
        def set_parent_death_signal(self, sig: int) -> None: ...
        def set_child_subreaper(self) -> None: ...
        def loopback_up(self) -> None: ...


# clone(2) namespace flags
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# mount(2) flags
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000
MS_LAZYTIME = 0x2000000

MNT_DETACH = 0x2

# prctl(2)
PR_SET_PDEATHSIG = 1
PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

_LINUX_CAPABILITY_VERSION_3 = 0x20080522

# Syscalls without a glibc wrapper, by machine.
_SYSCALL_NUMBERS = {
    "x86_64": {"pivot_root": 155, "capset": 126, "capget": 125},
    "aarch64": {"pivot_root": 41, "capset": 91, "capget": 90},
}


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


class LinuxSyscalls:
    """The real kernel, through libc."""

    __slots__ = ("_libc", "_numbers")

    def __init__(self) -> None:
        self._libc = ctypes.CDLL("libc.so.6", use_errno=True)
        machine = os.uname().machine
        if machine not in _SYSCALL_NUMBERS:
            raise OSError(f"unsupported machine {machine}")
        self._numbers = _SYSCALL_NUMBERS[machine]

    def _check(self, result: int, what: str) -> None:
        if result != 0:
            raise SyscallError(ctypes.get_errno(), what)

    def mount(self, source: str, target: str, fstype: str, flags: int, data: str) -> None:
        self._check(
            self._libc.mount(
                source.encode() if source else None,
                target.encode(),
                fstype.encode() if fstype else None,
                ctypes.c_ulong(flags),
                data.encode() if data else None,
            ),
            f"mount {source or fstype} at {target}",
        )

    def umount(self, target: str, flags: int) -> None:
        self._check(self._libc.umount2(target.encode(), flags), f"umount {target}")

    def pivot_root(self, new_root: str, put_old: str) -> None:
        result = self._libc.syscall(
            self._numbers["pivot_root"], new_root.encode(), put_old.encode()
        )
        self._check(result, f"pivot_root {new_root}")

    def chroot(self, path: str) -> None:
        try:
            os.chroot(path)
        except OSError as e:
            raise SyscallError(e.errno or 0, f"chroot {path}") from None

    def unshare(self, flags: int) -> None:
        self._check(self._libc.unshare(flags), f"unshare {flags:#x}")

    def setns(self, fd: int, nstype: int) -> None:
        self._check(self._libc.setns(fd, nstype), f"setns {nstype:#x}")

    def sethostname(self, name: str) -> None:
        raw = name.encode()
        self._check(self._libc.sethostname(raw, len(raw)), f"sethostname {name}")

    def setdomainname(self, name: str) -> None:
        raw = name.encode()
        self._check(self._libc.setdomainname(raw, len(raw)), f"setdomainname {name}")

    def mknod(self, path: str, mode: int, device: int) -> None:
        try:
            os.mknod(path, mode, device)
        except OSError as e:
            raise SyscallError(e.errno or 0, f"mknod {path}") from None

    def chown(self, path: str, uid: int, gid: int) -> None:
        try:
            os.chown(path, uid, gid, follow_symlinks=False)
        except OSError as e:
            raise SyscallError(e.errno or 0, f"chown {path} to {uid}:{gid}") from None

    def setgroups(self, gids: list[int]) -> None:
        try:
            os.setgroups(gids)
        except OSError as e:
            raise SyscallError(e.errno or 0, f"setgroups {gids}") from None

    def setresgid(self, gid: int) -> None:
        try:
            os.setresgid(gid, gid, gid)
        except OSError as e:
            raise SyscallError(e.errno or 0, f"setresgid {gid}") from None

    def setresuid(self, uid: int) -> None:
        try:
            os.setresuid(uid, uid, uid)
        except OSError as e:
            raise SyscallError(e.errno or 0, f"setresuid {uid}") from None

    def _prctl(self, option: int, arg2: int, what: str) -> None:
        self._check(
            self._libc.prctl(
                option,
                ctypes.c_ulong(arg2),
                ctypes.c_ulong(0),
                ctypes.c_ulong(0),
                ctypes.c_ulong(0),
            ),
            what,
        )

    def set_keep_caps(self, keep: bool) -> None:
        self._prctl(PR_SET_KEEPCAPS, int(keep), "prctl PR_SET_KEEPCAPS")

    def set_no_new_privs(self) -> None:
        self._prctl(PR_SET_NO_NEW_PRIVS, 1, "prctl PR_SET_NO_NEW_PRIVS")

    def set_parent_death_signal(self, sig: int) -> None:
        self._prctl(PR_SET_PDEATHSIG, sig, "prctl PR_SET_PDEATHSIG")

    def set_child_subreaper(self) -> None:
        self._prctl(PR_SET_CHILD_SUBREAPER, 1, "prctl PR_SET_CHILD_SUBREAPER")

    def drop_bounding_cap(self, cap: int) -> None:
        self._prctl(PR_CAPBSET_DROP, cap, f"drop capability {cap} from the bounding set")

    def capset(self, effective: int, permitted: int, inheritable: int) -> None:
        header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
        data = (_CapData * 2)()
        for word in (0, 1):
            shift = 32 * word
            data[word].effective = (effective >> shift) & 0xFFFFFFFF
            data[word].permitted = (permitted >> shift) & 0xFFFFFFFF
            data[word].inheritable = (inheritable >> shift) & 0xFFFFFFFF
        result = self._libc.syscall(
            self._numbers["capset"], ctypes.byref(header), ctypes.byref(data)
        )
        self._check(result, "capset")

    def clear_ambient_caps(self) -> None:
        self._check(
            self._libc.prctl(
                PR_CAP_AMBIENT,
                ctypes.c_ulong(PR_CAP_AMBIENT_CLEAR_ALL),
                ctypes.c_ulong(0),
                ctypes.c_ulong(0),
                ctypes.c_ulong(0),
            ),
            "clear ambient capabilities",
        )

    def raise_ambient_cap(self, cap: int) -> None:
        self._check(
            self._libc.prctl(
                PR_CAP_AMBIENT,
                ctypes.c_ulong(PR_CAP_AMBIENT_RAISE),
                ctypes.c_ulong(cap),
                ctypes.c_ulong(0),
                ctypes.c_ulong(0),
            ),
            f"raise ambient capability {cap}",
        )

    def setrlimit(self, kind: int, soft: int, hard: int) -> None:
        try:
            resource.setrlimit(kind, (soft, hard))
        except (OSError, ValueError) as e:
            raise SyscallError(
                getattr(e, "errno", None) or 1, f"setrlimit {kind} to {soft}:{hard}"
            ) from None

    def loopback_up(self) -> None:
        """Set IFF_UP on "lo" with SIOCGIFFLAGS/SIOCSIFFLAGS on a datagram socket."""
        fd = self._libc.socket(2, 2 | 0o2000000, 0)  # AF_INET, SOCK_DGRAM|SOCK_CLOEXEC
        if fd < 0:
            raise SyscallError(ctypes.get_errno(), "socket for loopback")
        try:
            request = struct.pack("16sH22x", b"lo", 0)
            flags = struct.unpack("16sH22x", fcntl.ioctl(fd, 0x8913, request))[1]
            fcntl.ioctl(fd, 0x8914, struct.pack("16sH22x", b"lo", flags | 0x1))
        except OSError as e:
            raise SyscallError(e.errno or 0, "bring loopback up") from None
        finally:
            os.close(fd)
