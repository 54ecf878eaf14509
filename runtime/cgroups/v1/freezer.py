"""cgroup v1 freezer: freezer.state FROZEN/THAWED.

Writing FROZEN starts freezing; the state reads FREEZING until every task
has stopped. `freeze` polls with a short, growing sleep, re-writing FROZEN on
each round (runc does the same: a task that forks while freezing can stall
the transition), up to `timeout`; on timeout it thaws again and fails, so a
half-frozen container is never left behind. `sleep` and `clock` are injected
so tests run on fake time.
"""

from __future__ import annotations

import time

from runtime.cgroups import fs
from runtime.cgroups.base import CgroupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

STATE = "freezer.state"


def state(cgroup_dir: str) -> str:
    """ "FROZEN", "FREEZING", "THAWED", or "" if unreadable."""
    return (fs.read_file(cgroup_dir, STATE) or "").strip()


def freeze(
    cgroup_dir: str,
    *,
    timeout: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    deadline = clock() + timeout
    delay = 0.001
    while True:
        fs.write_file(cgroup_dir, STATE, "FROZEN")
        current = state(cgroup_dir)
        if current == "FROZEN":
            return
        if clock() >= deadline:
            fs.write_file(cgroup_dir, STATE, "THAWED")
            raise CgroupError(
                f"freeze {cgroup_dir}: {STATE} still {current or 'unreadable'} "
                f"after {timeout}s (thawed again)"
            )
        sleep(delay)
        delay = min(delay * 2, 0.02)


def thaw(
    cgroup_dir: str,
    *,
    timeout: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    deadline = clock() + timeout
    delay = 0.001
    fs.write_file(cgroup_dir, STATE, "THAWED")
    while True:
        current = state(cgroup_dir)
        if current == "THAWED":
            return
        if clock() >= deadline:
            raise CgroupError(
                f"thaw {cgroup_dir}: {STATE} still {current or 'unreadable'} after {timeout}s"
            )
        sleep(delay)
        delay = min(delay * 2, 0.02)
        fs.write_file(cgroup_dir, STATE, "THAWED")


def is_frozen(cgroup_dir: str) -> bool:
    return state(cgroup_dir) == "FROZEN"
