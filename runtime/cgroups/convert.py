"""Pure conversions between OCI resource values and cgroup file values.

Owns: unit and scale conversions (cpu shares to cgroup2 weight, blkio weight
to io.weight, memory+swap to cgroup2 swap), the string forms written to
cgroup files ("max", "c 1:3 rwm", "8:0 rbps=1024"), and reading typed values
out of an OCI `linux.resources` dict with errors that name the JSON field.
Doesn't own: any file access.

OCI zero values: as in runc, 0 means "not set" for memory limit/reservation/
swap/kernel/kernelTCP, cpu shares/quota/period/realtime* and blkio weights,
since a zero in those fields is never a meaningful limit.
"""

from __future__ import annotations

from runtime.cgroups.base import CgroupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

MAX_SHARES = 262144
MIN_SHARES = 2


def shares_to_weight(shares: int) -> int:
    """cpu.shares (2..262144) to cpu.weight (1..10000), crun's linear formula."""
    shares = min(max(shares, MIN_SHARES), MAX_SHARES)
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_weight_to_io_weight(weight: int) -> int:
    """blkio.weight (10..1000) to io.weight (1..10000), as runc converts it."""
    weight = min(max(weight, 10), 1000)
    return 1 + ((weight - 10) * 9999) // 990


def limit_v2(value: int) -> str:
    """A cgroup2 limit: negative (OCI -1, unlimited) is "max"."""
    return "max" if value < 0 else str(value)


def swap_v2(swap: int, limit: int | None) -> int:
    """OCI memory.swap (memory+swap) to cgroup2 memory.swap.max (swap alone).

    -1 stays -1 (unlimited). Otherwise the memory limit must be known and
    finite, and swap >= limit (as runc's ConvertMemorySwapToCgroupV2Value).
    """
    if swap < 0:
        return -1
    if limit is None or limit < 0:
        raise CgroupError(
            f"linux.resources.memory.swap {swap}: a swap limit needs a finite memory limit"
        )
    if swap < limit:
        raise CgroupError(
            f"linux.resources.memory.swap {swap}: memory+swap must be >= memory limit {limit}"
        )
    return swap - limit


def device_rule(kind: str, major: int | None, minor: int | None, access: str) -> str:
    """A v1 devices.allow/deny line: "c 1:3 rwm", "b *:* m", or "a" for all devices."""
    if kind == "a":
        return "a"
    major_s = "*" if major is None or major < 0 else str(major)
    minor_s = "*" if minor is None or minor < 0 else str(minor)
    return f"{kind} {major_s}:{minor_s} {access}"


def check_page_size(page_size: object) -> str:
    """Validate an OCI hugepage size ("2MB", "64KB", "1GB") used in file names."""
    if (
        not isinstance(page_size, str)
        or len(page_size) < 3
        or not page_size[:-2].isdigit()
        or page_size[-2:] not in ("KB", "MB", "GB", "TB")
    ):
        raise CgroupError(
            f"linux.resources.hugepageLimits.pageSize {page_size!r}: expected a size "
            "such as 2MB, 64KB or 1GB"
        )
    return page_size


# -- typed access to the OCI dict -------------------------------------------------


def field_name(where: str, key: str) -> str:
    """The JSON path of a field for error messages: linux.resources.memory.limit."""
    return f"linux.resources.{where}.{key}" if where else f"linux.resources.{key}"


def section(resources: Mapping[str, object], key: str) -> Mapping[str, object] | None:
    """resources[key] as a dict, None if absent or null."""
    value = resources.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise CgroupError(f"linux.resources.{key}: expected an object, got {value!r}")
    return value


def get_int(values: Mapping[str, object], key: str, where: str) -> int | None:
    """An integer field; None if absent or null."""
    value = values.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise CgroupError(f"{field_name(where, key)}: expected an integer, got {value!r}")
    return value


def get_set_int(values: Mapping[str, object], key: str, where: str) -> int | None:
    """An integer field where 0 means "not set" (see the module docstring)."""
    value = get_int(values, key, where)
    return None if value == 0 else value


def get_bool(values: Mapping[str, object], key: str, where: str) -> bool | None:
    value = values.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise CgroupError(f"{field_name(where, key)}: expected a boolean, got {value!r}")
    return value


def get_str(values: Mapping[str, object], key: str, where: str) -> str | None:
    value = values.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise CgroupError(f"{field_name(where, key)}: expected a string, got {value!r}")
    return value


def get_objects(values: Mapping[str, object], key: str, where: str) -> list[Mapping[str, object]]:
    """A list of objects; [] if absent or null."""
    value = values.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise CgroupError(f"{field_name(where, key)}: expected a list of objects, got {value!r}")
    return value


def has_settings(values: Mapping[str, object] | list[object] | None) -> bool:
    """True if a section sets anything (not absent, null, {} or [])."""
    if values is None:
        return False
    if isinstance(values, list):
        return bool(values)
    return any(v is not None for v in values.values())
