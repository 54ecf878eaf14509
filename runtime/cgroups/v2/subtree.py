"""Creating a cgroup in a cgroup2 hierarchy and enabling its controllers.

A cgroup2 directory only has a controller's files if its parent lists the
controller in cgroup.subtree_control, so `create` walks from the hierarchy
root to the leaf: mkdir each level (if missing), then, for every level
except the leaf, enable the wanted controllers that the level offers (its
cgroup.controllers) and has not enabled yet. All in one write first; if the
kernel refuses that (EBUSY from a populated ancestor, a controller that is
busy elsewhere), one at a time, ignoring failures as runc does: a controller
that stays off shows up later as a missing file when a limit is applied.

`wanted` is every controller of the hierarchy on a pure v2 machine (runc
enables all), and only the controllers served by cgroup2 in hybrid mode
(hugetlb on the development machine).
"""

from __future__ import annotations

import os

from runtime.cgroups import fs
from runtime.cgroups.base import CgroupError


def enable_controllers(cgroup_dir: str, wanted: frozenset[str]) -> None:
    """Enable in cgroup_dir/cgroup.subtree_control the wanted controllers it offers."""
    offered = (fs.read_file(cgroup_dir, "cgroup.controllers") or "").split()
    enabled = set((fs.read_file(cgroup_dir, "cgroup.subtree_control") or "").split())
    missing = [c for c in offered if c in wanted and c not in enabled]
    if not missing:
        return
    try:
        fs.write_file(cgroup_dir, "cgroup.subtree_control", " ".join("+" + c for c in missing))
    except CgroupError:
        for controller in missing:
            try:
                fs.write_file(cgroup_dir, "cgroup.subtree_control", "+" + controller)
            except CgroupError:
                pass


def create(mount: str, relative: str, wanted: frozenset[str]) -> None:
    """mkdir mount/relative level by level, enabling `wanted` in every ancestor."""
    current = mount
    for part in relative.split("/"):
        if wanted:
            enable_controllers(current, wanted)
        current = os.path.join(current, part)
        if not os.path.isdir(current):
            fs.make_dirs(current)
