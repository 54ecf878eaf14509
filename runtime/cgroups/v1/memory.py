"""cgroup v1 memory controller: OCI `linux.resources.memory`.

Ordering rule (runc `setMemoryAndSwap`): the kernel requires
memory.limit_in_bytes <= memory.memsw.limit_in_bytes at every moment. When
both change, memsw is written first if the new swap is unlimited or above the
current limit (raising), else the limit is written first (lowering).
OCI `swap` is memory+swap, which is what memsw means, so it is written as is.
A limit of -1 with no swap given also makes memsw unlimited (runc does this,
otherwise an unlimited limit would be refused under a finite memsw).

Kernel memory (`kernel`) is not written: it is deprecated and not enforced on
current kernels (runc ignores it too); a warning says so.
"""

from __future__ import annotations

from runtime.cgroups import convert, fs
from runtime.cgroups.base import CgroupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

LIMIT = "memory.limit_in_bytes"
MEMSW = "memory.memsw.limit_in_bytes"
SOFT_LIMIT = "memory.soft_limit_in_bytes"
KMEM_TCP = "memory.kmem.tcp.limit_in_bytes"
SWAPPINESS = "memory.swappiness"
OOM_CONTROL = "memory.oom_control"


def apply(cgroup_dir: str, memory: Mapping[str, object]) -> list[str]:
    warnings: list[str] = []
    limit = convert.get_set_int(memory, "limit", "memory")
    swap = convert.get_set_int(memory, "swap", "memory")
    reservation = convert.get_set_int(memory, "reservation", "memory")
    kernel = convert.get_set_int(memory, "kernel", "memory")
    kernel_tcp = convert.get_set_int(memory, "kernelTCP", "memory")
    swappiness = convert.get_int(memory, "swappiness", "memory")
    disable_oom_killer = convert.get_bool(memory, "disableOOMKiller", "memory")

    has_memsw = fs.exists(cgroup_dir, MEMSW)
    if limit == -1 and swap is None and has_memsw:
        swap = -1
    if swap is not None and not has_memsw:
        if swap != -1:
            warnings.append(
                f"linux.resources.memory.swap {swap} not applied: swap accounting is "
                f"not enabled (no {MEMSW})"
            )
        swap = None
    set_limit_and_swap(cgroup_dir, limit, swap)

    if reservation is not None:
        fs.write_file(cgroup_dir, SOFT_LIMIT, str(reservation))
    if kernel is not None:
        warnings.append(
            f"linux.resources.memory.kernel {kernel} not applied: kernel memory limits "
            "are not enforced by current kernels"
        )
    if kernel_tcp is not None:
        if fs.exists(cgroup_dir, KMEM_TCP):
            fs.write_file(cgroup_dir, KMEM_TCP, str(kernel_tcp))
        else:
            warnings.append(
                f"linux.resources.memory.kernelTCP {kernel_tcp} not applied: no {KMEM_TCP}"
            )
    if swappiness is not None and swappiness != -1:
        if not 0 <= swappiness <= 100:
            raise CgroupError(
                f"linux.resources.memory.swappiness {swappiness}: must be between 0 and 100"
            )
        fs.write_file(cgroup_dir, SWAPPINESS, str(swappiness))
    if disable_oom_killer is not None:
        fs.write_file(cgroup_dir, OOM_CONTROL, "1" if disable_oom_killer else "0")
    return warnings


def set_limit_and_swap(cgroup_dir: str, limit: int | None, swap: int | None) -> None:
    """Write memory limit and memory+swap limit in an order the kernel accepts."""
    if limit is not None and swap is not None:
        current = fs.read_int(cgroup_dir, LIMIT)
        if swap == -1 or (current is not None and current < swap):
            fs.write_file(cgroup_dir, MEMSW, str(swap))
            fs.write_file(cgroup_dir, LIMIT, str(limit))
        else:
            fs.write_file(cgroup_dir, LIMIT, str(limit))
            fs.write_file(cgroup_dir, MEMSW, str(swap))
        return
    if limit is not None:
        fs.write_file(cgroup_dir, LIMIT, str(limit))
    if swap is not None:
        fs.write_file(cgroup_dir, MEMSW, str(swap))
