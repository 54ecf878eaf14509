"""The OCI lifecycle through the CLI, as a runc user sees it: create, start, state,
kill, delete, run, pause/resume, list, ps, --pid-file; checked from outside (state
JSON, /proc, /sys/fs/cgroup) and from inside (what the container writes).

`create` leaves the container holding the CLI's stdio, so it is run with its
output in files (`Containers.create`); a pipe would stay open until the container
exits, as with runc.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.runtime.support import alive, wait_for

pytestmark = pytest.mark.root

WAIT_FOR_GO = "while [ ! -e /tmp/go ]; do sleep 0.01; done; "
TRAP_TERM = 'trap "exit 71" TERM; sleep 1000 & wait'


def signals_caught(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("SigCgt:"):
                return int(line.split()[1], 16)
    raise AssertionError(f"no SigCgt in /proc/{pid}/status")


class Containers:
    """create/start helpers over the `runtime_cli` and `make_bundle` fixtures."""

    def __init__(self, cli: Any, make_bundle: Callable[..., tuple[Path, str]], tmp: Path):
        self.cli = cli
        self.make_bundle = make_bundle
        self.tmp = tmp

    def cgroup_dirs(self, container_id: str) -> list[str]:
        relative = f"{self.cli.cgroup_parent}/{container_id}".lstrip("/")
        return [os.path.join("/sys/fs/cgroup", c, relative) for c in os.listdir("/sys/fs/cgroup")]

    def create(
        self, container_id: str, bundle: Path, *flags: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """`create`, with the container's stdout in <tmp>/<id>.out."""
        return self.cli.create(
            bundle, container_id, *flags, stdout=self.tmp / f"{container_id}.out", check=check
        )

    def started(self, args: list[str], **kwargs: Any) -> tuple[str, int]:
        bundle, container_id = self.make_bundle(args, **kwargs)
        self.create(container_id, bundle)
        self.cli("start", container_id)
        return container_id, self.cli.state(container_id)["pid"]

    def output(self, container_id: str) -> str:
        return (self.tmp / f"{container_id}.out").read_text()


@pytest.fixture
def containers(runtime_cli: Any, make_bundle: Any, tmp_path: Path) -> Containers:
    return Containers(runtime_cli, make_bundle, tmp_path)


def shared_tmp(directory: Path) -> Callable[[dict[str, Any]], None]:
    """An edit binding a host directory read-write onto the container's /tmp."""
    directory.mkdir(exist_ok=True)

    def edit(config: dict[str, Any]) -> None:
        config["mounts"].append(
            {"destination": "/tmp", "type": "bind", "source": str(directory),
             "options": ["rbind", "rw"]}
        )  # fmt: skip

    return edit


def test_create_start_exit_delete(containers: Containers, runtime_cli: Any, tmp_path: Path):
    shared = tmp_path / "shared"
    bundle, cid = containers.make_bundle(
        ["sh", "-c", WAIT_FOR_GO + "echo bye; exit 3"], edit=shared_tmp(shared)
    )
    containers.create(cid, bundle)

    state = runtime_cli.state(cid)
    assert state["status"] == "created"
    assert state["id"] == cid
    assert state["bundle"] == str(bundle)
    assert state["ociVersion"].startswith("1.")
    pid = state["pid"]
    assert pid > 0 and alive(pid)
    assert os.path.isdir(runtime_cli.root / cid)
    for controller in ("memory", "pids", "freezer", "cpu"):
        directory = f"/sys/fs/cgroup/{controller}{runtime_cli.cgroup_parent}/{cid}"
        with open(f"{directory}/cgroup.procs") as f:
            assert str(pid) in f.read().split(), controller
    # Not exec'd before start: the user's process has not run.
    assert containers.output(cid) == ""

    runtime_cli("start", cid)
    assert runtime_cli.state(cid)["status"] == "running"
    wait_for(lambda: os.readlink(f"/proc/{pid}/exe").endswith("busybox"), "exec of sh")

    (shared / "go").touch()
    state = wait_for(
        lambda: (s := runtime_cli.state(cid))["status"] == "stopped" and "exitCode" in s and s,
        "the container to stop",
    )
    assert state["exitCode"] == 3
    assert state["pid"] == 0
    assert containers.output(cid) == "bye\n"

    runtime_cli("delete", cid)
    assert not os.path.exists(runtime_cli.root / cid)
    assert [d for d in containers.cgroup_dirs(cid) if os.path.exists(d)] == []
    assert not alive(pid)
    result = runtime_cli("state", cid, check=False)
    assert result.returncode != 0
    assert "does not exist" in result.stderr


