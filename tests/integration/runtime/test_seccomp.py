"""runtime.seccomp against the kernel: load filters in forked children and probe them.

Each test compiles a filter in the test process, forks, and the child loads it
(as root, without no_new_privs, as the runtime does), runs a probe and reports
through a pipe before `os._exit`. The parent never loads a filter.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import resource
import signal
from collections.abc import Callable
from typing import Any

import pytest

from runtime import seccomp

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not seccomp.is_supported(), reason="needs libseccomp and seccomp filters"),
]

ALLOW = "SCMP_ACT_ALLOW"
_libc = ctypes.CDLL(None, use_errno=True)
_libc.personality.argtypes = [ctypes.c_ulong]
_libc.personality.restype = ctypes.c_int
_libc.umask.argtypes = [ctypes.c_uint]
_libc.umask.restype = ctypes.c_int


class Child:
    """What a forked child reported: its probe's result, or how it died."""

    def __init__(self, status: int, report: bytes) -> None:
        self.status = status
        self.report = json.loads(report) if report else None

    @property
    def signal(self) -> int | None:
        return os.WTERMSIG(self.status) if os.WIFSIGNALED(self.status) else None

    @property
    def result(self) -> Any:
        assert os.WIFEXITED(self.status) and os.WEXITSTATUS(self.status) == 0, (
            self.status,
            self.report,
        )
        assert self.report is not None
        assert "error" not in self.report, self.report["error"]
        return self.report["result"]


def run_filtered(section: dict[str, Any], probe: Callable[[], Any], *, load: bool = True) -> Child:
    """Fork; the child loads the filter compiled from `section` and runs `probe`."""
    flt = seccomp.compile_filter(section)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            os.close(r)
            # SIGSYS kills (TRAP, KILL_PROCESS) would dump core; don't.
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            if load:
                flt.load()
            out = json.dumps({"result": probe()}).encode()
        except BaseException as e:
            out = json.dumps({"error": f"{type(e).__name__}: {e}"}).encode()
            code = 1
        try:
            os.write(w, out)
        finally:
            os._exit(code)
    os.close(w)
    try:
        chunks = []
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
    finally:
        os.close(r)
        flt.release()
    _, status = os.waitpid(pid, 0)
    return Child(status, b"".join(chunks))


def errno_of(fn: Callable[[], object]) -> int:
    """0 if `fn()` succeeds, else the OSError's errno."""
    try:
        fn()
    except OSError as e:
        return e.errno or -1
    return 0


def personality(persona: int) -> int:
    """personality(2): its return value, or -errno."""
    ctypes.set_errno(0)
    rc = _libc.personality(persona)
    return -ctypes.get_errno() if rc == -1 else rc


def umask(mask: int) -> int:
    """umask(2) straight from libc: 0, or -errno when a filter made it fail.

    (umask cannot fail, so glibc passes the raw -errno through and Python's
    os.umask loses it.)
    """
    rc: int = _libc.umask(mask)
    return min(rc, 0)


def status_field(name: str) -> str:
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key == name:
                return value.strip()
    raise KeyError(name)


@pytest.fixture
def scratch(tmp_path: Any) -> str:
    return str(tmp_path)


def test_errno_rule_blocks_mkdir_only(scratch: str) -> None:
    section = {
        "defaultAction": ALLOW,
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
    }

    def probe() -> dict[str, int]:
        return {
            "mkdir": errno_of(lambda: os.mkdir(os.path.join(scratch, "d"))),
            "rmdir": errno_of(lambda: os.rmdir(os.path.join(scratch, "missing"))),
            "open": errno_of(
                lambda: os.close(os.open(os.path.join(scratch, "f"), os.O_CREAT | os.O_WRONLY))
            ),
        }

    assert run_filtered(section, probe).result == {
        "mkdir": errno.EPERM,
        "rmdir": errno.ENOENT,
        "open": 0,
    }
    assert not os.path.exists(os.path.join(scratch, "d"))
    assert os.path.exists(os.path.join(scratch, "f"))


def test_errno_ret_38_gives_enosys(scratch: str) -> None:
    section = {
        "defaultAction": ALLOW,
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}],
    }
    child = run_filtered(section, lambda: errno_of(lambda: os.mkdir(os.path.join(scratch, "d"))))
    assert child.result == errno.ENOSYS


def test_without_the_filter_mkdir_works(scratch: str) -> None:
    section = {
        "defaultAction": ALLOW,
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
    }
    child = run_filtered(
        section, lambda: errno_of(lambda: os.mkdir(os.path.join(scratch, "d"))), load=False
    )
    assert child.result == 0


def test_arg_comparison_matches_only_the_given_value() -> None:
    query = 0xFFFFFFFF  # personality(0xffffffff) only reads the current persona
    section = {
        "defaultAction": ALLOW,
        "syscalls": [
            {
                "names": ["personality"],
                "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 0, "value": 0x0008, "op": "SCMP_CMP_EQ"}],  # PER_LINUX32
            }
        ],
    }

    def probe() -> list[int]:
        return [personality(0x0008), personality(query), personality(0)]

    blocked, current, set_linux = run_filtered(section, probe).result
    assert blocked == -errno.EPERM
    assert current >= 0
    assert set_linux >= 0


def test_same_index_comparisons_or() -> None:
    section = {
        "defaultAction": ALLOW,
        "syscalls": [
            {
                "names": ["umask"],
                "action": "SCMP_ACT_ERRNO",
                "args": [
                    {"index": 0, "value": 0o011, "op": "SCMP_CMP_EQ"},
                    {"index": 0, "value": 0o022, "op": "SCMP_CMP_EQ"},
                ],
            }
        ],
    }

    def probe() -> list[int]:
        return [umask(m) for m in (0o011, 0o022, 0o033)]

    assert run_filtered(section, probe).result == [-errno.EPERM, -errno.EPERM, 0]


