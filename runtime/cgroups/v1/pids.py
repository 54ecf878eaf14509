"""cgroup v1 pids controller: OCI `linux.resources.pids.limit` (<= 0 is "max")."""

from __future__ import annotations

from runtime.cgroups import convert, fs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping


def apply(cgroup_dir: str, pids: Mapping[str, object]) -> list[str]:
    limit = convert.get_int(pids, "limit", "pids")
    if limit is not None:
        fs.write_file(cgroup_dir, "pids.max", "max" if limit <= 0 else str(limit))
    return []
