"""The container process's settings as config.json asks: capabilities, user and
groups, cwd, env, umask, rlimits, no_new_privs, oom_score_adj and seccomp, read
from inside (/proc/self/status, `id`, the shell's own view)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from runtime import seccomp
from runtime.bundle import DEFAULT_CAPABILITIES
from runtime.capabilities import CAPABILITY_NUMBERS
from tests.integration.runtime.support import Edit

pytestmark = pytest.mark.root

STATUS_FIELDS = "CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Uid|Gid|Groups|Seccomp"


def status(sh: Any, edit: Edit | None = None) -> dict[str, str]:
    """The container process's /proc/self/status fields of interest."""
    out = sh(f"grep -E '^({STATUS_FIELDS}):' /proc/self/status", edit).stdout
    return {key: value.strip() for key, _, value in (line.partition(":") for line in
                                                     out.splitlines())}  # fmt: skip


def mask(names: list[str]) -> str:
    value = 0
    for name in names:
        value |= 1 << CAPABILITY_NUMBERS[name]
    return f"{value:016x}"


def test_default_capabilities(sh: Any):
    fields = status(sh)
    expected = mask(DEFAULT_CAPABILITIES)
    assert fields["CapBnd"] == expected
    assert fields["CapPrm"] == expected
    assert fields["CapEff"] == expected
    assert fields["CapInh"] == "0" * 16
    assert fields["CapAmb"] == "0" * 16


def test_added_capability_is_held_and_works(sh: Any):
    def add_net_admin(config: dict[str, Any]) -> None:
        for kind in ("bounding", "effective", "permitted"):
            config["process"]["capabilities"][kind].append("CAP_NET_ADMIN")

    fields = status(sh, add_net_admin)
    assert fields["CapEff"] == mask([*DEFAULT_CAPABILITIES, "CAP_NET_ADMIN"])
    assert fields["CapBnd"] == fields["CapEff"]
    script = "ip link set lo down && cat /sys/class/net/lo/flags"
    assert int(sh(script, add_net_admin).stdout, 16) & 1 == 0  # IFF_UP cleared
    denied = sh(script, check=False)
    assert denied.returncode != 0
    assert "Operation not permitted" in denied.stderr


def test_capabilities_of_a_non_root_user(sh: Any):
    def user_with_ambient(config: dict[str, Any]) -> None:
        config["process"]["user"] = {"uid": 1000, "gid": 1000}
        caps = config["process"]["capabilities"]
        caps["inheritable"] = ["CAP_NET_BIND_SERVICE"]
        caps["ambient"] = ["CAP_NET_BIND_SERVICE"]

    fields = status(sh, user_with_ambient)
    assert fields["Uid"].split() == ["1000"] * 4
    # exec as non-root keeps only the ambient set (as with runc); the bounding set
    # is the configured one.
    ambient = mask(["CAP_NET_BIND_SERVICE"])
    assert (fields["CapEff"], fields["CapPrm"], fields["CapInh"], fields["CapAmb"]) == (
        ambient, ambient, ambient, ambient,
    )  # fmt: skip
    assert fields["CapBnd"] == mask(DEFAULT_CAPABILITIES)


def test_unknown_capability_name_is_refused(make_bundle: Any, runtime_cli: Any):
    def add_unknown(config: dict[str, Any]) -> None:
        config["process"]["capabilities"]["bounding"].append("CAP_FROM_THE_FUTURE")

    bundle, cid = make_bundle(["true"], edit=add_unknown)
    result = runtime_cli("run", "--bundle", str(bundle), cid, check=False)
    assert result.returncode == 1
    assert "process.capabilities.bounding[3]: unknown capability" in result.stderr
    assert "CAP_FROM_THE_FUTURE" in result.stderr


def test_user_group_and_additional_groups(sh: Any):
    def user(config: dict[str, Any]) -> None:
        config["process"]["user"] = {"uid": 1234, "gid": 5, "additionalGids": [10, 65534]}

    fields = status(sh, user)
    assert fields["Uid"].split() == ["1234"] * 4
    assert fields["Gid"].split() == ["5"] * 4
    assert sorted(map(int, fields["Groups"].split())) == [10, 65534]
    assert sh("id -u; id -g; id -gn", user).stdout.split() == ["1234", "5", "tty"]


def test_root_has_no_supplementary_groups(sh: Any):
    assert status(sh)["Groups"] == ""


def test_cwd(sh: Any):
    def cwd(config: dict[str, Any]) -> None:
        config["process"]["cwd"] = "/etc"

    assert sh("pwd; ls passwd", cwd).stdout.split() == ["/etc", "passwd"]


def test_env(sh: Any):
    def env(config: dict[str, Any]) -> None:
        config["process"]["env"] += ["GREETING=hello world", "EMPTY=", "EQ=a=b"]

    out = sh('echo "$GREETING|$EMPTY|$EQ|$TERM"; env | grep -c .', env).stdout.splitlines()
    assert out[0] == "hello world|a=b|xterm".replace("|a", "||a")
    # PATH, TERM, the three above and the shell's own PWD/SHLVL at most.
    assert int(out[1]) <= 7


