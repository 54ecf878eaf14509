"""The container's filesystem view, built inside its new mount namespace.

Steps, in the order `runtime.init` calls them:
  1. prepare_root: make "/" slave/private (rootfsPropagation), bind the rootfs onto
     itself so pivot_root has a mount point to move;
  2. mount_all: config.json `mounts` in order, each destination resolved inside the
     rootfs without following symlinks out of it; /dev gets its device nodes and
     symlinks when it is a fresh tmpfs;
  3. pivot_root: into the rootfs, the old root unmounted lazily;
  4. finalize: masked paths, read-only paths, read-only root.
Each step takes the rootfs path and a `Syscalls`, so the mount sequence is
unit-tested with a recording fake against a temporary directory.
"""

from __future__ import annotations

import os
import stat

from runtime import syscalls as sc
from runtime.errors import SpecError, SyscallError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runtime.syscalls import Syscalls

# option -> (clear?, flag)
_FLAG_OPTIONS = {
    "defaults": (False, 0),
    "ro": (False, sc.MS_RDONLY),
    "rw": (True, sc.MS_RDONLY),
    "suid": (True, sc.MS_NOSUID),
    "nosuid": (False, sc.MS_NOSUID),
    "dev": (True, sc.MS_NODEV),
    "nodev": (False, sc.MS_NODEV),
    "exec": (True, sc.MS_NOEXEC),
    "noexec": (False, sc.MS_NOEXEC),
    "sync": (False, sc.MS_SYNCHRONOUS),
    "async": (True, sc.MS_SYNCHRONOUS),
    "dirsync": (False, sc.MS_DIRSYNC),
    "remount": (False, sc.MS_REMOUNT),
    "mand": (False, sc.MS_MANDLOCK),
    "nomand": (True, sc.MS_MANDLOCK),
    "atime": (True, sc.MS_NOATIME),
    "noatime": (False, sc.MS_NOATIME),
    "diratime": (True, sc.MS_NODIRATIME),
    "nodiratime": (False, sc.MS_NODIRATIME),
    "bind": (False, sc.MS_BIND),
    "rbind": (False, sc.MS_BIND | sc.MS_REC),
    "relatime": (False, sc.MS_RELATIME),
    "norelatime": (True, sc.MS_RELATIME),
    "strictatime": (False, sc.MS_STRICTATIME),
    "nostrictatime": (True, sc.MS_STRICTATIME),
    "lazytime": (False, sc.MS_LAZYTIME),
    "nolazytime": (True, sc.MS_LAZYTIME),
    "nosymfollow": (False, sc.MS_NOSYMFOLLOW),
    "symfollow": (True, sc.MS_NOSYMFOLLOW),
    "silent": (False, sc.MS_SILENT),
    "loud": (True, sc.MS_SILENT),
}
PROPAGATION_FLAGS = {
    "private": sc.MS_PRIVATE,
    "rprivate": sc.MS_PRIVATE | sc.MS_REC,
    "shared": sc.MS_SHARED,
    "rshared": sc.MS_SHARED | sc.MS_REC,
    "slave": sc.MS_SLAVE,
    "rslave": sc.MS_SLAVE | sc.MS_REC,
    "unbindable": sc.MS_UNBINDABLE,
    "runbindable": sc.MS_UNBINDABLE | sc.MS_REC,
}
# Options runc accepts that change nothing at mount(2) level here.
_IGNORED_OPTIONS = ("tmpcopyup", "rro", "rrw")

# (path, major, minor): every container gets these, mode 0666 root:root.
DEFAULT_DEVICES = (
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
)
DEV_SYMLINKS = (
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
)


class MountPlan:
    """One config.json mount turned into mount(2) arguments."""

    __slots__ = ("data", "destination", "flags", "fstype", "propagation", "source")

    def __init__(
        self,
        *,
        source: str,
        destination: str,
        fstype: str,
        flags: int,
        data: str,
        propagation: list[int],
    ) -> None:
        self.source = source
        self.destination = destination
        self.fstype = fstype
        self.flags = flags
        self.data = data
        self.propagation = propagation

    @property
    def is_bind(self) -> bool:
        return bool(self.flags & sc.MS_BIND)

    def __repr__(self) -> str:
        return (
            f"MountPlan({self.source!r} -> {self.destination!r}, {self.fstype!r}, "
            f"{self.flags:#x}, {self.data!r}, {self.propagation})"
        )


