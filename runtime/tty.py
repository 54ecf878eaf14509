"""A pseudo-terminal for a container whose process asks for one, handed to the
caller over `--console-socket` as runc does: the caller (containerd, a test) gets
the master fd by SCM_RIGHTS; the slave becomes stdio, the controlling terminal and
/dev/console.

The caller's socket is connected by the runtime before it forks (the socket path is
not reachable after pivot_root); the pty is opened by the container process after
pivot_root, from the container's own devpts.
"""

from __future__ import annotations

import fcntl
import os
import struct

from runtime import syscalls as sc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runtime.syscalls import Syscalls

TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431
TIOCSCTTY = 0x540E
TIOCSWINSZ = 0x5414


def connect_console_socket(path: str) -> int:
    """Connect to the caller's socket; returns an fd the container process inherits."""
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise OSError(e.errno, f"connect to console socket {path}: {e.strerror}") from None
    return sock.detach()


def setup_console(
    syscalls: Syscalls,
    socket_fd: int,
    console_size: dict[str, Any] | None,
    *,
    mount_console: bool,
) -> None:
    """Open a pty, send its master to the caller, make the slave our terminal."""
    import array
    import socket

    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))[0]
    slave_path = f"/dev/pts/{number}"
    slave = os.open(slave_path, os.O_RDWR | os.O_NOCTTY)
    if console_size:
        fcntl.ioctl(
            slave,
            TIOCSWINSZ,
            struct.pack("HHHH", console_size["height"], console_size["width"], 0, 0),
        )
    if mount_console:
        if not os.path.lexists("/dev/console"):
            os.close(os.open("/dev/console", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        syscalls.mount(slave_path, "/dev/console", "", sc.MS_BIND, "")
    sock = socket.socket(fileno=socket_fd)
    try:
        sock.sendmsg(
            [slave_path.encode()],
            [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [master]))],
        )
    finally:
        sock.close()
    os.close(master)
    os.setsid()
    fcntl.ioctl(slave, TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


# -- the caller's side -----------------------------------------------------------------


def receive_console(listener: Any, timeout: float) -> int:
    """Accept the runtime's connection on the caller's console socket (a listening
    AF_UNIX socket) and return the pty master it sends; OSError if none comes within
    `timeout` seconds."""
    import array
    import socket

    listener.settimeout(timeout)
    connection, _ = listener.accept()
    with connection:
        connection.settimeout(timeout)
        fds = array.array("i")
        _, ancillary, _, _ = connection.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize))
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    if not fds:
        raise OSError("no terminal received on the console socket")
    for extra in fds[1:]:
        os.close(extra)
    return fds[0]


def set_window_size(fd: int, width: int, height: int) -> None:
    """Resize the terminal whose master (or slave) is `fd`."""
    fcntl.ioctl(fd, TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
