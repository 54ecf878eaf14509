"""Cgroup layout detection, cgroupsPath validation, the manager protocol, CgroupError.

Owns: deciding which hierarchy serves each controller (`detect_layout`), turning
an OCI `linux.cgroupsPath` into a path relative to every hierarchy
(`parse_cgroups_path`), and the one exception type of the package.
Doesn't own: reading or writing any controller file (`v1/`, `v2/`, `fs.py`).

Detection probes directories under `root` instead of parsing
/proc/self/mountinfo: every function then depends on `root` alone, so unit
tests build the three layouts as plain `tmp_path` trees, and nothing here names
/proc. An entry `root/<name>` is a v1 hierarchy of the controllers in
`name.split(",")` when it holds `cgroup.procs` but no `cgroup.controllers`
(cgroup2 has that file in every directory, v1 in none). Co-mounts such as
`cpu,cpuacct` are found through the real directory, not the `cpu` symlink.
Hierarchies mounted outside `root` are not seen (runc and crun assume
/sys/fs/cgroup as well).

The decision is per controller (see MACHINE-NOTES: this machine mounts most
controllers on v1 and serves hugetlb from cgroup2 at `root/unified`): a
controller with a v1 hierarchy is v1, otherwise it is served by the unified
hierarchy when that lists it in `cgroup.controllers`, otherwise it is missing.
"""

from __future__ import annotations

import os

from runtime.errors import RuntimeFailure

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Protocol

    from runtime.cgroups.stats import CgroupStats

# Controllers that can have a v1 hierarchy of their own. Named hierarchies
# (name=systemd, mounted at root/systemd) are not controllers and are left alone.
V1_CONTROLLERS = frozenset(
    {
        "blkio",
        "cpu",
        "cpuacct",
        "cpuset",
        "devices",
        "freezer",
        "hugetlb",
        "memory",
        "misc",
        "net_cls",
        "net_prio",
        "perf_event",
        "pids",
        "rdma",
    }
)

UNIFIED = "unified"
HYBRID = "hybrid"
LEGACY = "legacy"


class CgroupError(RuntimeFailure):
    """A cgroup operation failed; the message names the operation, file and value.

    `errno` is set when the failure came from a system call.
    """

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class Layout:
    """Where each controller lives under one cgroup root.

    `mode` is "unified", "hybrid" or "legacy"; a Layout also compares equal to
    its mode string (`detect_layout() == "hybrid"`).
    `v1_mounts` maps a controller to its v1 hierarchy directory; `unified_mount`
    is the cgroup2 directory (root itself, `root/unified`, or None);
    `unified_controllers` are the controllers the unified hierarchy serves here,
    i.e. those listed in its `cgroup.controllers` that have no v1 hierarchy.
    """

    __slots__ = ("mode", "root", "unified_controllers", "unified_mount", "v1_mounts")

    def __init__(
        self,
        *,
        mode: str,
        root: str,
        v1_mounts: dict[str, str],
        unified_mount: str | None,
        unified_controllers: frozenset[str],
    ) -> None:
        self.mode = mode
        self.root = root
        self.v1_mounts = v1_mounts
        self.unified_mount = unified_mount
        self.unified_controllers = unified_controllers

    def route(self, v1_name: str, v2_name: str | None = None) -> tuple[str, str] | None:
        """("v1", mount) or ("v2", unified mount) for a controller, or None if missing.

        `v2_name` is the controller's cgroup2 name when it differs (blkio is io).
        """
        mount = self.v1_mounts.get(v1_name)
        if mount is not None:
            return ("v1", mount)
        if self.unified_mount is not None and (v2_name or v1_name) in self.unified_controllers:
            return ("v2", self.unified_mount)
        return None

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return self.mode == other
        if isinstance(other, Layout):
            return (
                self.mode == other.mode
                and self.root == other.root
                and self.v1_mounts == other.v1_mounts
                and self.unified_mount == other.unified_mount
                and self.unified_controllers == other.unified_controllers
            )
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.mode)

    def __str__(self) -> str:
        return self.mode

    def __repr__(self) -> str:
        return (
            f"Layout(mode={self.mode!r}, v1_mounts={self.v1_mounts!r}, "
            f"unified_mount={self.unified_mount!r}, "
            f"unified_controllers={sorted(self.unified_controllers)!r})"
        )


