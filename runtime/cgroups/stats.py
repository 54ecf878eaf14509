"""Resource usage of one cgroup, read from v1 or v2 files: `CgroupStats`.

Owns: the stats value types (the names later feed cAdvisor-style metrics, so
every field says its unit) and the parsers that fill them from a cgroup
directory. Doesn't own: deciding which hierarchy to read (the manager passes
the directories; in hybrid mode hugetlb comes from v2 and the rest from v1).

Never raises: a missing or unreadable file leaves zeros (or None where
"unknown/unlimited" differs from zero). Not on the container create path, so
dataclasses are fine here.

Counter sources:
  cpu      v1 cpuacct.usage{,_user,_sys} (ns; cpuacct.stat ticks as a fallback)
           and cpu.stat nr_periods/nr_throttled/throttled_time (ns);
           v2 cpu.stat usage_usec/user_usec/system_usec/nr_periods/
           nr_throttled/throttled_usec
  memory   v1 memory.usage_in_bytes, max_usage_in_bytes, limit_in_bytes,
           failcnt, memory.stat total_*, memory.oom_control oom_kill;
           v2 memory.current, memory.peak, memory.max, memory.stat,
           memory.events (oom_kill; "max" events as failcnt)
  pids     pids.current, pids.max (both versions)
  hugetlb  v1 hugetlb.<size>.usage_in_bytes/max_usage_in_bytes/failcnt;
           v2 hugetlb.<size>.current, .events "max" (no peak on v2)
  blkio    v1 blkio.throttle.io_service_bytes_recursive (falling back to
           blkio.io_service_bytes_recursive and the bfq file);
           v2 io.stat rbytes/wbytes
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from runtime.cgroups import fs

# v1 reports "unlimited" as PAGE_COUNTER_MAX rounded to pages (9223372036854771712).
UNLIMITED_THRESHOLD = 1 << 62
USER_HZ = 100
NS_PER_TICK = 1_000_000_000 // USER_HZ


@dataclass(frozen=True, slots=True)
class CpuStats:
    usage_total_ns: int = 0
    usage_user_ns: int = 0
    usage_system_ns: int = 0
    throttling_periods: int = 0
    throttled_periods: int = 0
    throttled_time_ns: int = 0


@dataclass(frozen=True, slots=True)
class MemoryStats:
    usage_bytes: int = 0
    max_usage_bytes: int = 0
    limit_bytes: int | None = None  # None: unlimited or unknown
    working_set_bytes: int = 0  # usage - inactive_file
    rss_bytes: int = 0  # v1 total_rss, v2 anon
    cache_bytes: int = 0  # v1 total_cache, v2 file
    pgfault: int = 0
    pgmajfault: int = 0
    oom_kill_count: int = 0
    failcnt: int = 0  # times the limit was hit


@dataclass(frozen=True, slots=True)
class PidsStats:
    current: int = 0
    limit: int | None = None  # None: "max" or unknown


@dataclass(frozen=True, slots=True)
class HugetlbStats:
    usage_bytes: int = 0
    max_usage_bytes: int = 0  # v1 only; 0 on v2
    failcnt: int = 0


@dataclass(frozen=True, slots=True)
class BlkioStats:
    read_bytes: int = 0
    write_bytes: int = 0


@dataclass(frozen=True, slots=True)
class CgroupStats:
    cpu: CpuStats = field(default_factory=CpuStats)
    memory: MemoryStats = field(default_factory=MemoryStats)
    pids: PidsStats = field(default_factory=PidsStats)
    hugetlb: Mapping[str, HugetlbStats] = field(default_factory=dict)  # by page size, "2MB"
    blkio: BlkioStats = field(default_factory=BlkioStats)


def _int(cgroup_dir: str | None, name: str) -> int:
    if cgroup_dir is None:
        return 0
    return fs.read_int(cgroup_dir, name) or 0


def _limit(cgroup_dir: str | None, name: str) -> int | None:
    if cgroup_dir is None:
        return None
    value = fs.read_int(cgroup_dir, name)  # None for "max"
    if value is None or value >= UNLIMITED_THRESHOLD:
        return None
    return value


def _keyed(cgroup_dir: str | None, name: str) -> dict[str, int]:
    return {} if cgroup_dir is None else fs.read_keyed(cgroup_dir, name)


# -- v1 --------------------------------------------------------------------------


def cpu_v1(cpu_dir: str | None, cpuacct_dir: str | None) -> CpuStats:
    total = _int(cpuacct_dir, "cpuacct.usage")
    user = _int(cpuacct_dir, "cpuacct.usage_user")
    system = _int(cpuacct_dir, "cpuacct.usage_sys")
    if cpuacct_dir is not None and not (user or system):
        ticks = _keyed(cpuacct_dir, "cpuacct.stat")
        user = ticks.get("user", 0) * NS_PER_TICK
        system = ticks.get("system", 0) * NS_PER_TICK
    throttling = _keyed(cpu_dir, "cpu.stat")
    return CpuStats(
        usage_total_ns=total,
        usage_user_ns=user,
        usage_system_ns=system,
        throttling_periods=throttling.get("nr_periods", 0),
        throttled_periods=throttling.get("nr_throttled", 0),
        throttled_time_ns=throttling.get("throttled_time", 0),
    )


def memory_v1(cgroup_dir: str | None) -> MemoryStats:
    stat = _keyed(cgroup_dir, "memory.stat")
    usage = _int(cgroup_dir, "memory.usage_in_bytes")
    inactive_file = stat.get("total_inactive_file", 0)
    return MemoryStats(
        usage_bytes=usage,
        max_usage_bytes=_int(cgroup_dir, "memory.max_usage_in_bytes"),
        limit_bytes=_limit(cgroup_dir, "memory.limit_in_bytes"),
        working_set_bytes=max(usage - inactive_file, 0),
        rss_bytes=stat.get("total_rss", 0),
        cache_bytes=stat.get("total_cache", 0),
        pgfault=stat.get("total_pgfault", 0),
        pgmajfault=stat.get("total_pgmajfault", 0),
        oom_kill_count=_keyed(cgroup_dir, "memory.oom_control").get("oom_kill", 0),
        failcnt=_int(cgroup_dir, "memory.failcnt"),
    )


def hugetlb_sizes(cgroup_dir: str, suffix: str) -> list[str]:
    """Page sizes with a hugetlb.<size><suffix> file, e.g. ["1GB", "2MB"]."""
    try:
        names = os.listdir(cgroup_dir)
    except OSError:
        return []
    sizes = []
    for name in names:
        if name.startswith("hugetlb.") and name.endswith(suffix):
            size = name[len("hugetlb.") : -len(suffix)]
            if size and "." not in size:
                sizes.append(size)
    return sorted(sizes)


def hugetlb_v1(cgroup_dir: str | None) -> dict[str, HugetlbStats]:
    if cgroup_dir is None:
        return {}
    return {
        size: HugetlbStats(
            usage_bytes=_int(cgroup_dir, f"hugetlb.{size}.usage_in_bytes"),
            max_usage_bytes=_int(cgroup_dir, f"hugetlb.{size}.max_usage_in_bytes"),
            failcnt=_int(cgroup_dir, f"hugetlb.{size}.failcnt"),
        )
        for size in hugetlb_sizes(cgroup_dir, ".limit_in_bytes")
    }


def blkio_v1(cgroup_dir: str | None) -> BlkioStats:
    if cgroup_dir is None:
        return BlkioStats()
    for name in (
        "blkio.throttle.io_service_bytes_recursive",
        "blkio.io_service_bytes_recursive",
        "blkio.bfq.io_service_bytes_recursive",
    ):
        text = fs.read_file(cgroup_dir, name)
        if text is None:
            continue
        read = write = 0
        for line in text.splitlines():
            fields = line.split()
            if len(fields) != 3 or not fields[2].isdigit():
                continue  # "Total N" lines have two fields
            if fields[1] == "Read":
                read += int(fields[2])
            elif fields[1] == "Write":
                write += int(fields[2])
        return BlkioStats(read_bytes=read, write_bytes=write)
    return BlkioStats()


# -- both ------------------------------------------------------------------------


def pids(cgroup_dir: str | None) -> PidsStats:
    return PidsStats(current=_int(cgroup_dir, "pids.current"), limit=_limit(cgroup_dir, "pids.max"))


# -- v2 --------------------------------------------------------------------------


def cpu_v2(cgroup_dir: str | None) -> CpuStats:
    stat = _keyed(cgroup_dir, "cpu.stat")
    return CpuStats(
        usage_total_ns=stat.get("usage_usec", 0) * 1000,
        usage_user_ns=stat.get("user_usec", 0) * 1000,
        usage_system_ns=stat.get("system_usec", 0) * 1000,
        throttling_periods=stat.get("nr_periods", 0),
        throttled_periods=stat.get("nr_throttled", 0),
        throttled_time_ns=stat.get("throttled_usec", 0) * 1000,
    )


def memory_v2(cgroup_dir: str | None) -> MemoryStats:
    stat = _keyed(cgroup_dir, "memory.stat")
    events = _keyed(cgroup_dir, "memory.events")
    usage = _int(cgroup_dir, "memory.current")
    return MemoryStats(
        usage_bytes=usage,
        max_usage_bytes=_int(cgroup_dir, "memory.peak"),
        limit_bytes=_limit(cgroup_dir, "memory.max"),
        working_set_bytes=max(usage - stat.get("inactive_file", 0), 0),
        rss_bytes=stat.get("anon", 0),
        cache_bytes=stat.get("file", 0),
        pgfault=stat.get("pgfault", 0),
        pgmajfault=stat.get("pgmajfault", 0),
        oom_kill_count=events.get("oom_kill", 0),
        failcnt=events.get("max", 0),
    )


def hugetlb_v2(cgroup_dir: str | None) -> dict[str, HugetlbStats]:
    if cgroup_dir is None:
        return {}
    return {
        size: HugetlbStats(
            usage_bytes=_int(cgroup_dir, f"hugetlb.{size}.current"),
            failcnt=_keyed(cgroup_dir, f"hugetlb.{size}.events").get("max", 0),
        )
        for size in hugetlb_sizes(cgroup_dir, ".max")
    }


def io_v2(cgroup_dir: str | None) -> BlkioStats:
    text = None if cgroup_dir is None else fs.read_file(cgroup_dir, "io.stat")
    read = write = 0
    for line in (text or "").splitlines():
        for item in line.split()[1:]:
            key, _, value = item.partition("=")
            if not value.isdigit():
                continue
            if key == "rbytes":
                read += int(value)
            elif key == "wbytes":
                write += int(value)
    return BlkioStats(read_bytes=read, write_bytes=write)
