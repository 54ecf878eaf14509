"""The cgroup manager: one container cgroup across every hierarchy it lives in.

Owns: routing each OCI resource section to the v1 or v2 module of the
hierarchy that serves its controller, and the cgroup's life cycle (create,
join, freeze, stats, remove) across hierarchies.
Doesn't own: file formats (`v1/`, `v2/`, `stats.py`), layout detection and
path validation (`base.py`).

Why one class for three layouts: legacy, hybrid and unified differ only in
where each controller lives, which `Layout.route` answers per controller.
Pure v2 is the case where every controller routes to one directory, legacy
the case where none does, and hybrid (the development machine: everything on
v1 but hugetlb on cgroup2) mixes both. A manager per layout would repeat the
same loops; the routing table is the seam instead, and the unit suite runs the
same cases against fixture trees of all three layouts.

Directories: `<v1 mount>/<path>` in every v1 hierarchy, and, whenever a
unified hierarchy is mounted (also in hybrid mode, as runc does), the
`<unified mount>/<path>` directory, which holds the cgroup2-served controllers,
the v2 freezer and the process membership that cgroup2 tools look at.

Ordering rules:
- `apply` writes sections in runc's subsystem order (cpuset, devices, memory,
  cpu, pids, blkio, hugetlb, network) and `unified` last, so raw unified keys
  override the translated values.
- `remove` does not thaw: the caller thaws a frozen cgroup before killing
  its processes (frozen tasks cannot exit, and their cgroup stays busy).

Controller modules are imported where they are used, so the create path of a
hybrid machine loads only the v1 modules plus v2/hugetlb.py when asked for
hugepage limits (runtime/__init__.py: import budget).
"""

from __future__ import annotations

import os
import time

from runtime.cgroups import convert, fs
from runtime.cgroups.base import CgroupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from runtime.cgroups.base import Layout
    from runtime.cgroups.stats import CgroupStats

# Keys of OCI linux.resources that this package understands, with the keys
# known inside each object section; anything else gets an "ignored" warning.
KNOWN_KEYS: dict[str, frozenset[str]] = {
    "memory": frozenset(
        {"limit", "reservation", "swap", "kernel", "kernelTCP", "swappiness", "disableOOMKiller"}
    ),
    "cpu": frozenset(
        {
            "shares",
            "quota",
            "burst",
            "period",
            "realtimeRuntime",
            "realtimePeriod",
            "cpus",
            "mems",
            "idle",
        }
    ),
    "pids": frozenset({"limit"}),
    "hugepageLimits": frozenset(),
    "devices": frozenset(),
    "blockIO": frozenset(
        {
            "weight",
            "leafWeight",
            "weightDevice",
            "throttleReadBpsDevice",
            "throttleWriteBpsDevice",
            "throttleReadIOPSDevice",
            "throttleWriteIOPSDevice",
        }
    ),
    "network": frozenset({"classID", "priorities"}),
    "unified": frozenset(),
}
CPU_KEYS = ("shares", "quota", "burst", "period", "realtimeRuntime", "realtimePeriod", "idle")

# How long remove() retries EBUSY: the processes of a just-killed container exit.
REMOVE_TIMEOUT = 1.0

V2_DEVICES_WARNING = (
    "linux.resources.devices not applied: device rules are not enforced on cgroup v2 "
    "(that needs an eBPF device program, which kubeling does not implement)"
)


def unknown_keys(resources: Mapping[str, object]) -> list[str]:
    """Warnings for keys of linux.resources (and of its sections) not handled here."""
    warnings = []
    for key, value in resources.items():
        if value is None:
            continue
        known = KNOWN_KEYS.get(key)
        if known is None:
            warnings.append(f"linux.resources.{key} is not supported by kubeling: ignored")
        elif known and isinstance(value, dict):
            warnings.extend(
                f"linux.resources.{key}.{inner} is not supported by kubeling: ignored"
                for inner in value
                if inner not in known and value[inner] is not None
            )
    return warnings


