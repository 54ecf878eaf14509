"""Compile the OCI `linux.seccomp` section into a libseccomp filter and load it.

Owns: validating the section (every error names the config field, e.g.
`linux.seccomp.syscalls[3].action: unknown action "SCMP_ACT_FOO"`), turning it
into a libseccomp context through ctypes (libseccomp.so.2, 2.5 or newer), and
`seccomp_load` in the calling process. Does not own: when to load (the init
sequence: while it still holds CAP_SYS_ADMIN without `noNewPrivileges`, or
last before exec after setting NNP), `process.noNewPrivileges` (loading never
sets NNP itself: `SCMP_FLTATR_CTL_NNP` is 0), and the seccomp agent protocol.
Load failures carry the kernel's errno (`SCMP_FLTATR_API_SYSRAWRC` is on).

Two steps, per STYLE §7: `_parse` is pure and does all validation into a
`_Plan`; `compile_filter` then only drives libseccomp. The library is opened on
first use, not at import, and every function gets its argtypes/restype.

Behaviour follows runc (libcontainer/seccomp):
- `SCMP_ACT_KILL` is `SCMP_ACT_KILL_THREAD`; `SCMP_ACT_ERRNO` and
  `SCMP_ACT_TRACE` take `errnoRet` (`defaultErrnoRet` for the default action),
  EPERM if unset; `errnoRet` on any other action is an error (the spec says the
  runtime MUST fail).
- A rule whose action equals the default action is skipped (libseccomp refuses
  it with EACCES). Syscall names this libseccomp cannot resolve are skipped
  with an entry in `Filter.warnings`.
- `args` that compare the same argument index more than once are added as one
  rule per comparison (so they OR), as libseccomp ANDs comparisons within a rule.
- Flags: `SECCOMP_FILTER_FLAG_TSYNC`, `_LOG`, `_SPEC_ALLOW` map to the libseccomp
  attributes `CTL_TSYNC`, `CTL_LOG`, `CTL_SSB` (an error if the kernel lacks
  them); `_WAIT_KILLABLE_RECV` only matters for user notification and is
  ignored with a warning.
- More than 32 syscalls with rules turn on libseccomp's binary-tree layout
  (runc counts `syscalls` entries; counting added syscalls also never enables
  it on an empty filter, which libseccomp <= 2.5.4 mishandles).
- Not supported: `SCMP_ACT_NOTIFY` (no `listenerPath` / seccomp agent support),
  and runc's patchbpf ENOSYS stub for syscalls newer than the profile.

libseccomp is opened with `dlopen` on first use, which searches the current
root: after pivot_root that is the container's filesystem. Call `preload()` (or
`compile_filter`) before pivot_root.

No logging: `logging` is outside the runtime's import budget (see
runtime/__init__.py); callers report `warnings` and errors.
"""

from __future__ import annotations

import ctypes
import errno
import os

from runtime.errors import RuntimeFailure

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "Filter",
    "SeccompError",
    "compile_filter",
    "is_supported",
    "library_version",
    "preload",
]

_LIBRARY = "libseccomp.so.2"
_FIELD = "linux.seccomp"

# seccomp.h action values; ERRNO and TRACE carry 16 bits of data.
_ACTIONS = {
    "SCMP_ACT_KILL": 0x00000000,
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000,
    "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
}
_ACTIONS_WITH_DATA = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")
_ACT_NOTIFY = "SCMP_ACT_NOTIFY"
_DATA_MAX = 0xFFFF

# enum scmp_compare
_OPERATORS = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}
_ARG_INDEX_MAX = 5  # syscalls take at most six arguments
_UINT64_MAX = 0xFFFFFFFFFFFFFFFF

