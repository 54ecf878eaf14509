"""cgroup v1 cpu controller: shares, CFS quota/period/burst, realtime, idle.

Ordering rule (runc `CpuGroup.Set`): a new period can be refused (EINVAL) while
the old quota is in place, because old_quota/new_period would exceed the
parent's bandwidth. If the quota is changed too, the period is retried after
the quota. Realtime period/runtime follow the same rule.

`cpus`/`mems` of the OCI cpu section belong to the cpuset controller
(`v1/cpuset.py`); the manager routes them there.
"""

from __future__ import annotations

import errno

from runtime.cgroups import convert, fs
from runtime.cgroups.base import CgroupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping


def apply(cgroup_dir: str, cpu: Mapping[str, object]) -> list[str]:
    warnings: list[str] = []
    shares = convert.get_set_int(cpu, "shares", "cpu")
    quota = convert.get_set_int(cpu, "quota", "cpu")
    period = convert.get_set_int(cpu, "period", "cpu")
    rt_runtime = convert.get_set_int(cpu, "realtimeRuntime", "cpu")
    rt_period = convert.get_set_int(cpu, "realtimePeriod", "cpu")
    idle = convert.get_int(cpu, "idle", "cpu")
    burst = convert.get_int(cpu, "burst", "cpu")

    if rt_runtime is not None or rt_period is not None:
        if fs.exists(cgroup_dir, "cpu.rt_runtime_us"):
            _set_pair(
                cgroup_dir, ("cpu.rt_period_us", rt_period), ("cpu.rt_runtime_us", rt_runtime)
            )
        else:
            warnings.append(
                "linux.resources.cpu.realtimeRuntime/realtimePeriod not applied: the kernel "
                "has no realtime group scheduling (no cpu.rt_runtime_us)"
            )
    if shares is not None:
        fs.write_file(cgroup_dir, "cpu.shares", str(shares))
        actual = fs.read_int(cgroup_dir, "cpu.shares")
        if actual is not None and actual != shares:
            raise CgroupError(
                f"linux.resources.cpu.shares {shares}: the kernel set {actual} "
                f"(allowed range {convert.MIN_SHARES}-{convert.MAX_SHARES})"
            )
    _set_pair(cgroup_dir, ("cpu.cfs_period_us", period), ("cpu.cfs_quota_us", quota))
    if burst is not None:
        # After the quota: the burst may not exceed it.
        if fs.exists(cgroup_dir, "cpu.cfs_burst_us"):
            fs.write_file(cgroup_dir, "cpu.cfs_burst_us", str(burst))
        elif burst:
            warnings.append(f"linux.resources.cpu.burst {burst} not applied: no cpu.cfs_burst_us")
    if idle is not None:
        if fs.exists(cgroup_dir, "cpu.idle"):
            fs.write_file(cgroup_dir, "cpu.idle", str(idle))
        else:
            warnings.append(f"linux.resources.cpu.idle {idle} not applied: no cpu.idle")
    return warnings


def _set_pair(
    cgroup_dir: str, period: tuple[str, int | None], amount: tuple[str, int | None]
) -> None:
    """Write a period file then its amount file, retrying the period after an EINVAL."""
    period_file, period_value = period
    amount_file, amount_value = amount
    retry_period = False
    if period_value is not None:
        try:
            fs.write_file(cgroup_dir, period_file, str(period_value))
        except CgroupError as e:
            if e.errno != errno.EINVAL or amount_value is None:
                raise
            retry_period = True
    if amount_value is not None:
        fs.write_file(cgroup_dir, amount_file, str(amount_value))
        if retry_period:
            fs.write_file(cgroup_dir, period_file, str(period_value))
