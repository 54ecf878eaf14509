"""cgroup v1 hugetlb controller: OCI `linux.resources.hugepageLimits`.

Writes hugetlb.<size>.limit_in_bytes, and hugetlb.<size>.rsvd.limit_in_bytes
when the kernel has reservation accounting (as runc does).
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
        fs.write_file(cgroup_dir, f"hugetlb.{size}.limit_in_bytes", str(limit))
        rsvd = f"hugetlb.{size}.rsvd.limit_in_bytes"
        if fs.exists(cgroup_dir, rsvd):
            fs.write_file(cgroup_dir, rsvd, str(limit))
    return []
