"""OCI `linux.resources.unified`: raw cgroup2 file writes, applied last.

Keys are file names in the cgroup's unified directory ("memory.high",
"cgroup.max.descendants"). A key must be a plain file name. In hybrid mode
only keys of controllers served by cgroup2 (and "cgroup.*" core files) can be
honoured; anything else is an error, as runc refuses `unified` on v1.
"""

from __future__ import annotations

from runtime.cgroups import fs
from runtime.cgroups.base import CgroupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping


def apply(
    cgroup_dir: str, unified: Mapping[str, object], allowed: frozenset[str] | None
) -> list[str]:
    """Write each key; `allowed` limits the controller prefixes (None: any)."""
    for key, value in unified.items():
        if not key or "/" in key or key.startswith(".") or "." not in key:
            raise CgroupError(f"linux.resources.unified: invalid key {key!r}")
        if not isinstance(value, str):
            raise CgroupError(f"linux.resources.unified.{key}: expected a string, got {value!r}")
        prefix = key.split(".", 1)[0]
        if allowed is not None and prefix != "cgroup" and prefix not in allowed:
            raise CgroupError(
                f"linux.resources.unified.{key}: the {prefix} controller is not served by "
                "cgroup v2 on this machine"
            )
        try:
            fs.write_file(cgroup_dir, key, value)
        except CgroupError as e:
            if not fs.exists(cgroup_dir, key):
                raise CgroupError(
                    f"linux.resources.unified.{key}: {e} (is the {prefix} controller enabled?)",
                    e.errno,
                ) from e
            raise
    return []
