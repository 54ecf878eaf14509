"""Network namespaces as bind-mounted nsfs files, and sockets opened inside them.

A sandbox's network namespace lives as long as the file <netns_dir>/<sandbox id>,
a bind mount of an nsfs inode: containers join it by path (the OCI spec's
linux.namespaces network path), and it outlives every process in it, and the CRI
server too. `remove_netns` unmounts and unlinks it; the kernel frees the namespace
(and the pod's end of the veth pair with it) once nothing else holds it.

No fork: the CRI server is multi-threaded (gRPC) and forking it is hazardous.
unshare(CLONE_NEWNET) and setns(CLONE_NEWNET) act on the calling thread only, so
each is done on a short-lived thread of its own, which ends right after, so no other
code ever runs in the wrong namespace (the way the CNI plugins lock an OS thread).
A socket keeps the namespace it was created in, so a netlink or TCP socket made on
such a thread is then used from any thread.

The directory is made a shared mount point (bound onto itself, as `ip netns` does),
so that the unmount in `remove_netns` also reaches copies of the mount in mount
namespaces created meanwhile; otherwise such a copy would keep the namespace alive.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from cri.network.errors import NetnsError
from runtime.errors import SyscallError
from runtime.syscalls import CLONE_NEWNET, MNT_DETACH, MS_BIND, MS_REC, MS_SHARED

TYPE_CHECKING = False
if TYPE_CHECKING:
    from runtime.syscalls import Syscalls

log = logging.getLogger(__name__)

T = TypeVar("T")

# The calling thread's own namespace: /proc/self is the thread group leader's.
THREAD_NETNS = "/proc/thread-self/ns/net"


def run_in_thread(fn: Callable[[], T], name: str = "kubeling-netns") -> T:
    """Run `fn` on a new thread that ends when it returns; return its result or
    re-raise its exception here."""
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(fn())
        except BaseException as e:
            error.append(e)

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def ensure_shared_dir(directory: Path, syscalls: Syscalls) -> None:
    """Make `directory` a shared mount point (bind it onto itself first if needed)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o755)
    target = str(directory)
    try:
        syscalls.mount("", target, "", MS_SHARED | MS_REC, "")
        return
    except SyscallError as e:
        if e.errno != errno.EINVAL:  # EINVAL: not a mount point yet
            raise NetnsError(f"make {directory} shared: {_name(e)}") from None
    try:
        syscalls.mount(target, target, "", MS_BIND | MS_REC, "")
        syscalls.mount("", target, "", MS_SHARED | MS_REC, "")
    except SyscallError as e:
        raise NetnsError(f"bind {directory} onto itself: {_name(e)}") from None


def create_netns(directory: Path, name: str, syscalls: Syscalls) -> Path:
    """Create a network namespace held by the file <directory>/<name> and return its
    path. Fails if the file exists."""
    ensure_shared_dir(directory, syscalls)
    path = directory / name
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444))
    except FileExistsError:
        raise NetnsError(f"create netns {path}: exists") from None

    def unshare_and_bind() -> None:
        syscalls.unshare(CLONE_NEWNET)
        syscalls.mount(THREAD_NETNS, str(path), "", MS_BIND, "")

    try:
        run_in_thread(unshare_and_bind)
    except SyscallError as e:
        _unlink(path)
        raise NetnsError(f"create netns {path}: {e.what}: {_name(e)}") from None
    except BaseException:
        _unlink(path)
        raise
    log.debug("created netns %s", path)
    return path


def remove_netns(path: Path, syscalls: Syscalls) -> None:
    """Unmount and unlink a namespace file; a missing or unmounted file is fine."""
    try:
        syscalls.umount(str(path), MNT_DETACH)
    except SyscallError as e:
        if e.errno not in (errno.EINVAL, errno.ENOENT):  # not mounted, not there
            raise NetnsError(f"remove netns {path}: umount: {_name(e)}") from None
    _unlink(path)
    log.debug("removed netns %s", path)


def is_netns(path: Path) -> bool:
    """Whether `path` is a namespace file (on nsfs, like /proc/self/ns/net)."""
    try:
        return os.stat(path).st_dev == os.stat(THREAD_NETNS).st_dev
    except OSError:
        return False


def socket_in(
    netns: Path,
    family: int = socket.AF_INET,
    kind: int = socket.SOCK_STREAM,
    proto: int = 0,
    *,
    syscalls: Syscalls,
) -> socket.socket:
    """A socket created inside the network namespace file `netns`."""

    def make() -> int:
        try:
            fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise NetnsError(f"open netns {netns}: {e.strerror}") from None
        try:
            syscalls.setns(fd, CLONE_NEWNET)
        except SyscallError as e:
            raise NetnsError(f"enter netns {netns}: {_name(e)}") from None
        finally:
            os.close(fd)
        return socket.socket(family, kind, proto).detach()

    return socket.socket(fileno=run_in_thread(make))


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _name(e: OSError) -> str:
    return errno.errorcode.get(e.errno or 0, str(e.errno))