def test_run_returns_the_exit_code_and_cleans_up(make_bundle: Any, runtime_cli: Any):
    bundle, cid = make_bundle(["sh", "-c", "echo out; echo err >&2; exit 42"])
    result = runtime_cli("run", "--bundle", str(bundle), cid, check=False)
    assert result.returncode == 42
    assert result.stdout == "out\n"
    assert result.stderr == "err\n"
    assert not os.path.exists(runtime_cli.root / cid)
    parent = runtime_cli.cgroup_parent
    assert not any(os.path.exists(f"/sys/fs/cgroup/{c}{parent}/{cid}")
                   for c in os.listdir("/sys/fs/cgroup"))  # fmt: skip


def test_run_keep_records_the_exit(make_bundle: Any, runtime_cli: Any):
    bundle, cid = make_bundle(["true"])
    assert runtime_cli("run", "--keep", "--bundle", str(bundle), cid).returncode == 0
    state = runtime_cli.state(cid)
    assert (state["status"], state["exitCode"], state["exitSignal"]) == ("stopped", 0, 0)
    runtime_cli("delete", cid)
    assert not os.path.exists(runtime_cli.root / cid)


def test_run_detach(make_bundle: Any, runtime_cli: Any, tmp_path: Path):
    bundle, cid = make_bundle(["sleep", "1000"])
    result = runtime_cli.detached("run", "-d", "-b", str(bundle), cid, check=False)
    assert result.returncode == 0, result.stderr
    state = runtime_cli.state(cid)
    assert state["status"] == "running"
    assert alive(state["pid"])
    runtime_cli("kill", cid, "KILL")
    stopped = wait_for(
        lambda: (s := runtime_cli.state(cid))["status"] == "stopped" and "exitCode" in s and s,
        "the container to stop",
    )
    assert (stopped["exitCode"], stopped["exitSignal"]) == (137, 9)


@pytest.mark.parametrize("name", ["TERM", "SIGTERM", "15", "term"])
def test_kill_term_reaches_the_process(containers: Containers, runtime_cli: Any, name: str):
    cid, pid = containers.started(["sh", "-c", TRAP_TERM])
    wait_for(lambda: signals_caught(pid) & 1 << (signal.SIGTERM - 1), "the TERM trap")
    runtime_cli("kill", cid, name)
    state = wait_for(
        lambda: (s := runtime_cli.state(cid))["status"] == "stopped" and "exitCode" in s and s,
        "the container to stop",
    )
    assert (state["exitCode"], state["exitSignal"]) == (71, 0)


def test_kill_defaults_to_term(containers: Containers, runtime_cli: Any):
    cid, pid = containers.started(["sh", "-c", TRAP_TERM])
    wait_for(lambda: signals_caught(pid) & 1 << (signal.SIGTERM - 1), "the TERM trap")
    runtime_cli("kill", cid)
    wait_for(lambda: runtime_cli.state(cid).get("exitCode") == 71, "exit code 71")


@pytest.mark.parametrize("name", ["KILL", "SIGKILL", "9"])
def test_kill_sigkill(containers: Containers, runtime_cli: Any, name: str):
    cid, pid = containers.started(["sleep", "1000"])
    runtime_cli("kill", cid, name)
    state = wait_for(
        lambda: (s := runtime_cli.state(cid))["status"] == "stopped" and "exitCode" in s and s,
        "the container to stop",
    )
    assert (state["exitCode"], state["exitSignal"]) == (137, 9)
    assert not alive(pid)


