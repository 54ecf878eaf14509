"""The pure steps of cri/runtime_service/container_update.py: checking and converting
the request, merging it into linux.resources, choosing what to write to the cgroup,
naming the field of a refused write, and config.json back to ContainerResources (the
RPC itself is in tests/integration/cri/test_container_update.py)."""

from __future__ import annotations

import errno
from typing import Any

import pytest

from cri.api import api_pb2
from cri.errors import InvalidArgument
from cri.runtime_service.container_update import (
    cgroup_sections,
    container_resources,
    convert,
    merge,
    translate,
    valid_cpuset,
)
from runtime import errors as runtime_errors
from runtime.cgroups import CgroupError

MIB = 1024 * 1024


def request(**fields: Any) -> api_pb2.LinuxContainerResources:
    return api_pb2.LinuxContainerResources(**fields)


@pytest.mark.parametrize("value", ["0", "0-3", "0,2-5,7", "10-10"])
def test_valid_cpusets(value: str) -> None:
    assert valid_cpuset(value)


@pytest.mark.parametrize("value", ["", "a", "0-", "-1", "3-1", "0,,1", "0 1", "1-2-3"])
def test_invalid_cpusets(value: str) -> None:
    assert not valid_cpuset(value)


def test_convert_sets_only_what_the_request_gives() -> None:
    assert convert(request()) == {}
    out = convert(request(cpu_quota=50_000, memory_limit_in_bytes=64 * MIB))
    assert out["cpu"] == {"quota": 50_000}
    assert out["memory"]["limit"] == 64 * MIB
    out = convert(
        request(hugepage_limits=[{"page_size": "2MB", "limit": MIB}], unified={"a.b": "1"})
    )
    assert out["hugepageLimits"] == [{"pageSize": "2MB", "limit": MIB}]
    assert out["unified"] == {"a.b": "1"}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"cpu_period": 999}, "linux.cpu_period"),
        ({"cpu_period": 1_000_001}, "linux.cpu_period"),
        ({"cpu_quota": 999}, "linux.cpu_quota"),
        ({"cpu_quota": -2}, "linux.cpu_quota"),
        ({"cpu_shares": 1}, "linux.cpu_shares"),
        ({"cpu_shares": 262145}, "linux.cpu_shares"),
        ({"cpu_shares": -3}, "linux.cpu_shares"),
        ({"cpuset_cpus": "x"}, "linux.cpuset_cpus"),
        ({"cpuset_mems": "2-1"}, "linux.cpuset_mems"),
        ({"memory_limit_in_bytes": -2}, "linux.memory_limit_in_bytes"),
        ({"memory_swap_limit_in_bytes": -2}, "linux.memory_swap_limit_in_bytes"),
        ({"hugepage_limits": [{"limit": 1}]}, r"linux.hugepage_limits\[0\].page_size"),
        ({"unified": {"a/b": "1"}}, "linux.unified"),
    ],
)
def test_convert_names_the_bad_field(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument, match=field):
        convert(request(**fields))


def test_limits_the_kernel_accepts_pass() -> None:
    convert(request(cpu_period=1000, cpu_quota=-1, cpu_shares=2))
    convert(request(cpu_period=1_000_000, cpu_quota=1000, cpu_shares=262144))


def test_merge_lays_the_request_over_the_old_resources() -> None:
    old: dict[str, Any] = {
        "devices": [{"allow": False, "access": "rwm"}],
        "cpu": {"shares": 512, "quota": 10_000},
        "memory": {"limit": 64 * MIB, "swap": 64 * MIB},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 1}, {"pageSize": "1GB", "limit": 2}],
        "unified": {"memory.high": "1", "pids.max": "5"},
    }
    wanted = {
        "cpu": {"quota": 20_000},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 3}],
        "unified": {"memory.high": "9"},
    }
    merged = merge(old, wanted)
    assert merged["devices"] == old["devices"]
    assert merged["cpu"] == {"shares": 512, "quota": 20_000}
    assert merged["memory"] == old["memory"]
    assert merged["hugepageLimits"] == [
        {"pageSize": "1GB", "limit": 2},
        {"pageSize": "2MB", "limit": 3},
    ]
    assert merged["unified"] == {"memory.high": "9", "pids.max": "5"}
    assert old["cpu"] == {"shares": 512, "quota": 10_000}  # unchanged
    assert merge({}, {"memory": {"limit": 1}}) == {"memory": {"limit": 1}}


