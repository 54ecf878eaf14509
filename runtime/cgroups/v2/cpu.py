"""cgroup v2 cpu controller: weight, cpu.max, cpu.max.burst, idle.

shares -> cpu.weight with crun's linear formula (`convert.shares_to_weight`).
quota/period -> cpu.max "$QUOTA $PERIOD", quota -1 as "max". cpu.max keeps
its period when only a quota is written, and an update that changes only the
period keeps the current quota (runc would reset it to "max").
Realtime scheduling has no cgroup v2 interface: a warning.
"""

from __future__ import annotations

from runtime.cgroups import convert, fs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping


def cpu_max(quota: int | None, period: int | None, current: str | None) -> str | None:
    """The cpu.max line for an update, or None when neither value changes."""
    if quota is None and period is None:
        return None
    if period is None:
        return "max" if quota is None or quota < 0 else str(quota)
    if quota is None:
        fields = (current or "").split()
        quota_s = fields[0] if fields else "max"
    else:
        quota_s = "max" if quota < 0 else str(quota)
    return f"{quota_s} {period}"


def apply(cgroup_dir: str, cpu: Mapping[str, object]) -> list[str]:
    warnings: list[str] = []
    shares = convert.get_set_int(cpu, "shares", "cpu")
    quota = convert.get_set_int(cpu, "quota", "cpu")
    period = convert.get_set_int(cpu, "period", "cpu")
    idle = convert.get_int(cpu, "idle", "cpu")
    burst = convert.get_int(cpu, "burst", "cpu")
    if (
        convert.get_set_int(cpu, "realtimeRuntime", "cpu") is not None
        or convert.get_set_int(cpu, "realtimePeriod", "cpu") is not None
    ):
        warnings.append(
            "linux.resources.cpu.realtimeRuntime/realtimePeriod not applied: cgroup v2 has "
            "no realtime group scheduling"
        )
    if shares is not None:
        fs.write_file(cgroup_dir, "cpu.weight", str(convert.shares_to_weight(shares)))
    current = fs.read_file(cgroup_dir, "cpu.max") if quota is None and period is not None else None
    line = cpu_max(quota, period, current)
    if line is not None:
        fs.write_file(cgroup_dir, "cpu.max", line)
    if burst is not None:
        # After cpu.max: the burst may not exceed the quota.
        if fs.exists(cgroup_dir, "cpu.max.burst"):
            fs.write_file(cgroup_dir, "cpu.max.burst", str(burst))
        elif burst:
            warnings.append(f"linux.resources.cpu.burst {burst} not applied: no cpu.max.burst")
    if idle is not None:
        fs.write_file(cgroup_dir, "cpu.idle", str(idle))
    return warnings
