"""cgroup v1 controllers against fixture directories (see trees.py)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from runtime.cgroups import CgroupError, fs
from runtime.cgroups.v1 import blkio, cpu, cpuset, devices, freezer, hugetlb, memory, net, pids

from .conftest import Writes
from .trees import UNLIMITED, V1_CGROUP, write

MB = 1 << 20


def cgroup(tmp_path: Path, controller: str, **overrides: str) -> str:
    write(tmp_path, {**V1_CGROUP[controller], **overrides})
    return str(tmp_path)


def read(d: str, name: str) -> str:
    return Path(d, name).read_text()


# -- memory ---------------------------------------------------------------------


def test_memory_raise_writes_memsw_first(tmp_path: Path, writes: Writes) -> None:
    d = cgroup(tmp_path, "memory", **{"memory.limit_in_bytes": str(100 * MB)})
    assert memory.apply(d, {"limit": 300 * MB, "swap": 400 * MB}) == []
    assert writes.names() == ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]
    assert read(d, "memory.limit_in_bytes") == str(300 * MB)
    assert read(d, "memory.memsw.limit_in_bytes") == str(400 * MB)


def test_memory_lower_writes_limit_first(tmp_path: Path, writes: Writes) -> None:
    d = cgroup(tmp_path, "memory", **{"memory.limit_in_bytes": str(300 * MB)})
    memory.apply(d, {"limit": 100 * MB, "swap": 200 * MB})
    assert writes.names() == ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]


def test_memory_unlimited_swap_goes_first(tmp_path: Path, writes: Writes) -> None:
    d = cgroup(tmp_path, "memory", **{"memory.limit_in_bytes": str(300 * MB)})
    memory.apply(d, {"limit": 100 * MB, "swap": -1})
    assert writes == [
        (d, "memory.memsw.limit_in_bytes", "-1"),
        (d, "memory.limit_in_bytes", str(100 * MB)),
    ]


def test_memory_unlimited_limit_also_unlimits_swap(tmp_path: Path, writes: Writes) -> None:
    d = cgroup(tmp_path, "memory", **{"memory.limit_in_bytes": str(300 * MB)})
    memory.apply(d, {"limit": -1})
    assert writes == [(d, "memory.memsw.limit_in_bytes", "-1"), (d, "memory.limit_in_bytes", "-1")]


def test_memory_only_limit(tmp_path: Path, writes: Writes) -> None:
    d = cgroup(tmp_path, "memory")
    memory.apply(d, {"limit": 64 * MB})
    assert writes.names() == ["memory.limit_in_bytes"]


def test_memory_only_swap(tmp_path: Path, writes: Writes) -> None:
    d = cgroup(tmp_path, "memory")
    memory.apply(d, {"swap": 64 * MB})
    assert writes.names() == ["memory.memsw.limit_in_bytes"]


def test_memory_zero_means_unset(tmp_path: Path, writes: Writes) -> None:
    d = cgroup(tmp_path, "memory")
    assert memory.apply(d, {"limit": 0, "swap": 0, "reservation": 0, "kernel": 0}) == []
    assert writes == []


def test_memory_without_swap_accounting_warns(tmp_path: Path, writes: Writes) -> None:
    d = cgroup(tmp_path, "memory")
    Path(d, "memory.memsw.limit_in_bytes").unlink()
    warnings = memory.apply(d, {"limit": 64 * MB, "swap": 128 * MB})
    assert writes.names() == ["memory.limit_in_bytes"]
    assert warnings == [
        f"linux.resources.memory.swap {128 * MB} not applied: swap accounting is not enabled "
        "(no memory.memsw.limit_in_bytes)"
    ]
    writes.clear()
    assert memory.apply(d, {"limit": -1}) == []  # no implied swap write, no warning
    assert writes.names() == ["memory.limit_in_bytes"]


def test_memory_other_settings(tmp_path: Path) -> None:
    d = cgroup(tmp_path, "memory")
    warnings = memory.apply(
        d,
        {
            "reservation": 32 * MB,
            "kernel": 8 * MB,
            "kernelTCP": 4 * MB,
            "swappiness": 10,
            "disableOOMKiller": True,
        },
    )
    assert read(d, "memory.soft_limit_in_bytes") == str(32 * MB)
    assert read(d, "memory.kmem.limit_in_bytes") == UNLIMITED  # never written
    assert read(d, "memory.kmem.tcp.limit_in_bytes") == str(4 * MB)
    assert read(d, "memory.swappiness") == "10"
    assert read(d, "memory.oom_control") == "1"
    assert warnings == [
        f"linux.resources.memory.kernel {8 * MB} not applied: kernel memory limits are not "
        "enforced by current kernels"
    ]
    memory.apply(d, {"disableOOMKiller": False})
    assert read(d, "memory.oom_control") == "0"


def test_memory_kernel_tcp_missing_warns(tmp_path: Path) -> None:
    d = cgroup(tmp_path, "memory")
    Path(d, "memory.kmem.tcp.limit_in_bytes").unlink()
    assert memory.apply(d, {"kernelTCP": 4096}) == [
        "linux.resources.memory.kernelTCP 4096 not applied: no memory.kmem.tcp.limit_in_bytes"
    ]


def test_memory_swappiness(tmp_path: Path, writes: Writes) -> None:
    d = cgroup(tmp_path, "memory")
    memory.apply(d, {"swappiness": -1})
    assert writes == []
    with pytest.raises(CgroupError, match="swappiness 101: must be between 0 and 100"):
        memory.apply(d, {"swappiness": 101})


def test_memory_partial_update_leaves_other_files(tmp_path: Path) -> None:
    d = cgroup(tmp_path, "memory", **{"memory.swappiness": "7"})
    memory.apply(d, {"reservation": MB})
    assert read(d, "memory.swappiness") == "7"
    assert read(d, "memory.limit_in_bytes") == UNLIMITED


def test_memory_bad_value(tmp_path: Path) -> None:
    d = cgroup(tmp_path, "memory")
    with pytest.raises(CgroupError, match="linux.resources.memory.limit: expected an integer"):
        memory.apply(d, {"limit": "1G"})


# -- cpu ------------------------------------------------------------------------


def test_cpu(tmp_path: Path, writes: Writes) -> None:
    d = cgroup(tmp_path, "cpu")
    warnings = cpu.apply(
        d,
        {
            "shares": 512,
            "quota": 50000,
            "period": 100000,
            "realtimeRuntime": 950000,
            "realtimePeriod": 1000000,
            "idle": 1,
            "burst": 1000,
        },
    )
    assert warnings == []
    assert writes.names() == [
        "cpu.rt_period_us",
        "cpu.rt_runtime_us",
        "cpu.shares",
        "cpu.cfs_period_us",
        "cpu.cfs_quota_us",
        "cpu.cfs_burst_us",
        "cpu.idle",
    ]
    assert read(d, "cpu.cfs_burst_us") == "1000"
    assert read(d, "cpu.shares") == "512"
    assert read(d, "cpu.cfs_quota_us") == "50000"
    assert read(d, "cpu.cfs_period_us") == "100000"
    assert read(d, "cpu.idle") == "1"


def test_cpu_unlimited_quota(tmp_path: Path) -> None:
    d = cgroup(tmp_path, "cpu", **{"cpu.cfs_quota_us": "20000"})
    cpu.apply(d, {"quota": -1})
    assert read(d, "cpu.cfs_quota_us") == "-1"
    assert read(d, "cpu.cfs_period_us") == "100000"


def test_cpu_period_retried_after_quota(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = cgroup(tmp_path, "cpu")
    calls: list[tuple[str, str]] = []
    original = fs.write_file

    def kernel(cgroup_dir: str, name: str, value: str) -> None:
        calls.append((name, value))
        if name == "cpu.cfs_period_us" and len(calls) == 1:
            raise CgroupError("write: EINVAL", errno.EINVAL)
        original(cgroup_dir, name, value)

    monkeypatch.setattr(fs, "write_file", kernel)
    cpu.apply(d, {"quota": 5000, "period": 10000})
    assert calls == [
        ("cpu.cfs_period_us", "10000"),
        ("cpu.cfs_quota_us", "5000"),
        ("cpu.cfs_period_us", "10000"),
    ]


def test_cpu_period_einval_without_quota_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = cgroup(tmp_path, "cpu")

    def kernel(cgroup_dir: str, name: str, value: str) -> None:
        raise CgroupError(f"write {value} to {cgroup_dir}/{name}: EINVAL", errno.EINVAL)

    monkeypatch.setattr(fs, "write_file", kernel)
    with pytest.raises(CgroupError, match="cpu.cfs_period_us: EINVAL"):
        cpu.apply(d, {"period": 10000})


def test_cpu_shares_clamped_by_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = cgroup(tmp_path, "cpu")
    original = fs.write_file

    def kernel(cgroup_dir: str, name: str, value: str) -> None:
        original(cgroup_dir, name, str(max(int(value), 2)))

    monkeypatch.setattr(fs, "write_file", kernel)
    with pytest.raises(CgroupError, match="cpu.shares 1: the kernel set 2"):
        cpu.apply(d, {"shares": 1})


def test_cpu_without_realtime_or_idle_warns(tmp_path: Path) -> None:
    d = cgroup(tmp_path, "cpu")
    Path(d, "cpu.rt_runtime_us").unlink()
    Path(d, "cpu.idle").unlink()
    Path(d, "cpu.cfs_burst_us").unlink()
    warnings = cpu.apply(d, {"realtimeRuntime": 1000, "idle": 1, "burst": 5})
    assert len(warnings) == 3
    assert "no realtime group scheduling" in warnings[0]
    assert warnings[1] == "linux.resources.cpu.burst 5 not applied: no cpu.cfs_burst_us"
    assert warnings[2] == "linux.resources.cpu.idle 1 not applied: no cpu.idle"
    assert cpu.apply(d, {"burst": 0}) == []


def test_cpu_partial_update(tmp_path: Path, writes: Writes) -> None:
    d = cgroup(tmp_path, "cpu", **{"cpu.cfs_quota_us": "20000"})
    cpu.apply(d, {"shares": 100})
    assert writes.names() == ["cpu.shares"]
    assert read(d, "cpu.cfs_quota_us") == "20000"


# -- cpuset ---------------------------------------------------------------------


def test_cpuset(tmp_path: Path, writes: Writes) -> None:
    d = cgroup(tmp_path, "cpuset")
    cpuset.apply(d, {"cpus": "0-1", "mems": "0", "shares": 5})
    assert writes.names() == ["cpuset.cpus", "cpuset.mems"]
    assert read(d, "cpuset.cpus") == "0-1"
    writes.clear()
    cpuset.apply(d, {"cpus": ""})
    assert writes == []


def test_cpuset_fill_from_parents(tmp_path: Path) -> None:
    write(tmp_path, {"cpuset.cpus": "0-3\n", "cpuset.mems": "0\n"})
    write(tmp_path / "a", {"cpuset.cpus": "", "cpuset.mems": "\n"})
    write(tmp_path / "a" / "b", {"cpuset.cpus": "1", "cpuset.mems": ""})
    write(tmp_path / "a" / "b" / "c", {"cpuset.cpus": "", "cpuset.mems": ""})
    cpuset.fill_from_parents(str(tmp_path), "a/b/c")
    assert read(f"{tmp_path}/a", "cpuset.cpus") == "0-3"
    assert read(f"{tmp_path}/a", "cpuset.mems") == "0"
    assert read(f"{tmp_path}/a/b", "cpuset.cpus") == "1"  # already set: kept
    assert read(f"{tmp_path}/a/b/c", "cpuset.cpus") == "1"
    assert read(f"{tmp_path}/a/b/c", "cpuset.mems") == "0"


# -- pids -----------------------------------------------------------------------


@pytest.mark.parametrize(("limit", "value"), [(100, "100"), (0, "max"), (-1, "max")])
def test_pids(tmp_path: Path, limit: int, value: str) -> None:
    d = cgroup(tmp_path, "pids")
    pids.apply(d, {"limit": limit})
    assert read(d, "pids.max") == value


# -- hugetlb --------------------------------------------------------------------


def test_hugetlb(tmp_path: Path, writes: Writes) -> None:
    d = cgroup(tmp_path, "hugetlb", **{"hugetlb.2MB.rsvd.limit_in_bytes": UNLIMITED})
    hugetlb.apply(d, [{"pageSize": "2MB", "limit": 4 * MB}, {"pageSize": "1GB", "limit": 0}])
    assert writes.names() == [
        "hugetlb.2MB.limit_in_bytes",
        "hugetlb.2MB.rsvd.limit_in_bytes",
        "hugetlb.1GB.limit_in_bytes",
    ]
    assert read(d, "hugetlb.2MB.limit_in_bytes") == str(4 * MB)
    assert read(d, "hugetlb.1GB.limit_in_bytes") == "0"


def test_hugetlb_unknown_size(tmp_path: Path) -> None:
    d = cgroup(tmp_path, "hugetlb")
    with pytest.raises(CgroupError, match=r"write 1 to .*/hugetlb.64KB.limit_in_bytes: ENOENT"):
        hugetlb.apply(d, [{"pageSize": "64KB", "limit": 1}])
    with pytest.raises(CgroupError, match="pageSize"):
        hugetlb.apply(d, [{"pageSize": "../../x", "limit": 1}])


# -- devices --------------------------------------------------------------------

DENY_ALL = {"allow": False, "access": "rwm"}
NULL = {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}


def test_devices_plan_deny_all_first() -> None:
    assert devices.plan([DENY_ALL, NULL, {"allow": False, "type": "b", "major": 8}]) == [
        ("devices.deny", "a"),
        ("devices.allow", "c 1:3 rwm"),
        ("devices.deny", "b 8:* rwm"),
    ]


def test_devices_plan_starts_from_deny_all() -> None:
    tty = {"allow": True, "type": "c", "major": 136, "minor": -1, "access": "rw"}
    assert devices.plan([NULL, tty]) == [
        ("devices.deny", "a"),
        ("devices.allow", "c 1:3 rwm"),
        ("devices.allow", "c 136:* rw"),
    ]
    assert devices.plan([]) == [("devices.deny", "a")]


def test_devices_plan_allow_all() -> None:
    assert devices.plan([{"allow": True, "type": "a"}, {"allow": False, "type": "c"}]) == [
        ("devices.allow", "a"),
        ("devices.deny", "c *:* rwm"),
    ]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"type": "c"}, "has no 'allow'"),
        ({"allow": True, "type": "x"}, "type 'x': expected a, b or c"),
        ({"allow": True, "type": "c", "access": "rwx"}, "access 'rwx'"),
        ({"allow": True, "type": "c", "major": "1"}, "devices.major: expected an integer"),
    ],
)
def test_devices_bad_rules(rule: dict[str, object], message: str) -> None:
    with pytest.raises(CgroupError, match=message):
        devices.plan([rule])


def test_devices_apply_writes_in_order(tmp_path: Path, writes: Writes) -> None:
    d = cgroup(tmp_path, "devices")
    devices.apply(d, [DENY_ALL, NULL])
    assert [(n, v) for _d, n, v in writes] == [
        ("devices.deny", "a"),
        ("devices.allow", "c 1:3 rwm"),
    ]


# -- blkio ----------------------------------------------------------------------


def test_blkio_bfq(tmp_path: Path, writes: Writes) -> None:
    d = cgroup(tmp_path, "blkio")
    warnings = blkio.apply(
        d,
        {
            "weight": 500,
            "weightDevice": [{"major": 8, "minor": 0, "weight": 300}],
            "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
            "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 100}],
        },
    )
    assert warnings == []
    assert [(n, v) for _d, n, v in writes] == [
        ("blkio.bfq.weight", "500"),
        ("blkio.bfq.weight_device", "8:0 300"),
        ("blkio.throttle.read_bps_device", "8:0 1048576"),
        ("blkio.throttle.write_iops_device", "8:16 100"),
    ]


def test_blkio_cfq_and_leaf(tmp_path: Path, writes: Writes) -> None:
    d = cgroup(
        tmp_path,
        "blkio",
        **{"blkio.weight": "500", "blkio.leaf_weight": "500", "blkio.leaf_weight_device": ""},
    )
    blkio.apply(
        d,
        {
            "weight": 200,
            "leafWeight": 300,
            "weightDevice": [{"major": 8, "minor": 0, "leafWeight": 10}],
        },
    )
    assert [(n, v) for _d, n, v in writes] == [
        ("blkio.weight", "200"),
        ("blkio.leaf_weight", "300"),
        ("blkio.leaf_weight_device", "8:0 10"),
    ]


def test_blkio_without_weight_files_warns(tmp_path: Path, writes: Writes) -> None:
    d = cgroup(tmp_path, "blkio")
    Path(d, "blkio.bfq.weight").unlink()
    warnings = blkio.apply(
        d,
        {
            "weight": 500,
            "leafWeight": 5,
            "weightDevice": [{"major": 8, "minor": 0, "weight": 3, "leafWeight": 4}],
        },
    )
    assert writes == []
    assert warnings == [
        "linux.resources.blockIO.weight 500 not applied: no weight file",
        "linux.resources.blockIO.leafWeight 5 not applied: no weight file",
        "linux.resources.blockIO.weightDevice 8:0 not applied: no weight file",
        "linux.resources.blockIO.weightDevice 8:0 leafWeight not applied: "
        "no blkio.leaf_weight_device",
    ]


def test_blkio_device_needs_major_minor(tmp_path: Path) -> None:
    d = cgroup(tmp_path, "blkio")
    with pytest.raises(CgroupError, match="needs major and minor"):
        blkio.apply(d, {"throttleReadBpsDevice": [{"major": 8, "rate": 1}]})


# -- freezer --------------------------------------------------------------------


class FakeTime:
    """A clock that advances only when slept on; `on_sleep` mimics the kernel."""

    def __init__(self, on_sleep: object = None) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if callable(self.on_sleep):
            self.on_sleep(len(self.sleeps))


def test_freeze_waits_for_frozen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = cgroup(tmp_path, "freezer")
    original = fs.write_file
    settled = {"value": False}

    def kernel(cgroup_dir: str, name: str, value: str) -> None:
        shown = value if settled["value"] or value != "FROZEN" else "FREEZING"
        original(cgroup_dir, name, shown)

    def settle(n: int) -> None:
        settled["value"] = n >= 3

    monkeypatch.setattr(fs, "write_file", kernel)
    fake = FakeTime(settle)
    freezer.freeze(d, sleep=fake.sleep, clock=fake.clock)
    assert read(d, "freezer.state") == "FROZEN"
    assert len(fake.sleeps) == 3
    assert freezer.is_frozen(d)
    freezer.thaw(d, sleep=fake.sleep, clock=fake.clock)
    assert read(d, "freezer.state") == "THAWED"
    assert not freezer.is_frozen(d)


def test_freeze_timeout_thaws_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = cgroup(tmp_path, "freezer")
    original = fs.write_file

    def kernel(cgroup_dir: str, name: str, value: str) -> None:
        original(cgroup_dir, name, "FREEZING" if value == "FROZEN" else value)

    monkeypatch.setattr(fs, "write_file", kernel)
    fake = FakeTime()
    with pytest.raises(CgroupError, match="still FREEZING after 2.0s \\(thawed again\\)"):
        freezer.freeze(d, sleep=fake.sleep, clock=fake.clock)
    assert read(d, "freezer.state") == "THAWED"
    assert 2.0 <= fake.now < 2.1
    assert max(fake.sleeps) <= 0.02


def test_thaw_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = cgroup(tmp_path, "freezer")
    original = fs.write_file
    monkeypatch.setattr(fs, "write_file", lambda c, n, v: original(c, n, "FROZEN"))
    fake = FakeTime()
    with pytest.raises(CgroupError, match="thaw .*: freezer.state still FROZEN after 2.0s"):
        freezer.thaw(d, sleep=fake.sleep, clock=fake.clock)


# -- net ------------------------------------------------------------------------


def test_net(tmp_path: Path, writes: Writes) -> None:
    write(tmp_path, {**V1_CGROUP["net_cls"], **V1_CGROUP["net_prio"]})
    d = str(tmp_path)
    net.apply_classid(d, {"classID": 0x100001})
    net.apply_priorities(
        d, {"priorities": [{"name": "eth0", "priority": 5}, {"name": "lo", "priority": 1}]}
    )
    assert [(n, v) for _d, n, v in writes] == [
        ("net_cls.classid", "1048577"),
        ("net_prio.ifpriomap", "eth0 5"),
        ("net_prio.ifpriomap", "lo 1"),
    ]