def test_kill_all_reaches_every_process(containers: Containers, runtime_cli: Any):
    cid, _ = containers.started(["sh", "-c", "sleep 1000 & sleep 1000 & wait"])
    pids = wait_for(
        lambda: len(p := json.loads(runtime_cli("ps", "--format", "json", cid).stdout)) == 3 and p,
        "three processes",
    )
    runtime_cli("kill", "--all", cid, "KILL")
    wait_for(lambda: not any(alive(p) for p in pids), "every process to die")
    assert runtime_cli.state(cid)["status"] == "stopped"


def test_kill_rejects_an_unknown_signal(containers: Containers, runtime_cli: Any):
    cid, _ = containers.started(["sleep", "1000"])
    result = runtime_cli("kill", cid, "SIGNOPE", check=False)
    assert result.returncode != 0
    assert "SIGNOPE" in result.stderr
    assert runtime_cli.state(cid)["status"] == "running"


def test_delete_running_needs_force(containers: Containers, runtime_cli: Any):
    cid, pid = containers.started(["sh", "-c", "sleep 1000 & sleep 1000 & wait"])
    children = wait_for(
        lambda: len(p := json.loads(runtime_cli("ps", "--format", "json", cid).stdout)) == 3 and p,
        "three processes",
    )

    result = runtime_cli("delete", cid, check=False)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1
    assert "running" in result.stderr and cid in result.stderr
    assert runtime_cli.state(cid)["status"] == "running"
    assert alive(pid)

    runtime_cli("delete", "--force", cid)
    assert not any(alive(p) for p in children)
    assert not os.path.exists(runtime_cli.root / cid)
    assert [d for d in containers.cgroup_dirs(cid) if os.path.exists(d)] == []


def test_delete_created_container(containers: Containers, runtime_cli: Any):
    bundle, cid = containers.make_bundle(["true"])
    containers.create(cid, bundle)
    pid = runtime_cli.state(cid)["pid"]
    # runc deletes a created container without --force; the runtime spec says
    # deleting a container that is not stopped must fail. kubeling follows the spec.
    result = runtime_cli("delete", cid, check=False)
    assert result.returncode != 0
    assert "created" in result.stderr
    assert alive(pid)
    runtime_cli("delete", "--force", cid)
    assert not alive(pid)
    assert not os.path.exists(runtime_cli.root / cid)
    assert [d for d in containers.cgroup_dirs(cid) if os.path.exists(d)] == []


def test_pause_freezes_and_resume_thaws(containers: Containers, runtime_cli: Any, tmp_path: Path):
    shared = tmp_path / "shared"
    ticks = shared / "ticks"
    cid, _ = containers.started(
        ["sh", "-c", "while :; do echo -n . >> /tmp/ticks; sleep 0.01; done"],
        edit=shared_tmp(shared),
    )
    wait_for(lambda: ticks.exists() and ticks.stat().st_size > 2, "the loop to tick")

    runtime_cli("pause", cid)
    assert runtime_cli.state(cid)["status"] == "paused"
    freezer = f"/sys/fs/cgroup/freezer{runtime_cli.cgroup_parent}/{cid}/freezer.state"
    with open(freezer) as f:
        assert f.read().strip() == "FROZEN"
    size = ticks.stat().st_size
    time.sleep(0.15)
    assert ticks.stat().st_size == size, "the paused container kept running"
    assert runtime_cli("pause", cid, check=False).returncode != 0

    runtime_cli("resume", cid)
    assert runtime_cli.state(cid)["status"] == "running"
    with open(freezer) as f:
        assert f.read().strip() == "THAWED"
    wait_for(lambda: ticks.stat().st_size > size, "the loop to tick again")
    assert runtime_cli("resume", cid, check=False).returncode != 0


def test_delete_force_of_a_paused_container(containers: Containers, runtime_cli: Any):
    cid, pid = containers.started(["sleep", "1000"])
    runtime_cli("pause", cid)
    runtime_cli("delete", "--force", cid)
    assert not alive(pid)
    assert [d for d in containers.cgroup_dirs(cid) if os.path.exists(d)] == []


