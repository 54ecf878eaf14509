"""What runs in the forked processes that become a container.

Process tree of `create` (P = the runtime, X = intermediate, I = init):

    P forks X. X joins namespaces given by path (user first, mount last), unshares
    a new user namespace (P writes the id maps) and a new pid namespace, then forks
    I, which is PID 1 there. X reports I's pid and becomes the monitor: it waits
    for I and records the exit status in the state directory. (For `run` in the
    foreground X exits instead and P, a child subreaper, waits for I itself.)

    `run_init` reads top to bottom: the remaining namespaces, rootfs, hooks,
    pivot_root, console, masked and read-only paths, hostname, sysctls, limits,
    then it waits until P has put it in its cgroup (P does that meanwhile), then
    cgroup namespace, seccomp, credentials, and finally it blocks on exec.fifo
    until `start`, then execs.

The cgroup namespace is unshared only after I is in its cgroup (its root is the
cgroup of the unsharing process). Errors before `ready` go to P over the channel;
P reports them and cleans up.
"""

from __future__ import annotations

import os

from runtime import rootfs as rootfs_steps
from runtime import syscalls as sc
from runtime.errors import ContainerInitError, RuntimeFailure
from runtime.fork import fork_child
from runtime.process import (
    apply_security_labels,
    drop_privileges,
    enter_cwd,
    environment,
    find_executable,
    mark_inheritable_fds,
    set_oom_score_adj,
    set_rlimits,
    set_umask,
)
from runtime.signals import signal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn

    from runtime.channel import Channel
    from runtime.syscalls import Syscalls

# Namespace type -> (clone flag, /proc/<pid>/ns name), in the order they are joined:
# user first (it grants the capabilities for the rest), mount last (after it the
# paths to the other namespace files may no longer resolve).
NAMESPACES = (
    ("user", sc.CLONE_NEWUSER, "user"),
    ("ipc", sc.CLONE_NEWIPC, "ipc"),
    ("uts", sc.CLONE_NEWUTS, "uts"),
    ("network", sc.CLONE_NEWNET, "net"),
    ("pid", sc.CLONE_NEWPID, "pid"),
    ("cgroup", sc.CLONE_NEWCGROUP, "cgroup"),
    ("mount", sc.CLONE_NEWNS, "mnt"),
)
# Unshared by init itself (user and pid are unshared by the intermediate).
_INIT_UNSHARED = ("mount", "uts", "ipc", "network")


class InitContext:
    """Everything the forked processes need, prepared by the parent before fork."""

    __slots__ = (
        "bundle",
        "cgroup",
        "cgroup_paths",
        "channel",
        "config",
        "console_fd",
        "container_id",
        "exit_fd",
        "fifo_fd",
        "monitor",
        "namespaces",
        "preserve_fds",
        "rootfs",
        "stdio",
        "syscalls",
    )

    def __init__(
        self,
        *,
        container_id: str,
        config: dict[str, Any],
        bundle: str,
        rootfs: str,
        channel: Channel,
        syscalls: Syscalls,
        namespaces: dict[str, str],
        fifo_fd: int,
        exit_fd: int,
        console_fd: int,
        preserve_fds: int,
        monitor: bool,
        cgroup_paths: dict[str, str],
        stdio: tuple[int, int, int] | None = None,
        cgroup: Any = None,
    ) -> None:
        self.container_id = container_id
        self.config = config
        self.bundle = bundle
        self.rootfs = rootfs
        self.channel = channel
        self.syscalls = syscalls
        self.namespaces = namespaces
        self.fifo_fd = fifo_fd
        self.exit_fd = exit_fd
        self.console_fd = console_fd
        self.preserve_fds = preserve_fds
        self.monitor = monitor
        self.cgroup_paths = cgroup_paths
        self.stdio = stdio
        # Set when init joins its cgroup itself (see attach_cgroup); None when the
        # parent does it (a new user namespace cannot write the host's cgroupfs).
        self.cgroup = cgroup

    def warn(self, message: str) -> None:
        self.channel.send("warning", message=message)


