"""`exec`: another process in a running container.

The caller (P) forks X, which joins init's namespaces (those that differ from its
own) and forks E, so E lands in the container's pid namespace. P puts E in the
container's cgroup, then E applies the process settings as init did (rlimits,
seccomp from the container's config, credentials, cwd) and execs. The channel's
write end is close-on-exec: EOF after `ready` means exec succeeded; an `error`
after it means execve failed.

In the foreground P is a child subreaper: X exits, E is re-parented to P, which
waits for it and returns its exit code. Detached, P returns once E has exec'd.
"""

from __future__ import annotations

import os

from runtime.capabilities import last_capability
from runtime.channel import channel_pair
from runtime.errors import ContainerInitError
from runtime.fork import fork_child
from runtime.init import NAMESPACES, _message, _report, compile_seccomp, import_late_modules
from runtime.process import (
    apply_security_labels,
    drop_privileges,
    enter_cwd,
    environment,
    find_executable,
    mark_inheritable_fds,
    set_rlimits,
    set_umask,
)
from runtime.signals import signal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from runtime.channel import Channel
    from runtime.state import ContainerState
    from runtime.syscalls import Syscalls


def _namespaces_to_join(pid: int) -> list[tuple[int, int, str]]:
    """Open init's namespace files that differ from ours: (fd, flag, path)."""
    joined = []
    for _, flag, name in NAMESPACES:
        theirs = f"/proc/{pid}/ns/{name}"
        try:
            if os.readlink(theirs) == os.readlink(f"/proc/self/ns/{name}"):
                continue
            joined.append((os.open(theirs, os.O_RDONLY | os.O_CLOEXEC), flag, theirs))
        except FileNotFoundError:
            continue
    return joined


def exec_process(
    syscalls: Syscalls,
    container: ContainerState,
    process: dict[str, Any],
    cgroup: Any,
    *,
    detach: bool,
    pid_file: str,
    console_socket: str,
    preserve_fds: int,
) -> int:
    if process.get("terminal") and not console_socket:
        raise ContainerInitError("a terminal needs --console-socket")
    namespaces = _namespaces_to_join(container.pid)
    console_fd = -1
    if console_socket:
        from runtime.tty import connect_console_socket

        console_fd = connect_console_socket(console_socket)
    # Compiled here, in the host's mount namespace: libseccomp is loaded from the
    # host, never from the container's filesystem.
    from runtime import log

    seccomp_filter = compile_seccomp(container.config, log.warning)
    import_late_modules(container.config | {"process": process})
    parent, child = channel_pair()
    if not detach:
        syscalls.set_child_subreaper()

    def intermediate_process() -> None:
        parent.close()
        _intermediate(
            syscalls, container, process, namespaces, child, console_fd, preserve_fds,
            seccomp_filter,
        )  # fmt: skip

    intermediate = fork_child(intermediate_process)
    child.close()
    for fd, _, _ in namespaces:
        os.close(fd)
    if console_fd >= 0:
        os.close(console_fd)
    pid = 0
    try:
        pid = int(parent.expect("exec_pid")["pid"])
        try:
            cgroup.add_process(pid)
        except Exception:
            os.kill(pid, signal.SIGKILL)
            raise
        parent.send("go")
        parent.expect("ready")
        os.waitpid(intermediate, 0)
        try:
            message = parent.receive()
        except EOFError:
            message = None
        if message is not None and message["type"] == "error":
            raise ContainerInitError(message["message"])
    except BaseException:
        _reap_failed(intermediate, 0 if detach else pid)
        raise
    finally:
        parent.close()
    if pid_file:
        from runtime.state import atomic_write

        atomic_write(os.path.abspath(pid_file), str(pid).encode())
    if detach:
        return 0
    return _wait_forwarding_signals(pid)


def _reap_failed(intermediate: int, pid: int) -> None:
    """After a failed exec: reap X, then E (ours once X is gone: we are its
    subreaper). Left unreaped, E is handed to the host's init and, a zombie of the
    container's pid namespace, holds up the container's exit until that init reaps it."""
    try:
        os.waitpid(intermediate, 0)
    except ChildProcessError:
        pass
    if pid:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def _wait_forwarding_signals(pid: int) -> int:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH):  # fmt: skip
        signal.signal(sig, lambda number, _frame: _forward(pid, number))
    while True:
        try:
            reaped, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 255
        except InterruptedError:
            continue
        if reaped == pid:
            return (
                os.waitstatus_to_exitcode(status)
                if not os.WIFSIGNALED(status)
                else (128 + os.WTERMSIG(status))
            )


def _forward(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _intermediate(
    syscalls: Syscalls,
    container: ContainerState,
    process: dict[str, Any],
    namespaces: list[tuple[int, int, str]],
    channel: Channel,
    console_fd: int,
    preserve_fds: int,
    seccomp_filter: Any,
) -> NoReturn:
    try:
        for fd, flag, path in namespaces:
            try:
                syscalls.setns(fd, flag)
            except OSError as e:
                raise ContainerInitError(f"join namespace {path}: {e.strerror}") from None
        pid = fork_child(
            lambda: _exec_child(
                syscalls, process, channel, console_fd, preserve_fds, seccomp_filter
            )
        )
        channel.send("exec_pid", pid=pid)
    except BaseException as e:
        _report(channel, e)
        os._exit(1)
    os._exit(0)


def _exec_child(
    syscalls: Syscalls,
    process: dict[str, Any],
    channel: Channel,
    console_fd: int,
    preserve_fds: int,
    seccomp_filter: Any,
) -> NoReturn:
    try:
        channel.expect("go")
        if process.get("terminal"):
            from runtime.tty import setup_console

            setup_console(syscalls, console_fd, process.get("consoleSize"), mount_console=False)
        set_rlimits(syscalls, process)

        def warn(message: str) -> None:
            channel.send("warning", message=message)

        no_new_privs = process.get("noNewPrivileges", False)
        if seccomp_filter is not None and not no_new_privs:
            seccomp_filter.load()
        drop_privileges(syscalls, process, last_cap=last_capability(), warn=warn)
        apply_security_labels(process, warn)
        enter_cwd(process)
        set_umask(process)
        if no_new_privs:
            syscalls.set_no_new_privs()
        env = environment(process)
        path = find_executable(process["args"][0], env)
        mark_inheritable_fds(preserve_fds)
        channel.send("ready")
        if seccomp_filter is not None and no_new_privs:
            seccomp_filter.load()
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
        os.execve(path, process["args"], env)
    except BaseException as e:
        try:
            channel.send("error", message=_message(e))
        except OSError:
            pass
    os._exit(127)
