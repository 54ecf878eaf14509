"""runtime.seccomp: validation and the filter libseccomp builds (no root, no load)."""

from __future__ import annotations

import ctypes
import errno
from typing import Any

import pytest

from runtime import seccomp
from runtime.errors import RuntimeFailure

try:
    seccomp.library_version()
except seccomp.SeccompError as e:  # pragma: no cover - depends on the machine
    pytest.skip(f"libseccomp not available: {e}", allow_module_level=True)

ALLOW = "SCMP_ACT_ALLOW"


def pfc(section: dict[str, Any]) -> str:
    with seccomp.compile_filter(section) as flt:
        return flt.export_pfc()


def native_block(text: str) -> str:
    """The pseudo filter code of the first (native) architecture only."""
    return text.split("# filter for arch ")[1]


def test_argcmp_struct_layout_matches_seccomp_h() -> None:
    assert ctypes.sizeof(seccomp._ArgCmp) == 24
    offsets = [getattr(seccomp._ArgCmp, f).offset for f in ("arg", "op", "datum_a", "datum_b")]
    assert offsets == [0, 4, 8, 16]


def test_library_version() -> None:
    assert seccomp.library_version().startswith("2.")


def test_seccomp_error_is_a_runtime_failure() -> None:
    assert issubclass(seccomp.SeccompError, RuntimeFailure)


@pytest.mark.parametrize(
    ("section", "action"),
    [
        ({"defaultAction": "SCMP_ACT_ALLOW"}, "ALLOW"),
        ({"defaultAction": "SCMP_ACT_KILL"}, "KILL"),
        ({"defaultAction": "SCMP_ACT_KILL_THREAD"}, "KILL"),
        ({"defaultAction": "SCMP_ACT_KILL_PROCESS"}, "KILL_PROCESS"),
        ({"defaultAction": "SCMP_ACT_TRAP"}, "TRAP"),
        ({"defaultAction": "SCMP_ACT_LOG"}, "LOG"),
        ({"defaultAction": "SCMP_ACT_ERRNO"}, "ERRNO(1)"),
        ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38}, "ERRNO(38)"),
        ({"defaultAction": "SCMP_ACT_TRACE"}, "TRACE(1)"),
        ({"defaultAction": "SCMP_ACT_TRACE", "defaultErrnoRet": 7}, "TRACE(7)"),
        ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": None}, "ERRNO(1)"),
    ],
)
def test_default_action(section: dict[str, Any], action: str) -> None:
    text = pfc(section)
    assert f"  # default action\n  action {action};\n" in text


def test_errno_rule_for_mkdir() -> None:
    text = pfc(
        {
            "defaultAction": ALLOW,
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
        }
    )
    assert '# filter for syscall "mkdir" (83)' in text or '# filter for syscall "mkdir"' in text
    assert "action ERRNO(1);" in text
    assert "action ALLOW;" in text


def test_errno_defaults_to_eperm_and_errno_ret_is_used() -> None:
    text = pfc(
        {
            "defaultAction": ALLOW,
            "syscalls": [
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS},
                {"names": ["getcwd"], "action": "SCMP_ACT_TRACE", "errnoRet": 42},
            ],
        }
    )
    block = native_block(text)
    assert f"action ERRNO({errno.EPERM});" in block
    assert f"action ERRNO({errno.ENOSYS});" in block
    assert "action TRACE(42);" in block


@pytest.mark.parametrize(
    "action",
    ["SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP", "SCMP_ACT_LOG"],
)
def test_other_rule_actions(action: str) -> None:
    text = native_block(
        pfc({"defaultAction": ALLOW, "syscalls": [{"names": ["mkdir"], "action": action}]})
    )
    expected = {"SCMP_ACT_KILL_THREAD": "KILL"}.get(action, action.removeprefix("SCMP_ACT_"))
    assert f"action {expected};" in text


def test_several_names_in_one_rule() -> None:
    text = native_block(
        pfc(
            {
                "defaultAction": ALLOW,
                "syscalls": [{"names": ["mkdir", "rmdir", "chdir"], "action": "SCMP_ACT_ERRNO"}],
            }
        )
    )
    for name in ("mkdir", "rmdir", "chdir"):
        assert f'# filter for syscall "{name}"' in text


def test_rule_with_default_action_is_skipped() -> None:
    text = pfc(
        {
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},  # same as default: skipped
                {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},  # differs
                {"names": ["getpid"], "action": ALLOW},
            ],
        }
    )
    assert '"mkdir"' not in text
    assert '"rmdir"' in text
    assert '"getpid"' in text


