"""Pod-level cgroups on cgroupfs: the kubelet makes <qos>/pod<uid> before the sandbox
(so the pod's limits hold for all its containers together) and removes it once the
pod's containers and sandboxes are gone. The runtime makes the containers' own
cgroups below it and removes those, never the parents. The QoS levels
(kubepods/burstable, kubepods/besteffort) get their CPU shares in housekeeping.

Layouts, detected from the mount root (a parameter, `/sys/fs/cgroup` on a node):
- unified (cgroup v2 only): `<root>/cgroup.controllers` exists; limits go to cpu.weight,
  cpu.max and memory.max after enabling cpu and memory in every ancestor's
  cgroup.subtree_control.
- legacy or hybrid (v1 controllers, maybe a v2 mount at `<root>/unified` holding no
  cpu or memory): limits go to the v1 cpu and memory hierarchies.

Removal walks every hierarchy under the root (the runtime may have made the pod's
directory in all of them) and rmdirs deepest first. A cgroup that still has processes
answers EBUSY: it is logged and left for the next housekeeping pass.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

from kubelet.pods.qos import (
    BESTEFFORT,
    BURSTABLE,
    MIN_SHARES,
    QUOTA_PERIOD_US,
    PodCgroupLimits,
    qos_cgroup,
)

log = logging.getLogger(__name__)

CGROUP_MOUNT = Path("/sys/fs/cgroup")


def shares_to_weight(shares: int) -> int:
    """cgroup v1 cpu.shares (2..262144) to v2 cpu.weight (1..10000), the conversion
    runc and crun use."""
    shares = max(MIN_SHARES, min(262144, shares))
    return 1 + ((shares - 2) * 9999) // 262142


class PodCgroups:
    """Creates, limits and removes pod cgroups under one cgroupfs mount root."""

    def __init__(self, mount: Path = CGROUP_MOUNT) -> None:
        self.mount = mount
        self.unified = (mount / "cgroup.controllers").exists()
        self._qos_written: dict[str, int] = {}

    def _hierarchies(self) -> list[Path]:
        """Every hierarchy's mount point (v1 controllers, named and unified mounts)."""
        if self.unified:
            return [self.mount]
        found: dict[str, Path] = {}
        try:
            entries = sorted(self.mount.iterdir())
        except OSError:
            return []
        for entry in entries:
            # cpu and cpuacct are often symlinks to cpu,cpuacct: visit each once.
            real = os.path.realpath(entry)
            if entry.is_dir() and real not in found:
                found[real] = entry
        return list(found.values())

    def ensure(self, cgroup: str, limits: PodCgroupLimits) -> None:
        """mkdir the pod cgroup and write its limits; failures are logged, not raised:
        the runtime still makes the directories, only the pod-wide limit is lost."""
        relative = cgroup.strip("/")
        try:
            if self.unified:
                self._ensure_v2(relative, limits)
            else:
                self._ensure_v1(relative, limits)
        except OSError as e:
            log.warning("pod cgroup %s: %s", cgroup, e)

    def _ensure_v1(self, relative: str, limits: PodCgroupLimits) -> None:
        cpu, memory = self.mount / "cpu", self.mount / "memory"
        if cpu.is_dir():
            directory = cpu / relative
            directory.mkdir(parents=True, exist_ok=True)
            _write(directory / "cpu.shares", str(limits.cpu_shares))
            if limits.cpu_quota:
                _write(directory / "cpu.cfs_period_us", str(QUOTA_PERIOD_US))
                _write(directory / "cpu.cfs_quota_us", str(limits.cpu_quota))
        if memory.is_dir():
            directory = memory / relative
            directory.mkdir(parents=True, exist_ok=True)
            if limits.memory_limit_in_bytes:
                _write(directory / "memory.limit_in_bytes", str(limits.memory_limit_in_bytes))

    def _ensure_v2(self, relative: str, limits: PodCgroupLimits) -> None:
        directory = self.mount
        for part in relative.split("/"):
            available = set(_read(directory / "cgroup.controllers").split())
            wanted = [c for c in ("cpu", "memory", "pids") if c in available]
            enabled = set(_read(directory / "cgroup.subtree_control").split())
            missing = [c for c in wanted if c not in enabled]
            if missing:
                _write(directory / "cgroup.subtree_control", " ".join(f"+{c}" for c in missing))
            directory = directory / part
            directory.mkdir(exist_ok=True)
        if (directory / "cpu.weight").exists():
            _write(directory / "cpu.weight", str(shares_to_weight(limits.cpu_shares)))
        if limits.cpu_quota and (directory / "cpu.max").exists():
            _write(directory / "cpu.max", f"{limits.cpu_quota} {QUOTA_PERIOD_US}")
        if limits.memory_limit_in_bytes and (directory / "memory.max").exists():
            _write(directory / "memory.max", str(limits.memory_limit_in_bytes))

    def ensure_qos(self, cgroup_root: str, *, burstable_shares: int) -> None:
        """The QoS level cgroups (the kubelet's QoS container manager): BestEffort pods
        share the minimum CPU weight, Burstable ones their summed requests. Written
        only when a value changes."""
        wanted = {
            qos_cgroup(cgroup_root, BESTEFFORT): MIN_SHARES,
            qos_cgroup(cgroup_root, BURSTABLE): max(MIN_SHARES, burstable_shares),
        }
        for cgroup, shares in wanted.items():
            if self._qos_written.get(cgroup) == shares:
                continue
            limits = PodCgroupLimits(cpu_shares=shares, cpu_quota=0, memory_limit_in_bytes=0)
            self.ensure(cgroup, limits)
            self._qos_written[cgroup] = shares

    def remove(self, cgroup: str) -> bool:
        """rmdir the pod cgroup (and any cgroup left below it) everywhere; True when it
        is gone from every hierarchy."""
        relative = cgroup.strip("/")
        gone = True
        for hierarchy in self._hierarchies():
            top = hierarchy / relative
            if not top.is_dir():
                continue
            for directory, _, _ in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
                try:
                    os.rmdir(directory)
                except FileNotFoundError:
                    pass
                except OSError as e:
                    gone = False
                    level = logging.DEBUG if e.errno == errno.EBUSY else logging.WARNING
                    log.log(level, "rmdir pod cgroup %s: %s", directory, e)
        return gone

    def exists(self, cgroup: str) -> bool:
        relative = cgroup.strip("/")
        return any((h / relative).is_dir() for h in self._hierarchies())


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def _write(path: Path, value: str) -> None:
    with open(path, "w") as file:
        file.write(value)
