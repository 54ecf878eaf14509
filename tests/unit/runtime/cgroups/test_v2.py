"""cgroup v2 controllers against fixture directories (see trees.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.cgroups import CgroupError, fs
from runtime.cgroups.v2 import cpu, cpuset, freezer, hugetlb, io, memory, pids, subtree, unified

from .conftest import Writes
from .test_v1 import FakeTime
from .trees import V2_CGROUP, write

MB = 1 << 20


def cgroup(tmp_path: Path, *controllers: str, **overrides: str) -> str:
    files = dict(V2_CGROUP[""])
    for name in controllers:
        files.update(V2_CGROUP[name])
    write(tmp_path, {**files, **overrides})
    return str(tmp_path)


def read(d: str, name: str) -> str:
    return Path(d, name).read_text()


# -- memory ---------------------------------------------------------------------


def test_memory_swap_is_converted(tmp_path: Path) -> None:
    d = cgroup(tmp_path, "memory")
    assert memory.apply(d, {"limit": 100 * MB, "swap": 300 * MB, "reservation": 50 * MB}) == []
    assert read(d, "memory.max") == str(100 * MB)
    assert read(d, "memory.swap.max") == str(200 * MB)
    assert read(d, "memory.low") == str(50 * MB)


def test_memory_swap_equal_to_limit_disables_swap(tmp_path: Path) -> None:
    d = cgroup(tmp_path, "memory")
    memory.apply(d, {"limit": 100 * MB, "swap": 100 * MB})
    assert read(d, "memory.swap.max") == "0"


def test_memory_unlimited(tmp_path: Path, writes: Writes) -> None:
    d = cgroup(tmp_path, "memory", **{"memory.max": "1000", "memory.swap.max": "0"})
    memory.apply(d, {"limit": -1})
    assert read(d, "memory.max") == "max"
    assert read(d, "memory.swap.max") == "max"
    writes.clear()
    memory.apply(d, {"limit": 100 * MB, "swap": -1})
    assert writes.names() == ["memory.swap.max", "memory.max"]
    assert read(d, "memory.swap.max") == "max"


def test_memory_swap_only_uses_current_limit(tmp_path: Path) -> None:
    d = cgroup(tmp_path, "memory", **{"memory.max": str(100 * MB)})
    memory.apply(d, {"swap": 150 * MB})
    assert read(d, "memory.swap.max") == str(50 * MB)
    assert read(d, "memory.max") == str(100 * MB)


def test_memory_swap_needs_a_limit(tmp_path: Path) -> None:
    d = cgroup(tmp_path, "memory")
    with pytest.raises(CgroupError, match="needs a finite memory limit"):
        memory.apply(d, {"swap": 150 * MB})
    with pytest.raises(CgroupError, match="must be >= memory limit"):
        memory.apply(d, {"limit": 100 * MB, "swap": 50 * MB})


def test_memory_without_swap_accounting(tmp_path: Path) -> None:
    d = cgroup(tmp_path, "memory")
    Path(d, "memory.swap.max").unlink()
    assert memory.apply(d, {"limit": -1}) == []
    assert memory.apply(d, {"limit": 100 * MB, "swap": 100 * MB}) == []
    assert memory.apply(d, {"limit": 100 * MB, "swap": 200 * MB}) == [
        f"linux.resources.memory.swap {200 * MB} not applied: swap accounting is not "
        "enabled (no memory.swap.max)"
    ]


def test_memory_v1_only_settings_warn(tmp_path: Path, writes: Writes) -> None:
    d = cgroup(tmp_path, "memory")
    warnings = memory.apply(
        d,
        {"kernel": MB, "kernelTCP": MB, "swappiness": 10, "disableOOMKiller": True},
    )
    assert writes == []
    assert [w.split(" not applied")[0] for w in warnings] == [
        f"linux.resources.memory.kernel {MB}",
        f"linux.resources.memory.kernelTCP {MB}",
        "linux.resources.memory.swappiness 10",
        "linux.resources.memory.disableOOMKiller",
    ]
    assert memory.apply(d, {"swappiness": -1, "disableOOMKiller": False}) == []


# -- cpu ------------------------------------------------------------------------


def test_cpu(tmp_path: Path) -> None:
    d = cgroup(tmp_path, "cpu")
    assert cpu.apply(d, {"shares": 1024, "quota": 50000, "period": 100000, "idle": 0}) == []
    assert read(d, "cpu.weight") == "39"
    assert read(d, "cpu.max") == "50000 100000"
    assert read(d, "cpu.idle") == "0"


@pytest.mark.parametrize(
    ("quota", "period", "current", "line"),
    [
        (None, None, "max 100000", None),
        (20000, None, "max 100000", "20000"),
        (-1, None, "20000 100000", "max"),
        (-1, 50000, "20000 100000", "max 50000"),
        (None, 50000, "20000 100000", "20000 50000"),
        (None, 50000, None, "max 50000"),
        (30000, 60000, None, "30000 60000"),
    ],
)
def test_cpu_max(
    quota: int | None, period: int | None, current: str | None, line: str | None
) -> None:
    assert cpu.cpu_max(quota, period, current) == line


def test_cpu_period_only_keeps_quota(tmp_path: Path) -> None:
    d = cgroup(tmp_path, "cpu", **{"cpu.max": "20000 100000\n"})
    cpu.apply(d, {"period": 50000})
    assert read(d, "cpu.max") == "20000 50000"


def test_cpu_burst(tmp_path: Path, writes: Writes) -> None:
    d = cgroup(tmp_path, "cpu")
    assert cpu.apply(d, {"quota": 20000, "burst": 5000}) == []
    assert writes.names() == ["cpu.max", "cpu.max.burst"]
    assert read(d, "cpu.max.burst") == "5000"
    Path(d, "cpu.max.burst").unlink()
    assert cpu.apply(d, {"burst": 5000}) == [
        "linux.resources.cpu.burst 5000 not applied: no cpu.max.burst"
    ]
    assert cpu.apply(d, {"burst": 0}) == []


def test_cpu_realtime_warns(tmp_path: Path, writes: Writes) -> None:
    d = cgroup(tmp_path, "cpu")
    warnings = cpu.apply(d, {"realtimeRuntime": 1000, "realtimePeriod": 10000})
    assert writes == []
    assert warnings == [
        "linux.resources.cpu.realtimeRuntime/realtimePeriod not applied: cgroup v2 has no "
        "realtime group scheduling"
    ]


def test_cpu_partial_update(tmp_path: Path, writes: Writes) -> None:
    d = cgroup(tmp_path, "cpu", **{"cpu.max": "20000 100000"})
    cpu.apply(d, {"shares": 2})
    assert writes.names() == ["cpu.weight"]
    assert read(d, "cpu.weight") == "1"
    assert read(d, "cpu.max") == "20000 100000"


# -- cpuset, pids, hugetlb --------------------------------------------------------


def test_cpuset(tmp_path: Path) -> None:
    d = cgroup(tmp_path, "cpuset")
    cpuset.apply(d, {"cpus": "1", "mems": "0"})
    assert read(d, "cpuset.cpus") == "1"
    assert read(d, "cpuset.mems") == "0"


@pytest.mark.parametrize(("limit", "value"), [(3, "3"), (0, "max"), (-1, "max")])
def test_pids(tmp_path: Path, limit: int, value: str) -> None:
    d = cgroup(tmp_path, "pids")
    pids.apply(d, {"limit": limit})
    assert read(d, "pids.max") == value


def test_hugetlb(tmp_path: Path, writes: Writes) -> None:
    d = cgroup(tmp_path, "hugetlb")
    hugetlb.apply(d, [{"pageSize": "2MB", "limit": 4 * MB}])
    assert writes.names() == ["hugetlb.2MB.max", "hugetlb.2MB.rsvd.max"]
    assert read(d, "hugetlb.2MB.max") == str(4 * MB)
    assert read(d, "hugetlb.2MB.rsvd.max") == str(4 * MB)
    Path(d, "hugetlb.2MB.rsvd.max").unlink()
    hugetlb.apply(d, [{"pageSize": "2MB", "limit": -1}])
    assert read(d, "hugetlb.2MB.max") == "max"


# -- io -------------------------------------------------------------------------


def test_io_without_bfq(tmp_path: Path, writes: Writes) -> None:
    d = cgroup(tmp_path, "io")
    warnings = io.apply(
        d,
        {
            "weight": 500,
            "leafWeight": 10,
            "weightDevice": [{"major": 8, "minor": 0, "weight": 100, "leafWeight": 5}],
            "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1024}],
            "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 2048}],
            "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 10}],
            "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 20}],
        },
    )
    assert [(n, v) for _d, n, v in writes] == [
        ("io.weight", "4950"),
        ("io.max", "8:0 rbps=1024"),
        ("io.max", "8:0 wbps=2048"),
        ("io.max", "8:0 riops=10"),
        ("io.max", "8:0 wiops=20"),
    ]
    assert [w.split(" not applied")[0] for w in warnings] == [
        "linux.resources.blockIO.leafWeight",
        "linux.resources.blockIO.weightDevice 8:0",
        "linux.resources.blockIO.weightDevice 8:0 leafWeight",
    ]


def test_io_with_bfq(tmp_path: Path, writes: Writes) -> None:
    d = cgroup(tmp_path, "io", **{"io.bfq.weight": "default 100"})
    assert (
        io.apply(d, {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 100}]})
        == []
    )
    assert [(n, v) for _d, n, v in writes] == [
        ("io.bfq.weight", "500"),
        ("io.bfq.weight", "8:0 100"),
    ]


# -- freezer --------------------------------------------------------------------


def test_freeze_waits_for_events(tmp_path: Path) -> None:
    d = cgroup(tmp_path)

    def settle(n: int) -> None:
        if n == 2:
            Path(d, "cgroup.events").write_text("populated 1\nfrozen 1\n")

    fake = FakeTime(settle)
    freezer.freeze(d, sleep=fake.sleep, clock=fake.clock)
    assert read(d, "cgroup.freeze") == "1"
    assert len(fake.sleeps) == 2
    assert freezer.is_frozen(d)


def test_thaw(tmp_path: Path) -> None:
    d = cgroup(tmp_path, **{"cgroup.freeze": "1", "cgroup.events": "populated 1\nfrozen 1\n"})

    def settle(n: int) -> None:
        Path(d, "cgroup.events").write_text("populated 1\nfrozen 0\n")

    fake = FakeTime(settle)
    freezer.thaw(d, sleep=fake.sleep, clock=fake.clock)
    assert read(d, "cgroup.freeze") == "0"
    assert not freezer.is_frozen(d)


def test_freeze_timeout_thaws_again(tmp_path: Path) -> None:
    d = cgroup(tmp_path)
    fake = FakeTime()
    with pytest.raises(CgroupError, match=r"did not report frozen 1 within 2.0s \(thawed again\)"):
        freezer.freeze(d, sleep=fake.sleep, clock=fake.clock)
    assert read(d, "cgroup.freeze") == "0"


def test_is_frozen_without_events(tmp_path: Path) -> None:
    d = cgroup(tmp_path, **{"cgroup.freeze": "1"})
    Path(d, "cgroup.events").unlink()
    assert freezer.is_frozen(d)


# -- subtree --------------------------------------------------------------------


def test_create_enables_wanted_controllers_in_ancestors(tmp_path: Path, writes: Writes) -> None:
    write(
        tmp_path, {"cgroup.controllers": "cpu memory hugetlb pids", "cgroup.subtree_control": "cpu"}
    )
    write(tmp_path / "kubeling", {"cgroup.controllers": "cpu memory", "cgroup.subtree_control": ""})
    subtree.create(str(tmp_path), "kubeling/pod/c1", frozenset({"cpu", "memory", "hugetlb"}))
    assert (tmp_path / "kubeling" / "pod" / "c1").is_dir()
    # root: cpu already on, pids not wanted; kubeling offers no hugetlb;
    # kubeling/pod is new (no files in a test tree): nothing offered.
    assert [(d, n, v) for d, n, v in writes] == [
        (str(tmp_path), "cgroup.subtree_control", "+memory +hugetlb"),
        (f"{tmp_path}/kubeling", "cgroup.subtree_control", "+cpu +memory"),
    ]


def test_create_falls_back_to_one_controller_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, {"cgroup.controllers": "cpu memory", "cgroup.subtree_control": ""})
    calls: list[str] = []

    def kernel(cgroup_dir: str, name: str, value: str) -> None:
        calls.append(value)
        if value != "+memory":
            raise CgroupError("EBUSY")

    monkeypatch.setattr(fs, "write_file", kernel)
    subtree.create(str(tmp_path), "c1", frozenset({"cpu", "memory"}))
    assert calls == ["+cpu +memory", "+cpu", "+memory"]
    assert (tmp_path / "c1").is_dir()


def test_create_without_wanted_controllers(tmp_path: Path, writes: Writes) -> None:
    write(tmp_path, {"cgroup.controllers": "hugetlb", "cgroup.subtree_control": ""})
    subtree.create(str(tmp_path), "a/b", frozenset())
    assert writes == []
    assert (tmp_path / "a" / "b").is_dir()


# -- unified --------------------------------------------------------------------


def test_unified(tmp_path: Path) -> None:
    d = cgroup(tmp_path, "memory")
    unified.apply(d, {"memory.high": "1000000", "cgroup.max.descendants": "10"}, None)
    assert read(d, "memory.high") == "1000000"
    assert read(d, "cgroup.max.descendants") == "10"


@pytest.mark.parametrize("key", ["", "../memory.max", "a/b", ".hidden", "memory"])
def test_unified_bad_keys(tmp_path: Path, key: str) -> None:
    d = cgroup(tmp_path, "memory")
    with pytest.raises(CgroupError, match="linux.resources.unified: invalid key"):
        unified.apply(d, {key: "1"}, None)


def test_unified_bad_value(tmp_path: Path) -> None:
    d = cgroup(tmp_path, "memory")
    with pytest.raises(CgroupError, match="memory.high: expected a string"):
        unified.apply(d, {"memory.high": 5}, None)


def test_unified_missing_file(tmp_path: Path) -> None:
    d = cgroup(tmp_path)
    with pytest.raises(CgroupError, match=r"ENOENT .*\(is the io controller enabled\?\)"):
        unified.apply(d, {"io.max": "8:0 rbps=1"}, None)


def test_unified_restricted_in_hybrid(tmp_path: Path) -> None:
    d = cgroup(tmp_path, "hugetlb")
    unified.apply(d, {"hugetlb.2MB.max": "2097152"}, frozenset({"hugetlb"}))
    assert read(d, "hugetlb.2MB.max") == "2097152"
    with pytest.raises(CgroupError, match="the memory controller is not served by cgroup v2"):
        unified.apply(d, {"memory.high": "1"}, frozenset({"hugetlb"}))