def test_cgroup_sections_are_what_the_request_touches() -> None:
    resources = {
        "devices": [{"allow": False, "access": "rwm"}],
        "cpu": {"shares": 512, "quota": 20_000},
        "memory": {"limit": 64 * MIB, "swap": 64 * MIB},
        "pids": {"limit": 10},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 3}, {"pageSize": "1GB", "limit": 2}],
        "unified": {"memory.high": "9", "pids.max": "5"},
    }
    assert cgroup_sections(resources, {"memory": {"limit": 1}}) == {
        "memory": {"limit": 64 * MIB, "swap": 64 * MIB}
    }
    wanted = {"cpu": {"quota": 1}, "hugepageLimits": [{"pageSize": "2MB"}], "unified": {"x.y": ""}}
    assert cgroup_sections(resources, wanted) == {
        "cpu": {"shares": 512, "quota": 20_000},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 3}],
    }
    assert cgroup_sections({}, {"cpu": {"quota": 1}, "unified": {"a.b": "1"}}) == {}


@pytest.mark.parametrize(
    ("message", "code", "kind", "field"),
    [
        ("write 9 to /c/x/cpuset.cpus: ERANGE", errno.ERANGE, InvalidArgument, "cpuset_cpus"),
        ("write 9 to /c/x/cpuset.mems: EINVAL", errno.EINVAL, InvalidArgument, "cpuset_mems"),
        ("write 1 to /c/x/memory.limit_in_bytes: EBUSY", errno.EBUSY, runtime_errors.InvalidState,
         "memory_limit_in_bytes"),
        ("write 1 to /c/x/memory.memsw.limit_in_bytes: EINVAL", errno.EINVAL, InvalidArgument,
         "memory_swap_limit_in_bytes"),
        ("write 9 to /c/x/cpu.max: EINVAL", errno.EINVAL, InvalidArgument, "cpu_quota"),
        ("linux.resources.unified.memory.max: bad", None, InvalidArgument, "unified"),
        ("write 1 to /c/x/hugetlb.3MB.limit_in_bytes: ENOENT", errno.ENOENT, InvalidArgument,
         "hugepage_limits"),
    ],
)  # fmt: skip
def test_translate_names_the_field(message: str, code: int | None, kind: type, field: str) -> None:
    translated = translate(CgroupError(message, code))
    assert isinstance(translated, kind)
    assert str(translated) == f"linux.{field}: {message}"


def test_translate_keeps_other_failures() -> None:
    error = CgroupError("write 1 to /c/x/cpu.shares: EACCES", errno.EACCES)
    assert translate(error) is error
    assert str(translate(CgroupError("something else"))) == "linux: something else"


def test_container_resources_from_the_spec() -> None:
    spec = {
        "process": {"oomScoreAdj": -998},
        "linux": {
            "resources": {
                "devices": [],
                "cpu": {
                    "period": 100_000,
                    "quota": 20_000,
                    "shares": 512,
                    "cpus": "0",
                    "mems": "0",
                },
                "memory": {"limit": 64 * MIB, "swap": 128 * MIB},
                "hugepageLimits": [{"pageSize": "2MB", "limit": MIB}],
                "unified": {"memory.high": "1000"},
            }
        },
    }
    linux = container_resources(spec).linux
    assert linux.oom_score_adj == -998
    assert (linux.cpu_period, linux.cpu_quota, linux.cpu_shares) == (100_000, 20_000, 512)
    assert (linux.cpuset_cpus, linux.cpuset_mems) == ("0", "0")
    assert (linux.memory_limit_in_bytes, linux.memory_swap_limit_in_bytes) == (64 * MIB, 128 * MIB)
    assert [(h.page_size, h.limit) for h in linux.hugepage_limits] == [("2MB", MIB)]
    assert dict(linux.unified) == {"memory.high": "1000"}
    assert container_resources({}).linux == api_pb2.LinuxContainerResources()
