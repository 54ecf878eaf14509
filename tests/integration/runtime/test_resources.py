"""linux.resources on the real cgroup hierarchies: limits enforced (memory: the
process is OOM-killed; pids: fork fails), values visible in the container's
cgroup files from outside and, with a cgroup mount, from inside, and `update`
changing a live container's limits."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.runtime.support import wait_for

pytestmark = pytest.mark.root

MiB = 1 << 20


def cgroup_file(cli: Any, container_id: str, controller: str, name: str) -> str:
    with open(f"/sys/fs/cgroup/{controller}{cli.cgroup_parent}/{container_id}/{name}") as f:
        return f.read().strip()


def resources(**sections: Any) -> Callable[[dict[str, Any]], None]:
    def edit(config: dict[str, Any]) -> None:
        config["linux"]["resources"].update(sections)

    return edit


def started(cli: Any, make_bundle: Any, **sections: Any) -> str:
    bundle, cid = make_bundle(["sleep", "1000"], edit=resources(**sections))
    cli.create(bundle, cid)
    cli("start", cid)
    return cid


@pytest.mark.parametrize(
    "hog",
    [
        ["tail", "/dev/zero"],  # one endless "line", buffered whole
        ["sh", "-c", 'x=$(head -c 100000000 /dev/zero | tr "\\0" a); echo survived'],
    ],
    ids=["tail", "command-substitution"],
)
def test_memory_limit_oom_kills(make_bundle: Any, runtime_cli: Any, hog: list[str]):
    bundle, cid = make_bundle(hog, edit=resources(memory={"limit": 20 * MiB}))
    result = runtime_cli("run", "--keep", "--bundle", str(bundle), cid, check=False)
    assert result.returncode == 137, result.stderr
    assert "survived" not in result.stdout
    state = runtime_cli.state(cid)
    assert (state["exitCode"], state["exitSignal"]) == (137, 9)
    assert cgroup_file(runtime_cli, cid, "memory", "memory.limit_in_bytes") == str(20 * MiB)
    oom = dict(
        line.split() for line in cgroup_file(runtime_cli, cid, "memory", "memory.oom_control")
        .splitlines()
    )  # fmt: skip
    assert int(oom.get("oom_kill", "1")) >= 1
    assert int(cgroup_file(runtime_cli, cid, "memory", "memory.failcnt")) > 0
    runtime_cli("delete", cid)


def test_memory_within_the_limit_is_fine(make_bundle: Any, runtime_cli: Any):
    script = 'x=$(head -c 2000000 /dev/zero | tr "\\0" a); echo ${#x}'
    bundle, cid = make_bundle(["sh", "-c", script], edit=resources(memory={"limit": 64 * MiB}))
    result = runtime_cli("run", "--bundle", str(bundle), cid)
    assert result.stdout == "2000000\n"


def test_pids_limit(make_bundle: Any, runtime_cli: Any):
    script = "n=0; while [ $n -lt 20 ]; do sleep 10 & n=$((n+1)); echo $n; done"
    bundle, cid = make_bundle(["sh", "-c", script], edit=resources(pids={"limit": 5}))
    result = runtime_cli("run", "--keep", "--bundle", str(bundle), cid, check=False)
    # The shell plus four children fill pids.max; the fifth fork fails.
    assert result.stdout.split() == ["1", "2", "3", "4"]
    assert "can't fork" in result.stderr
    assert result.returncode != 0
    assert cgroup_file(runtime_cli, cid, "pids", "pids.max") == "5"
    runtime_cli("delete", cid)


CGROUP_MOUNT = {
    "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
    "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
}  # fmt: skip


def test_cpu_settings_visible_outside_and_inside(make_bundle: Any, runtime_cli: Any):
    cpu = {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"}

    def edit(config: dict[str, Any]) -> None:
        resources(cpu=cpu)(config)
        config["mounts"].append(CGROUP_MOUNT)

    script = (
        "cat /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpu/cpu.cfs_quota_us "
        "/sys/fs/cgroup/cpu/cpu.cfs_period_us /sys/fs/cgroup/cpuset/cpuset.cpus; "
        "echo 1 > /sys/fs/cgroup/cpu/cpu.shares; echo rc=$?"
    )
    bundle, cid = make_bundle(["sh", "-c", script], edit=edit)
    runtime_cli.create(bundle, cid)
    assert cgroup_file(runtime_cli, cid, "cpu", "cpu.shares") == "512"
    assert cgroup_file(runtime_cli, cid, "cpu", "cpu.cfs_quota_us") == "50000"
    assert cgroup_file(runtime_cli, cid, "cpu", "cpu.cfs_period_us") == "100000"
    assert cgroup_file(runtime_cli, cid, "cpuset", "cpuset.cpus") == "0"
    runtime_cli("delete", "--force", cid)

    bundle, cid = make_bundle(["sh", "-c", script], edit=edit)
    result = runtime_cli("run", "--bundle", str(bundle), cid)
    # Inside, the container sees its own cgroup, read-only.
    assert result.stdout.split() == ["512", "50000", "100000", "0", "rc=1"]
    assert "Read-only file system" in result.stderr


def test_update_memory(make_bundle: Any, runtime_cli: Any):
    cid = started(runtime_cli, make_bundle, memory={"limit": 32 * MiB})
    assert cgroup_file(runtime_cli, cid, "memory", "memory.limit_in_bytes") == str(32 * MiB)
    runtime_cli("update", "--memory", "64m", cid)
    assert cgroup_file(runtime_cli, cid, "memory", "memory.limit_in_bytes") == str(64 * MiB)
    assert runtime_cli.state(cid)["status"] == "running"


def test_update_from_a_resources_file(make_bundle: Any, runtime_cli: Any, tmp_path: Path):
    cid = started(runtime_cli, make_bundle, pids={"limit": 100}, cpu={"shares": 1024})
    update = {
        "memory": {"limit": 100 * MiB},
        "pids": {"limit": 42},
        "cpu": {"shares": 256, "quota": 20000, "period": 100000},
    }
    (tmp_path / "resources.json").write_text(json.dumps(update))
    runtime_cli("update", "--resources", str(tmp_path / "resources.json"), cid)
    assert cgroup_file(runtime_cli, cid, "memory", "memory.limit_in_bytes") == str(100 * MiB)
    assert cgroup_file(runtime_cli, cid, "pids", "pids.max") == "42"
    assert cgroup_file(runtime_cli, cid, "cpu", "cpu.shares") == "256"
    assert cgroup_file(runtime_cli, cid, "cpu", "cpu.cfs_quota_us") == "20000"

    runtime_cli("update", "-r", "-", cid, input=json.dumps({"pids": {"limit": 7}}))
    assert cgroup_file(runtime_cli, cid, "pids", "pids.max") == "7"
    runtime_cli("update", "--pids-limit", "9", "--cpu-share", "300", cid)
    assert cgroup_file(runtime_cli, cid, "pids", "pids.max") == "9"
    assert cgroup_file(runtime_cli, cid, "cpu", "cpu.shares") == "300"


def test_update_lowers_pids_limit_enforced_live(make_bundle: Any, runtime_cli: Any):
    cid = started(runtime_cli, make_bundle, pids={"limit": 100})
    runtime_cli("update", "--pids-limit", "2", cid)
    # sleep and the exec'd shell fill pids.max (joining a cgroup is never refused);
    # the shell's fork is.
    fork = "sleep 0 & wait && echo forked"
    result = runtime_cli("exec", cid, "sh", "-c", fork, check=False)
    assert result.returncode != 0
    assert "can't fork" in result.stderr
    runtime_cli("update", "--pids-limit", "10", cid)
    assert runtime_cli("exec", cid, "sh", "-c", fork).stdout == "forked\n"


def test_update_rejects_bad_input(make_bundle: Any, runtime_cli: Any, tmp_path: Path):
    cid = started(runtime_cli, make_bundle, memory={"limit": 32 * MiB})
    result = runtime_cli("update", "--memory", "lots", cid, check=False)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1
    assert "lots" in result.stderr
    (tmp_path / "bad.json").write_text("{nope")
    result = runtime_cli("update", "-r", str(tmp_path / "bad.json"), cid, check=False)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1
    assert "bad.json" in result.stderr
    assert cgroup_file(runtime_cli, cid, "memory", "memory.limit_in_bytes") == str(32 * MiB)


def test_update_of_a_stopped_container_fails(make_bundle: Any, runtime_cli: Any):
    bundle, cid = make_bundle(["true"])
    runtime_cli("run", "--keep", "--bundle", str(bundle), cid)
    result = runtime_cli("update", "--memory", "64m", cid, check=False)
    assert result.returncode != 0
    assert "stopped" in result.stderr


def test_stats_of_a_running_container_grow(make_bundle: Any, runtime_cli: Any):
    cid = started(runtime_cli, make_bundle)
    pid = runtime_cli.state(cid)["pid"]
    assert cgroup_file(runtime_cli, cid, "pids", "pids.current") == "1"
    with open(f"/proc/{pid}/cgroup") as f:
        memberships = {line.split(":")[1]: line.split(":")[2].strip() for line in f}
    path = f"{runtime_cli.cgroup_parent}/{cid}"
    for controller in ("memory", "pids", "cpu,cpuacct", "cpu", "freezer", "devices"):
        if controller in memberships:
            assert memberships[controller] == path, controller
    wait_for(lambda: int(cgroup_file(runtime_cli, cid, "memory", "memory.usage_in_bytes")) > 0,
             "memory usage")  # fmt: skip