# OCI name -> libseccomp's arch name (seccomp_arch_resolve_name); the library
# decides which ones it knows.
_ARCHES = {
    "SCMP_ARCH_X86": "x86",
    "SCMP_ARCH_X86_64": "x86_64",
    "SCMP_ARCH_X32": "x32",
    "SCMP_ARCH_ARM": "arm",
    "SCMP_ARCH_AARCH64": "aarch64",
    "SCMP_ARCH_LOONGARCH64": "loongarch64",
    "SCMP_ARCH_M68K": "m68k",
    "SCMP_ARCH_MIPS": "mips",
    "SCMP_ARCH_MIPS64": "mips64",
    "SCMP_ARCH_MIPS64N32": "mips64n32",
    "SCMP_ARCH_MIPSEL": "mipsel",
    "SCMP_ARCH_MIPSEL64": "mipsel64",
    "SCMP_ARCH_MIPSEL64N32": "mipsel64n32",
    "SCMP_ARCH_PPC": "ppc",
    "SCMP_ARCH_PPC64": "ppc64",
    "SCMP_ARCH_PPC64LE": "ppc64le",
    "SCMP_ARCH_S390": "s390",
    "SCMP_ARCH_S390X": "s390x",
    "SCMP_ARCH_PARISC": "parisc",
    "SCMP_ARCH_PARISC64": "parisc64",
    "SCMP_ARCH_RISCV64": "riscv64",
    "SCMP_ARCH_SH": "sh",
    "SCMP_ARCH_SHEB": "sheb",
}

# enum scmp_filter_attr
_ATTR_CTL_NNP = 3
_ATTR_CTL_TSYNC = 4
_ATTR_CTL_LOG = 6
_ATTR_CTL_SSB = 7
_ATTR_CTL_OPTIMIZE = 8
_ATTR_API_SYSRAWRC = 9

_FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": _ATTR_CTL_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": _ATTR_CTL_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": _ATTR_CTL_SSB,
}
_FLAG_WAIT_KILLABLE_RECV = "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"

_OPTIMIZE_ABOVE = 32  # syscalls with rules; libseccomp <= 2.5.4 misbehaves on 0 rules
_NR_SCMP_ERROR = -1