def test_list_and_ps(containers: Containers, runtime_cli: Any):
    running, pid = containers.started(["sleep", "1000"])
    bundle, created = containers.make_bundle(["true"])
    containers.create(created, bundle)

    states = {s["id"]: s for s in json.loads(runtime_cli("list", "--format", "json").stdout)}
    assert set(states) == {running, created}
    assert states[running]["status"] == "running"
    assert states[running]["pid"] == pid
    assert states[created]["status"] == "created"
    assert sorted(runtime_cli("list", "-q").stdout.split()) == sorted([running, created])
    table = runtime_cli("list").stdout.splitlines()
    assert table[0].split()[:3] == ["ID", "PID", "STATUS"]
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert rows[running][1:3] == [str(pid), "running"]

    assert json.loads(runtime_cli("ps", "--format", "json", running).stdout) == [pid]
    ps = runtime_cli("ps", running).stdout.splitlines()
    assert "PID" in ps[0].split()
    column = ps[0].split().index("PID")
    assert [int(line.split()[column]) for line in ps[1:]] == [pid]


def test_list_with_no_containers(runtime_cli: Any):
    assert json.loads(runtime_cli("list", "--format", "json").stdout) == []


def test_pid_file(containers: Containers, runtime_cli: Any, tmp_path: Path):
    bundle, cid = containers.make_bundle(["true"])
    containers.create(cid, bundle, "--pid-file", str(tmp_path / "init.pid"))
    assert (tmp_path / "init.pid").read_text() == str(runtime_cli.state(cid)["pid"])


def test_state_json_fields(containers: Containers, runtime_cli: Any, busybox: Path):
    def annotate(config: dict[str, Any]) -> None:
        config["annotations"] = {"org.example/key": "value"}

    bundle, cid = containers.make_bundle(["true"], edit=annotate)
    containers.create(cid, bundle)
    state = runtime_cli.state(cid)
    assert state["annotations"] == {"org.example/key": "value"}
    assert state["rootfs"] == str(busybox)
    assert state["created"].endswith("Z")


def test_library_create_with_given_stdio(make_bundle: Any, runtime_cli: Any, tmp_path: Path):
    """A supervisor hands the container pipes for stdout and stderr (CRI logs)."""
    from runtime.container import Runtime

    bundle, cid = make_bundle(["sh", "-c", "read line; echo out:$line; echo err >&2"])
    runtime = Runtime(str(runtime_cli.root))
    stdin_read, stdin_write = os.pipe()
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    try:
        container = runtime.create(
            cid, str(bundle), monitor=False, stdio=(stdin_read, out_write, err_write)
        )
        for fd in (stdin_read, out_write, err_write):
            os.close(fd)
        runtime.start(cid)
        os.write(stdin_write, b"hello\n")
        os.close(stdin_write)
        assert runtime.wait_init(container, forward_signals=False) == 0
        with os.fdopen(out_read, "rb") as out, os.fdopen(err_read, "rb") as err:
            assert out.read() == b"out:hello\n"
            assert err.read() == b"err\n"
    finally:
        runtime.delete(cid, force=True)


def test_delete_kills_what_outlived_init_in_the_host_pid_namespace(
    make_bundle: Any, runtime_cli: Any, tmp_path: Path
):
    """Without a pid namespace a background child survives its init; delete of the
    stopped container kills it and removes the cgroup (as runc does)."""
    pid_file = tmp_path / "child.pid"

    def host_pid(config: dict[str, Any]) -> None:
        config["linux"]["namespaces"] = [
            ns for ns in config["linux"]["namespaces"] if ns["type"] != "pid"
        ]
        config["mounts"].append(
            {"destination": "/out", "type": "bind", "source": str(tmp_path), "options": ["rbind"]}
        )

    bundle, cid = make_bundle(
        ["sh", "-c", "sleep 300 & echo $! > /out/child.pid; exit 0"], edit=host_pid
    )
    runtime_cli.detached("run", "--detach", "--bundle", str(bundle), cid)
    wait_for(lambda: runtime_cli.state(cid)["status"] == "stopped", "init to exit")
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), "the child's pid")
    # The pid as the host sees it: the container shares the host's pid namespace.
    child = int(pid_file.read_text())
    assert alive(child)
    runtime_cli("delete", cid)
    wait_for(lambda: not alive(child), "the child to be killed")
    cgroup = f"/sys/fs/cgroup/pids{runtime_cli.cgroup_parent}/{cid}"
    assert not os.path.exists(cgroup)
