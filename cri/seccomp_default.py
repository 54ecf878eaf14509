"""The RuntimeDefault seccomp profile, as data: containerd's default (contrib/seccomp,
itself moby's default profile) written out as Python literals.

What it owns: the allow-list of syscall names, the conditional rules (socket families,
personality values, clone without namespace flags, clone3 answering ENOSYS), the extra
syscalls per architecture and per capability, and :func:`default_profile`, which
assembles an OCI ``linux.seccomp`` object from them. What it doesn't: choosing a
profile (cri/oci_spec) or compiling and loading one (runtime/seccomp.py).

Pure: the host's facts (machine name, kernel version) and the process's bounding
capabilities are arguments, as containerd reads them from ``runtime.GOARCH``, the
running kernel and the spec being built. The result depends on the bounding set, so
build it after the capabilities are final (containerd: "must follow the setting of
process capabilities").

JSON shape follows the Go structs' ``omitempty`` tags: ``args`` only when a rule has
conditions, ``valueTwo`` only when non-zero, ``errnoRet`` only when set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

DEFAULT_ACTION = "SCMP_ACT_ERRNO"
ALLOW = "SCMP_ACT_ALLOW"

AF_ALG = 38
AF_VSOCK = 40
ENOSYS = 38
# CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
# | CLONE_NEWCGROUP: clone is allowed only with none of them (without CAP_SYS_ADMIN).
CLONE_NAMESPACE_FLAGS = (
    0x00020000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x02000000
)

# Allowed unconditionally, whatever the capabilities.
ALLOWED_SYSCALLS: tuple[str, ...] = (
    "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "cachestat",
    "capget", "capset", "chdir", "chmod", "chown", "chown32", "clock_adjtime",
    "clock_adjtime64", "clock_getres", "clock_getres_time64", "clock_gettime",
    "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64", "close",
    "close_range", "connect", "copy_file_range", "creat", "dup", "dup2", "dup3",
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
    "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "execve",
    "execveat", "exit", "exit_group", "faccessat", "faccessat2", "fadvise64",
    "fadvise64_64", "fallocate", "fanotify_mark", "fchdir", "fchmod", "fchmodat",
    "fchmodat2", "fchown", "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync",
    "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr", "fsetxattr", "fstat",
    "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate", "ftruncate64",
    "futex", "futex_requeue", "futex_time64", "futex_wait", "futex_waitv", "futex_wake",
    "futimesat", "getcpu", "getcwd", "getdents", "getdents64", "getegid", "getegid32",
    "geteuid", "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32",
    "getitimer", "getpeername", "getpgid", "getpgrp", "getpid", "getppid",
    "getpriority", "getrandom", "getresgid", "getresgid32", "getresuid", "getresuid32",
    "getrlimit", "get_robust_list", "getrusage", "getsid", "getsockname", "getsockopt",
    "get_thread_area", "gettid", "gettimeofday", "getuid", "getuid32", "getxattr",
    "getxattrat", "inotify_add_watch", "inotify_init", "inotify_init1",
    "inotify_rm_watch", "io_cancel", "ioctl", "io_destroy", "io_getevents",
    "io_pgetevents", "io_pgetevents_time64", "ioprio_get", "ioprio_set", "io_setup",
    "io_submit", "ipc", "kill", "landlock_add_rule", "landlock_create_ruleset",
    "landlock_restrict_self", "lchown", "lchown32", "lgetxattr", "link", "linkat",
    "listen", "listmount", "listxattr", "listxattrat", "llistxattr", "_llseek",
    "lremovexattr", "lseek", "lsetxattr", "lsm_get_self_attr", "lsm_list_modules",
    "lsm_set_self_attr", "lstat", "lstat64", "madvise", "membarrier", "memfd_create",
    "memfd_secret", "mincore", "mkdir", "mkdirat", "mknod", "mknodat", "mlock", "mlock2",
    "mlockall", "map_shadow_stack", "mmap", "mmap2", "mprotect", "mq_getsetattr",
    "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64", "mq_timedsend",
    "mq_timedsend_time64", "mq_unlink", "mremap", "mseal", "msgctl", "msgget", "msgrcv",
    "msgsnd", "msync", "munlock", "munlockall", "munmap", "name_to_handle_at",
    "nanosleep", "newfstatat", "_newselect", "open", "openat", "openat2", "pause",
    "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free",
    "pkey_mprotect", "poll", "ppoll", "ppoll_time64", "prctl", "pread64", "preadv",
    "preadv2", "prlimit64", "process_mrelease", "pselect6", "pselect6_time64",
    "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readlink", "readlinkat",
    "readv", "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg",
    "remap_file_pages", "removexattr", "removexattrat", "rename", "renameat",
    "renameat2", "restart_syscall", "rmdir", "rseq", "rt_sigaction", "rt_sigpending",
    "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend",
    "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo",
    "sched_getaffinity", "sched_getattr", "sched_getparam", "sched_get_priority_max",
    "sched_get_priority_min", "sched_getscheduler", "sched_rr_get_interval",
    "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr",
    "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp", "select", "semctl",
    "semget", "semop", "semtimedop", "semtimedop_time64", "send", "sendfile",
    "sendfile64", "sendmmsg", "sendmsg", "sendto", "setfsgid", "setfsgid32", "setfsuid",
    "setfsuid32", "setgid", "setgid32", "setgroups", "setgroups32", "setitimer",
    "setpgid", "setpriority", "setregid", "setregid32", "setresgid", "setresgid32",
    "setresuid", "setresuid32", "setreuid", "setreuid32", "setrlimit", "set_robust_list",
    "setsid", "setsockopt", "set_thread_area", "set_tid_address", "setuid", "setuid32",
    "setxattr", "setxattrat", "shmat", "shmctl", "shmdt", "shmget", "shutdown",
    "sigaltstack", "signalfd", "signalfd4", "sigprocmask", "sigreturn", "socketcall",
    "socketpair", "splice", "stat", "stat64", "statfs", "statfs64", "statmount", "statx",
    "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "sysinfo", "tee",
    "tgkill", "time", "timer_create", "timer_delete", "timer_getoverrun",
    "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64",
    "timerfd_create", "timerfd_gettime", "timerfd_gettime64", "timerfd_settime",
    "timerfd_settime64", "times", "tkill", "truncate", "truncate64", "ugetrlimit",
    "umask", "uname", "unlink", "unlinkat", "uretprobe", "utime", "utimensat",
    "utimensat_time64", "utimes", "vfork", "vmsplice", "wait4", "waitid", "waitpid",
    "write", "writev",
)  # fmt: skip

# socket(2) for every address family but AF_ALG and AF_VSOCK, as three single-condition
# rules (one rule with two "!=" conditions on arg 0 would be split into ORed rules by the
# runtime and allow both). socketcall(2) ABIs stay unfiltered (allowed above).
SOCKET_RULES: tuple[tuple[str, int], ...] = (
    ("SCMP_CMP_LT", AF_ALG),
    ("SCMP_CMP_EQ", AF_ALG + 1),
    ("SCMP_CMP_GT", AF_VSOCK),
)

# personality(2) only with these personas: PER_LINUX, UNAME26, PER_LINUX32,
# UNAME26|PER_LINUX32, and 0xffffffff (query).
PERSONALITY_VALUES: tuple[int, ...] = (0x0, 0x0008, 0x20000, 0x20008, 0xFFFFFFFF)

# Kernels from 4.8 on check ptrace against seccomp properly: allowed there.
PTRACE_SYSCALLS: tuple[str, ...] = ("process_vm_readv", "process_vm_writev", "ptrace")
PTRACE_MIN_KERNEL = (4, 8)

# Go's GOARCH -> the seccomp architectures containerd lists (none for the others).
ARCHITECTURES: Mapping[str, tuple[str, ...]] = {
    "amd64": ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "arm64": ("SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64"),
    "mips64": ("SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32"),
    "mips64n32": ("SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32"),
    "mipsel64": ("SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32"),
    "mipsel64n32": ("SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32"),
    "s390x": ("SCMP_ARCH_S390", "SCMP_ARCH_S390X"),
    "riscv64": ("SCMP_ARCH_RISCV64",),
    "loong64": ("SCMP_ARCH_LOONGARCH64",),
}

# Extra syscalls allowed per GOARCH.
ARCH_SYSCALLS: Mapping[str, tuple[str, ...]] = {
    "ppc64le": ("sync_file_range2", "swapcontext"),
    "arm": (
        "arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint",
        "cacheflush", "set_tls",
    ),
    "arm64": (
        "arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint",
        "cacheflush", "set_tls",
    ),
    "amd64": ("arch_prctl", "modify_ldt"),
    "386": ("modify_ldt",),
    "s390": ("s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"),
    "s390x": ("s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"),
    "riscv64": ("riscv_flush_icache", "riscv_hwprobe"),
}  # fmt: skip

# Extra syscalls allowed when the bounding set holds the capability (one rule each, in
# the order of the bounding set).
CAPABILITY_SYSCALLS: Mapping[str, tuple[str, ...]] = {
    "CAP_DAC_READ_SEARCH": ("open_by_handle_at",),
    "CAP_SYS_ADMIN": (
        "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen",
        "fspick", "lookup_dcookie", "mount", "mount_setattr", "move_mount", "open_tree",
        "perf_event_open", "quotactl", "quotactl_fd", "setdomainname", "sethostname",
        "setns", "syslog", "umount", "umount2", "unshare",
    ),
    "CAP_SYS_BOOT": ("reboot",),
    "CAP_SYS_CHROOT": ("chroot",),
    "CAP_SYS_MODULE": ("delete_module", "init_module", "finit_module"),
    "CAP_SYS_PACCT": ("acct",),
    "CAP_SYS_PTRACE": (
        "kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev",
        "ptrace",
    ),
    "CAP_SYS_RAWIO": ("iopl", "ioperm"),
    "CAP_SYS_TIME": ("settimeofday", "stime", "clock_settime", "clock_settime64"),
    "CAP_SYS_TTY_CONFIG": ("vhangup",),
    "CAP_SYS_NICE": ("get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"),
    "CAP_SYSLOG": ("syslog",),
    "CAP_BPF": ("bpf",),
    "CAP_PERFMON": ("perf_event_open",),
}  # fmt: skip

# uname -m -> GOARCH, for the machines kubeling may run on.
_GOARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "i386": "386",
    "i486": "386",
    "i586": "386",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390": "s390",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "loongarch64": "loong64",
    "mips64": "mips64",
    "mipsel64": "mipsel64",
}


def goarch(machine: str) -> str:
    """The Go GOARCH name for a ``uname -m`` machine name (``armv7l`` -> ``arm``)."""
    if machine.startswith("armv") or machine == "arm":
        return "arm"
    return _GOARCH.get(machine, machine)


def _allow(names: Iterable[str]) -> dict[str, Any]:
    return {"names": list(names), "action": ALLOW}


def _allow_if(name: str, op: str, value: int, *, index: int = 0) -> dict[str, Any]:
    return {
        "names": [name],
        "action": ALLOW,
        "args": [{"index": index, "value": value, "op": op}],
    }


def default_profile(
    capabilities: Iterable[str], *, machine: str, kernel: tuple[int, int]
) -> dict[str, Any]:
    """containerd's ``seccomp.DefaultProfile`` for a process whose bounding set is
    ``capabilities``, on a ``machine`` (``uname -m``) running ``kernel`` (major, minor)."""
    arch = goarch(machine)
    syscalls = [_allow(ALLOWED_SYSCALLS)]
    syscalls += [_allow_if("socket", op, value) for op, value in SOCKET_RULES]
    syscalls += [_allow_if("personality", "SCMP_CMP_EQ", v) for v in PERSONALITY_VALUES]
    if kernel >= PTRACE_MIN_KERNEL:
        syscalls.append(_allow(PTRACE_SYSCALLS))
    if arch in ARCH_SYSCALLS:
        syscalls.append(_allow(ARCH_SYSCALLS[arch]))
    admin = False
    for cap in capabilities:
        if cap == "CAP_SYS_ADMIN":
            admin = True
        if cap in CAPABILITY_SYSCALLS:
            syscalls.append(_allow(CAPABILITY_SYSCALLS[cap]))
    if not admin:
        # clone's flags are its second argument on s390.
        index = 1 if arch in ("s390", "s390x") else 0
        syscalls.append(
            _allow_if("clone", "SCMP_CMP_MASKED_EQ", CLONE_NAMESPACE_FLAGS, index=index)
        )
        # ENOSYS rather than EPERM, so libcs fall back to clone (moby/moby#42681).
        syscalls.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS})
    return {
        "defaultAction": DEFAULT_ACTION,
        "architectures": list(ARCHITECTURES.get(arch, ())),
        "syscalls": syscalls,
    }
