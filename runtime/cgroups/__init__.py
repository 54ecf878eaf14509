"""Cgroups for the OCI runtime: v1, v2 and hybrid behind one manager.

    from runtime.cgroups import open_manager, CgroupError, detect_layout

    mgr = open_manager("/kubeling/abc")        # linux.cgroupsPath
    mgr.create()
    warnings = mgr.apply(spec["linux"]["resources"])
    mgr.add_process(pid)
    ...
    mgr.remove()

`open_manager` detects the layout under `root` per controller (base.py) and
returns a `Manager` (manager.py) that routes each resource section to the v1
or v2 module of the hierarchy serving it. The stats types live in
`runtime.cgroups.stats` (import them from there: that module uses
dataclasses and is kept off the container create path). For annotations,
`runtime.cgroups.base.CgroupManager` is the protocol (TYPE_CHECKING only).
"""

from __future__ import annotations

from runtime.cgroups.base import CgroupError, Layout, detect_layout, parse_cgroups_path
from runtime.cgroups.manager import Manager

__all__ = ["CgroupError", "Layout", "Manager", "detect_layout", "open_manager"]


def open_manager(cgroups_path: str, *, root: str = "/sys/fs/cgroup") -> Manager:
    """The manager of the cgroup at `cgroups_path` (an OCI linux.cgroupsPath).

    Raises CgroupError for an invalid path ("cgroupsPath ...: ...") or when no
    cgroup hierarchy is mounted under `root`. Touches nothing but `root`'s
    directory listing: call `create()` to make the cgroup.
    """
    relative = parse_cgroups_path(cgroups_path)
    layout = detect_layout(root)
    if not layout.v1_mounts and layout.unified_mount is None:
        raise CgroupError(f"cgroupsPath {cgroups_path!r}: no cgroup hierarchy found under {root}")
    return Manager(layout, relative)