def test_gt_and_masked_eq() -> None:
    section = {
        "defaultAction": ALLOW,
        "syscalls": [
            {
                "names": ["umask"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": errno.EINVAL,
                "args": [{"index": 0, "value": 0o777, "op": "SCMP_CMP_GT"}],
            },
            {
                "names": ["umask"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": errno.EACCES,
                "args": [
                    {"index": 0, "value": 0o070, "valueTwo": 0o070, "op": "SCMP_CMP_MASKED_EQ"}
                ],
            },
        ],
    }

    def probe() -> list[int]:
        return [umask(m) for m in (0o1000, 0o077, 0o007, 0o022)]

    assert run_filtered(section, probe).result == [-errno.EINVAL, -errno.EACCES, 0, 0]


def test_kill_process_kills_with_sigsys(scratch: str) -> None:
    section = {
        "defaultAction": ALLOW,
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL_PROCESS"}],
    }
    child = run_filtered(section, lambda: os.mkdir(os.path.join(scratch, "d")))
    assert child.signal == signal.SIGSYS
    assert child.report is None


def test_trap_raises_sigsys(scratch: str) -> None:
    section = {
        "defaultAction": ALLOW,
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_TRAP"}],
    }
    child = run_filtered(section, lambda: os.mkdir(os.path.join(scratch, "d")))
    assert child.signal == signal.SIGSYS


# What this Python child needs between seccomp_load and os._exit (x86_64 and
# aarch64 names; unknown ones are skipped with a warning). More than 32 entries,
# so libseccomp's binary-tree layout is exercised too.
_CHILD_NEEDS = [
    "read", "write", "close", "exit", "exit_group", "brk", "mmap", "munmap", "mremap",
    "madvise", "mprotect", "futex", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn",
    "getpid", "gettid", "getuid", "geteuid", "getgid", "getegid", "getcwd", "lseek",
    "fstat", "newfstatat", "statx", "openat", "fcntl", "ioctl", "getrandom",
    "clock_gettime", "sigaltstack", "uname", "sysinfo",
]  # fmt: skip


def test_default_errno_with_allow_list() -> None:
    section = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": errno.ENOSYS,
        "syscalls": [{"names": [name], "action": ALLOW} for name in _CHILD_NEEDS],
    }

    def probe() -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "cwd": os.getcwd(),
            "mkdir": errno_of(lambda: os.mkdir("/nonexistent-dir/x")),
            "uid": os.getuid(),
        }

    result = run_filtered(section, probe).result
    assert result["mkdir"] == errno.ENOSYS
    assert result["cwd"] == os.getcwd()
    assert result["uid"] == 0
    assert result["pid"] > 0


def test_load_does_not_set_no_new_privs() -> None:
    assert status_field("NoNewPrivs") == "0"

    def probe() -> list[str]:
        return [status_field("NoNewPrivs"), status_field("Seccomp")]

    assert run_filtered({"defaultAction": ALLOW}, probe).result == ["0", "2"]


def test_load_without_cap_sys_admin_or_nnp_fails_with_eacces() -> None:
    def probe() -> dict[str, Any]:
        flt = seccomp.compile_filter({"defaultAction": ALLOW})
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)  # drops every capability
        try:
            flt.load()
        except seccomp.SeccompError as e:
            return {"message": str(e), "errno": e.errno, "seccomp": status_field("Seccomp")}
        return {"loaded": True}

    result = run_filtered({"defaultAction": ALLOW}, probe, load=False).result
    assert result["errno"] == errno.EACCES
    assert result["message"].startswith("load seccomp filter: EACCES (Permission denied)")
    assert result["seccomp"] == "0"


def test_flags_and_extra_architectures_load(scratch: str) -> None:
    native = seccomp._load_library().seccomp_arch_native()
    arches = {
        0xC000003E: ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        0xC00000B7: ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
    }.get(native, [])
    section = {
        "defaultAction": ALLOW,
        "architectures": arches,
        "flags": [
            "SECCOMP_FILTER_FLAG_TSYNC",
            "SECCOMP_FILTER_FLAG_LOG",
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        ],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EROFS}
        ],
    }
    child = run_filtered(section, lambda: errno_of(lambda: os.mkdir(os.path.join(scratch, "d"))))
    assert child.result == errno.EROFS


def test_log_action_allows(scratch: str) -> None:
    section = {
        "defaultAction": ALLOW,
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_LOG"}],
    }
    child = run_filtered(section, lambda: errno_of(lambda: os.mkdir(os.path.join(scratch, "d"))))
    assert child.result == 0
    assert os.path.isdir(os.path.join(scratch, "d"))


def test_compile_and_load_after_chroot_once_preloaded(tmp_path: Any) -> None:
    # The runtime compiles after pivot_root; libseccomp must already be open by
    # then. (This test process has opened it already, so the child's preload is
    # a no-op here; the unit tests cover a library that cannot be opened.)
    empty = tmp_path / "root"
    empty.mkdir()

    def probe() -> dict[str, Any]:
        seccomp.preload()
        os.chroot(str(empty))
        os.chdir("/")
        flt = seccomp.compile_filter(
            {"defaultAction": ALLOW, "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}
        )
        flt.load()
        return {"mkdir": errno_of(lambda: os.mkdir("/d"))}

    result = run_filtered({"defaultAction": ALLOW}, probe, load=False).result
    assert result == {"mkdir": errno.EPERM}
