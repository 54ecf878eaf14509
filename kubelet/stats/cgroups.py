"""CPU and memory of a cgroup read straight from its files, as cAdvisor reads them,
for what the CRI's stats leave out (page cache, the memory limit) and for cgroups the
CRI knows nothing of (the pods' top cgroup, the kubelet's and the runtime's own).

Owns: finding each controller's hierarchy under a cgroup root (`CgroupLayout.detect`)
and the parsers. The layout is decided per controller, not once for the machine: on a
hybrid machine cpuacct and memory are v1 mounts while cgroup2 sits at `unified`.

Figures (cAdvisor's definitions):
  cpu usage     v1 cpuacct.usage (ns); v2 cpu.stat usage_usec x 1000
  usage         v1 memory.usage_in_bytes; v2 memory.current
  working set   usage - inactive file (v1 memory.stat total_inactive_file, v2
                inactive_file), never below 0
  rss, cache    v1 total_rss, total_cache; v2 anon, file
  page faults   v1 total_pgfault/total_pgmajfault; v2 pgfault/pgmajfault
  limit         v1 memory.limit_in_bytes, v2 memory.max; None when unlimited
A cgroup that does not exist reads as None; unreadable files read as zeros.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# v1 shows "no limit" as PAGE_COUNTER_MAX in bytes (about 2^63); anything this large is unlimited.
UNLIMITED = 1 << 62


@dataclass(frozen=True, slots=True)
class CgroupUsage:
    cpu_usage_ns: int | None  # None: no cpu accounting readable for this cgroup
    memory_usage_bytes: int
    memory_working_set_bytes: int
    memory_rss_bytes: int
    memory_cache_bytes: int
    page_faults: int
    major_page_faults: int
    memory_limit_bytes: int | None


@dataclass(frozen=True, slots=True)
class CgroupLayout:
    """Where the cpu accounting and memory controllers of cgroups are: a v1 mount
    directory, or the v2 hierarchy (`unified`)."""

    cpu_v1: Path | None  # the cpuacct (or cpu,cpuacct) mount
    memory_v1: Path | None
    unified: Path | None  # the cgroup2 mount, when it has the controller in question
    unified_cpu: bool
    unified_memory: bool

    @classmethod
    def detect(cls, root: Path) -> CgroupLayout:
        if (root / "cgroup.controllers").is_file():
            controllers = _controllers(root)
            return cls(None, None, root, "cpu" in controllers, "memory" in controllers)
        cpu = next(
            (root / n for n in ("cpuacct", "cpu,cpuacct", "cpuacct,cpu") if (root / n).is_dir()),
            None,
        )
        memory = root / "memory" if (root / "memory").is_dir() else None
        unified = root / "unified" if (root / "unified" / "cgroup.controllers").is_file() else None
        controllers = _controllers(unified) if unified else set()
        return cls(
            cpu,
            memory,
            unified,
            cpu is None and "cpu" in controllers,
            memory is None and "memory" in controllers,
        )

    def exists(self, relative: str) -> bool:
        return any(d.is_dir() for d in self._dirs(relative))

    def _dirs(self, relative: str) -> list[Path]:
        rel = _relative(relative)
        bases = [self.cpu_v1, self.memory_v1, self.unified]
        return [base / rel if rel else base for base in bases if base is not None]

    def read(self, relative: str, *, cpu_relative: str | None = None) -> CgroupUsage | None:
        """The usage of the cgroup `relative` to the hierarchy roots ("/" is the root
        cgroup); None if the cgroup exists in none of the hierarchies. A process's
        cgroups may differ per v1 hierarchy: `cpu_relative` is its cpuacct one."""
        rel = _relative(relative)
        cpu_rel = rel if cpu_relative is None else _relative(cpu_relative)
        memory_dir = cpu_dir = None
        memory_v2 = cpu_v2 = False
        if self.memory_v1 is not None:
            memory_dir = self.memory_v1 / rel
        elif self.unified is not None and self.unified_memory:
            memory_dir, memory_v2 = self.unified / rel, True
        if self.cpu_v1 is not None:
            cpu_dir = self.cpu_v1 / cpu_rel
        elif self.unified is not None and self.unified_cpu:
            cpu_dir, cpu_v2 = self.unified / rel, True
        memory_there = memory_dir is not None and memory_dir.is_dir()
        cpu_there = cpu_dir is not None and cpu_dir.is_dir()
        if not memory_there and not cpu_there:
            return None
        cpu_ns: int | None = None
        if cpu_there and cpu_dir is not None:
            if cpu_v2:
                usec = _keyed(cpu_dir / "cpu.stat").get("usage_usec")
                cpu_ns = usec * 1000 if usec is not None else None
            else:
                cpu_ns = _int(cpu_dir / "cpuacct.usage")
        if not memory_there or memory_dir is None:
            return CgroupUsage(cpu_ns, 0, 0, 0, 0, 0, 0, None)
        stat = _keyed(memory_dir / "memory.stat")
        if memory_v2:
            usage = _int(memory_dir / "memory.current")
            if usage is None:  # the root cgroup of v2 has no memory.current
                usage = stat.get("anon", 0) + stat.get("file", 0) + stat.get("kernel", 0)
            inactive = stat.get("inactive_file", 0)
            rss, cache = stat.get("anon", 0), stat.get("file", 0)
            faults, major = stat.get("pgfault", 0), stat.get("pgmajfault", 0)
            limit = _int(memory_dir / "memory.max")
        else:
            usage = _int(memory_dir / "memory.usage_in_bytes") or 0
            inactive = stat.get("total_inactive_file", 0)
            rss, cache = stat.get("total_rss", 0), stat.get("total_cache", 0)
            faults, major = stat.get("total_pgfault", 0), stat.get("total_pgmajfault", 0)
            limit = _int(memory_dir / "memory.limit_in_bytes")
        if limit is not None and limit >= UNLIMITED:
            limit = None
        return CgroupUsage(
            cpu_usage_ns=cpu_ns,
            memory_usage_bytes=usage,
            memory_working_set_bytes=max(usage - inactive, 0),
            memory_rss_bytes=rss,
            memory_cache_bytes=cache,
            page_faults=faults,
            major_page_faults=major,
            memory_limit_bytes=limit,
        )

    def start_time(self, relative: str) -> float | None:
        """When the cgroup was made, as far as the filesystem tells (its directory's
        ctime, as cAdvisor takes it); None if it does not exist."""
        times = [d.stat().st_ctime for d in self._dirs(relative) if d.is_dir()]
        return min(times) if times else None


def _relative(path: str) -> str:
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"cgroup path {path!r}: must not contain '..'")
    return "/".join(parts)


def _controllers(unified: Path) -> set[str]:
    try:
        return set((unified / "cgroup.controllers").read_text().split())
    except OSError:
        return set()


def _int(path: Path) -> int | None:
    """The number in a one-value file; None for "max", a missing or unreadable file."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.lstrip("-").isdigit() else None


def _keyed(path: Path) -> dict[str, int]:
    """`key value` lines (memory.stat, cpu.stat)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    values = {}
    for line in lines:
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            values[key] = int(value)
    return values


def process_cgroup(proc: Path, pid: int | str, controller: str = "memory") -> str | None:
    """The cgroup of a process in the hierarchy of `controller` (memory, cpuacct): its
    v1 line of /proc/<pid>/cgroup, else the v2 line ("0::/...")."""
    try:
        lines = (proc / str(pid) / "cgroup").read_text().splitlines()
    except OSError:
        return None
    unified = None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path
        if controllers == "":
            unified = path
    return unified
