from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from runtime.cgroups import CgroupError, convert, fs


@pytest.mark.parametrize(
    ("shares", "weight"),
    [(0, 1), (2, 1), (3, 1), (1024, 39), (2048, 79), (262144, 10000), (10**9, 10000)],
)
def test_shares_to_weight(shares: int, weight: int) -> None:
    assert convert.shares_to_weight(shares) == weight


def test_shares_to_weight_is_crun_formula() -> None:
    for shares in range(2, 262145, 997):
        assert convert.shares_to_weight(shares) == 1 + ((shares - 2) * 9999) // 262142


@pytest.mark.parametrize(("blkio", "io"), [(10, 1), (500, 4950), (1000, 10000), (5, 1)])
def test_blkio_weight_to_io_weight(blkio: int, io: int) -> None:
    assert convert.blkio_weight_to_io_weight(blkio) == io


def test_limit_v2() -> None:
    assert convert.limit_v2(-1) == "max"
    assert convert.limit_v2(0) == "0"
    assert convert.limit_v2(4096) == "4096"


def test_swap_v2() -> None:
    assert convert.swap_v2(300, 100) == 200
    assert convert.swap_v2(100, 100) == 0
    assert convert.swap_v2(-1, 100) == -1
    assert convert.swap_v2(-1, None) == -1
    with pytest.raises(CgroupError, match="needs a finite memory limit"):
        convert.swap_v2(300, None)
    with pytest.raises(CgroupError, match="needs a finite memory limit"):
        convert.swap_v2(300, -1)
    with pytest.raises(CgroupError, match="must be >= memory limit 100"):
        convert.swap_v2(50, 100)


def test_device_rule() -> None:
    assert convert.device_rule("c", 1, 3, "rwm") == "c 1:3 rwm"
    assert convert.device_rule("b", -1, None, "m") == "b *:* m"
    assert convert.device_rule("c", 136, -1, "rw") == "c 136:* rw"
    assert convert.device_rule("a", None, None, "rwm") == "a"


@pytest.mark.parametrize("size", ["2MB", "64KB", "1GB"])
def test_page_size_ok(size: str) -> None:
    assert convert.check_page_size(size) == size


@pytest.mark.parametrize("size", ["2M", "MB", "../x", "2mb", None, 2, "2.5MB"])
def test_page_size_bad(size: object) -> None:
    with pytest.raises(CgroupError, match="hugepageLimits.pageSize"):
        convert.check_page_size(size)


def test_typed_access() -> None:
    values = {"a": 1, "b": True, "c": "x", "z": 0, "n": None, "l": [{"k": 1}]}
    assert convert.get_int(values, "a", "s") == 1
    assert convert.get_int(values, "n", "s") is None
    assert convert.get_int(values, "missing", "s") is None
    assert convert.get_set_int(values, "z", "s") is None
    assert convert.get_bool(values, "b", "s") is True
    assert convert.get_str(values, "c", "s") == "x"
    assert convert.get_objects(values, "l", "s") == [{"k": 1}]
    assert convert.get_objects(values, "n", "s") == []
    with pytest.raises(CgroupError, match=r"^linux.resources.s.b: expected an integer, got True"):
        convert.get_int(values, "b", "s")
    with pytest.raises(CgroupError, match=r"linux.resources.s.c: expected an integer"):
        convert.get_int(values, "c", "s")
    with pytest.raises(CgroupError, match=r"linux.resources.s.a: expected a boolean"):
        convert.get_bool(values, "a", "s")
    with pytest.raises(CgroupError, match=r"linux.resources.s.a: expected a string"):
        convert.get_str(values, "a", "s")
    with pytest.raises(CgroupError, match=r"^linux.resources.c: expected a list of objects"):
        convert.get_objects(values, "c", "")
    with pytest.raises(CgroupError, match=r"^linux.resources.a: expected an object"):
        convert.section(values, "a")
    assert convert.section({"m": {"x": 1}}, "m") == {"x": 1}
    assert convert.section({}, "m") is None


def test_has_settings() -> None:
    assert not convert.has_settings(None)
    assert not convert.has_settings({})
    assert not convert.has_settings({"limit": None})
    assert not convert.has_settings([])
    assert convert.has_settings({"limit": 0})
    assert convert.has_settings([{}])


def test_describe() -> None:
    err = OSError(errno.EBUSY, os.strerror(errno.EBUSY))
    assert fs.describe(err) == "EBUSY (Device or resource busy)"


def test_write_error_names_file_and_value(tmp_path: Path) -> None:
    path = f"{tmp_path}/memory.limit_in_bytes"
    os.mkdir(path)
    with pytest.raises(CgroupError) as info:
        fs.write_file(str(tmp_path), "memory.limit_in_bytes", "1048576")
    assert str(info.value) == f"write 1048576 to {path}: EISDIR (Is a directory)"
    assert info.value.errno == errno.EISDIR


def test_write_never_creates_files(tmp_path: Path) -> None:
    with pytest.raises(CgroupError, match="ENOENT"):
        fs.write_file(str(tmp_path), "pids.max", "10")
    assert not os.path.exists(f"{tmp_path}/pids.max")


def test_read_helpers(tmp_path: Path) -> None:
    d = str(tmp_path)
    with open(f"{d}/keyed", "w") as f:
        f.write("a 1\nb x\nc 2 3\nd 4\n")
    with open(f"{d}/max", "w") as f:
        f.write("max\n")
    assert fs.read_keyed(d, "keyed") == {"a": 1, "d": 4}
    assert fs.read_keyed(d, "missing") == {}
    assert fs.read_int(d, "max") is None
    assert fs.read_int(d, "missing") is None
    assert fs.read_file(d, "missing") is None