def join_namespaces(syscalls: Syscalls, paths: dict[str, str]) -> None:
    """setns into every namespace given by path, in NAMESPACES order."""
    fds = []
    try:
        for kind, flag, _ in NAMESPACES:
            path = paths.get(kind)
            if path:
                try:
                    fds.append((os.open(path, os.O_RDONLY | os.O_CLOEXEC), flag, path))
                except OSError as e:
                    raise ContainerInitError(f"open namespace {path}: {e.strerror}") from None
        for fd, flag, path in fds:
            try:
                syscalls.setns(fd, flag)
            except OSError as e:
                raise ContainerInitError(f"join namespace {path}: {e.strerror}") from None
    finally:
        for fd, _, _ in fds:
            os.close(fd)


def run_intermediate(ctx: InitContext) -> NoReturn:
    """X: join and create the namespaces that take effect for children, fork init."""
    try:
        if ctx.stdio is not None:
            for target, fd in enumerate(ctx.stdio):
                if fd != target:
                    os.dup2(fd, target)
        close_unneeded_fds(ctx)
        join_namespaces(ctx.syscalls, {k: v for k, v in ctx.namespaces.items() if v})
        if ctx.namespaces.get("user") == "":
            ctx.syscalls.unshare(sc.CLONE_NEWUSER)
            ctx.channel.send("userns_ready", pid=os.getpid())
            ctx.channel.expect("mapped")
            # Become root of the new namespace; init inherits it.
            ctx.syscalls.setresgid(0)
            ctx.syscalls.setresuid(0)
        if ctx.namespaces.get("pid") == "":
            ctx.syscalls.unshare(sc.CLONE_NEWPID)
        pid = fork_child(lambda: run_init(ctx))
        ctx.channel.send("init_pid", pid=pid)
    except BaseException as e:
        _report(ctx.channel, e)
        os._exit(1)
    if not ctx.monitor:
        os._exit(0)
    monitor(pid, ctx.exit_fd)


def close_unneeded_fds(ctx: InitContext) -> None:
    """Close everything the forking process had open but the container needs not:
    a long-lived caller (the CRI supervisor) must not have its sockets held open by
    containers that are created but not yet started."""
    keep = {0, 1, 2, ctx.channel.read_fd, ctx.channel.write_fd, ctx.fifo_fd, ctx.exit_fd}
    keep.update(range(3, 3 + ctx.preserve_fds))
    if ctx.console_fd >= 0:
        keep.add(ctx.console_fd)
    try:
        open_fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return
    for fd in open_fds:
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the fd listing /proc/self/fd itself, already closed


def monitor(pid: int, exit_fd: int) -> NoReturn:
    """Wait for init and record how it ended, detached from the caller."""
    try:
        os.setsid()
    except OSError:
        pass
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(3, exit_fd)
    os.closerange(exit_fd + 1, 65536)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except ChildProcessError:
            os._exit(0)
        except InterruptedError:
            continue
    write_exit_status(exit_fd, status)
    os._exit(0)


def write_exit_status(fd: int, status: int) -> None:
    if os.WIFSIGNALED(status):
        code, sig = 128 + os.WTERMSIG(status), os.WTERMSIG(status)
    else:
        code, sig = os.WEXITSTATUS(status), 0
    try:
        os.write(fd, f"{code} {sig}\n".encode())
        os.close(fd)
    except OSError:
        pass


