"""cgroup v2 cpuset controller: OCI `linux.resources.cpu.cpus`/`mems`.

Unlike v1, an empty cpuset.cpus/cpuset.mems means "inherit the parent's", so
nothing has to be copied down when creating the cgroup.
"""

from __future__ import annotations

from runtime.cgroups import convert, fs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping


def apply(cgroup_dir: str, cpu: Mapping[str, object]) -> list[str]:
    cpus = convert.get_str(cpu, "cpus", "cpu")
    mems = convert.get_str(cpu, "mems", "cpu")
    if cpus:
        fs.write_file(cgroup_dir, "cpuset.cpus", cpus)
    if mems:
        fs.write_file(cgroup_dir, "cpuset.mems", mems)
    return []
