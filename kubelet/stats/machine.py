"""The node's own figures from /proc and /sys, where cAdvisor gets them: CPU time
(/proc/stat), memory (/proc/meminfo, /proc/vmstat), interface counters (a network
namespace's /proc/<pid>/net/dev), process limits (pid_max, /proc/loadavg), machine
identity and filesystem capacity (statvfs).

Memory of the node comes from /proc/meminfo on both cgroup layouts (the v2 root cgroup
has no memory.current): usage = MemTotal - MemFree, working set = usage -
Inactive(file), as cAdvisor computes the root container's. Every reader takes the
/proc (or /sys) root as a parameter, so tests use fake trees.
"""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

# /proc/stat counts in USER_HZ ticks (100 a second on every Linux ABI kubeling runs on).
NS_PER_TICK = 10_000_000


@dataclass(frozen=True, slots=True)
class InterfaceCounters:
    name: str
    rx_bytes: int
    rx_errors: int
    tx_bytes: int
    tx_errors: int


@dataclass(frozen=True, slots=True)
class NodeMemory:
    total_bytes: int
    usage_bytes: int
    working_set_bytes: int
    rss_bytes: int
    page_faults: int
    major_page_faults: int

    @property
    def available_bytes(self) -> int:
        return max(self.total_bytes - self.working_set_bytes, 0)


@dataclass(frozen=True, slots=True)
class FsUsage:
    capacity_bytes: int
    available_bytes: int
    used_bytes: int
    inodes: int
    inodes_free: int

    @property
    def inodes_used(self) -> int:
        return self.inodes - self.inodes_free


def cpu_usage_ns(proc: Path) -> int:
    """CPU time the node spent busy since boot, all cores: the `cpu` line of
    /proc/stat without idle and iowait (guest time is already in user)."""
    for line in (proc / "stat").read_text().splitlines():
        if line.startswith("cpu "):
            fields = [int(v) for v in line.split()[1:]]
            busy = sum(fields[:8]) - fields[3] - (fields[4] if len(fields) > 4 else 0)
            return busy * NS_PER_TICK
    raise ValueError(f"{proc / 'stat'}: no cpu line")


def cpu_cores(proc: Path) -> int:
    """Logical cores online (the cpuN lines of /proc/stat)."""
    lines = (proc / "stat").read_text().splitlines()
    return sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())


def _kilobytes(proc: Path) -> dict[str, int]:
    values = {}
    for line in (proc / "meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return values


def _vmstat(proc: Path) -> dict[str, int]:
    try:
        lines = (proc / "vmstat").read_text().splitlines()
    except OSError:
        return {}
    return {k: int(v) for k, _, v in (line.partition(" ") for line in lines) if v.isdigit()}


def memory(proc: Path) -> NodeMemory:
    info = _kilobytes(proc)
    total = info.get("MemTotal", 0)
    usage = total - info.get("MemFree", 0)
    vmstat = _vmstat(proc)
    return NodeMemory(
        total_bytes=total,
        usage_bytes=usage,
        working_set_bytes=max(usage - info.get("Inactive(file)", 0), 0),
        rss_bytes=info.get("AnonPages", 0),
        page_faults=vmstat.get("pgfault", 0),
        major_page_faults=vmstat.get("pgmajfault", 0),
    )


def interfaces(net_dev: Path) -> list[InterfaceCounters]:
    """The counters in a net/dev file, loopback left out (cAdvisor leaves it out too)."""
    counters = []
    for line in net_dev.read_text().splitlines()[2:]:
        name, _, rest = line.partition(":")
        fields = rest.split()
        name = name.strip()
        if name == "lo" or len(fields) < 11:
            continue
        counters.append(
            InterfaceCounters(
                name=name,
                rx_bytes=int(fields[0]),
                rx_errors=int(fields[2]),
                tx_bytes=int(fields[8]),
                tx_errors=int(fields[10]),
            )
        )
    return counters


def default_interface(proc: Path) -> str | None:
    """The interface of the IPv4 default route (/proc/net/route), if there is one."""
    try:
        lines = (proc / "net" / "route").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) > 2 and fields[1] == "00000000":
            return fields[0]
    return None


def pid_limits(proc: Path) -> tuple[int, int]:
    """(pid_max, how many tasks exist): the Summary API's rlimit.maxpid/curproc."""
    maximum = int((proc / "sys" / "kernel" / "pid_max").read_text().strip())
    running = int((proc / "loadavg").read_text().split()[3].split("/")[1])
    return maximum, running


def boot_time(proc: Path) -> float:
    """When the node booted (unix seconds), the node's startTime."""
    for line in (proc / "stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise ValueError(f"{proc / 'stat'}: no btime line")


def process_start_time(proc: Path, pid: int | str) -> float | None:
    """When a process started (unix seconds), from its stat's starttime in ticks."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])
        return boot_time(proc) + ticks * NS_PER_TICK / 1e9
    except (OSError, ValueError, IndexError):
        return None


def fs_usage(path: Path) -> FsUsage | None:
    """Capacity and use of the filesystem holding `path`; None if it is not there."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return FsUsage(
        capacity_bytes=st.f_blocks * st.f_frsize,
        available_bytes=st.f_bavail * st.f_frsize,
        used_bytes=(st.f_blocks - st.f_bfree) * st.f_frsize,
        inodes=st.f_files,
        inodes_free=st.f_ffree,
    )


def read_id(*candidates: Path) -> str:
    """The first readable identity file (machine-id, boot_id, product_uuid), or ""."""
    for path in candidates:
        try:
            return path.read_text().strip()
        except OSError:
            continue
    return ""


def socket_peer_pid(endpoint: str) -> int:
    """The pid of the process serving a unix socket endpoint (SO_PEERCRED), 0 if none."""
    if not endpoint:
        return 0
    path = endpoint[len("unix://") :] if endpoint.startswith("unix://") else endpoint
    if not path.startswith("/"):
        return 0
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect(path)
            credentials = sock.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")
            )
    except OSError:
        return 0
    pid: int = struct.unpack("3i", credentials)[0]
    return pid