def run_init(ctx: InitContext) -> NoReturn:
    """I: become the container, step by step, then exec its process."""
    config = ctx.config
    process = config.get("process")
    linux = config["linux"]
    # Without a mount namespace of its own the container shares the host's: no
    # mounts are made (they would land on the host), the rootfs is entered by chroot.
    private_mounts = "mount" in ctx.namespaces
    try:
        attach_cgroup(ctx)
        unshare_namespaces(ctx)
        setup_network(ctx)
        if private_mounts:
            mount_rootfs(ctx)
        if has_runtime_hooks(config):
            ctx.channel.send("run_hooks")
            ctx.channel.expect("hooks_done")
        run_create_container_hooks(ctx)
        # Compiled before pivot_root: libseccomp is loaded from the host, never from
        # a library the image might ship.
        seccomp_filter = compile_seccomp(config, ctx.warn)
        import_late_modules(config)
        # Inherited fds are listed from /proc/self/fd, which the new root may lack.
        if process is not None:
            mark_inheritable_fds(ctx.preserve_fds)
        if private_mounts:
            rootfs_steps.pivot_root(ctx.syscalls, ctx.rootfs)
            rootfs_steps.set_root_propagation(ctx.syscalls, linux.get("rootfsPropagation"))
        else:
            enter_root_without_mount_namespace(ctx)
        setup_console(ctx)
        set_hostname(ctx)
        # Before read-only paths: /proc/sys is usually one of them.
        write_sysctls(linux.get("sysctl", {}))
        if private_mounts:
            mask_and_protect_paths(ctx)
        if ctx.cgroup is None:
            # The parent attaches us (a cgroup.procs write waits for an RCU grace
            # period, 5-20 ms here) while the steps above run.
            ctx.channel.expect("go")
        if ctx.namespaces.get("cgroup") == "":
            # Rooted at the cgroup of the unsharing process: only after the attach.
            ctx.syscalls.unshare(sc.CLONE_NEWCGROUP)
        if process is None:
            # Nothing to run: `start` will refuse and stop the container.
            ctx.channel.send("ready")
            os.read(ctx.fifo_fd, 1)
            os._exit(0)
        if process.get("oomScoreAdj") is not None:
            set_oom_score_adj(process["oomScoreAdj"], ctx.warn)
        set_rlimits(ctx.syscalls, process)
        no_new_privs = process.get("noNewPrivileges", False)
        if seccomp_filter is not None and not no_new_privs:
            # Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load now.
            seccomp_filter.load()
        drop_privileges(
            ctx.syscalls, process, last_cap=_last_cap(), warn=ctx.warn,
            setgroups_allowed=_setgroups_allowed(),
        )  # fmt: skip
        apply_security_labels(process, ctx.warn)
        enter_cwd(process)
        set_umask(process)
        if no_new_privs:
            ctx.syscalls.set_no_new_privs()
        env = environment(process)
        path = find_executable(process["args"][0], env)
        ctx.channel.send("ready")
    except BaseException as e:
        _report(ctx.channel, e)
        os._exit(1)
    ctx.channel.close()
    # Block until `start` writes to the fifo.
    try:
        if not os.read(ctx.fifo_fd, 1):
            os._exit(1)
        os.close(ctx.fifo_fd)
        start_hooks = config.get("hooks", {}).get("startContainer", [])
        if start_hooks:
            from runtime.hooks import run_hooks

            run_hooks(config["hooks"], "startContainer", _hook_state(ctx, "created"))
        if seccomp_filter is not None and no_new_privs:
            # Last, so the filter sees as few runtime syscalls as possible.
            seccomp_filter.load()
        # Python ignores SIGPIPE and SIGXFSZ; ignored signals survive exec.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
        os.execve(path, process["args"], env)
    except BaseException as e:
        os.write(2, f"kubeling-runtime: start container process: {_message(e)}\n".encode())
    os._exit(127)


def attach_cgroup(ctx: InitContext) -> None:
    """Join the container's cgroup first, so everything init does is accounted
    and limited. Init is single-threaded, so on v1 it can move itself cheaply; in
    hybrid mode the unified hierarchy (which only serves hugetlb) is joined only
    when hugetlb limits are set, its cgroup.procs write being the slow kind."""
    if ctx.cgroup is None:
        return
    hugetlb = bool(ctx.config["linux"].get("resources", {}).get("hugepageLimits"))
    ctx.cgroup.attach_self(unified=hugetlb or not ctx.cgroup.hybrid)