class SeccompError(RuntimeFailure):
    """Bad `linux.seccomp` input, or libseccomp/the kernel refused an operation.

    `errno` is set when a libseccomp or kernel call failed.
    """

    def __init__(self, message: str, *, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class _ArgCmp(ctypes.Structure):
    """struct scmp_arg_cmp: unsigned int arg; enum scmp_compare op; two uint64."""

    _fields_ = (
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    )


class _Version(ctypes.Structure):
    _fields_ = (
        ("major", ctypes.c_uint),
        ("minor", ctypes.c_uint),
        ("micro", ctypes.c_uint),
    )


# ---------------------------------------------------------------- validation


class _Rule:
    """One `syscalls[i]` entry, validated."""

    __slots__ = ("action", "args", "field", "names")

    def __init__(
        self,
        *,
        field: str,
        names: list[str],
        action: int,
        args: list[tuple[int, int, int, int]],
    ) -> None:
        self.field = field
        self.names = names
        self.action = action
        self.args = args  # (index, op, datum_a, datum_b)


class _Plan:
    """The whole section, validated; nothing here has touched libseccomp."""

    __slots__ = ("arches", "default_action", "flags", "rules", "warnings")

    def __init__(self) -> None:
        self.default_action = 0
        self.arches: list[tuple[str, str, str]] = []  # (field, OCI name, libseccomp name)
        self.flags: list[tuple[str, str, int]] = []  # (field, flag, attribute)
        self.rules: list[_Rule] = []
        self.warnings: list[str] = []


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _expect_list(value: object, field: str) -> list[object]:
    if not isinstance(value, list):
        raise SeccompError(f"{field}: expected an array, got {_type_name(value)}")
    return value


def _expect_str(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise SeccompError(f"{field}: expected a string, got {_type_name(value)}")
    return value


def _expect_uint(value: object, field: str, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SeccompError(f"{field}: expected an unsigned integer, got {_type_name(value)}")
    if not 0 <= value <= maximum:
        raise SeccompError(f"{field}: {value} out of range 0..{maximum}")
    return value


def _optional_list(obj: Mapping[str, object], key: str, field: str) -> list[object]:
    value = obj.get(key)
    return [] if value is None else _expect_list(value, f"{field}.{key}")


def _parse_action(obj: Mapping[str, object], *, action_key: str, errno_key: str, field: str) -> int:
    name = obj.get(action_key)
    if name is None:
        raise SeccompError(f"{field}.{action_key}: required")
    name = _expect_str(name, f"{field}.{action_key}")
    if name == _ACT_NOTIFY:
        raise SeccompError(
            f"{field}.{action_key}: {_ACT_NOTIFY} is not supported "
            "(no seccomp agent support: listenerPath is not implemented)"
        )
    if name not in _ACTIONS:
        raise SeccompError(f'{field}.{action_key}: unknown action "{name}"')
    value = _ACTIONS[name]
    ret = obj.get(errno_key)
    if ret is None:
        return value | errno.EPERM if name in _ACTIONS_WITH_DATA else value
    ret = _expect_uint(ret, f"{field}.{errno_key}", _DATA_MAX)
    if name not in _ACTIONS_WITH_DATA:
        raise SeccompError(
            f"{field}.{errno_key}: not allowed with {name} "
            f"(only {' and '.join(_ACTIONS_WITH_DATA)} take one)"
        )
    return value | ret


def _parse_args(items: list[object], field: str) -> list[tuple[int, int, int, int]]:
    args = []
    for k, item in enumerate(items):
        f = f"{field}[{k}]"
        if not isinstance(item, dict):
            raise SeccompError(f"{f}: expected an object, got {_type_name(item)}")
        for key in ("index", "value", "op"):
            if item.get(key) is None:
                raise SeccompError(f"{f}.{key}: required")
        index = _expect_uint(item["index"], f"{f}.index", _ARG_INDEX_MAX)
        datum_a = _expect_uint(item["value"], f"{f}.value", _UINT64_MAX)
        two = item.get("valueTwo")
        datum_b = 0 if two is None else _expect_uint(two, f"{f}.valueTwo", _UINT64_MAX)
        op = _expect_str(item["op"], f"{f}.op")
        if op not in _OPERATORS:
            raise SeccompError(f'{f}.op: unknown operator "{op}"')
        args.append((index, _OPERATORS[op], datum_a, datum_b))
    return args


def _parse(section: Mapping[str, object]) -> _Plan:
    """Validate `linux.seccomp` (pure: no libseccomp, no kernel)."""
    if not isinstance(section, dict):
        raise SeccompError(f"{_FIELD}: expected an object, got {_type_name(section)}")
    plan = _Plan()
    plan.default_action = _parse_action(
        section, action_key="defaultAction", errno_key="defaultErrnoRet", field=_FIELD
    )

    for i, arch in enumerate(_optional_list(section, "architectures", _FIELD)):
        f = f"{_FIELD}.architectures[{i}]"
        arch = _expect_str(arch, f)
        if arch not in _ARCHES:
            raise SeccompError(f'{f}: unknown architecture "{arch}"')
        plan.arches.append((f, arch, _ARCHES[arch]))

    for i, flag in enumerate(_optional_list(section, "flags", _FIELD)):
        f = f"{_FIELD}.flags[{i}]"
        flag = _expect_str(flag, f)
        if flag == _FLAG_WAIT_KILLABLE_RECV:
            plan.warnings.append(
                f"{f}: {flag} only affects {_ACT_NOTIFY}, which is not supported: ignored"
            )
        elif flag in _FLAGS:
            plan.flags.append((f, flag, _FLAGS[flag]))
        else:
            raise SeccompError(f'{f}: unknown flag "{flag}"')

    if section.get("listenerMetadata") is not None and section.get("listenerPath") is None:
        raise SeccompError(f"{_FIELD}.listenerMetadata: set without listenerPath")

    for i, entry in enumerate(_optional_list(section, "syscalls", _FIELD)):
        f = f"{_FIELD}.syscalls[{i}]"
        if not isinstance(entry, dict):
            raise SeccompError(f"{f}: expected an object, got {_type_name(entry)}")
        names_value = entry.get("names")
        if names_value is None:
            raise SeccompError(f"{f}.names: required")
        names = _expect_list(names_value, f"{f}.names")
        if not names:
            raise SeccompError(f"{f}.names: must contain at least one entry")
        checked = []
        for j, name in enumerate(names):
            name = _expect_str(name, f"{f}.names[{j}]")
            if not name:
                raise SeccompError(f"{f}.names[{j}]: empty syscall name")
            checked.append(name)
        action = _parse_action(entry, action_key="action", errno_key="errnoRet", field=f)
        args = _parse_args(_optional_list(entry, "args", f), f"{f}.args")
        plan.rules.append(_Rule(field=f, names=checked, action=action, args=args))
    return plan


def _rule_arg_sets(
    args: list[tuple[int, int, int, int]],
) -> list[list[tuple[int, int, int, int]]]:
    """Comparisons per rule: all together, or one each if an index repeats."""
    indexes = [a[0] for a in args]
    if len(set(indexes)) != len(indexes):
        return [[a] for a in args]
    return [args]


# ---------------------------------------------------------------- libseccomp

_lib: ctypes.CDLL | None = None


def _load_library() -> ctypes.CDLL:
    global _lib
    if _lib is not None:
        return _lib
    try:
        lib = ctypes.CDLL(_LIBRARY)
    except OSError as e:
        raise SeccompError(f"load {_LIBRARY}: {e}") from e
    ctx = ctypes.c_void_p
    u32 = ctypes.c_uint32
    prototypes: tuple[tuple[str, object, list[object]], ...] = (
        ("seccomp_version", ctypes.POINTER(_Version), []),
        ("seccomp_init", ctx, [u32]),
        ("seccomp_release", None, [ctx]),
        ("seccomp_arch_native", u32, []),
        ("seccomp_arch_resolve_name", u32, [ctypes.c_char_p]),
        ("seccomp_arch_add", ctypes.c_int, [ctx, u32]),
        ("seccomp_attr_set", ctypes.c_int, [ctx, ctypes.c_int, u32]),
        ("seccomp_syscall_resolve_name", ctypes.c_int, [ctypes.c_char_p]),
        (
            "seccomp_rule_add_array",
            ctypes.c_int,
            [ctx, u32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(_ArgCmp)],
        ),
        ("seccomp_export_pfc", ctypes.c_int, [ctx, ctypes.c_int]),
        ("seccomp_load", ctypes.c_int, [ctx]),
    )
    for name, restype, argtypes in prototypes:
        try:
            fn = getattr(lib, name)
        except AttributeError as e:
            raise SeccompError(f"load {_LIBRARY}: missing {name}") from e
        fn.restype = restype
        fn.argtypes = argtypes
    _lib = lib
    return lib


def _errno_text(rc: int) -> str:
    code = -rc
    return f"{errno.errorcode.get(code, str(code))} ({os.strerror(code)})"


def _version(lib: ctypes.CDLL) -> str:
    v = lib.seccomp_version()
    if not v:
        return "unknown version"
    return f"{v.contents.major}.{v.contents.minor}.{v.contents.micro}"


def preload() -> None:
    """Open libseccomp now; raises SeccompError if it is missing.

    Call it before pivot_root/chroot if the filter is compiled afterwards: the
    first `dlopen` searches the current root, which would then be the
    container's (missing there, or worse, the image's own libseccomp running
    inside the still-privileged runtime). Once opened, later uses reuse it.
    """
    _load_library()


def library_version() -> str:
    """libseccomp's version, e.g. `2.5.4`; raises SeccompError if it is missing."""
    return _version(_load_library())


def is_supported(*, status_path: str = "/proc/self/status") -> bool:
    """True if libseccomp loads and the kernel reports a `Seccomp:` status field."""
    try:
        _load_library()
        with open(status_path, "rb") as f:
            status = f.read()
    except (SeccompError, OSError):
        return False
    return any(line.startswith(b"Seccomp:") for line in status.splitlines())


class Filter:
    """A compiled libseccomp context; `release()` it (or let `__del__` do it).

    After `os.fork()` each process owns its own copy of the context: the child
    may `load()` it and both may release it.
    """

    __slots__ = ("_ctx", "warnings")

    def __init__(self, ctx: int, warnings: list[str]) -> None:
        self._ctx: int | None = ctx
        self.warnings = warnings

    def _live(self, op: str) -> tuple[ctypes.CDLL, int]:
        if self._ctx is None:
            raise SeccompError(f"{op}: filter already released")
        return _load_library(), self._ctx

    def export_pfc(self) -> str:
        """libseccomp's pseudo filter code, for tests and debugging."""
        lib, ctx = self._live("export seccomp filter")
        fd = os.memfd_create("seccomp-pfc", os.MFD_CLOEXEC)
        try:
            rc = lib.seccomp_export_pfc(ctx, fd)
            if rc < 0:
                raise SeccompError(f"export seccomp filter: {_errno_text(rc)}", errno=-rc)
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
        finally:
            os.close(fd)
        return b"".join(chunks).decode()

    def load(self) -> None:
        """seccomp_load into the calling process (and, with TSYNC, its threads).

        Does not set no_new_privs, so it needs CAP_SYS_ADMIN unless the caller
        has set NNP already.
        """
        lib, ctx = self._live("load seccomp filter")
        rc = lib.seccomp_load(ctx)
        if rc < 0:
            hint = ""
            if rc == -errno.EACCES:
                hint = ": without no_new_privs this needs CAP_SYS_ADMIN"
            raise SeccompError(f"load seccomp filter: {_errno_text(rc)}{hint}", errno=-rc)

    def release(self) -> None:
        """seccomp_release; idempotent."""
        ctx, self._ctx = self._ctx, None
        if ctx is not None:
            _load_library().seccomp_release(ctx)

    def __enter__(self) -> Filter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:
            pass  # interpreter shutdown: nothing left to report to


def _set_attr(lib: ctypes.CDLL, ctx: int, attr: int, value: int, what: str) -> None:
    rc = lib.seccomp_attr_set(ctx, attr, value)
    if rc < 0:
        raise SeccompError(f"{what}: {_errno_text(rc)}", errno=-rc)


def _add_rules(lib: ctypes.CDLL, ctx: int, plan: _Plan, rule: _Rule) -> set[int]:
    """Add one `syscalls[i]` entry; returns the syscall numbers it added rules for."""
    added = set()
    for j, name in enumerate(rule.names):
        field = f"{rule.field}.names[{j}]"
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr == _NR_SCMP_ERROR:
            plan.warnings.append(f'{field}: unknown syscall "{name}" skipped')
            continue
        arg_sets = _rule_arg_sets(rule.args) if rule.args else [[]]
        for arg_set in arg_sets:
            array = (_ArgCmp * len(arg_set))(*(_ArgCmp(*a) for a in arg_set))
            rc = lib.seccomp_rule_add_array(ctx, rule.action, nr, len(arg_set), array)
            if rc < 0:
                why = _errno_text(rc)
                if rc == -errno.EEXIST:
                    why += ": conflicts with an earlier rule for this syscall"
                raise SeccompError(f'{field}: add rule for syscall "{name}": {why}', errno=-rc)
        added.add(nr)
    return added


def compile_filter(section: Mapping[str, object]) -> Filter:
    """Validate `linux.seccomp` and build (not load) its libseccomp filter.

    Raises SeccompError naming the offending field, e.g.
    `linux.seccomp.syscalls[3].action: unknown action "SCMP_ACT_FOO"`.
    """
    plan = _parse(section)
    lib = _load_library()
    ctx = lib.seccomp_init(plan.default_action)
    if not ctx:
        raise SeccompError(
            f"{_FIELD}.defaultAction: create filter: action not supported by this kernel "
            f"or libseccomp {_version(lib)}"
        )
    flt = Filter(ctx, plan.warnings)
    try:
        _set_attr(lib, ctx, _ATTR_CTL_NNP, 0, f"{_FIELD}: disable no_new_privs on load")
        # Report the kernel's errno from seccomp_load, not libseccomp's ECANCELED.
        _set_attr(lib, ctx, _ATTR_API_SYSRAWRC, 1, f"{_FIELD}: enable raw return codes")
        for field, arch, lib_name in plan.arches:
            token = lib.seccomp_arch_resolve_name(lib_name.encode())
            if token == 0:
                raise SeccompError(
                    f'{field}: architecture "{arch}" not supported by libseccomp {_version(lib)}'
                )
            rc = lib.seccomp_arch_add(ctx, token)
            if rc == -errno.EEXIST:
                continue  # the native architecture, or listed twice
            if rc < 0:
                why = _errno_text(rc)
                if rc == -errno.EDOM:
                    why += ": endianness differs from the native architecture"
                raise SeccompError(f"{field}: add architecture {arch}: {why}", errno=-rc)
        for field, flag, attr in plan.flags:
            _set_attr(lib, ctx, attr, 1, f"{field}: set {flag}")
        syscalls: set[int] = set()
        for rule in plan.rules:
            if rule.action == plan.default_action:
                continue  # redundant, and libseccomp refuses it
            syscalls |= _add_rules(lib, ctx, plan, rule)
        if len(syscalls) > _OPTIMIZE_ABOVE:
            # Best effort (read when the BPF is generated): a binary search over
            # syscall numbers instead of a linear scan.
            lib.seccomp_attr_set(ctx, _ATTR_CTL_OPTIMIZE, 2)
    except BaseException:
        flt.release()
        raise
    return flt
