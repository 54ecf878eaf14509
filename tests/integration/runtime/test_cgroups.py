"""runtime.cgroups against the real kernel (root only).

Every test works under a fresh /kubeling-test-<random> cgroup, removed again
in every hierarchy by the fixtures, so the suite can run twice in a row.
Only processes started here are killed. File names are chosen per controller
from the detected layout, so the same tests run on the hybrid development
machine (v1 + hugetlb on cgroup2) and on a pure cgroup v2 VM.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.cgroups import CgroupError, Manager, detect_layout, open_manager

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: real cgroups"),
]

ROOT = "/sys/fs/cgroup"
MB = 1 << 20


def version(controller: str, v2_name: str | None = None) -> str | None:
    route = detect_layout(ROOT).route(controller, v2_name)
    return None if route is None else route[0]


def read(mgr: Manager, controller: str, name: str) -> str:
    return Path(mgr.paths[controller], name).read_text().strip()


class Procs:
    """Processes started by a test; killed and reaped at teardown."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, args: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        proc: subprocess.Popen[bytes] = subprocess.Popen(args, **kwargs)  # type: ignore[call-overload]
        self.started.append(proc)
        return proc

    def gated(self, mgr: Manager, script: str) -> subprocess.Popen[bytes]:
        """Run `sh -c script` that starts only once it is inside the cgroup."""
        proc = self.start(
            ["sh", "-c", "read _gate; " + script],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        mgr.add_process(proc.pid)
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        return proc

    def cleanup(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


@pytest.fixture
def parent() -> Iterator[str]:
    path = f"/kubeling-test-{secrets.token_hex(4)}"
    yield path
    mgr = open_manager(path)
    mgr.remove()
    assert not mgr.exists()


@pytest.fixture
def procs() -> Iterator[Procs]:
    started = Procs()
    yield started
    started.cleanup()


@pytest.fixture
def cgroup(parent: str, procs: Procs) -> Iterator[Manager]:
    mgr = open_manager(f"{parent}/c1")
    mgr.create()
    yield mgr
    # Thaw first: frozen tasks cannot die, then kill ours, then rmdir.
    try:
        if mgr.is_frozen():
            mgr.thaw()
    finally:
        procs.cleanup()
        mgr.remove()


def test_layout_matches_the_machine() -> None:
    layout = detect_layout(ROOT)
    if os.path.exists(f"{ROOT}/cgroup.controllers"):
        assert layout == "unified"
    else:
        assert layout in ("hybrid", "legacy")
        assert "memory" in layout.v1_mounts
    if layout == "hybrid" and "hugetlb" in layout.unified_controllers:
        assert layout.route("hugetlb") == ("v2", f"{ROOT}/unified")


def test_create_and_remove_everywhere(parent: str) -> None:
    mgr = open_manager(f"{parent}/c1")
    mgr.create()
    mgr.create()
    dirs = set(mgr.paths.values())
    assert dirs
    assert all(os.path.isdir(d) for d in dirs)
    mgr.remove()
    assert not mgr.exists()
    assert not any(os.path.exists(d) for d in dirs)
    assert all(os.path.isdir(os.path.dirname(d)) for d in dirs)  # the parent stays
    mgr.remove()


def test_limits_read_back(cgroup: Manager) -> None:
    warnings = cgroup.apply(
        {
            "memory": {"limit": 64 * MB, "swap": 128 * MB, "kernel": 4 * MB},
            "cpu": {
                "shares": 512,
                "quota": 50000,
                "period": 100000,
                "burst": 10000,
                "cpus": "0",
                "mems": "0",
            },
            "pids": {"limit": 10},
        }
    )
    assert any("memory.kernel" in w for w in warnings)
    assert read(cgroup, "cpuset", "cpuset.cpus") == "0"
    assert read(cgroup, "cpuset", "cpuset.mems") == "0"
    assert read(cgroup, "pids", "pids.max") == "10"
    if version("memory") == "v1":
        assert read(cgroup, "memory", "memory.limit_in_bytes") == str(64 * MB)
        assert read(cgroup, "memory", "memory.memsw.limit_in_bytes") == str(128 * MB)
    else:
        assert read(cgroup, "memory", "memory.max") == str(64 * MB)
        assert read(cgroup, "memory", "memory.swap.max") == str(64 * MB)
    if version("cpu") == "v1":
        assert read(cgroup, "cpu", "cpu.shares") == "512"
        assert read(cgroup, "cpu", "cpu.cfs_quota_us") == "50000"
        assert read(cgroup, "cpu", "cpu.cfs_period_us") == "100000"
        assert read(cgroup, "cpu", "cpu.cfs_burst_us") == "10000"
    else:
        assert read(cgroup, "cpu", "cpu.weight") == "20"
        assert read(cgroup, "cpu", "cpu.max") == "50000 100000"
        assert read(cgroup, "cpu", "cpu.max.burst") == "10000"

    # Partial update: only pids changes.
    assert cgroup.apply({"pids": {"limit": 0}}) == []
    assert read(cgroup, "pids", "pids.max") == "max"
    assert read(cgroup, "cpuset", "cpuset.cpus") == "0"


@pytest.mark.parametrize(
    "steps",
    [
        [(64, 128), (32, 48), (256, 512), (128, 128)],
        [(256, 512), (16, 32)],
        [(64, 64), (-1, None)],
        [(64, -1), (32, 64)],
    ],
)
def test_memory_limits_raise_and_lower(
    cgroup: Manager, steps: list[tuple[int, int | None]]
) -> None:
    """Every transition is accepted by the kernel: the write order follows runc."""
    v1 = version("memory") == "v1"
    for limit_mb, swap_mb in steps:
        memory: dict[str, object] = {"limit": limit_mb * MB if limit_mb > 0 else -1}
        if swap_mb is not None:
            memory["swap"] = swap_mb * MB if swap_mb > 0 else -1
        cgroup.apply({"memory": memory})
        limit = read(cgroup, "memory", "memory.limit_in_bytes" if v1 else "memory.max")
        if limit_mb < 0:
            assert limit in ("max", "9223372036854771712")
        else:
            assert limit == str(limit_mb * MB)
        if v1 and swap_mb is not None and swap_mb > 0:
            assert read(cgroup, "memory", "memory.memsw.limit_in_bytes") == str(swap_mb * MB)


def test_hugetlb_limit(cgroup: Manager) -> None:
    where = version("hugetlb")
    if where is None:
        pytest.skip("no hugetlb controller on this machine")
    name = "hugetlb.2MB.limit_in_bytes" if where == "v1" else "hugetlb.2MB.max"
    if not os.path.exists(os.path.join(cgroup.paths["hugetlb"], name)):
        pytest.skip("no 2MB huge pages on this machine")
    assert cgroup.apply({"hugepageLimits": [{"pageSize": "2MB", "limit": 4 * MB}]}) == []
    assert read(cgroup, "hugetlb", name) == str(4 * MB)
    if detect_layout(ROOT) == "hybrid":
        assert cgroup.paths["hugetlb"] == cgroup.paths[""]
        assert cgroup.paths["hugetlb"].startswith(f"{ROOT}/unified/")


def test_devices_are_enforced_on_v1(cgroup: Manager, procs: Procs) -> None:
    if "devices" not in detect_layout(ROOT).v1_mounts:
        assert cgroup.apply({"devices": []}) != []
        pytest.skip("device rules are not enforced on cgroup v2")
    rules = [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    ]
    assert cgroup.apply({"devices": rules}) == []
    assert read(cgroup, "devices", "devices.list") == "c 1:3 rwm"
    proc = procs.gated(cgroup, "echo ok > /dev/null && head -c1 /dev/zero")
    _out, err = proc.communicate(timeout=10)
    assert proc.returncode != 0
    assert b"/dev/zero" in err and b"Operation not permitted" in err


def test_unsupported_settings_warn(cgroup: Manager) -> None:
    warnings = cgroup.apply({"network": {"classID": 1}})
    if "net_cls" in detect_layout(ROOT).v1_mounts:
        assert warnings == []
    else:
        assert len(warnings) == 1
        assert "net_cls" in warnings[0]


def test_processes_pids_and_freeze(cgroup: Manager, procs: Procs, tmp_path: Path) -> None:
    sleeper = procs.start(["sleep", "30"])
    cgroup.add_process(sleeper.pid)
    ticks = tmp_path / "ticks"
    writer = procs.gated(cgroup, f"while :; do echo x >> {ticks}; sleep 0.01; done")
    deadline = time.monotonic() + 5
    while not ticks.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert {sleeper.pid, writer.pid} <= set(cgroup.pids())

    cgroup.freeze()
    assert cgroup.is_frozen()
    frozen_size = ticks.stat().st_size
    time.sleep(0.3)
    assert ticks.stat().st_size == frozen_size  # no progress while frozen
    if "freezer" in cgroup.paths:
        assert read(cgroup, "freezer", "freezer.state") == "FROZEN"
    state = Path(f"/proc/{sleeper.pid}/status").read_text().splitlines()[2]
    assert state.startswith("State:")

    cgroup.thaw()
    assert not cgroup.is_frozen()
    deadline = time.monotonic() + 5
    while ticks.stat().st_size == frozen_size and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ticks.stat().st_size > frozen_size


def test_pids_limit_is_enforced(cgroup: Manager, procs: Procs) -> None:
    if version("pids") is None:
        pytest.skip("no pids controller")
    cgroup.apply({"pids": {"limit": 3}})
    proc = procs.gated(cgroup, "for i in 1 2 3 4 5; do sleep 1 & done; wait")
    _out, err = proc.communicate(timeout=20)
    assert b"fork" in err.lower() or b"resource temporarily unavailable" in err.lower(), err
    events = Path(cgroup.paths["pids"], "pids.events").read_text().split()
    assert int(events[events.index("max") + 1]) > 0


def test_stats_show_usage(cgroup: Manager, procs: Procs) -> None:
    script = (
        "import sys; sys.stdin.readline(); data = b'x' * (32 << 20); "
        "n = sum(i * i for i in range(300000)); print(len(data), flush=True); "
        "sys.stdin.readline()"
    )
    proc = procs.start(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    cgroup.add_process(proc.pid)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"go\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == str(32 << 20).encode()
    stats = cgroup.stats()
    assert stats.cpu.usage_total_ns > 0
    assert stats.memory.usage_bytes >= 32 * MB
    assert stats.memory.working_set_bytes > 0
    assert stats.memory.rss_bytes >= 32 * MB
    assert stats.pids.current >= 1


def test_remove_right_after_kill(cgroup: Manager, procs: Procs) -> None:
    proc = procs.start(["sleep", "30"])
    cgroup.add_process(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    cgroup.remove()  # EBUSY while the task exits is retried
    assert not cgroup.exists()
    proc.wait()


def test_remove_with_live_process_fails(cgroup: Manager, procs: Procs) -> None:
    proc = procs.start(["sleep", "30"])
    cgroup.add_process(proc.pid)
    with pytest.raises(CgroupError, match=r"^rmdir .*: EBUSY"):
        cgroup.remove()
    assert cgroup.exists()
