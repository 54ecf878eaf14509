"""cgroup v1 devices controller: OCI `linux.resources.devices`.

The OCI list is an allowlist applied in order over a default of "deny
everything" (runc builds its target the same way). `plan` turns it into
writes: "a" to devices.deny first unless the first rule is itself an
all-devices rule (which resets the cgroup anyway), then one line per rule to
devices.allow or devices.deny. The kernel applies each write as it comes, so
the order of the list is preserved.

Known gap compared with runc: runc diffs the current and target rule sets so
that an `update` of a running container never passes through "deny all";
here an update rewrites the whole list.
"""

from __future__ import annotations

from runtime.cgroups import convert, fs
from runtime.cgroups.base import CgroupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping


def rule_line(rule: Mapping[str, object]) -> tuple[bool, str]:
    """(allow, line) for one OCI device rule; `line` is "a" for all devices."""
    allow = convert.get_bool(rule, "allow", "devices")
    if allow is None:
        raise CgroupError(f"linux.resources.devices: rule {dict(rule)!r} has no 'allow'")
    kind = convert.get_str(rule, "type", "devices") or "a"
    if kind not in ("a", "b", "c"):
        raise CgroupError(f"linux.resources.devices.type {kind!r}: expected a, b or c")
    access = convert.get_str(rule, "access", "devices") or "rwm"
    if not set(access) <= set("rwm"):
        raise CgroupError(f"linux.resources.devices.access {access!r}: expected letters of rwm")
    major = convert.get_int(rule, "major", "devices")
    minor = convert.get_int(rule, "minor", "devices")
    return allow, convert.device_rule(kind, major, minor, access)


def plan(rules: list[Mapping[str, object]]) -> list[tuple[str, str]]:
    """The (file, line) writes that make the cgroup's device list equal `rules`."""
    lines = [rule_line(rule) for rule in rules]
    writes: list[tuple[str, str]] = []
    if not lines or lines[0][1] != "a":
        writes.append(("devices.deny", "a"))
    for allow, line in lines:
        writes.append(("devices.allow" if allow else "devices.deny", line))
    return writes


def apply(cgroup_dir: str, rules: list[Mapping[str, object]]) -> list[str]:
    for name, line in plan(rules):
        fs.write_file(cgroup_dir, name, line)
    return []