def test_kill_and_kill_thread_are_the_same_action() -> None:
    text = pfc(
        {
            "defaultAction": "SCMP_ACT_KILL",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_KILL_THREAD"}],
        }
    )
    assert '"mkdir"' not in text


def test_arg_comparison_eq_on_64_bit_value() -> None:
    text = native_block(
        pfc(
            {
                "defaultAction": ALLOW,
                "syscalls": [
                    {
                        "names": ["personality"],
                        "action": "SCMP_ACT_ERRNO",
                        "args": [{"index": 0, "value": 0x1_0000_0008, "op": "SCMP_CMP_EQ"}],
                    }
                ],
            }
        )
    )
    assert "if ($a0.hi32 == 1)" in text
    assert "if ($a0.lo32 == 8)" in text


def test_arg_comparison_masked_eq_uses_value_as_mask_and_value_two() -> None:
    text = native_block(
        pfc(
            {
                "defaultAction": ALLOW,
                "syscalls": [
                    {
                        "names": ["clone"],
                        "action": "SCMP_ACT_ERRNO",
                        "args": [
                            {
                                "index": 0,
                                "value": 0x7E020000,
                                "valueTwo": 0x20000,
                                "op": "SCMP_CMP_MASKED_EQ",
                            }
                        ],
                    }
                ],
            }
        )
    )
    assert "if ($a0.lo32 & 0x7e020000 == 131072)" in text


