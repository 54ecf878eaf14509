"""cgroup v1 cpuset controller: OCI `linux.resources.cpu.cpus`/`mems`.

A new v1 cpuset directory starts with empty cpuset.cpus and cpuset.mems, and
no process can join it until both are set. `fill_from_parents` copies them
down from the nearest parent, from the hierarchy root to the leaf, for every
directory whose value is empty (runc `ensureParent`/`copyIfNeeded`).
"""

from __future__ import annotations

import os

from runtime.cgroups import convert, fs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping


def apply(cgroup_dir: str, cpu: Mapping[str, object]) -> list[str]:
    cpus = convert.get_str(cpu, "cpus", "cpu")
    mems = convert.get_str(cpu, "mems", "cpu")
    # Empty strings mean "not set" (runc): an empty cpuset would stop every process.
    if cpus:
        fs.write_file(cgroup_dir, "cpuset.cpus", cpus)
    if mems:
        fs.write_file(cgroup_dir, "cpuset.mems", mems)
    return []


def fill_from_parents(mount: str, relative: str) -> None:
    """Copy cpus/mems from each parent into empty children along mount/relative."""
    parent = mount
    for part in relative.split("/"):
        child = os.path.join(parent, part)
        for name in ("cpuset.cpus", "cpuset.mems"):
            value = fs.read_file(child, name)
            if value is not None and not value.strip():
                inherited = (fs.read_file(parent, name) or "").strip()
                if inherited:
                    fs.write_file(child, name, inherited)
        parent = child