def import_late_modules(config: dict[str, Any]) -> None:
    """After pivot_root the host's Python library is out of reach: import now
    whatever the remaining steps import lazily, and read what they need of /sys."""
    from runtime.process import apparmor_enabled

    if (config.get("process") or {}).get("apparmorProfile"):
        apparmor_enabled()
    if (config.get("process") or {}).get("terminal"):
        import runtime.tty
    if config.get("hooks", {}).get("startContainer"):
        import runtime.hooks  # noqa: F401


def unshare_namespaces(ctx: InitContext) -> None:
    flags = 0
    for kind, flag, _ in NAMESPACES:
        if kind in _INIT_UNSHARED and ctx.namespaces.get(kind) == "":
            flags |= flag
    if flags:
        ctx.syscalls.unshare(flags)


def setup_network(ctx: InitContext) -> None:
    """A new network namespace starts with loopback down; runc brings it up."""
    if ctx.namespaces.get("network") == "":
        ctx.syscalls.loopback_up()


def mount_rootfs(ctx: InitContext) -> None:
    linux = ctx.config["linux"]
    syscalls = ctx.syscalls
    rootfs_steps.prepare_root(syscalls, ctx.rootfs, linux.get("rootfsPropagation"))
    dev_is_tmpfs = False
    devpts = False
    for mount in ctx.config.get("mounts", []):
        plan = rootfs_steps.plan_mount(mount, ctx.bundle)
        rootfs_steps.mount_one(syscalls, plan, ctx.rootfs, cgroup_mounter=_mount_cgroups(ctx))
        if plan.destination == "/dev":
            dev_is_tmpfs = not plan.is_bind
        if plan.destination == "/dev/pts" and plan.fstype == "devpts":
            devpts = True
    in_user_ns = "user" in ctx.namespaces
    rootfs_steps.create_devices(
        syscalls, ctx.rootfs, linux.get("devices", []),
        defaults=dev_is_tmpfs, bind_from_host=in_user_ns,
    )  # fmt: skip
    if dev_is_tmpfs:
        rootfs_steps.create_dev_symlinks(ctx.rootfs, ptmx=devpts)
    if ctx.config.get("process"):
        cwd = ctx.config["process"]["cwd"]
        os.makedirs(rootfs_steps.secure_join(ctx.rootfs, cwd), mode=0o755, exist_ok=True)


def _mount_cgroups(ctx: InitContext) -> Any:
    def mount(syscalls: Syscalls, plan: rootfs_steps.MountPlan, target: str) -> None:
        """/sys/fs/cgroup inside the container: the container's own cgroup dirs,
        bound read-only (or as flags say) per hierarchy under a tmpfs (v1 and
        hybrid), or the unified hierarchy itself (v2)."""
        flags = plan.flags & ~(sc.MS_BIND | sc.MS_REC)
        paths = ctx.cgroup_paths
        if set(paths) == {""}:
            syscalls.mount(paths[""], target, "", sc.MS_BIND | sc.MS_REC, "")
            if flags:
                syscalls.mount("", target, "", flags | sc.MS_BIND | sc.MS_REMOUNT, "")
            return
        syscalls.mount("tmpfs", target, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC,
                       "mode=755")  # fmt: skip
        for controller, host_dir in sorted(paths.items()):
            name = controller or "unified"
            sub = os.path.join(target, name)
            os.makedirs(sub, exist_ok=True)
            syscalls.mount(host_dir, sub, "", sc.MS_BIND | sc.MS_REC, "")
            if flags:
                syscalls.mount("", sub, "", flags | sc.MS_BIND | sc.MS_REMOUNT, "")
        if flags & sc.MS_RDONLY:
            syscalls.mount("", target, "", flags | sc.MS_REMOUNT, "mode=755")

    return mount


