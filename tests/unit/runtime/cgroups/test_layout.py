from __future__ import annotations

from pathlib import Path

import pytest

from runtime.cgroups import CgroupError, detect_layout, open_manager
from runtime.cgroups.base import parse_cgroups_path

from .trees import hybrid_tree, legacy_tree, unified_tree, write


def test_unified(tmp_path: Path) -> None:
    layout = detect_layout(str(unified_tree(tmp_path)))
    assert layout == "unified"
    assert layout.mode == "unified"
    assert str(layout) == "unified"
    assert layout.v1_mounts == {}
    assert layout.unified_mount == str(tmp_path)
    assert layout.route("memory") == ("v2", str(tmp_path))
    assert layout.route("blkio", "io") == ("v2", str(tmp_path))
    assert layout.route("net_cls") is None


def test_hybrid_routes_each_controller(tmp_path: Path) -> None:
    root = str(hybrid_tree(tmp_path))
    layout = detect_layout(root)
    assert layout == "hybrid"
    assert layout != "legacy"
    assert layout.unified_mount == f"{root}/unified"
    assert layout.unified_controllers == {"hugetlb"}
    assert layout.route("memory") == ("v1", f"{root}/memory")
    assert layout.route("hugetlb") == ("v2", f"{root}/unified")
    assert layout.route("net_cls") is None
    # A named hierarchy is not a controller.
    assert "systemd" not in layout.v1_mounts


def test_hybrid_controller_on_both_prefers_v1(tmp_path: Path) -> None:
    # cgroup.controllers would not list a v1-bound controller, but be safe anyway.
    root = str(hybrid_tree(tmp_path, unified_controllers="memory hugetlb"))
    layout = detect_layout(root)
    assert layout.route("memory") == ("v1", f"{root}/memory")
    assert layout.unified_controllers == {"hugetlb"}


def test_legacy(tmp_path: Path) -> None:
    root = str(legacy_tree(tmp_path))
    layout = detect_layout(root)
    assert layout == "legacy"
    assert layout.unified_mount is None
    assert sorted(layout.v1_mounts) == [
        "blkio",
        "cpu",
        "cpuacct",
        "cpuset",
        "devices",
        "freezer",
        "memory",
        "pids",
    ]
    assert layout.route("hugetlb") is None


def test_comounted_controllers_use_the_real_directory(tmp_path: Path) -> None:
    write(tmp_path / "cpu,cpuacct", {"cgroup.procs": ""})
    write(tmp_path / "net_cls,net_prio", {"cgroup.procs": ""})
    (tmp_path / "cpu").symlink_to("cpu,cpuacct")
    (tmp_path / "cpuacct").symlink_to("cpu,cpuacct")
    layout = detect_layout(str(tmp_path))
    assert layout.v1_mounts == {
        "cpu": f"{tmp_path}/cpu,cpuacct",
        "cpuacct": f"{tmp_path}/cpu,cpuacct",
        "net_cls": f"{tmp_path}/net_cls,net_prio",
        "net_prio": f"{tmp_path}/net_cls,net_prio",
    }


def test_directories_that_are_not_hierarchies_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "memory").mkdir()  # no cgroup.procs: not mounted
    write(tmp_path / "unified", {"cgroup.procs": ""})  # no cgroup.controllers
    layout = detect_layout(str(tmp_path))
    assert layout == "legacy"
    assert layout.v1_mounts == {}


def test_unified_without_v1_is_not_hybrid(tmp_path: Path) -> None:
    write(tmp_path / "unified", {"cgroup.procs": "", "cgroup.controllers": "hugetlb"})
    layout = detect_layout(str(tmp_path))
    assert layout == "legacy"
    assert layout.unified_mount is None


def test_missing_root(tmp_path: Path) -> None:
    layout = detect_layout(str(tmp_path / "nope"))
    assert layout == "legacy"
    assert layout.v1_mounts == {}


def test_layout_equality_and_repr(tmp_path: Path) -> None:
    root = str(hybrid_tree(tmp_path))
    assert detect_layout(root) == detect_layout(root + "/")
    assert detect_layout(root) != 3
    assert "hugetlb" in repr(detect_layout(root))
    assert hash(detect_layout(root)) == hash("hybrid")


@pytest.mark.parametrize(
    ("given", "relative"),
    [
        ("/kubeling/abc", "kubeling/abc"),
        ("kubeling/abc", "kubeling/abc"),
        ("//kubeling//./abc/", "kubeling/abc"),
        ("/pod:1/c", "pod:1/c"),
    ],
)
def test_cgroups_path(given: str, relative: str) -> None:
    assert parse_cgroups_path(given) == relative


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("", "must be a non-empty path"),
        ("/", "must name a cgroup below the root"),
        ("/./", "must name a cgroup below the root"),
        ("/kubeling/../etc", "must not contain '..'"),
        ("..", "must not contain '..'"),
        ("system.slice:kubeling:abc", "systemd slice:prefix:name form is not supported"),
        ("/a\0b", "NUL"),
    ],
)
def test_cgroups_path_errors(given: str, message: str) -> None:
    with pytest.raises(CgroupError, match="^cgroupsPath ") as info:
        parse_cgroups_path(given)
    assert message in str(info.value)


def test_open_manager_rejects_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(CgroupError, match=r"cgroupsPath '/a/\.\./b'"):
        open_manager("/a/../b", root=str(hybrid_tree(tmp_path)))


def test_open_manager_without_hierarchies(tmp_path: Path) -> None:
    with pytest.raises(CgroupError, match="no cgroup hierarchy found"):
        open_manager("/kubeling/x", root=str(tmp_path))


def test_open_manager_touches_nothing(tmp_path: Path) -> None:
    root = hybrid_tree(tmp_path)
    mgr = open_manager("/kubeling/x", root=str(root))
    assert not mgr.exists()
    assert not (root / "memory" / "kubeling").exists()
