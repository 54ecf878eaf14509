"""cgroup v1 blkio controller: OCI `linux.resources.blockIO`.

Weights go to blkio.weight/blkio.weight_device (CFQ) or, on kernels that
only have BFQ (CFQ was removed in 5.0), blkio.bfq.weight/blkio.bfq.weight_device,
as runc chooses. Without either a weight is reported as a warning. Throttle
rules are one "major:minor rate" line per write.
"""

from __future__ import annotations

from runtime.cgroups import convert, fs
from runtime.cgroups.base import CgroupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

THROTTLE = (
    ("throttleReadBpsDevice", "blkio.throttle.read_bps_device"),
    ("throttleWriteBpsDevice", "blkio.throttle.write_bps_device"),
    ("throttleReadIOPSDevice", "blkio.throttle.read_iops_device"),
    ("throttleWriteIOPSDevice", "blkio.throttle.write_iops_device"),
)


def _device(entry: Mapping[str, object], where: str) -> str:
    major = convert.get_int(entry, "major", where)
    minor = convert.get_int(entry, "minor", where)
    if major is None or minor is None:
        raise CgroupError(f"linux.resources.{where}: {dict(entry)!r} needs major and minor")
    return f"{major}:{minor}"


def plan(
    cgroup_dir: str, block_io: Mapping[str, object]
) -> tuple[list[tuple[str, str]], list[str]]:
    """(file, line) writes and warnings for a blockIO section."""
    writes: list[tuple[str, str]] = []
    warnings: list[str] = []
    if fs.exists(cgroup_dir, "blkio.weight"):
        weight_file, weight_device_file = "blkio.weight", "blkio.weight_device"
    elif fs.exists(cgroup_dir, "blkio.bfq.weight"):
        weight_file, weight_device_file = "blkio.bfq.weight", "blkio.bfq.weight_device"
    else:
        weight_file = weight_device_file = ""
    has_leaf = fs.exists(cgroup_dir, "blkio.leaf_weight")

    def weight(file: str, value: int | None, what: str) -> None:
        if value is None:
            return
        if file:
            writes.append((file, str(value)))
        else:
            warnings.append(f"linux.resources.blockIO.{what} {value} not applied: no weight file")

    weight(weight_file, convert.get_set_int(block_io, "weight", "blockIO"), "weight")
    weight(
        "blkio.leaf_weight" if has_leaf else "",
        convert.get_set_int(block_io, "leafWeight", "blockIO"),
        "leafWeight",
    )
    for entry in convert.get_objects(block_io, "weightDevice", "blockIO"):
        device = _device(entry, "blockIO.weightDevice")
        device_weight = convert.get_set_int(entry, "weight", "blockIO.weightDevice")
        leaf = convert.get_set_int(entry, "leafWeight", "blockIO.weightDevice")
        if device_weight is not None:
            if weight_device_file:
                writes.append((weight_device_file, f"{device} {device_weight}"))
            else:
                warnings.append(
                    f"linux.resources.blockIO.weightDevice {device} not applied: no weight file"
                )
        if leaf is not None:
            if has_leaf:
                writes.append(("blkio.leaf_weight_device", f"{device} {leaf}"))
            else:
                warnings.append(
                    f"linux.resources.blockIO.weightDevice {device} leafWeight not applied: "
                    "no blkio.leaf_weight_device"
                )
    for key, file in THROTTLE:
        for entry in convert.get_objects(block_io, key, "blockIO"):
            device = _device(entry, f"blockIO.{key}")
            rate = convert.get_int(entry, "rate", f"blockIO.{key}")
            if rate is None:
                continue
            writes.append((file, f"{device} {rate}"))
    return writes, warnings


def apply(cgroup_dir: str, block_io: Mapping[str, object]) -> list[str]:
    writes, warnings = plan(cgroup_dir, block_io)
    for name, line in writes:
        fs.write_file(cgroup_dir, name, line)
    return warnings
