"""cgroup v2 io controller: OCI `linux.resources.blockIO`.

weight -> io.bfq.weight when BFQ is there (same 1..1000 scale), else
io.weight converted from the blkio scale (runc). weightDevice -> io.bfq.weight
"major:minor weight" (BFQ only; a warning without it). Throttles -> io.max
"major:minor rbps=N" (wbps, riops, wiops). leafWeight has no v2 equivalent.
"""

from __future__ import annotations

from runtime.cgroups import convert, fs
from runtime.cgroups.base import CgroupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

THROTTLE = (
    ("throttleReadBpsDevice", "rbps"),
    ("throttleWriteBpsDevice", "wbps"),
    ("throttleReadIOPSDevice", "riops"),
    ("throttleWriteIOPSDevice", "wiops"),
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
    bfq = fs.exists(cgroup_dir, "io.bfq.weight")
    weight = convert.get_set_int(block_io, "weight", "blockIO")
    if weight is not None:
        if bfq:
            writes.append(("io.bfq.weight", str(weight)))
        else:
            writes.append(("io.weight", str(convert.blkio_weight_to_io_weight(weight))))
    if convert.get_set_int(block_io, "leafWeight", "blockIO") is not None:
        warnings.append("linux.resources.blockIO.leafWeight not applied: no leaf weights on v2")
    for entry in convert.get_objects(block_io, "weightDevice", "blockIO"):
        device = _device(entry, "blockIO.weightDevice")
        device_weight = convert.get_set_int(entry, "weight", "blockIO.weightDevice")
        if device_weight is not None:
            if bfq:
                writes.append(("io.bfq.weight", f"{device} {device_weight}"))
            else:
                warnings.append(
                    f"linux.resources.blockIO.weightDevice {device} not applied: per-device "
                    "weights need the BFQ scheduler (no io.bfq.weight)"
                )
        if convert.get_set_int(entry, "leafWeight", "blockIO.weightDevice") is not None:
            warnings.append(
                f"linux.resources.blockIO.weightDevice {device} leafWeight not applied: "
                "no leaf weights on v2"
            )
    for key, name in THROTTLE:
        for entry in convert.get_objects(block_io, key, "blockIO"):
            device = _device(entry, f"blockIO.{key}")
            rate = convert.get_int(entry, "rate", f"blockIO.{key}")
            if rate is not None:
                writes.append(("io.max", f"{device} {name}={convert.limit_v2(rate)}"))
    return writes, warnings


def apply(cgroup_dir: str, block_io: Mapping[str, object]) -> list[str]:
    writes, warnings = plan(cgroup_dir, block_io)
    for name, line in writes:
        fs.write_file(cgroup_dir, name, line)
    return warnings
