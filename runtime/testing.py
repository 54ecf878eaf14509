"""Test doubles for the kernel seam: `RecordingSyscalls` records every call as a
frozen dataclass and can be told to fail the Nth call of a kind, so mount plans,
namespace order and capability sets are unit-tested without root.

Not imported by the runtime itself (dataclasses are fine here)."""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

from runtime.errors import SyscallError


@dataclass(frozen=True, slots=True)
class MountCall:
    source: str
    target: str
    fstype: str
    flags: int
    data: str


@dataclass(frozen=True, slots=True)
class Call:
    """Any other call: its name and arguments."""

    name: str
    args: tuple[object, ...] = ()


@dataclass
class RecordingSyscalls:
    calls: list[MountCall | Call] = field(default_factory=list)
    # call name -> (which call of that name fails, 1-based; errno)
    failures: dict[str, tuple[int, int]] = field(default_factory=dict)
    _counts: dict[str, int] = field(default_factory=dict)

    def fail(self, name: str, *, nth: int = 1, err: int = errno.EPERM) -> None:
        self.failures[name] = (nth, err)

    def _record(self, name: str, call: MountCall | Call) -> None:
        count = self._counts.get(name, 0) + 1
        self._counts[name] = count
        failure = self.failures.get(name)
        if failure is not None and failure[0] == count:
            raise SyscallError(failure[1], f"{name} (injected failure)")
        self.calls.append(call)

    def of(self, name: str) -> list[Call]:
        return [c for c in self.calls if isinstance(c, Call) and c.name == name]

    @property
    def mounts(self) -> list[MountCall]:
        return [c for c in self.calls if isinstance(c, MountCall)]

    def mount(self, source: str, target: str, fstype: str, flags: int, data: str) -> None:
        self._record("mount", MountCall(source, target, fstype, flags, data))

    def umount(self, target: str, flags: int) -> None:
        self._record("umount", Call("umount", (target, flags)))

    def pivot_root(self, new_root: str, put_old: str) -> None:
        self._record("pivot_root", Call("pivot_root", (new_root, put_old)))

    def chroot(self, path: str) -> None:
        self._record("chroot", Call("chroot", (path,)))

    def unshare(self, flags: int) -> None:
        self._record("unshare", Call("unshare", (flags,)))

    def setns(self, fd: int, nstype: int) -> None:
        self._record("setns", Call("setns", (nstype,)))

    def sethostname(self, name: str) -> None:
        self._record("sethostname", Call("sethostname", (name,)))

    def setdomainname(self, name: str) -> None:
        self._record("setdomainname", Call("setdomainname", (name,)))

    def mknod(self, path: str, mode: int, device: int) -> None:
        self._record("mknod", Call("mknod", (path, mode, device)))
        # Leave a regular file so later steps (chmod, chown) find the path.
        open(path, "w").close()

    def chown(self, path: str, uid: int, gid: int) -> None:
        self._record("chown", Call("chown", (path, uid, gid)))

    def setgroups(self, gids: list[int]) -> None:
        self._record("setgroups", Call("setgroups", (tuple(gids),)))

    def setresgid(self, gid: int) -> None:
        self._record("setresgid", Call("setresgid", (gid,)))

    def setresuid(self, uid: int) -> None:
        self._record("setresuid", Call("setresuid", (uid,)))

    def set_keep_caps(self, keep: bool) -> None:
        self._record("set_keep_caps", Call("set_keep_caps", (keep,)))

    def set_no_new_privs(self) -> None:
        self._record("set_no_new_privs", Call("set_no_new_privs"))

    def drop_bounding_cap(self, cap: int) -> None:
        self._record("drop_bounding_cap", Call("drop_bounding_cap", (cap,)))

    def capset(self, effective: int, permitted: int, inheritable: int) -> None:
        self._record("capset", Call("capset", (effective, permitted, inheritable)))

    def clear_ambient_caps(self) -> None:
        self._record("clear_ambient_caps", Call("clear_ambient_caps"))

    def raise_ambient_cap(self, cap: int) -> None:
        self._record("raise_ambient_cap", Call("raise_ambient_cap", (cap,)))

    def setrlimit(self, resource: int, soft: int, hard: int) -> None:
        self._record("setrlimit", Call("setrlimit", (resource, soft, hard)))

    def set_parent_death_signal(self, sig: int) -> None:
        self._record("set_parent_death_signal", Call("set_parent_death_signal", (sig,)))

    def set_child_subreaper(self) -> None:
        self._record("set_child_subreaper", Call("set_child_subreaper"))

    def loopback_up(self) -> None:
        self._record("loopback_up", Call("loopback_up"))