class Manager:
    """A container cgroup; see the module docstring. Built by `open_manager`."""

    __slots__ = ("_clock", "_layout", "_relative", "_sleep", "_unified", "_v1")

    def __init__(
        self,
        layout: Layout,
        relative: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._layout = layout
        self._relative = relative
        self._sleep = sleep
        self._clock = clock
        self._v1 = {name: f"{mount}/{relative}" for name, mount in layout.v1_mounts.items()}
        mount = layout.unified_mount
        self._unified = None if mount is None else f"{mount}/{relative}"

    # -- where things are ------------------------------------------------------

    @property
    def paths(self) -> dict[str, str]:
        """Controller name -> directory; "" -> the unified directory if any."""
        paths = dict(sorted(self._v1.items()))
        if self._unified is not None:
            for name in sorted(self._layout.unified_controllers):
                paths[name] = self._unified
            paths[""] = self._unified
        return paths

    def _dirs(self) -> list[str]:
        """Every distinct directory of this cgroup: v1 hierarchies, then unified."""
        dirs = list(dict.fromkeys(self._v1[name] for name in sorted(self._v1)))
        if self._unified is not None:
            dirs.append(self._unified)
        return dirs

    def _route(self, v1_name: str, v2_name: str | None = None) -> tuple[str, str] | None:
        """("v1"|"v2", this cgroup's directory) for a controller, None if missing."""
        route = self._layout.route(v1_name, v2_name)
        if route is None:
            return None
        return route[0], f"{route[1]}/{self._relative}"

    def _missing(self, what: str, controller: str) -> str:
        return (
            f"linux.resources.{what} not applied: the {controller} controller is not "
            f"available under {self._layout.root}"
        )

    # -- life cycle --------------------------------------------------------------

    def create(self) -> None:
        """mkdir the cgroup (and parents) everywhere; idempotent.

        On failure the leaf directories this call made are removed again.
        """
        created: list[str] = []
        try:
            for path in self._dirs():
                if path == self._unified:
                    continue
                if not os.path.isdir(path):
                    fs.make_dirs(path)
                    created.append(path)
            cpuset = self._layout.v1_mounts.get("cpuset")
            if cpuset is not None:
                from runtime.cgroups.v1 import cpuset as v1_cpuset

                v1_cpuset.fill_from_parents(cpuset, self._relative)
            if self._unified is not None and self._layout.unified_mount is not None:
                from runtime.cgroups.v2 import subtree

                existed = os.path.isdir(self._unified)
                subtree.create(
                    self._layout.unified_mount,
                    self._relative,
                    self._layout.unified_controllers,
                )
                if not existed:
                    created.append(self._unified)
        except BaseException:
            for path in reversed(created):
                try:
                    os.rmdir(path)
                except OSError:
                    pass
            raise

    def exists(self) -> bool:
        """True if the cgroup directory exists in any of its hierarchies."""
        return any(os.path.isdir(path) for path in self._dirs())

    def add_process(self, pid: int) -> None:
        """Move `pid` into the cgroup in every hierarchy."""
        for path in self._dirs():
            fs.write_file(path, "cgroup.procs", str(pid))

    def attach_self(self, *, unified: bool = True) -> None:
        """Move the calling process, which must be single-threaded, into the cgroup.

        On v1 it writes its own thread ("0") to `tasks`: for a single thread the
        kernel skips the global threadgroup lock, whose RCU grace period makes a
        cgroup.procs write cost 5-20 ms on these machines (about 0.1 ms this way),
        and a single-threaded process has nothing else to move. The unified
        hierarchy has no such path; `unified=False` leaves it out (in hybrid mode it
        only serves hugetlb).
        """
        for path in dict.fromkeys(self._v1[name] for name in sorted(self._v1)):
            fs.write_file(path, "tasks", "0")
        if unified and self._unified is not None:
            fs.write_file(self._unified, "cgroup.procs", "0")

    @property
    def hybrid(self) -> bool:
        """v1 controllers with the unified hierarchy beside them."""
        return bool(self._v1) and self._unified is not None

    def pids(self) -> list[int]:
        """Every pid in the cgroup or its descendants, in any hierarchy, sorted."""
        found: set[int] = set()
        for path in self._dirs():
            found |= fs.read_pids(path)
        return sorted(found)

    def remove(self) -> None:
        """rmdir the cgroup and its descendants everywhere; missing is fine.

        EBUSY (processes still exiting) is retried for about a second in
        all. Every hierarchy is attempted; the first error is raised.
        """
        first: CgroupError | None = None
        deadline = self._clock() + REMOVE_TIMEOUT
        for path in self._dirs():
            try:
                fs.remove_tree(
                    path,
                    timeout=max(deadline - self._clock(), 0.0),
                    sleep=self._sleep,
                    clock=self._clock,
                )
            except CgroupError as e:
                first = first or e
        if first is not None:
            raise first

    # -- freezer -----------------------------------------------------------------

    def _freezer(self) -> tuple[str, str]:
        """v1 freezer if mounted, else the unified hierarchy's cgroup.freeze."""
        path = self._v1.get("freezer")
        if path is not None:
            return "v1", path
        if self._unified is not None:
            return "v2", self._unified
        raise CgroupError(f"freeze {self._relative}: no freezer under {self._layout.root}")

    def freeze(self) -> None:
        version, path = self._freezer()
        if version == "v1":
            from runtime.cgroups.v1 import freezer as v1_freezer

            v1_freezer.freeze(path, sleep=self._sleep, clock=self._clock)
        else:
            from runtime.cgroups.v2 import freezer as v2_freezer

            v2_freezer.freeze(path, sleep=self._sleep, clock=self._clock)

    def thaw(self) -> None:
        version, path = self._freezer()
        if version == "v1":
            from runtime.cgroups.v1 import freezer as v1_freezer

            v1_freezer.thaw(path, sleep=self._sleep, clock=self._clock)
        else:
            from runtime.cgroups.v2 import freezer as v2_freezer

            v2_freezer.thaw(path, sleep=self._sleep, clock=self._clock)

    def is_frozen(self) -> bool:
        version, path = self._freezer()
        if version == "v1":
            from runtime.cgroups.v1 import freezer as v1_freezer

            return v1_freezer.is_frozen(path)
        from runtime.cgroups.v2 import freezer as v2_freezer

        return v2_freezer.is_frozen(path)

    # -- limits ------------------------------------------------------------------

    def apply(self, resources: Mapping[str, object]) -> list[str]:
        """Apply an OCI linux.resources dict; only the keys present change.

        Returns warnings for settings that cannot be honoured here; raises
        CgroupError for invalid values and failed writes.
        """
        if not isinstance(resources, dict):
            raise CgroupError(f"linux.resources: expected an object, got {resources!r}")
        warnings = unknown_keys(resources)
        cpu = convert.section(resources, "cpu")
        if cpu is not None:
            self._apply_cpuset(cpu, warnings)
        if resources.get("devices") is not None:
            self._apply_devices(convert.get_objects(resources, "devices", ""), warnings)
        memory = convert.section(resources, "memory")
        if convert.has_settings(memory) and memory is not None:
            self._apply_memory(memory, warnings)
        if cpu is not None:
            self._apply_cpu(cpu, warnings)
        pids = convert.section(resources, "pids")
        if convert.has_settings(pids) and pids is not None:
            self._apply_pids(pids, warnings)
        block_io = convert.section(resources, "blockIO")
        if convert.has_settings(block_io) and block_io is not None:
            self._apply_block_io(block_io, warnings)
        hugepages = convert.get_objects(resources, "hugepageLimits", "")
        if hugepages:
            self._apply_hugetlb(hugepages, warnings)
        network = convert.section(resources, "network")
        if convert.has_settings(network) and network is not None:
            self._apply_network(network, warnings)
        unified = convert.section(resources, "unified")
        if unified:
            self._apply_unified(unified)
        return warnings

    def _apply_cpuset(self, cpu: Mapping[str, object], warnings: list[str]) -> None:
        if not (cpu.get("cpus") or cpu.get("mems")):
            return
        route = self._route("cpuset")
        if route is None:
            warnings.append(self._missing("cpu.cpus/mems", "cpuset"))
        elif route[0] == "v1":
            from runtime.cgroups.v1 import cpuset as v1_cpuset

            warnings += v1_cpuset.apply(route[1], cpu)
        else:
            from runtime.cgroups.v2 import cpuset as v2_cpuset

            warnings += v2_cpuset.apply(route[1], cpu)

    def _apply_devices(self, rules: list[Mapping[str, object]], warnings: list[str]) -> None:
        path = self._v1.get("devices")
        if path is not None:
            from runtime.cgroups.v1 import devices as v1_devices

            warnings += v1_devices.apply(path, rules)
        elif self._unified is not None:
            warnings.append(V2_DEVICES_WARNING)
        else:
            warnings.append(self._missing("devices", "devices"))

    def _apply_memory(self, memory: Mapping[str, object], warnings: list[str]) -> None:
        route = self._route("memory")
        if route is None:
            warnings.append(self._missing("memory", "memory"))
        elif route[0] == "v1":
            from runtime.cgroups.v1 import memory as v1_memory

            warnings += v1_memory.apply(route[1], memory)
        else:
            from runtime.cgroups.v2 import memory as v2_memory

            warnings += v2_memory.apply(route[1], memory)

    def _apply_cpu(self, cpu: Mapping[str, object], warnings: list[str]) -> None:
        if not any(cpu.get(key) is not None for key in CPU_KEYS):
            return
        route = self._route("cpu")
        if route is None:
            warnings.append(self._missing("cpu", "cpu"))
        elif route[0] == "v1":
            from runtime.cgroups.v1 import cpu as v1_cpu

            warnings += v1_cpu.apply(route[1], cpu)
        else:
            from runtime.cgroups.v2 import cpu as v2_cpu

            warnings += v2_cpu.apply(route[1], cpu)

    def _apply_pids(self, pids: Mapping[str, object], warnings: list[str]) -> None:
        route = self._route("pids")
        if route is None:
            warnings.append(self._missing("pids", "pids"))
        elif route[0] == "v1":
            from runtime.cgroups.v1 import pids as v1_pids

            warnings += v1_pids.apply(route[1], pids)
        else:
            from runtime.cgroups.v2 import pids as v2_pids

            warnings += v2_pids.apply(route[1], pids)

    def _apply_block_io(self, block_io: Mapping[str, object], warnings: list[str]) -> None:
        route = self._route("blkio", "io")
        if route is None:
            warnings.append(self._missing("blockIO", "blkio/io"))
        elif route[0] == "v1":
            from runtime.cgroups.v1 import blkio as v1_blkio

            warnings += v1_blkio.apply(route[1], block_io)
        else:
            from runtime.cgroups.v2 import io as v2_io

            warnings += v2_io.apply(route[1], block_io)

    def _apply_hugetlb(self, limits: list[Mapping[str, object]], warnings: list[str]) -> None:
        route = self._route("hugetlb")
        if route is None:
            warnings.append(self._missing("hugepageLimits", "hugetlb"))
        elif route[0] == "v1":
            from runtime.cgroups.v1 import hugetlb as v1_hugetlb

            warnings += v1_hugetlb.apply(route[1], limits)
        else:
            from runtime.cgroups.v2 import hugetlb as v2_hugetlb

            warnings += v2_hugetlb.apply(route[1], limits)

    def _apply_network(self, network: Mapping[str, object], warnings: list[str]) -> None:
        from runtime.cgroups.v1 import net as v1_net

        if network.get("classID") is not None:
            path = self._v1.get("net_cls")
            if path is None:
                warnings.append(self._missing("network.classID", "net_cls (v1)"))
            else:
                warnings += v1_net.apply_classid(path, network)
        if network.get("priorities"):
            path = self._v1.get("net_prio")
            if path is None:
                warnings.append(self._missing("network.priorities", "net_prio (v1)"))
            else:
                warnings += v1_net.apply_priorities(path, network)

    def _apply_unified(self, unified: Mapping[str, object]) -> None:
        if self._unified is None:
            raise CgroupError(
                "linux.resources.unified: needs cgroup v2, but no unified hierarchy is "
                f"mounted under {self._layout.root}"
            )
        from runtime.cgroups.v2 import unified as v2_unified

        allowed = None if self._layout.mode == "unified" else self._layout.unified_controllers
        v2_unified.apply(self._unified, unified, allowed)

    # -- stats -------------------------------------------------------------------

    def stats(self) -> CgroupStats:
        """Usage counters from wherever each controller lives; never raises."""
        from runtime.cgroups import stats as s

        def route_dir(version: str, v1_name: str, v2_name: str | None = None) -> str | None:
            route = self._route(v1_name, v2_name)
            return route[1] if route is not None and route[0] == version else None

        cpu_dir, cpuacct_dir = self._v1.get("cpu"), self._v1.get("cpuacct")
        if cpu_dir is not None or cpuacct_dir is not None:
            cpu = s.cpu_v1(cpu_dir, cpuacct_dir)
        else:
            cpu = s.cpu_v2(self._unified)  # cpu.stat usage exists without the cpu controller
        memory_v1 = route_dir("v1", "memory")
        pids_route = self._route("pids")
        blkio_v1 = route_dir("v1", "blkio", "io")
        return s.CgroupStats(
            cpu=cpu,
            memory=(
                s.memory_v1(memory_v1)
                if memory_v1 is not None
                else s.memory_v2(route_dir("v2", "memory"))
            ),
            pids=s.pids(None if pids_route is None else pids_route[1]),
            hugetlb={
                **s.hugetlb_v1(route_dir("v1", "hugetlb")),
                **s.hugetlb_v2(route_dir("v2", "hugetlb")),
            },
            blkio=(
                s.blkio_v1(blkio_v1)
                if blkio_v1 is not None
                else s.io_v2(route_dir("v2", "blkio", "io"))
            ),
        )
