"""`exec`: another process in a running container, in its namespaces and cgroup,
with the container's process settings unless --env/--cwd/--user/--process say
otherwise; its exit code is exec's exit code."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.integration.runtime.support import alive, wait_for

pytestmark = pytest.mark.root


@pytest.fixture
def running(make_bundle: Any, runtime_cli: Any) -> tuple[str, int]:
    """A started container running `sleep 1000`: (id, host pid of its init)."""

    def edit(config: dict[str, Any]) -> None:
        config["hostname"] = "exec-box"
        config["process"]["env"].append("FROM_CONFIG=yes")

    bundle, cid = make_bundle(["sleep", "1000"], edit=edit)
    result = runtime_cli.create(bundle, cid, check=False)
    assert result.returncode == 0, result.stderr
    runtime_cli("start", cid)
    return cid, runtime_cli.state(cid)["pid"]


def test_exec_shares_the_namespaces(runtime_cli: Any, running: tuple[str, int]):
    cid, pid = running
    script = (
        "hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo; "
        "for n in pid net ipc uts mnt; do readlink /proc/self/ns/$n; done"
    )
    out = runtime_cli("exec", cid, "sh", "-c", script).stdout.splitlines()
    assert out[0] == "exec-box"
    assert out[1].strip() == "sleep 1000"
    host_view = [os.readlink(f"/proc/{pid}/ns/{n}") for n in ("pid", "net", "ipc", "uts", "mnt")]
    assert out[2:] == host_view


def test_exec_process_is_in_the_container_cgroup_and_pid_namespace(
    runtime_cli: Any, running: tuple[str, int]
):
    cid, _ = running
    out = runtime_cli("exec", cid, "sh", "-c", "echo $$; cat /proc/self/cgroup").stdout
    first, *cgroups = out.splitlines()
    assert int(first) > 1  # a pid of the container's namespace, not the host's
    path = f"{runtime_cli.cgroup_parent}/{cid}"
    memory = [line for line in cgroups if line.split(":")[1] == "memory"]
    assert memory and memory[0].split(":")[2] == path


def test_exec_inherits_the_process_settings(runtime_cli: Any, running: tuple[str, int]):
    cid, _ = running
    script = "echo $FROM_CONFIG; grep -E '^(CapEff|NoNewPrivs):' /proc/self/status; pwd"
    out = runtime_cli("exec", cid, "sh", "-c", script).stdout.split()
    assert out == ["yes", "CapEff:", "0000000020000420", "NoNewPrivs:", "1", "/"]


@pytest.mark.parametrize("code", [0, 3, 42])
def test_exec_exit_code_is_propagated(runtime_cli: Any, running: tuple[str, int], code: int):
    cid, _ = running
    result = runtime_cli("exec", cid, "sh", "-c", f"echo out; echo err >&2; exit {code}",
                         check=False)  # fmt: skip
    assert result.returncode == code
    assert (result.stdout, result.stderr) == ("out\n", "err\n")
    assert runtime_cli.state(cid)["status"] == "running"


def test_exec_killed_by_a_signal(runtime_cli: Any, running: tuple[str, int]):
    cid, _ = running
    result = runtime_cli("exec", cid, "sh", "-c", "kill -9 $$", check=False)
    assert result.returncode == 137


def test_exec_env_cwd_user(runtime_cli: Any, running: tuple[str, int]):
    cid, _ = running
    result = runtime_cli(
        "exec", "--env", "EXTRA=one two", "-e", "MORE=2", "--cwd", "/etc",
        "--user", "1000:1001", "--additional-gids", "5",
        cid, "sh", "-c", 'echo "$EXTRA|$MORE|$FROM_CONFIG"; pwd; id -u; id -g; id -G',
    )  # fmt: skip
    out = result.stdout.splitlines()
    assert out[:4] == ["one two|2|yes", "/etc", "1000", "1001"]
    assert "5" in out[4].split()


def test_exec_with_a_process_file(runtime_cli: Any, running: tuple[str, int], tmp_path: Path):
    cid, _ = running
    process = {
        "args": ["sh", "-c", "echo $ONLY; umask; grep NoNewPrivs /proc/self/status"],
        "env": ["ONLY=this", "PATH=/bin"],
        "cwd": "/tmp",
        "user": {"uid": 0, "gid": 0, "umask": 0o027},
        "noNewPrivileges": False,
    }
    (tmp_path / "process.json").write_text(json.dumps(process))
    out = runtime_cli("exec", "--process", str(tmp_path / "process.json"), cid).stdout
    assert out.split() == ["this", "0027", "NoNewPrivs:", "0"]


def test_exec_of_a_missing_binary_fails(runtime_cli: Any, running: tuple[str, int]):
    cid, _ = running
    result = runtime_cli("exec", cid, "/no/such/binary", check=False)
    assert result.returncode != 0
    assert "/no/such/binary" in result.stderr
    assert runtime_cli.state(cid)["status"] == "running"


def test_exec_detach_with_pid_file(runtime_cli: Any, running: tuple[str, int], tmp_path: Path):
    cid, init = running
    pid_file = tmp_path / "exec.pid"
    result = runtime_cli.detached(
        "exec", "--detach", "--pid-file", str(pid_file), cid, "sleep", "999", check=False
    )
    assert result.returncode == 0, result.stderr
    pid = int(pid_file.read_text())
    assert alive(pid)
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[:2] == [b"sleep", b"999"]
    assert os.readlink(f"/proc/{pid}/ns/pid") == os.readlink(f"/proc/{init}/ns/pid")
    assert pid in json.loads(runtime_cli("ps", "--format", "json", cid).stdout)
    runtime_cli("delete", "--force", cid)
    assert not alive(pid)


def test_exec_into_a_stopped_container_fails(make_bundle: Any, runtime_cli: Any):
    bundle, cid = make_bundle(["true"])
    runtime_cli("run", "--keep", "--bundle", str(bundle), cid)
    result = runtime_cli("exec", cid, "true", check=False)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1
    assert "stopped" in result.stderr


def test_exec_into_an_unknown_container_fails(runtime_cli: Any):
    result = runtime_cli("exec", "no-such-container", "true", check=False)
    assert result.returncode != 0
    assert "no-such-container" in result.stderr


def test_exec_into_a_paused_container_fails(runtime_cli: Any, running: tuple[str, int]):
    cid, _ = running
    runtime_cli("pause", cid)
    result = runtime_cli("exec", cid, "true", check=False)
    assert result.returncode != 0
    assert "paused" in result.stderr
    runtime_cli("resume", cid)


def test_exec_processes_die_with_the_container(runtime_cli: Any, running: tuple[str, int]):
    cid, _ = running
    pid_file = runtime_cli.root.parent / "exec.pid"
    runtime_cli.detached(
        "exec", "-d", "--pid-file", str(pid_file), cid, "sleep", "999", check=False
    )
    pid = int(pid_file.read_text())
    runtime_cli("kill", cid, "KILL")
    wait_for(lambda: not alive(pid), "the exec'd process to die with init")
    wait_for(lambda: runtime_cli.state(cid)["status"] == "stopped", "the container to stop")