def plan_mount(mount: dict[str, Any], bundle: str) -> MountPlan:
    """Translate options into flags, propagation and filesystem data (pure)."""
    flags = 0
    propagation: list[int] = []
    data: list[str] = []
    for option in mount.get("options", []):
        if option in _FLAG_OPTIONS:
            clear, flag = _FLAG_OPTIONS[option]
            flags = flags & ~flag if clear else flags | flag
        elif option in PROPAGATION_FLAGS:
            propagation.append(PROPAGATION_FLAGS[option])
        elif option in _IGNORED_OPTIONS or option.startswith("x-"):
            continue
        elif option in ("idmap", "ridmap"):
            raise SpecError(
                f"config.json: mount {mount['destination']}: idmapped mounts are not supported"
            )
        else:
            data.append(option)
    fstype = mount.get("type") or ""
    if fstype == "bind":
        flags |= sc.MS_BIND
        fstype = ""
    source = mount.get("source") or ""
    if flags & sc.MS_BIND:
        fstype = ""
        if source and not source.startswith("/"):
            source = os.path.join(bundle, source)
    return MountPlan(
        source=source,
        destination=os.path.normpath(mount["destination"]),
        fstype=fstype,
        flags=flags,
        data=",".join(data),
        propagation=propagation,
    )


def secure_join(root: str, unsafe: str) -> str:
    """`root`/`unsafe` with symlinks resolved as if `root` were "/": the result never
    leaves `root`, whatever links or `..` the rootfs holds. Missing components are
    kept as they are."""
    done: list[str] = []
    pending = [p for p in unsafe.split("/") if p not in ("", ".")]
    pending.reverse()
    links = 0
    while pending:
        part = pending.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = os.path.join(root, *done, part)
        try:
            is_link = stat.S_ISLNK(os.lstat(candidate).st_mode)
        except OSError:
            is_link = False
        if not is_link:
            done.append(part)
            continue
        links += 1
        if links > 255:
            raise SyscallError(40, f"resolve {unsafe} in {root}")  # ELOOP
        target = os.readlink(candidate)
        if target.startswith("/"):
            done = []
        pending.extend(reversed([p for p in target.split("/") if p not in ("", ".")]))
    return os.path.join(root, *done)


def prepare_root(syscalls: Syscalls, rootfs: str, propagation: str | None) -> None:
    """Stop mount events leaking to the host, then make the rootfs a mount point."""
    flag = PROPAGATION_FLAGS[propagation] if propagation else sc.MS_SLAVE | sc.MS_REC
    syscalls.mount("", "/", "", flag, "")
    make_parent_mount_private(syscalls, rootfs)
    syscalls.mount(rootfs, rootfs, "", sc.MS_BIND | sc.MS_REC, "")


def make_parent_mount_private(syscalls: Syscalls, rootfs: str) -> None:
    """pivot_root refuses a new root whose parent mount is shared (with
    rootfsPropagation "shared" it would be): make that one mount private. That is
    the mount holding the rootfs — the rootfs itself when it is a mount point (an
    overlay the CRI mounted), as the rootfs is then bind-mounted on top of it."""
    syscalls.mount("", mount_point_of(rootfs), "", sc.MS_PRIVATE, "")


def mount_point_of(path: str, mountinfo: str = "/proc/self/mountinfo") -> str:
    """The mount point whose mount holds `path` (`path` itself if it is one).
    Read from mountinfo: os.path.ismount misses bind mounts within one filesystem."""
    path = os.path.normpath(path)
    best = "/"
    try:
        with open(mountinfo, "rb") as f:
            lines = f.read().decode(errors="surrogateescape").splitlines()
    except OSError:
        return best
    for line in lines:
        fields = line.split(" ")
        if len(fields) < 5:
            continue
        point = _unescape_mountinfo(fields[4])
        if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) > len(best):
            best = point
    return best