def test_arg_comparisons_on_different_indexes_are_anded() -> None:
    text = native_block(
        pfc(
            {
                "defaultAction": ALLOW,
                "syscalls": [
                    {
                        "names": ["kill"],
                        "action": "SCMP_ACT_ERRNO",
                        "args": [
                            {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                            {"index": 1, "value": 9, "op": "SCMP_CMP_EQ"},
                        ],
                    }
                ],
            }
        )
    )
    # nested: a1 is only checked inside the a0 branch
    lines = [line.strip() for line in text.splitlines()]
    a0 = lines.index("if ($a0.lo32 == 1)")
    assert "if ($a1.lo32 == 9)" in lines[a0:]
    assert text.count("action ERRNO(1);") == 1


def test_arg_comparisons_on_the_same_index_become_separate_rules() -> None:
    text = native_block(
        pfc(
            {
                "defaultAction": ALLOW,
                "syscalls": [
                    {
                        "names": ["kill"],
                        "action": "SCMP_ACT_ERRNO",
                        "args": [
                            {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                            {"index": 0, "value": 3, "op": "SCMP_CMP_EQ"},
                        ],
                    }
                ],
            }
        )
    )
    assert "if ($a0.lo32 == 1)" in text
    assert "if ($a0.lo32 == 3)" in text
    assert text.count("action ERRNO(1);") == 2  # one per rule: they OR


@pytest.mark.parametrize(
    ("op", "line"),
    [
        ("SCMP_CMP_NE", "if ($a0.lo32 == 18)"),  # NE is rendered as == with an else branch
        ("SCMP_CMP_LT", "if ($a0.lo32 >= 18)"),
        ("SCMP_CMP_LE", "if ($a0.lo32 > 18)"),
        ("SCMP_CMP_GE", "if ($a0.lo32 >= 18)"),
        ("SCMP_CMP_GT", "if ($a0.lo32 > 18)"),
    ],
)
def test_each_operator_compiles(op: str, line: str) -> None:
    text = native_block(
        pfc(
            {
                "defaultAction": ALLOW,
                "syscalls": [
                    {
                        "names": ["umask"],
                        "action": "SCMP_ACT_ERRNO",
                        "args": [{"index": 0, "value": 18, "op": op}],
                    }
                ],
            }
        )
    )
    assert line in text


def test_architectures_add_to_the_native_one() -> None:
    text = pfc(
        {
            "defaultAction": ALLOW,
            "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}],
        }
    )
    native = seccomp._load_library().seccomp_arch_native()
    assert text.startswith("#\n# pseudo filter code start\n#\n# filter for arch ")
    assert f"({native})" in text.splitlines()[3]  # the native arch comes first
    if native == 0xC000003E:  # x86_64: x86 and x32 appear as well
        assert "# filter for arch x86 (1073741827)" in text
        assert "# filter for arch x32 (" in text
        assert '# filter for syscall "mkdir" (39)' in text  # i386 number


def test_native_architecture_listed_again_is_fine() -> None:
    arch = {
        0xC000003E: "SCMP_ARCH_X86_64",
        0xC00000B7: "SCMP_ARCH_AARCH64",
    }.get(seccomp._load_library().seccomp_arch_native())
    if arch is None:
        pytest.skip("native arch not in this test's table")
    text = pfc({"defaultAction": ALLOW, "architectures": [arch, arch]})
    assert text.count("# filter for arch ") == 1


def test_unknown_syscall_names_are_skipped_with_a_warning() -> None:
    with seccomp.compile_filter(
        {
            "defaultAction": ALLOW,
            "syscalls": [
                {"names": ["no_such_syscall", "mkdir"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["also_missing"], "action": "SCMP_ACT_KILL"},
            ],
        }
    ) as flt:
        assert flt.warnings == [
            'linux.seccomp.syscalls[0].names[0]: unknown syscall "no_such_syscall" skipped',
            'linux.seccomp.syscalls[1].names[0]: unknown syscall "also_missing" skipped',
        ]
        text = flt.export_pfc()
    assert '"mkdir"' in text
    assert "no_such_syscall" not in text


def test_syscalls_of_other_arches_resolve_to_pseudo_numbers() -> None:
    # socketcall does not exist on x86_64 but libseccomp knows it (as runc relies on)
    with seccomp.compile_filter(
        {
            "defaultAction": ALLOW,
            "syscalls": [{"names": ["socketcall"], "action": "SCMP_ACT_ERRNO"}],
        }
    ) as flt:
        assert flt.warnings == []


def test_no_warnings_for_a_clean_profile() -> None:
    with seccomp.compile_filter({"defaultAction": ALLOW}) as flt:
        assert flt.warnings == []


@pytest.mark.parametrize(
    "flag",
    ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
)
def test_supported_flags(flag: str) -> None:
    with seccomp.compile_filter({"defaultAction": ALLOW, "flags": [flag]}) as flt:
        assert flt.warnings == []


def test_wait_killable_recv_is_ignored_with_a_warning() -> None:
    with seccomp.compile_filter(
        {"defaultAction": ALLOW, "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}
    ) as flt:
        assert len(flt.warnings) == 1
        assert flt.warnings[0].startswith(
            "linux.seccomp.flags[0]: SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"
        )


def test_many_rules_use_the_binary_tree() -> None:
    names = [
        "read", "write", "openat", "close", "getpid", "mmap", "munmap", "brk", "futex",
        "exit_group", "exit", "getcwd", "lseek", "fstat", "newfstatat", "rt_sigprocmask",
        "rt_sigaction", "rt_sigreturn", "madvise", "mremap", "getrandom", "ioctl", "fcntl",
        "dup", "dup2", "dup3", "pipe2", "wait4", "kill", "getuid", "geteuid", "getgid",
        "getegid", "uname",
    ]  # fmt: skip
    text = pfc(
        {
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": [n], "action": ALLOW} for n in names],
        }
    )
    assert "if ($syscall > " in text  # binary search over syscall numbers
    for name in names:
        assert f'"{name}"' in text


def test_binary_tree_counts_syscalls_not_entries() -> None:
    names = [
        "read", "write", "openat", "close", "getpid", "mmap", "munmap", "brk", "futex",
        "exit_group", "exit", "getcwd", "lseek", "fstat", "newfstatat", "rt_sigprocmask",
        "rt_sigaction", "rt_sigreturn", "madvise", "mremap", "getrandom", "ioctl", "fcntl",
        "dup", "dup2", "dup3", "pipe2", "wait4", "kill", "getuid", "geteuid", "getgid",
        "getegid", "uname",
    ]  # fmt: skip
    one_entry = pfc(
        {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": names, "action": ALLOW}]}
    )
    assert "if ($syscall > " in one_entry
    few = pfc(
        {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": names[:5], "action": ALLOW}]}
    )
    assert "if ($syscall > " not in few
    # 34 entries that are all skipped (same as the default): no tree over nothing
    skipped = pfc(
        {"defaultAction": ALLOW, "syscalls": [{"names": [n], "action": ALLOW} for n in names]}
    )
    assert "if ($syscall" not in skipped
    assert "  action ALLOW;\n" in skipped


def test_release_is_idempotent_and_final() -> None:
    flt = seccomp.compile_filter({"defaultAction": ALLOW})
    flt.release()
    flt.release()
    with pytest.raises(
        seccomp.SeccompError, match=r"^export seccomp filter: filter already released$"
    ):
        flt.export_pfc()
    with pytest.raises(
        seccomp.SeccompError, match=r"^load seccomp filter: filter already released$"
    ):
        flt.load()


def test_unreleased_filter_is_released_by_del() -> None:
    flt = seccomp.compile_filter({"defaultAction": ALLOW})
    del flt  # must not crash or leak an exception


def test_is_supported(tmp_path: Any) -> None:
    assert seccomp.is_supported() is True
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nNoNewPrivs:\t0\n")
    assert seccomp.is_supported(status_path=str(status)) is False
    status.write_text("Name:\tpython\nSeccomp:\t0\nSeccomp_filters:\t0\n")
    assert seccomp.is_supported(status_path=str(status)) is True
    assert seccomp.is_supported(status_path=str(tmp_path / "missing")) is False


def test_missing_library_is_a_seccomp_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seccomp, "_lib", None)
    monkeypatch.setattr(seccomp, "_LIBRARY", "libseccomp-does-not-exist.so.9")
    with pytest.raises(seccomp.SeccompError, match=r"^load libseccomp-does-not-exist\.so\.9: "):
        seccomp.compile_filter({"defaultAction": ALLOW})
    with pytest.raises(seccomp.SeccompError, match=r"^load libseccomp-does-not-exist\.so\.9: "):
        seccomp.preload()
    assert seccomp.is_supported() is False


def _rule(**kw: Any) -> dict[str, Any]:
    return {
        "defaultAction": ALLOW,
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", **kw}],
    }


def _arg(**kw: Any) -> dict[str, Any]:
    return _rule(args=[{"index": 0, "value": 1, "op": "SCMP_CMP_EQ", **kw}])


BAD = [
    ([], "linux.seccomp: expected an object, got array"),
    ({}, "linux.seccomp.defaultAction: required"),
    ({"defaultAction": 3}, "linux.seccomp.defaultAction: expected a string, got number"),
    (
        {"defaultAction": "SCMP_ACT_FOO"},
        'linux.seccomp.defaultAction: unknown action "SCMP_ACT_FOO"',
    ),
    (
        {"defaultAction": "SCMP_ACT_NOTIFY"},
        "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY is not supported",
    ),
    (
        {"defaultAction": ALLOW, "defaultErrnoRet": 1},
        "linux.seccomp.defaultErrnoRet: not allowed with SCMP_ACT_ALLOW",
    ),
    (
        {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": -1},
        "linux.seccomp.defaultErrnoRet: -1 out of range 0..65535",
    ),
    (
        {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 65536},
        "linux.seccomp.defaultErrnoRet: 65536 out of range 0..65535",
    ),
    (
        {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": True},
        "linux.seccomp.defaultErrnoRet: expected an unsigned integer, got boolean",
    ),
    (
        {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": "1"},
        "linux.seccomp.defaultErrnoRet: expected an unsigned integer, got string",
    ),
    (
        {"defaultAction": ALLOW, "architectures": "x86"},
        "linux.seccomp.architectures: expected an array, got string",
    ),
    (
        {"defaultAction": ALLOW, "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_PDP11"]},
        'linux.seccomp.architectures[1]: unknown architecture "SCMP_ARCH_PDP11"',
    ),
    (
        {"defaultAction": ALLOW, "architectures": [None]},
        "linux.seccomp.architectures[0]: expected a string, got null",
    ),
    (
        {"defaultAction": ALLOW, "flags": ["SECCOMP_FILTER_FLAG_FOO"]},
        'linux.seccomp.flags[0]: unknown flag "SECCOMP_FILTER_FLAG_FOO"',
    ),
    ({"defaultAction": ALLOW, "flags": {}}, "linux.seccomp.flags: expected an array, got object"),
    (
        {"defaultAction": ALLOW, "listenerMetadata": "x"},
        "linux.seccomp.listenerMetadata: set without listenerPath",
    ),
    (
        {"defaultAction": ALLOW, "syscalls": {}},
        "linux.seccomp.syscalls: expected an array, got object",
    ),
    (
        {"defaultAction": ALLOW, "syscalls": ["mkdir"]},
        "linux.seccomp.syscalls[0]: expected an object, got string",
    ),
    (
        {"defaultAction": ALLOW, "syscalls": [{"action": ALLOW}]},
        "linux.seccomp.syscalls[0].names: required",
    ),
    (
        {"defaultAction": ALLOW, "syscalls": [{"names": [], "action": ALLOW}]},
        "linux.seccomp.syscalls[0].names: must contain at least one entry",
    ),
    (
        {"defaultAction": ALLOW, "syscalls": [{"names": "mkdir", "action": ALLOW}]},
        "linux.seccomp.syscalls[0].names: expected an array, got string",
    ),
    (
        {"defaultAction": ALLOW, "syscalls": [{"names": ["mkdir", ""], "action": ALLOW}]},
        "linux.seccomp.syscalls[0].names[1]: empty syscall name",
    ),
    (
        {"defaultAction": ALLOW, "syscalls": [{"names": ["mkdir", 83], "action": ALLOW}]},
        "linux.seccomp.syscalls[0].names[1]: expected a string, got number",
    ),
    (
        {"defaultAction": ALLOW, "syscalls": [{"names": ["mkdir"]}]},
        "linux.seccomp.syscalls[0].action: required",
    ),
    (
        {
            "defaultAction": ALLOW,
            "syscalls": [{"names": ["a"], "action": ALLOW}] * 3
            + [{"names": ["mkdir"], "action": "SCMP_ACT_FOO"}],
        },
        'linux.seccomp.syscalls[3].action: unknown action "SCMP_ACT_FOO"',
    ),
    (
        {"defaultAction": ALLOW, "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]},
        "linux.seccomp.syscalls[0].action: SCMP_ACT_NOTIFY is not supported",
    ),
    (_rule(errnoRet=70000), "linux.seccomp.syscalls[0].errnoRet: 70000 out of range 0..65535"),
    (
        {
            "defaultAction": ALLOW,
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_KILL", "errnoRet": 1}],
        },
        "linux.seccomp.syscalls[0].errnoRet: not allowed with SCMP_ACT_KILL",
    ),
    (_rule(args={}), "linux.seccomp.syscalls[0].args: expected an array, got object"),
    (_rule(args=[1]), "linux.seccomp.syscalls[0].args[0]: expected an object, got number"),
    (
        _rule(args=[{"value": 1, "op": "SCMP_CMP_EQ"}]),
        "linux.seccomp.syscalls[0].args[0].index: required",
    ),
    (
        _rule(args=[{"index": 0, "op": "SCMP_CMP_EQ"}]),
        "linux.seccomp.syscalls[0].args[0].value: required",
    ),
    (_rule(args=[{"index": 0, "value": 1}]), "linux.seccomp.syscalls[0].args[0].op: required"),
    (_arg(index=6), "linux.seccomp.syscalls[0].args[0].index: 6 out of range 0..5"),
    (
        _arg(value=-1),
        "linux.seccomp.syscalls[0].args[0].value: -1 out of range 0..18446744073709551615",
    ),
    (
        _arg(value=2**64),
        "linux.seccomp.syscalls[0].args[0].value: 18446744073709551616 out of range",
    ),
    (
        _arg(value=1.5),
        "linux.seccomp.syscalls[0].args[0].value: expected an unsigned integer, got number",
    ),
    (
        _arg(valueTwo="2"),
        "linux.seccomp.syscalls[0].args[0].valueTwo: expected an unsigned integer, got string",
    ),
    (
        _arg(op="SCMP_CMP_FOO"),
        'linux.seccomp.syscalls[0].args[0].op: unknown operator "SCMP_CMP_FOO"',
    ),
    (_arg(op=4), "linux.seccomp.syscalls[0].args[0].op: expected a string, got number"),
]


@pytest.mark.parametrize(("section", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_input_names_the_field(section: Any, message: str) -> None:
    with pytest.raises(seccomp.SeccompError) as info:
        seccomp.compile_filter(section)
    assert str(info.value).startswith(message)
    assert info.value.errno is None


def test_architecture_unknown_to_libseccomp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(seccomp._ARCHES, "SCMP_ARCH_FUTURE", "future64")
    with pytest.raises(
        seccomp.SeccompError,
        match=(
            r'^linux\.seccomp\.architectures\[0\]: architecture "SCMP_ARCH_FUTURE" '
            r"not supported by libseccomp 2\."
        ),
    ):
        seccomp.compile_filter({"defaultAction": ALLOW, "architectures": ["SCMP_ARCH_FUTURE"]})


def test_architecture_of_other_endianness_is_refused() -> None:
    if seccomp._load_library().seccomp_arch_native() & 0x40000000 == 0:
        pytest.skip("native arch is big-endian")
    with pytest.raises(seccomp.SeccompError) as info:
        seccomp.compile_filter({"defaultAction": ALLOW, "architectures": ["SCMP_ARCH_S390X"]})
    assert str(info.value).startswith(
        "linux.seccomp.architectures[0]: add architecture SCMP_ARCH_S390X: EDOM"
    )
    assert info.value.errno == errno.EDOM


def test_unknown_keys_are_ignored() -> None:
    with seccomp.compile_filter(
        {
            "defaultAction": ALLOW,
            "listenerPath": "/run/agent.sock",  # ignored without SCMP_ACT_NOTIFY
            "comment": "x",
            "syscalls": [
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "comment": "y", "args": None}
            ],
        }
    ) as flt:
        assert '"mkdir"' in flt.export_pfc()