def _read_controllers(directory: str) -> frozenset[str] | None:
    try:
        with open(directory + "/cgroup.controllers") as f:
            return frozenset(f.read().split())
    except OSError:
        return None


def detect_layout(root: str = "/sys/fs/cgroup") -> Layout:
    """Probe `root` and say which hierarchy serves which controller.

    "unified" when root/cgroup.controllers exists; "hybrid" when there are v1
    hierarchies and root/unified is a cgroup2 hierarchy; "legacy" otherwise
    (also when nothing is mounted at all: `v1_mounts` is then empty).
    """
    root = root.rstrip("/") or "/"
    controllers = _read_controllers(root)
    if controllers is not None:
        return Layout(
            mode=UNIFIED,
            root=root,
            v1_mounts={},
            unified_mount=root,
            unified_controllers=controllers,
        )
    try:
        entries = sorted(os.listdir(root))
    except OSError:
        entries = []
    v1_mounts: dict[str, str] = {}
    unified_mount: str | None = None
    unified_listed: frozenset[str] = frozenset()
    # Real directories first, so "cpu,cpuacct" wins over its "cpu" symlink.
    links = [e for e in entries if os.path.islink(os.path.join(root, e))]
    for entry in [e for e in entries if e not in links] + links:
        path = os.path.join(root, entry)
        listed = _read_controllers(path)
        if listed is not None:
            if entry == "unified":
                unified_mount, unified_listed = path, listed
            continue
        names = [n for n in entry.split(",") if n in V1_CONTROLLERS]
        if not names or not os.path.isfile(path + "/cgroup.procs"):
            continue
        for name in names:
            v1_mounts.setdefault(name, path)
    mode = HYBRID if v1_mounts and unified_mount is not None else LEGACY
    if mode == LEGACY:
        unified_mount = None
    return Layout(
        mode=mode,
        root=root,
        v1_mounts=v1_mounts,
        unified_mount=unified_mount,
        unified_controllers=frozenset(unified_listed - v1_mounts.keys()),
    )


def parse_cgroups_path(cgroups_path: str) -> str:
    """Validate an OCI cgroupsPath and return it relative to a hierarchy root.

    "/kubeling/abc" and "kubeling/abc" both give "kubeling/abc" (a relative
    path is taken relative to the hierarchy root, as runc does). Rejected:
    empty paths, the root itself, "..", NUL, and the systemd "slice:prefix:name"
    form (kubeling drives cgroupfs directly).
    """
    if not isinstance(cgroups_path, str) or not cgroups_path:
        raise CgroupError(f"cgroupsPath {cgroups_path!r}: must be a non-empty path")
    if "\0" in cgroups_path:
        raise CgroupError(f"cgroupsPath {cgroups_path!r}: contains a NUL byte")
    if not cgroups_path.startswith("/") and ":" in cgroups_path:
        raise CgroupError(
            f"cgroupsPath {cgroups_path!r}: the systemd slice:prefix:name form is not "
            "supported; use a cgroupfs path such as /kubeling/<id>"
        )
    parts = [p for p in cgroups_path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise CgroupError(f"cgroupsPath {cgroups_path!r}: must not contain '..'")
    if not parts:
        raise CgroupError(f"cgroupsPath {cgroups_path!r}: must name a cgroup below the root")
    return "/".join(parts)


if TYPE_CHECKING:

    class CgroupManager(Protocol):
        """What the runtime uses; `runtime.cgroups.open_manager` returns one."""

        @property
        def paths(self) -> dict[str, str]: ...
        def create(self) -> None: ...
        def apply(self, resources: Mapping[str, object]) -> list[str]: ...
        def add_process(self, pid: int) -> None: ...
        def attach_self(self, *, unified: bool = True) -> None: ...
        @property
        def hybrid(self) -> bool: ...
        def pids(self) -> list[int]: ...
        def freeze(self) -> None: ...
        def thaw(self) -> None: ...
        def is_frozen(self) -> bool: ...
        def stats(self) -> CgroupStats: ...
        def remove(self) -> None: ...
        def exists(self) -> bool: ...
