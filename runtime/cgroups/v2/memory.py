"""cgroup v2 memory controller: memory.max, memory.swap.max, memory.low.

OCI `swap` is memory+swap (the v1 meaning); memory.swap.max is swap alone, so
it is written as swap - limit (`convert.swap_v2`). When the update carries a
swap but no limit, the current memory.max is used. A limit of -1 with no swap
also makes swap unlimited (as runc). memory.swap.max and memory.max are
independent on v2, so their order does not matter.

Not available on v2 (warnings): kernel, kernelTCP, swappiness,
disableOOMKiller.
"""

from __future__ import annotations

from runtime.cgroups import convert, fs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping


def apply(cgroup_dir: str, memory: Mapping[str, object]) -> list[str]:
    warnings: list[str] = []
    limit = convert.get_set_int(memory, "limit", "memory")
    swap = convert.get_set_int(memory, "swap", "memory")
    reservation = convert.get_set_int(memory, "reservation", "memory")
    for key in ("kernel", "kernelTCP"):
        value = convert.get_set_int(memory, key, "memory")
        if value is not None:
            warnings.append(
                f"linux.resources.memory.{key} {value} not applied: no kernel memory "
                "limits on cgroup v2"
            )
    swappiness = convert.get_int(memory, "swappiness", "memory")
    if swappiness is not None and swappiness != -1:
        warnings.append(
            f"linux.resources.memory.swappiness {swappiness} not applied: no per-cgroup "
            "swappiness on cgroup v2"
        )
    if convert.get_bool(memory, "disableOOMKiller", "memory"):
        warnings.append(
            "linux.resources.memory.disableOOMKiller not applied: cgroup v2 cannot disable "
            "the OOM killer"
        )

    if limit == -1 and swap is None:
        swap = -1
    if swap is not None:
        if limit is None:
            current = fs.read_int(cgroup_dir, "memory.max")  # None: "max"
            swap_max = convert.swap_v2(swap, current)
        else:
            swap_max = convert.swap_v2(swap, limit)
        swap_value = convert.limit_v2(swap_max)
        if fs.exists(cgroup_dir, "memory.swap.max"):
            fs.write_file(cgroup_dir, "memory.swap.max", swap_value)
        elif swap_value not in ("max", "0"):
            warnings.append(
                f"linux.resources.memory.swap {swap} not applied: swap accounting is not "
                "enabled (no memory.swap.max)"
            )
    if limit is not None:
        fs.write_file(cgroup_dir, "memory.max", convert.limit_v2(limit))
    if reservation is not None:
        fs.write_file(cgroup_dir, "memory.low", convert.limit_v2(reservation))
    return warnings
