"""cgroup v2 freezer: cgroup.freeze, settled state in cgroup.events.

Writing 1 to cgroup.freeze starts freezing; "frozen 1" appears in
cgroup.events when every task has stopped. `freeze`/`thaw` poll for it with a
short, growing sleep up to `timeout`; a freeze that does not settle is undone
and reported. `sleep` and `clock` are injected so tests run on fake time.
"""

from __future__ import annotations

import time

from runtime.cgroups import fs
from runtime.cgroups.base import CgroupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


def is_frozen(cgroup_dir: str) -> bool:
    events = fs.read_keyed(cgroup_dir, "cgroup.events")
    if "frozen" in events:
        return events["frozen"] == 1
    return fs.read_int(cgroup_dir, "cgroup.freeze") == 1


def _set(
    cgroup_dir: str,
    frozen: bool,
    *,
    timeout: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> None:
    deadline = clock() + timeout
    delay = 0.001
    fs.write_file(cgroup_dir, "cgroup.freeze", "1" if frozen else "0")
    while is_frozen(cgroup_dir) != frozen:
        if clock() >= deadline:
            verb = "freeze" if frozen else "thaw"
            if frozen:
                fs.write_file(cgroup_dir, "cgroup.freeze", "0")
            raise CgroupError(
                f"{verb} {cgroup_dir}: cgroup.events did not report frozen "
                f"{int(frozen)} within {timeout}s" + (" (thawed again)" if frozen else "")
            )
        sleep(delay)
        delay = min(delay * 2, 0.02)


def freeze(
    cgroup_dir: str,
    *,
    timeout: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    _set(cgroup_dir, True, timeout=timeout, sleep=sleep, clock=clock)


def thaw(
    cgroup_dir: str,
    *,
    timeout: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    _set(cgroup_dir, False, timeout=timeout, sleep=sleep, clock=clock)
