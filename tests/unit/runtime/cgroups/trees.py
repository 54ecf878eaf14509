"""Fixture trees that mimic /sys/fs/cgroup in the three layouts.

The kernel creates a cgroup's control files on mkdir; a test tree cannot, so
`populate` writes the files a fresh cgroup would have (with the kernel's
default values) into the container's directories. Files are written back
whole by the code under test (O_TRUNC), so a file holds the last value written.
"""

from __future__ import annotations

import os
from pathlib import Path

UNLIMITED = "9223372036854771712"

# Files at the root of each v1 hierarchy (besides cgroup.procs).
V1_ROOT: dict[str, dict[str, str]] = {
    "cpu": {"cpu.shares": "1024", "cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "-1"},
    "cpuacct": {"cpuacct.usage": "0"},
    "cpuset": {"cpuset.cpus": "0-1", "cpuset.mems": "0"},
    "memory": {"memory.limit_in_bytes": UNLIMITED, "memory.usage_in_bytes": "0"},
    "devices": {"devices.allow": "", "devices.deny": "", "devices.list": "a *:* rwm\n"},
    "freezer": {},
    "blkio": {"blkio.throttle.read_bps_device": ""},
    "pids": {},
}

# Files of a fresh v1 cgroup, per controller.
V1_CGROUP: dict[str, dict[str, str]] = {
    "cpu": {
        "cpu.shares": "1024",
        "cpu.cfs_period_us": "100000",
        "cpu.cfs_quota_us": "-1",
        "cpu.cfs_burst_us": "0",
        "cpu.rt_period_us": "1000000",
        "cpu.rt_runtime_us": "0",
        "cpu.idle": "0",
        "cpu.stat": "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n",
    },
    "cpuacct": {
        "cpuacct.usage": "0",
        "cpuacct.usage_user": "0",
        "cpuacct.usage_sys": "0",
        "cpuacct.stat": "user 0\nsystem 0\n",
    },
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": ""},
    "memory": {
        "memory.limit_in_bytes": UNLIMITED,
        "memory.memsw.limit_in_bytes": UNLIMITED,
        "memory.soft_limit_in_bytes": UNLIMITED,
        "memory.kmem.limit_in_bytes": UNLIMITED,
        "memory.kmem.tcp.limit_in_bytes": UNLIMITED,
        "memory.swappiness": "60",
        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
        "memory.usage_in_bytes": "0",
        "memory.max_usage_in_bytes": "0",
        "memory.failcnt": "0",
        "memory.stat": "cache 0\nrss 0\ntotal_cache 0\ntotal_rss 0\n",
    },
    "devices": {"devices.allow": "", "devices.deny": "", "devices.list": "a *:* rwm\n"},
    "freezer": {"freezer.state": "THAWED"},
    "blkio": {
        "blkio.bfq.weight": "100",
        "blkio.bfq.weight_device": "",
        "blkio.throttle.read_bps_device": "",
        "blkio.throttle.write_bps_device": "",
        "blkio.throttle.read_iops_device": "",
        "blkio.throttle.write_iops_device": "",
        "blkio.throttle.io_service_bytes_recursive": "Total 0\n",
    },
    "pids": {"pids.max": "max", "pids.current": "0", "pids.events": "max 0\n"},
    "hugetlb": {
        "hugetlb.2MB.limit_in_bytes": UNLIMITED,
        "hugetlb.2MB.usage_in_bytes": "0",
        "hugetlb.2MB.max_usage_in_bytes": "0",
        "hugetlb.2MB.failcnt": "0",
        "hugetlb.1GB.limit_in_bytes": UNLIMITED,
    },
    "net_cls": {"net_cls.classid": "0"},
    "net_prio": {"net_prio.ifpriomap": "lo 0\n"},
}

V2_CONTROLLERS = "cpuset cpu io memory hugetlb pids rdma misc"

# Files of a fresh cgroup2 directory, per controller ("" is the core files).
V2_CGROUP: dict[str, dict[str, str]] = {
    "": {
        "cgroup.procs": "",
        "cgroup.controllers": "",
        "cgroup.subtree_control": "",
        "cgroup.freeze": "0",
        "cgroup.events": "populated 0\nfrozen 0\n",
        "cgroup.max.descendants": "max",
        "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n",
    },
    "cpu": {"cpu.weight": "100", "cpu.max": "max 100000", "cpu.max.burst": "0", "cpu.idle": "0"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": ""},
    "memory": {
        "memory.max": "max",
        "memory.swap.max": "max",
        "memory.low": "0",
        "memory.high": "max",
        "memory.current": "0",
        "memory.stat": "anon 0\nfile 0\n",
        "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n",
    },
    "io": {"io.weight": "default 100", "io.max": "", "io.stat": ""},
    "pids": {"pids.max": "max", "pids.current": "0"},
    "hugetlb": {
        "hugetlb.2MB.max": "max",
        "hugetlb.2MB.rsvd.max": "max",
        "hugetlb.2MB.current": "0",
        "hugetlb.2MB.events": "max 0\n",
    },
}

V1_MOUNTED = ("blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "memory", "pids")


def write(path: Path, files: dict[str, str]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    for name, value in files.items():
        (path / name).write_text(value)


def legacy_tree(root: Path, *, controllers: tuple[str, ...] = V1_MOUNTED) -> Path:
    """v1 hierarchies at root/<controller>, plus the named systemd hierarchy."""
    for name in controllers:
        write(root / name, {"cgroup.procs": "1\n", **V1_ROOT.get(name, {})})
    write(root / "systemd", {"cgroup.procs": "1\n"})
    return root


def hybrid_tree(root: Path, *, unified_controllers: str = "hugetlb") -> Path:
    """The development machine: v1 hierarchies and cgroup2 at root/unified."""
    legacy_tree(root)
    write(
        root / "unified",
        {"cgroup.procs": "1\n", "cgroup.controllers": unified_controllers + "\n"}
        | {"cgroup.subtree_control": ""},
    )
    return root


def unified_tree(root: Path, *, controllers: str = V2_CONTROLLERS) -> Path:
    """Pure cgroup v2 at root."""
    write(
        root,
        {
            "cgroup.procs": "1\n",
            "cgroup.controllers": controllers + "\n",
            "cgroup.subtree_control": "",
        },
    )
    return root


def populate(root: Path, relative: str) -> None:
    """Write the control files the kernel would create for cgroup `relative`.

    Every v1 hierarchy under root gets its controller's files; a unified
    hierarchy (root itself or root/unified) gets the core files plus those of
    the controllers its cgroup.controllers lists.
    """
    if (root / "cgroup.controllers").exists():
        unified: Path | None = root
    elif (root / "unified" / "cgroup.controllers").exists():
        unified = root / "unified"
    else:
        unified = None
    if unified is not root:
        for entry in sorted(os.listdir(root)):
            mount = root / entry
            if entry in ("unified", "systemd") or mount.is_symlink():
                continue
            files: dict[str, str] = {"cgroup.procs": ""}
            for name in entry.split(","):
                files.update(V1_CGROUP.get(name, {}))
            write(mount / relative, files)
    if unified is not None:
        listed = (unified / "cgroup.controllers").read_text().split()
        files = dict(V2_CGROUP[""])
        for name in listed:
            files.update(V2_CGROUP.get(name, {}))
        files["cgroup.controllers"] = " ".join(listed)
        write(unified / relative, files)
