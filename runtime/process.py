"""The last steps before exec, shared by a container's init and by `exec`:
rlimits, seccomp, capabilities and ids, working directory, umask, no_new_privs.

Ordering constraints:
- rlimits and oom_score_adj while still fully privileged;
- without noNewPrivileges, seccomp is loaded while CAP_SYS_ADMIN is still held (the
  kernel requires one or the other); with it, seccomp is loaded last, just before
  exec, so the filter sees as few runtime syscalls as possible;
- the bounding set is dropped before the uid change (needs CAP_SETPCAP);
  PR_SET_KEEPCAPS keeps permitted caps across setresuid, then capset sets the
  configured sets and ambient caps are raised last (they must be in permitted and
  inheritable).
"""

from __future__ import annotations

import os

from runtime import capabilities
from runtime.errors import ContainerInitError, SyscallError
from runtime.spec import RLIMITS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from runtime.syscalls import Syscalls

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def environment(process: dict[str, Any]) -> dict[str, str]:
    env = dict(entry.split("=", 1) for entry in process.get("env", []))
    return env


def find_executable(name: str, env: dict[str, str]) -> str:
    """Resolve args[0] the way execvp would, inside the (already pivoted) rootfs."""
    if "/" in name:
        candidates = [name]
    else:
        candidates = [
            os.path.join(d or ".", name) for d in env.get("PATH", DEFAULT_PATH).split(":")
        ]
    for path in candidates:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if st.st_mode & 61440 != 32768:
            continue
        if os.access(path, os.X_OK):
            return path
        raise ContainerInitError(f"exec {name}: permission denied")
    raise ContainerInitError(f"exec {name}: executable file not found in $PATH")


def set_rlimits(syscalls: Syscalls, process: dict[str, Any]) -> None:
    for rlimit in process.get("rlimits", []):
        try:
            syscalls.setrlimit(RLIMITS[rlimit["type"]], rlimit["soft"], rlimit["hard"])
        except SyscallError as e:
            raise ContainerInitError(
                f"set {rlimit['type']} to {rlimit['soft']}:{rlimit['hard']}: "
                f"{os.strerror(e.errno or 0)}"
            ) from None


def set_oom_score_adj(value: int, warn: Callable[[str], None], proc: str = "/proc") -> None:
    """Without CAP_SYS_RESOURCE the kernel refuses to lower the score below the
    current one; keep the current value and warn (containerd's
    restrict_oom_score_adj does the same)."""
    path = f"{proc}/self/oom_score_adj"
    try:
        with open(path, "w") as f:
            f.write(str(value))
    except PermissionError:
        with open(path) as f:
            current = int(f.read())
        warn(f"oomScoreAdj {value} is below the current {current} and needs "
             f"CAP_SYS_RESOURCE: keeping {current}")  # fmt: skip


def apply_security_labels(process: dict[str, Any], warn: Callable[[str], None]) -> None:
    """AppArmor: ask for the profile on exec (/proc/self/attr/apparmor/exec), where
    AppArmor is enabled; elsewhere the label is ignored with a warning, as are SELinux
    labels on hosts without SELinux (kubeling does not set SELinux labels)."""
    profile = process.get("apparmorProfile")
    if profile:
        if apparmor_enabled():
            path = "/proc/self/attr/apparmor/exec"
            if not os.path.exists(path):
                path = "/proc/self/attr/exec"
            try:
                with open(path, "w") as f:
                    f.write(f"exec {profile}")
            except OSError as e:
                raise ContainerInitError(f"set apparmor profile {profile}: {e.strerror}") from None
        else:
            warn(f"apparmorProfile {profile!r} ignored: AppArmor is not enabled on this host")
    label = process.get("selinuxLabel")
    if label:
        warn(f"selinuxLabel {label!r} ignored: SELinux labels are not supported")


_apparmor: list[bool] = []


def apparmor_enabled(sys_root: str = "/sys") -> bool:
    """Read once (before pivot_root, via `runtime.init`): the container's /sys may
    not be mounted."""
    if not _apparmor:
        try:
            with open(f"{sys_root}/module/apparmor/parameters/enabled", "rb") as f:
                _apparmor.append(f.read().strip() == b"Y")
        except OSError:
            _apparmor.append(False)
    return _apparmor[0]


def drop_privileges(
    syscalls: Syscalls,
    process: dict[str, Any],
    *,
    last_cap: int,
    warn: Callable[[str], None],
    setgroups_allowed: bool = True,
) -> None:
    caps = capabilities.parse(process.get("capabilities", {}), last_cap)
    if caps.unknown:
        warn(f"unknown capabilities ignored: {', '.join(caps.unknown)}")
    capabilities.drop_bounding(syscalls, caps, last_cap)
    user = process.get("user", {})
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    if setgroups_allowed:
        syscalls.setgroups(list(user.get("additionalGids", [])))
    syscalls.set_keep_caps(True)
    syscalls.setresgid(gid)
    syscalls.setresuid(uid)
    syscalls.set_keep_caps(False)
    capabilities.apply(syscalls, caps, last_cap)


def enter_cwd(process: dict[str, Any]) -> None:
    cwd = process["cwd"]
    try:
        os.chdir(cwd)
    except OSError as e:
        raise ContainerInitError(f"chdir to cwd {cwd}: {e.strerror}") from None


def set_umask(process: dict[str, Any]) -> None:
    umask = process.get("user", {}).get("umask")
    os.umask(0o022 if umask is None else umask)


def mark_inheritable_fds(preserve_fds: int) -> None:
    """Everything above stdio and the preserved fds closes at exec (runc closes them
    the same way, by close-on-exec, so errors can still be reported until exec)."""
    keep = 3 + preserve_fds
    try:
        open_fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # no /proc in this root: try every fd below the soft limit
        open_fds = list(range(keep, os.sysconf("SC_OPEN_MAX")))
    for fd in open_fds:
        if fd >= keep:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass
    for fd in range(3, keep):
        try:
            os.set_inheritable(fd, True)
        except OSError:
            pass
