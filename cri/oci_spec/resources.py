"""Linux resources and cgroup paths: cpu, memory (and swap where the host limits it),
hugepages (where the hugetlb controller exists) and unified values from the request
(containerd ``WithResources``), the oom score adjustment, and the cgroups path under
the parent (containerd's ``/k8s.io`` when none is given).
"""

from __future__ import annotations

import posixpath
from typing import Any

from cri.api import api_pb2
from cri.oci_spec.inputs import HostFacts, _fail

DEFAULT_CGROUP_PARENT = "/k8s.io"  # containerd's namespace, when the client gives none


def _resources(
    resources: api_pb2.LinuxContainerResources,
    out: dict[str, Any],
    host: HostFacts,
    where: str = "config.linux.resources",
) -> None:
    """containerd ``WithResources``: zero means unset; the swap limit follows the memory
    limit unless given, where the kernel can limit swap. ``where`` is the request's
    field path in error messages (UpdateContainerResources passes ``linux``)."""
    cpu: dict[str, Any] = {}
    memory: dict[str, Any] = {}
    if resources.cpu_period:
        cpu["period"] = _at_least(resources.cpu_period, 0, f"{where}.cpu_period")
    if resources.cpu_quota:
        cpu["quota"] = _at_least(resources.cpu_quota, -1, f"{where}.cpu_quota")
    if resources.cpu_shares:
        cpu["shares"] = _at_least(resources.cpu_shares, 0, f"{where}.cpu_shares")
    if resources.cpuset_cpus:
        cpu["cpus"] = resources.cpuset_cpus
    if resources.cpuset_mems:
        cpu["mems"] = resources.cpuset_mems
    limit = resources.memory_limit_in_bytes
    swap = resources.memory_swap_limit_in_bytes
    if limit:
        memory["limit"] = _at_least(limit, -1, f"{where}.memory_limit_in_bytes")
        if not swap and host.swap:
            memory["swap"] = limit
    if swap and host.swap:
        memory["swap"] = _at_least(swap, -1, f"{where}.memory_swap_limit_in_bytes")
    if cpu:
        out["cpu"] = cpu
    if memory:
        out["memory"] = memory
    hugepages = []
    for i, hugepage in enumerate(resources.hugepage_limits):
        if not hugepage.page_size:
            _fail(f"{where}.hugepage_limits[{i}].page_size", "required")
        hugepages.append({"pageSize": hugepage.page_size, "limit": hugepage.limit})
    if hugepages and host.hugetlb:
        out["hugepageLimits"] = hugepages
    if resources.unified:
        for key in resources.unified:
            if not key or "/" in key:
                _fail(f"{where}.unified", f"{key!r} is not a cgroup file name")
        out["unified"] = dict(resources.unified)


def _at_least(value: int, minimum: int, where: str) -> int:
    if value < minimum:
        _fail(where, f"{value} is below {minimum}")
    return value


def _oom_score_adj(value: int) -> int:
    if not -1000 <= value <= 1000:
        _fail("config.linux.resources.oom_score_adj", f"{value} is not in -1000..1000")
    return value


def _cgroups_path(parent: str, id_: str) -> str:
    return posixpath.normpath(posixpath.join(parent or DEFAULT_CGROUP_PARENT, id_))


def _cgroup_parent(parent: str) -> str:
    if parent and (".." in parent.split("/") or "\0" in parent):
        _fail("config.linux.cgroup_parent", f"{parent!r} is not a cgroup path")
    return parent