def _unescape_mountinfo(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for escaped, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(escaped, char)
    return field


def _create_target(path: str, source_is_file: bool) -> None:
    if os.path.lexists(path):
        return
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    if source_is_file:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
    else:
        os.mkdir(path, 0o755)


def mount_one(
    syscalls: Syscalls, plan: MountPlan, rootfs: str, *, cgroup_mounter: Any = None
) -> None:
    """Mount one entry under the rootfs (before pivot_root)."""
    target = secure_join(rootfs, plan.destination)
    if plan.fstype == "cgroup" or plan.fstype == "cgroup2":
        _create_target(target, False)
        if cgroup_mounter is None:
            raise SpecError(f"mount {plan.destination}: cgroup mounts need the cgroup layout")
        cgroup_mounter(syscalls, plan, target)
        return
    if plan.is_bind:
        try:
            source_is_file = not stat.S_ISDIR(os.stat(plan.source).st_mode)
        except OSError:
            raise SyscallError(2, f"bind mount source {plan.source}") from None
        _create_target(target, source_is_file)
        syscalls.mount(plan.source, target, "", plan.flags & (sc.MS_BIND | sc.MS_REC), "")
        remount = plan.flags & ~(sc.MS_BIND | sc.MS_REC | sc.MS_REMOUNT)
        if remount:
            # Bind mounts ignore other flags until remounted.
            syscalls.mount(
                "", target, "", remount | sc.MS_BIND | sc.MS_REMOUNT | _locked_flags(target), ""
            )
    else:
        _create_target(target, False)
        try:
            syscalls.mount(plan.source, target, plan.fstype, plan.flags, plan.data)
        except SyscallError as e:
            if plan.fstype == "sysfs" and e.errno == 1:
                # sysfs of a network namespace we do not own (user namespace + host
                # network): bind the host's /sys instead, as runc does.
                syscalls.mount("/sys", target, "", sc.MS_BIND | sc.MS_REC, "")
            else:
                raise
    for flag in plan.propagation:
        syscalls.mount("", target, "", flag, "")


def _locked_flags(target: str) -> int:
    """Flags a remount must keep: in a user namespace the kernel refuses to clear
    nosuid/nodev/noexec set by the mount's owner."""
    try:
        vfs = os.statvfs(target)
    except OSError:
        return 0
    flags = 0
    for st_flag, ms_flag in (
        (os.ST_NOSUID, sc.MS_NOSUID),
        (os.ST_NODEV, sc.MS_NODEV),
        (os.ST_NOEXEC, sc.MS_NOEXEC),
    ):
        if vfs.f_flag & st_flag:
            flags |= ms_flag
    return flags


def create_devices(
    syscalls: Syscalls,
    rootfs: str,
    devices: list[dict[str, Any]],
    *,
    defaults: bool,
    bind_from_host: bool,
) -> None:
    """Device nodes under the rootfs. In a user namespace mknod is refused, so the
    host's node is bind-mounted onto an empty file instead (as runc does)."""
    wanted: list[dict[str, Any]] = []
    if defaults:
        for path, major, minor in DEFAULT_DEVICES:
            wanted.append({"path": path, "type": "c", "major": major, "minor": minor,
                           "fileMode": 0o666, "uid": 0, "gid": 0})  # fmt: skip
    seen = {d["path"] for d in devices}
    wanted = [d for d in wanted if d["path"] not in seen] + list(devices)
    for device in wanted:
        target = secure_join(rootfs, device["path"])
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        if bind_from_host:
            if not os.path.lexists(target):
                os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
            syscalls.mount(device["path"], target, "", sc.MS_BIND, "")
            continue
        kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}
        mode = device.get("fileMode", 0o666) & 0o7777
        if os.path.lexists(target):
            os.unlink(target)
        dev = os.makedev(device.get("major", 0), device.get("minor", 0))
        syscalls.mknod(target, kind[device["type"]] | mode, dev)
        # mknod honours the umask; set the mode the config asked for.
        os.chmod(target, mode)
        syscalls.chown(target, device.get("uid", 0), device.get("gid", 0))


def create_dev_symlinks(rootfs: str, *, ptmx: bool) -> None:
    links = list(DEV_SYMLINKS)
    if os.path.exists("/proc/kcore"):
        links.append(("/proc/kcore", "/dev/core"))
    if ptmx:
        links.append(("pts/ptmx", "/dev/ptmx"))
    for source, link in links:
        target = secure_join(rootfs, link)
        if os.path.lexists(target):
            if link != "/dev/ptmx":
                continue
            os.unlink(target)
        os.symlink(source, target)


def pivot_root(syscalls: Syscalls, rootfs: str) -> None:
    """pivot_root(".", ".") stacks the old root on top of the new one; unmounting it
    lazily leaves the new root visible, with no put_old directory needed."""
    old_root = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new_root = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(new_root)
        syscalls.pivot_root(".", ".")
        os.fchdir(old_root)
        # Keep the unmount of the old root from propagating to the host.
        syscalls.mount("", ".", "", sc.MS_SLAVE | sc.MS_REC, "")
        syscalls.umount(".", sc.MNT_DETACH)
        os.chdir("/")
    finally:
        os.close(old_root)
        os.close(new_root)


def set_root_propagation(syscalls: Syscalls, propagation: str | None) -> None:
    """rootfsPropagation again on the new "/": before pivot_root it could only be set
    on the host's root (and must not be, when shared)."""
    if propagation:
        syscalls.mount("", "/", "", PROPAGATION_FLAGS[propagation], "")


def mask_path(syscalls: Syscalls, path: str) -> None:
    """Hide a path: /dev/null over a file, an empty read-only tmpfs over a directory."""
    try:
        is_dir = stat.S_ISDIR(os.stat(path).st_mode)
    except FileNotFoundError:
        return
    except OSError as e:
        raise SyscallError(e.errno or 0, f"stat masked path {path}") from None
    if is_dir:
        syscalls.mount("tmpfs", path, "tmpfs", sc.MS_RDONLY, "")
    else:
        syscalls.mount("/dev/null", path, "", sc.MS_BIND, "")


def readonly_path(syscalls: Syscalls, path: str) -> None:
    if not os.path.lexists(path):
        return
    syscalls.mount(path, path, "", sc.MS_BIND | sc.MS_REC, "")
    syscalls.mount(
        path, path, "", sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_REC
        | _locked_flags(path), "",
    )  # fmt: skip


def readonly_root(syscalls: Syscalls) -> None:
    syscalls.mount("", "/", "", sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | _locked_flags("/"), "")
