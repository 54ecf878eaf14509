"""The manager against fixture trees of all three layouts (one suite, every layout)."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from runtime.cgroups import CgroupError, Manager, detect_layout, open_manager
from runtime.cgroups.manager import V2_DEVICES_WARNING

from .conftest import Writes
from .test_v1 import FakeTime
from .trees import V1_MOUNTED, hybrid_tree, legacy_tree, populate, unified_tree, write

MB = 1 << 20
PATH = "/kubeling/pod1/c1"
REL = PATH.lstrip("/")

TREES: dict[str, Callable[[Path], Path]] = {
    "legacy": legacy_tree,
    "hybrid": hybrid_tree,
    "unified": unified_tree,
}


@pytest.fixture(params=sorted(TREES))
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def root(tmp_path: Path, mode: str) -> Path:
    return TREES[mode](tmp_path / "cgroup")


def manager(root: Path, fake: FakeTime | None = None) -> Manager:
    fake = fake or FakeTime()
    return Manager(detect_layout(str(root)), REL, sleep=fake.sleep, clock=fake.clock)


def created(root: Path) -> Manager:
    """A created cgroup whose directories hold the files the kernel would add."""
    mgr = manager(root)
    populate(root, REL)
    mgr.create()
    return mgr


def read(directory: str, name: str) -> str:
    return Path(directory, name).read_text()


# -- paths, create, exists --------------------------------------------------------


def test_paths(root: Path, mode: str) -> None:
    paths = open_manager(PATH, root=str(root)).paths
    if mode == "unified":
        assert paths[""] == f"{root}/{REL}"
        assert paths["memory"] == paths["hugetlb"] == paths[""]
        assert "devices" not in paths
    else:
        for name in V1_MOUNTED:
            assert paths[name] == f"{root}/{name}/{REL}"
        assert "systemd" not in paths
    if mode == "hybrid":
        assert paths["hugetlb"] == paths[""] == f"{root}/unified/{REL}"
    if mode == "legacy":
        assert "" not in paths
        assert "hugetlb" not in paths


def test_create_is_idempotent_and_exists(root: Path) -> None:
    mgr = manager(root)
    assert not mgr.exists()
    mgr.create()
    mgr.create()
    assert mgr.exists()
    for path in set(mgr.paths.values()):
        assert os.path.isdir(path), path


def test_relative_path_is_below_root(root: Path) -> None:
    assert open_manager(REL, root=str(root)).paths == open_manager(PATH, root=str(root)).paths


def test_create_copies_cpuset_from_parents(tmp_path: Path) -> None:
    root = legacy_tree(tmp_path)
    for rel in ("kubeling", "kubeling/pod1", REL):
        write(root / "cpuset" / rel, {"cpuset.cpus": "", "cpuset.mems": ""})
    manager(root).create()
    for rel in ("kubeling", "kubeling/pod1", REL):
        assert read(f"{root}/cpuset/{rel}", "cpuset.cpus") == "0-1"
        assert read(f"{root}/cpuset/{rel}", "cpuset.mems") == "0"


def test_create_enables_unified_controllers_in_hybrid(tmp_path: Path, writes: Writes) -> None:
    root = hybrid_tree(tmp_path)
    manager(root).create()
    assert writes == [(f"{root}/unified", "cgroup.subtree_control", "+hugetlb")]


def test_create_enables_all_controllers_on_unified(tmp_path: Path, writes: Writes) -> None:
    root = unified_tree(tmp_path, controllers="cpu memory pids")
    manager(root).create()
    assert writes == [(str(root), "cgroup.subtree_control", "+cpu +memory +pids")]


def test_create_failure_removes_what_it_made(tmp_path: Path) -> None:
    root = hybrid_tree(tmp_path)
    (root / "pids" / "kubeling").write_text("not a directory")
    with pytest.raises(CgroupError, match=r"^mkdir .*/pids/kubeling/pod1/c1: E"):
        manager(root).create()
    assert not (root / "blkio" / REL).exists()  # made, then removed
    assert (root / "blkio" / "kubeling" / "pod1").is_dir()  # parents stay


# -- apply ----------------------------------------------------------------------

RESOURCES: dict[str, object] = {
    "memory": {"limit": 64 * MB, "swap": 128 * MB, "reservation": 32 * MB},
    "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "1", "mems": "0"},
    "pids": {"limit": 10},
    "hugepageLimits": [{"pageSize": "2MB", "limit": 4 * MB}],
}

EXPECTED_V1 = {
    ("memory", "memory.limit_in_bytes"): str(64 * MB),
    ("memory", "memory.memsw.limit_in_bytes"): str(128 * MB),
    ("memory", "memory.soft_limit_in_bytes"): str(32 * MB),
    ("cpu", "cpu.shares"): "1024",
    ("cpu", "cpu.cfs_quota_us"): "50000",
    ("cpu", "cpu.cfs_period_us"): "100000",
    ("cpuset", "cpuset.cpus"): "1",
    ("cpuset", "cpuset.mems"): "0",
    ("pids", "pids.max"): "10",
}

EXPECTED_V2 = {
    ("memory", "memory.max"): str(64 * MB),
    ("memory", "memory.swap.max"): str(64 * MB),
    ("memory", "memory.low"): str(32 * MB),
    ("cpu", "cpu.weight"): "39",
    ("cpu", "cpu.max"): "50000 100000",
    ("cpuset", "cpuset.cpus"): "1",
    ("cpuset", "cpuset.mems"): "0",
    ("pids", "pids.max"): "10",
    ("hugetlb", "hugetlb.2MB.max"): str(4 * MB),
}


def test_apply_routes_each_controller(root: Path, mode: str) -> None:
    mgr = created(root)
    warnings = mgr.apply(RESOURCES)
    expected = dict(EXPECTED_V2 if mode == "unified" else EXPECTED_V1)
    if mode == "hybrid":
        expected[("hugetlb", "hugetlb.2MB.max")] = str(4 * MB)
    for (controller, name), value in expected.items():
        assert read(mgr.paths[controller], name) == value, (controller, name)
    if mode == "legacy":
        assert warnings == [
            "linux.resources.hugepageLimits not applied: the hugetlb controller is not "
            f"available under {root}"
        ]
    else:
        assert warnings == []


def test_hugetlb_on_v1_when_mounted(tmp_path: Path) -> None:
    root = legacy_tree(tmp_path, controllers=("memory", "hugetlb"))
    mgr = created(root)
    assert mgr.apply({"hugepageLimits": [{"pageSize": "2MB", "limit": 2 * MB}]}) == []
    assert read(f"{root}/hugetlb/{REL}", "hugetlb.2MB.limit_in_bytes") == str(2 * MB)


def test_hugetlb_goes_to_unified_in_hybrid(tmp_path: Path, writes: Writes) -> None:
    root = hybrid_tree(tmp_path)
    mgr = created(root)
    writes.clear()
    mgr.apply({"hugepageLimits": [{"pageSize": "2MB", "limit": 2 * MB}]})
    assert writes == [
        (f"{root}/unified/{REL}", "hugetlb.2MB.max", str(2 * MB)),
        (f"{root}/unified/{REL}", "hugetlb.2MB.rsvd.max", str(2 * MB)),
    ]


def test_partial_update_touches_only_its_files(root: Path, writes: Writes) -> None:
    mgr = created(root)
    mgr.apply(RESOURCES)
    files = [(p, n) for p in set(mgr.paths.values()) for n in os.listdir(p)]
    before = {(p, n): read(p, n) for p, n in files}
    writes.clear()
    assert mgr.apply({"pids": {"limit": 20}, "memory": {}, "cpu": {}}) == []
    assert writes.names() == ["pids.max"]
    changed = {(p, n) for p, n in files if read(p, n) != before[(p, n)]}
    assert changed == {(mgr.paths["pids"], "pids.max")}
    assert read(mgr.paths["pids"], "pids.max") == "20"


def test_empty_and_null_sections_write_nothing(root: Path, writes: Writes) -> None:
    mgr = created(root)
    writes.clear()
    resources: dict[str, object] = {
        "memory": None,
        "cpu": {"cpus": "", "shares": None},
        "pids": {},
        "hugepageLimits": [],
        "blockIO": {},
        "network": {},
        "unified": {},
    }
    assert mgr.apply(resources) == []
    assert writes == []


def test_devices(root: Path, mode: str) -> None:
    mgr = created(root)
    rules = [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    ]
    warnings = mgr.apply({"devices": rules})
    if mode == "unified":
        assert warnings == [V2_DEVICES_WARNING]
    else:
        assert warnings == []
        assert read(mgr.paths["devices"], "devices.allow") == "c 1:3 rwm"
        assert read(mgr.paths["devices"], "devices.deny") == "a"


def test_v2_devices_warning_says_not_enforced() -> None:
    assert "device rules are not enforced on cgroup v2" in V2_DEVICES_WARNING
    assert "eBPF" in V2_DEVICES_WARNING


def test_missing_controllers_warn(tmp_path: Path) -> None:
    root = legacy_tree(tmp_path, controllers=("memory",))
    mgr = created(root)
    warnings = mgr.apply(
        {
            "cpu": {"shares": 2, "cpus": "0"},
            "pids": {"limit": 1},
            "blockIO": {"weight": 10},
            "devices": [],
            "network": {"classID": 1, "priorities": [{"name": "lo", "priority": 1}]},
            "rdma": {"mlx5_1": {"hcaHandles": 3}},
        }
    )
    assert [w.split(" not applied")[0] for w in warnings] == [
        "linux.resources.rdma is not supported by kubeling: ignored",
        "linux.resources.cpu.cpus/mems",
        "linux.resources.devices",
        "linux.resources.cpu",
        "linux.resources.pids",
        "linux.resources.blockIO",
        "linux.resources.network.classID",
        "linux.resources.network.priorities",
    ]
    assert warnings[-2] == (
        "linux.resources.network.classID not applied: the net_cls (v1) controller is not "
        f"available under {root}"
    )


def test_unknown_keys_warn(root: Path, writes: Writes) -> None:
    mgr = created(root)
    writes.clear()
    warnings = mgr.apply(
        {
            "memory": {"useHierarchy": True, "checkBeforeUpdate": None},
            "cpu": {"bogus": 1},
            "rdma": None,
        }
    )
    assert warnings == [
        "linux.resources.memory.useHierarchy is not supported by kubeling: ignored",
        "linux.resources.cpu.bogus is not supported by kubeling: ignored",
    ]
    assert writes == []


def test_network_on_v1(tmp_path: Path) -> None:
    root = legacy_tree(tmp_path, controllers=("net_cls", "net_prio"))
    mgr = created(root)
    assert (
        mgr.apply({"network": {"classID": 7, "priorities": [{"name": "lo", "priority": 2}]}}) == []
    )
    assert read(mgr.paths["net_cls"], "net_cls.classid") == "7"
    assert read(mgr.paths["net_prio"], "net_prio.ifpriomap") == "lo 2"


def test_block_io(root: Path, mode: str) -> None:
    mgr = created(root)
    mgr.apply({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1024}]}})
    if mode == "unified":
        assert read(mgr.paths["io"], "io.max") == "8:0 rbps=1024"
    else:
        assert read(mgr.paths["blkio"], "blkio.throttle.read_bps_device") == "8:0 1024"


def test_unified_section(root: Path, mode: str) -> None:
    mgr = created(root)
    if mode == "legacy":
        with pytest.raises(CgroupError, match="linux.resources.unified: needs cgroup v2"):
            mgr.apply({"unified": {"hugetlb.2MB.max": "1"}})
        return
    mgr.apply({"unified": {"hugetlb.2MB.max": "2097152"}})
    assert read(mgr.paths[""], "hugetlb.2MB.max") == "2097152"
    if mode == "hybrid":
        with pytest.raises(CgroupError, match="memory controller is not served by cgroup v2"):
            mgr.apply({"unified": {"memory.high": "1"}})
    else:
        mgr.apply({"memory": {"limit": MB}, "unified": {"memory.max": "2097152"}})
        assert read(mgr.paths[""], "memory.max") == "2097152"  # unified applied last


def test_apply_rejects_non_objects(root: Path) -> None:
    mgr = created(root)
    with pytest.raises(CgroupError, match="linux.resources: expected an object"):
        mgr.apply([])  # type: ignore[arg-type]
    with pytest.raises(CgroupError, match="linux.resources.memory: expected an object"):
        mgr.apply({"memory": 5})
    with pytest.raises(CgroupError, match="linux.resources.devices: expected a list"):
        mgr.apply({"devices": {}})


# -- processes ------------------------------------------------------------------


def test_add_process_joins_every_hierarchy(root: Path) -> None:
    mgr = created(root)
    mgr.add_process(4242)
    for path in set(mgr.paths.values()):
        assert read(path, "cgroup.procs") == "4242"


def test_pids_walks_descendants_and_dedupes(root: Path) -> None:
    mgr = created(root)
    paths = sorted(set(mgr.paths.values()))
    Path(paths[0], "cgroup.procs").write_text("10\n11\n")
    write(Path(paths[0], "sub"), {"cgroup.procs": "12\n"})
    Path(paths[-1], "cgroup.procs").write_text("11\n13\n" if len(paths) > 1 else "10\n11\n13\n")
    assert mgr.pids() == [10, 11, 12, 13]


def test_pids_of_missing_cgroup(root: Path) -> None:
    assert manager(root).pids() == []


# -- freezer --------------------------------------------------------------------


def test_freeze_and_thaw(root: Path, mode: str) -> None:
    mgr = created(root)
    if mode == "unified":
        events = Path(mgr.paths[""], "cgroup.events")
        # The kernel reports the new state a moment after cgroup.freeze changes.
        fake = FakeTime(
            lambda n: events.write_text(
                "populated 1\nfrozen " + read(mgr.paths[""], "cgroup.freeze") + "\n"
            )
        )
        mgr = manager(root, fake)
    mgr.freeze()
    assert mgr.is_frozen()
    if mode == "unified":
        assert read(mgr.paths[""], "cgroup.freeze") == "1"
    else:
        assert read(mgr.paths["freezer"], "freezer.state") == "FROZEN"
    mgr.thaw()
    assert not mgr.is_frozen()


def test_hybrid_without_v1_freezer_uses_unified(tmp_path: Path) -> None:
    root = legacy_tree(tmp_path, controllers=("memory",))
    write(root / "unified", {"cgroup.procs": "", "cgroup.controllers": ""})
    mgr = created(root)
    Path(mgr.paths[""], "cgroup.events").write_text("frozen 1\n")
    mgr.freeze()
    assert read(mgr.paths[""], "cgroup.freeze") == "1"
    assert mgr.is_frozen()


def test_freeze_without_freezer(tmp_path: Path) -> None:
    mgr = created(legacy_tree(tmp_path, controllers=("memory",)))
    with pytest.raises(CgroupError, match="no freezer"):
        mgr.freeze()


# -- remove ---------------------------------------------------------------------


def test_remove_leaf_and_descendants_only(root: Path) -> None:
    mgr = manager(root)
    mgr.create()
    for path in set(mgr.paths.values()):
        os.makedirs(f"{path}/sub/deeper")
    mgr.remove()
    assert not mgr.exists()
    for path in set(mgr.paths.values()):
        assert os.path.isdir(os.path.dirname(path))  # the parent stays
    mgr.remove()  # missing is fine


def test_remove_retries_busy(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeTime()
    mgr = manager(root, fake)
    mgr.create()
    real_rmdir = os.rmdir
    busy = {"left": 3}

    def rmdir(path: str) -> None:
        if busy["left"]:
            busy["left"] -= 1
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), path)
        real_rmdir(path)

    monkeypatch.setattr(os, "rmdir", rmdir)
    mgr.remove()
    assert not mgr.exists()
    assert len(fake.sleeps) == 3


def test_remove_gives_up_after_a_second(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeTime()
    mgr = manager(root, fake)
    mgr.create()

    rmdir_calls: set[str] = set()

    def rmdir(path: str) -> None:
        rmdir_calls.add(path)
        raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), path)

    monkeypatch.setattr(os, "rmdir", rmdir)
    with pytest.raises(CgroupError, match=r"^rmdir .*/c1: EBUSY \(Device or resource busy\)"):
        mgr.remove()
    # Every hierarchy was tried, within about a second in all.
    assert 1.0 <= fake.now < 1.1
    assert not rmdir_calls - {f"{p}" for p in set(mgr.paths.values())}
    assert len(rmdir_calls) == len(set(mgr.paths.values()))


# -- stats ----------------------------------------------------------------------


def test_stats(root: Path, mode: str) -> None:
    mgr = created(root)
    paths = mgr.paths
    if mode == "unified":
        write(
            Path(paths[""]),
            {
                "cpu.stat": "usage_usec 5\nuser_usec 3\nsystem_usec 2\n",
                "memory.current": "4096",
                "memory.max": str(MB),
                "pids.current": "2",
                "pids.max": "10",
                "io.stat": "8:0 rbytes=1 wbytes=2\n",
            },
        )
    else:
        write(Path(paths["cpuacct"]), {"cpuacct.usage": "5000"})
        write(Path(paths["memory"]), {"memory.usage_in_bytes": "4096"})
        write(Path(paths["memory"]), {"memory.limit_in_bytes": str(MB)})
        write(Path(paths["pids"]), {"pids.current": "2", "pids.max": "10"})
        write(
            Path(paths["blkio"]),
            {"blkio.throttle.io_service_bytes_recursive": "8:0 Read 1\n8:0 Write 2\n"},
        )
    if mode != "legacy":
        write(Path(paths[""]), {"hugetlb.2MB.current": "2097152"})
    result = mgr.stats()
    assert result.cpu.usage_total_ns == 5000
    assert result.memory.usage_bytes == 4096
    assert result.memory.limit_bytes == MB
    assert (result.pids.current, result.pids.limit) == (2, 10)
    assert (result.blkio.read_bytes, result.blkio.write_bytes) == (1, 2)
    if mode == "legacy":
        assert result.hugetlb == {}
    else:
        assert result.hugetlb["2MB"].usage_bytes == 2 * MB


def test_stats_of_missing_cgroup(root: Path) -> None:
    result = manager(root).stats()
    assert result.cpu.usage_total_ns == 0
    assert result.memory.limit_bytes is None
    assert result.pids.limit is None
    assert result.hugetlb == {}
