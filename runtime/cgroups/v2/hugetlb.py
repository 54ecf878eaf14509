"""cgroup v2 hugetlb controller: OCI `linux.resources.hugepageLimits`.

Writes hugetlb.<size>.max, and hugetlb.<size>.rsvd.max when present (runc).
On a hybrid machine this runs against the unified hierarchy.
"""

from __future__ import annotations

from runtime.cgroups import convert, fs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping


def apply(cgroup_dir: str, limits: list[Mapping[str, object]]) -> list[str]:
    for entry in limits:
        size = convert.check_page_size(entry.get("pageSize"))
        limit = convert.get_int(entry, "limit", "hugepageLimits")
        if limit is None:
            continue
        value = convert.limit_v2(limit)
        fs.write_file(cgroup_dir, f"hugetlb.{size}.max", value)
        if fs.exists(cgroup_dir, f"hugetlb.{size}.rsvd.max"):
            fs.write_file(cgroup_dir, f"hugetlb.{size}.rsvd.max", value)
    return []
