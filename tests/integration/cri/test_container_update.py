"""UpdateContainerResources through the CRI server's gRPC stubs, against the real
kernel (root): the container's cgroup reads back the new limits, the container keeps
running, ContainerStatus.resources and config.json say the same, and bad values are
refused with the field named and nothing changed. The server: conftest.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import grpc
import pytest

from cri.api import api_pb2
from tests.integration.cri.support import NEEDS_CRI, Cri, alive

pytestmark = NEEDS_CRI

MIB = 1024 * 1024
SLEEP = ["sleep", "600"]


def update(cri: Cri, container_id: str, **linux: Any) -> None:
    request = api_pb2.UpdateContainerResourcesRequest(
        container_id=container_id, linux=api_pb2.LinuxContainerResources(**linux)
    )
    cri.runtime.UpdateContainerResources(request)


def refused(cri: Cri, container_id: str, **linux: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        update(cri, container_id, **linux)
    return raised.value


def cgroup_file(cri: Cri, controller: str, container_id: str, name: str) -> str:
    return Path(f"/sys/fs/cgroup/{controller}{cri.cgroup_parent}/{container_id}/{name}").read_text()


def spec_resources(cri: Cri, container_id: str) -> dict[str, Any]:
    spec = json.loads((cri.state / "containers" / container_id / "config.json").read_text())
    resources: dict[str, Any] = spec["linux"]["resources"]
    return resources


def resources(cri: Cri, container_id: str) -> api_pb2.LinuxContainerResources:
    return cri.status(container_id).status.resources.linux


def test_running_container_gets_the_new_limits_and_keeps_running(cri: Cri) -> None:
    sandbox_id = cri.run_sandbox("resize")
    linux = {"resources": {"memory_limit_in_bytes": 64 * MIB, "cpu_shares": 256}}
    container_id = cri.create(sandbox_id, "app", SLEEP, linux=linux)
    cri.start_container(container_id)
    pid = cri.pid(container_id)
    assert int(cgroup_file(cri, "memory", container_id, "memory.limit_in_bytes")) == 64 * MIB
    assert resources(cri, container_id).memory_limit_in_bytes == 64 * MIB

    update(
        cri,
        container_id,
        memory_limit_in_bytes=96 * MIB,
        cpu_period=100_000,
        cpu_quota=20_000,
        cpu_shares=512,
        cpuset_cpus="0",
    )
    assert int(cgroup_file(cri, "memory", container_id, "memory.limit_in_bytes")) == 96 * MIB
    assert int(cgroup_file(cri, "cpu", container_id, "cpu.cfs_quota_us")) == 20_000
    assert int(cgroup_file(cri, "cpu", container_id, "cpu.cfs_period_us")) == 100_000
    assert int(cgroup_file(cri, "cpu", container_id, "cpu.shares")) == 512
    assert cgroup_file(cri, "cpuset", container_id, "cpuset.cpus").strip() == "0"
    status = cri.status(container_id).status
    assert status.state == api_pb2.CONTAINER_RUNNING
    assert alive(pid)
    assert cri.exec(container_id, ["true"]).exit_code == 0
    reported = status.resources.linux
    assert reported.memory_limit_in_bytes == 96 * MIB
    assert (reported.cpu_period, reported.cpu_quota, reported.cpu_shares) == (100_000, 20_000, 512)
    assert reported.cpuset_cpus == "0"
    saved = spec_resources(cri, container_id)
    assert saved["memory"]["limit"] == 96 * MIB
    assert saved["cpu"]["quota"] == 20_000

    # Fields left zero keep their values; a later update changes only what it names.
    update(cri, container_id, cpu_quota=50_000)
    assert int(cgroup_file(cri, "cpu", container_id, "cpu.cfs_quota_us")) == 50_000
    assert int(cgroup_file(cri, "memory", container_id, "memory.limit_in_bytes")) == 96 * MIB
    reported = resources(cri, container_id)
    assert (reported.cpu_quota, reported.cpu_shares) == (50_000, 512)
    assert reported.memory_limit_in_bytes == 96 * MIB
    # Lifting the limit: -1 is unlimited.
    update(cri, container_id, cpu_quota=-1)
    assert int(cgroup_file(cri, "cpu", container_id, "cpu.cfs_quota_us")) == -1
    assert alive(pid)


def test_created_container_starts_with_the_updated_limits(cri: Cri) -> None:
    sandbox_id = cri.run_sandbox("early")
    container_id = cri.create(sandbox_id, "app", SLEEP)
    update(cri, container_id, memory_limit_in_bytes=48 * MIB)
    assert int(cgroup_file(cri, "memory", container_id, "memory.limit_in_bytes")) == 48 * MIB
    cri.start_container(container_id)
    assert cri.status(container_id).status.state == api_pb2.CONTAINER_RUNNING
    assert int(cgroup_file(cri, "memory", container_id, "memory.limit_in_bytes")) == 48 * MIB
    assert resources(cri, container_id).memory_limit_in_bytes == 48 * MIB


def test_exited_container_only_has_its_config_updated(cri: Cri) -> None:
    # containerd updates the spec of a container that is not running, and succeeds.
    sandbox_id = cri.run_sandbox("done")
    container_id = cri.run_to_exit(sandbox_id, "once", ["true"])
    update(cri, container_id, memory_limit_in_bytes=32 * MIB)
    assert resources(cri, container_id).memory_limit_in_bytes == 32 * MIB
    assert cri.status(container_id).status.state == api_pb2.CONTAINER_EXITED


def test_bad_values_are_refused_and_change_nothing(cri: Cri) -> None:
    sandbox_id = cri.run_sandbox("bad")
    linux = {"resources": {"memory_limit_in_bytes": 64 * MIB}}
    container_id = cri.create(sandbox_id, "app", SLEEP, linux=linux)
    cri.start_container(container_id)
    before = spec_resources(cri, container_id)

    unknown = refused(cri, "f" * 64, memory_limit_in_bytes=32 * MIB)
    assert unknown.code() == grpc.StatusCode.NOT_FOUND
    cases = [
        ({"cpu_period": 10}, "linux.cpu_period"),
        ({"cpu_quota": -5}, "linux.cpu_quota"),
        ({"cpu_shares": 1_000_000}, "linux.cpu_shares"),
        ({"memory_limit_in_bytes": -7}, "linux.memory_limit_in_bytes"),
        ({"cpuset_cpus": "one"}, "linux.cpuset_cpus"),
        ({"cpuset_mems": "3-1"}, "linux.cpuset_mems"),
        ({"hugepage_limits": [{"limit": 1}]}, "linux.hugepage_limits[0].page_size"),
    ]
    for fields, field in cases:
        error = refused(cri, container_id, **fields)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (fields, error.details())
        assert field in str(error.details()), (fields, error.details())
    # Valid syntax, but the node has no such CPU: the kernel refuses it, after the
    # config was saved: the old one is put back (and the memory limit re-applied).
    absent = str((os.cpu_count() or 1) + 63)
    for fields in (
        {"cpuset_cpus": absent},
        {"memory_limit_in_bytes": 128 * MIB, "cpuset_cpus": absent},
    ):
        error = refused(cri, container_id, **fields)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (fields, error.details())
        assert "linux.cpuset_cpus" in str(error.details())
        assert f"write {absent} to" in str(error.details())  # the kernel said no
    # Nothing changed: not the saved config, not the cgroup, not the container.
    assert spec_resources(cri, container_id) == before
    assert resources(cri, container_id).memory_limit_in_bytes == 64 * MIB
    assert int(cgroup_file(cri, "memory", container_id, "memory.limit_in_bytes")) == 64 * MIB
    assert cri.status(container_id).status.state == api_pb2.CONTAINER_RUNNING