def test_args_are_passed_verbatim(make_bundle: Any, runtime_cli: Any):
    bundle, cid = make_bundle(["echo", "a b", "", "$HOME", "*"])
    result = runtime_cli("run", "--bundle", str(bundle), cid)
    assert result.stdout == "a b  $HOME *\n"


def test_umask(sh: Any):
    def umask(config: dict[str, Any]) -> None:
        config["process"]["user"]["umask"] = 0o077

    assert sh("umask", umask).stdout.strip() == "0077"
    assert sh("umask").stdout.strip() == "0022"


def test_rlimits(sh: Any):
    def limits(config: dict[str, Any]) -> None:
        config["process"]["rlimits"] = [
            {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 2048},
            {"type": "RLIMIT_NPROC", "soft": 300, "hard": 400},
            {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
        ]

    out = sh("ulimit -n; ulimit -Hn; cat /proc/self/limits", limits).stdout.splitlines()
    assert out[:2] == ["512", "2048"]
    table = {line[:26].strip(): line[26:].split()[:2] for line in out[3:]}
    assert table["Max open files"] == ["512", "2048"]
    assert table["Max processes"] == ["300", "400"]
    assert table["Max core file size"] == ["0", "0"]


def test_no_new_privileges(sh: Any):
    def allow_privs(config: dict[str, Any]) -> None:
        config["process"]["noNewPrivileges"] = False

    assert status(sh)["NoNewPrivs"] == "1"
    assert status(sh, allow_privs)["NoNewPrivs"] == "0"


def test_oom_score_adj_above_the_current_applies(sh: Any):
    def oom(config: dict[str, Any]) -> None:
        config["process"]["oomScoreAdj"] = 500

    assert sh("cat /proc/self/oom_score_adj", oom).stdout.strip() == "500"


def _can_lower_oom_score_adj() -> bool:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write("-1000")
        except OSError:
            os._exit(1)
        os._exit(0)
    return os.waitpid(pid, 0)[1] == 0


def test_oom_score_adj_below_the_current_is_clamped_with_a_warning(
    make_bundle: Any, runtime_cli: Any
):
    if _can_lower_oom_score_adj():
        pytest.skip("this process may lower oom_score_adj (CAP_SYS_RESOURCE)")
    with open("/proc/self/oom_score_adj") as f:
        current = f.read().strip()

    def oom(config: dict[str, Any]) -> None:
        config["process"]["oomScoreAdj"] = -1000

    bundle, cid = make_bundle(["cat", "/proc/self/oom_score_adj"], edit=oom)
    result = runtime_cli("run", "--bundle", str(bundle), cid, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == current
    assert "level=warning" in result.stderr
    assert "oomScoreAdj -1000" in result.stderr


needs_seccomp = pytest.mark.skipif(
    not seccomp.is_supported(), reason="needs libseccomp and seccomp filters"
)


def _seccomp_errno_for_mkdir(errno_ret: int | None) -> Edit:
    def edit(config: dict[str, Any]) -> None:
        # A writable /tmp, so only the filter can make mkdir fail.
        config["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"})
        rule: dict[str, Any] = {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}
        if errno_ret is not None:
            rule["errnoRet"] = errno_ret
        config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule]}

    return edit


@needs_seccomp
def test_seccomp_errno_rule(sh: Any):
    script = (
        "mkdir /tmp/d; echo rc=$?; touch /tmp/f && echo touched; grep Seccomp: /proc/self/status"
    )
    result = sh(script, _seccomp_errno_for_mkdir(None))
    assert result.stdout.split("\n")[:2] == ["rc=1", "touched"]
    assert result.stdout.split()[-1] == "2"  # SECCOMP_MODE_FILTER
    assert "Operation not permitted" in result.stderr
    # Without the filter the same mkdir works.
    no_filter = _seccomp_errno_for_mkdir(None)

    def without(config: dict[str, Any]) -> None:
        no_filter(config)
        del config["linux"]["seccomp"]

    assert sh("mkdir /tmp/d && echo made", without).stdout == "made\n"


@needs_seccomp
@pytest.mark.parametrize(
    ("errno_ret", "message"), [(13, "Permission denied"), (38, "Function not implemented")]
)
def test_seccomp_errno_ret(sh: Any, errno_ret: int, message: str):
    result = sh("mkdir /tmp/d; echo rc=$?", _seccomp_errno_for_mkdir(errno_ret))
    assert result.stdout == "rc=1\n"
    assert message in result.stderr


@needs_seccomp
def test_seccomp_with_new_privileges_allowed(sh: Any):
    # Without no_new_privs the filter is loaded while CAP_SYS_ADMIN is still held.
    edit = _seccomp_errno_for_mkdir(1)

    def allow_privs(config: dict[str, Any]) -> None:
        edit(config)
        config["process"]["noNewPrivileges"] = False

    result = sh("mkdir /tmp/d; echo rc=$?; grep NoNewPrivs /proc/self/status", allow_privs)
    assert result.stdout.split() == ["rc=1", "NoNewPrivs:", "0"]
    assert "Operation not permitted" in result.stderr