def has_runtime_hooks(config: dict[str, Any]) -> bool:
    hooks = config.get("hooks", {})
    return bool(hooks.get("prestart") or hooks.get("createRuntime"))


def run_create_container_hooks(ctx: InitContext) -> None:
    hooks = ctx.config.get("hooks", {})
    if hooks.get("createContainer"):
        from runtime.hooks import run_hooks

        run_hooks(hooks, "createContainer", _hook_state(ctx, "created"))


def _hook_state(ctx: InitContext, status: str) -> dict[str, Any]:
    state: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "id": ctx.container_id,
        "status": status,
        "pid": 1 if ctx.namespaces.get("pid") == "" else os.getpid(),
        "bundle": ctx.bundle,
    }
    if ctx.config.get("annotations"):
        state["annotations"] = ctx.config["annotations"]
    return state


def enter_root_without_mount_namespace(ctx: InitContext) -> None:
    skipped = [
        name
        for name, present in (
            ("mounts", ctx.config.get("mounts")),
            ("maskedPaths", ctx.config["linux"].get("maskedPaths")),
            ("readonlyPaths", ctx.config["linux"].get("readonlyPaths")),
            ("root.readonly", ctx.config["root"].get("readonly")),
        )
        if present
    ]
    if skipped:
        ctx.warn(f"no mount namespace: {', '.join(skipped)} not applied")
    ctx.syscalls.chroot(ctx.rootfs)
    os.chdir("/")


def setup_console(ctx: InitContext) -> None:
    process = ctx.config.get("process") or {}
    if not process.get("terminal"):
        return
    if ctx.console_fd < 0:
        raise ContainerInitError("process.terminal is set but no --console-socket was given")
    from runtime.tty import setup_console as open_console

    open_console(ctx.syscalls, ctx.console_fd, process.get("consoleSize"), mount_console=True)


def mask_and_protect_paths(ctx: InitContext) -> None:
    linux = ctx.config["linux"]
    for path in linux.get("maskedPaths", []):
        rootfs_steps.mask_path(ctx.syscalls, path)
    for path in linux.get("readonlyPaths", []):
        rootfs_steps.readonly_path(ctx.syscalls, path)
    if ctx.config["root"].get("readonly"):
        rootfs_steps.readonly_root(ctx.syscalls)


def set_hostname(ctx: InitContext) -> None:
    if ctx.config.get("hostname"):
        ctx.syscalls.sethostname(ctx.config["hostname"])
    if ctx.config.get("domainname"):
        ctx.syscalls.setdomainname(ctx.config["domainname"])


def write_sysctls(sysctls: dict[str, str], proc: str = "/proc") -> None:
    for key, value in sysctls.items():
        path = os.path.join(proc, "sys", key.replace(".", "/"))
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as e:
            raise ContainerInitError(f"write sysctl {key}={value}: {e.strerror}") from None


def compile_seccomp(config: dict[str, Any], warn: Callable[[str], None]) -> Any:
    section = config["linux"].get("seccomp")
    if not section:
        return None
    from runtime import seccomp

    compiled = seccomp.compile_filter(section)
    for warning in compiled.warnings:
        warn(warning)
    return compiled


def _last_cap() -> int:
    from runtime.capabilities import last_capability

    return last_capability()


def _setgroups_allowed() -> bool:
    """In a user namespace whose setgroups file says "deny", setgroups(2) fails."""
    try:
        with open("/proc/self/setgroups", "rb") as f:
            return f.read().strip() != b"deny"
    except OSError:
        return True


def _message(error: BaseException) -> str:
    if isinstance(error, RuntimeFailure | OSError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _report(channel: Channel, error: BaseException) -> None:
    try:
        channel.send("error", message=_message(error))
    except Exception:  # the parent is gone: nobody to tell
        pass
