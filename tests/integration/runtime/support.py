"""Plain helpers shared by the runtime integration tests; the fixtures built on
them are in conftest.py. Imported as `tests.integration.runtime.support` (the
repository root is on sys.path through pytest's `pythonpath`)."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any

# The script installed next to this interpreter: the code under test, whatever
# another checkout may have linked into /usr/local/bin.
RUNTIME = os.path.join(os.path.dirname(sys.executable), "kubeling-runtime")
if not os.path.exists(RUNTIME):
    RUNTIME = shutil.which("kubeling-runtime") or "kubeling-runtime"

Edit = Callable[[dict[str, Any]], None]
"""A change to a bundle's config.json, as `make_bundle(..., edit=)` and `sh` take."""


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 5.0) -> Any:
    """Poll `predicate` until it returns something true, and return that."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def alive(pid: int) -> bool:
    """The process exists and is neither a zombie nor dead."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):  # gone, or going while we read
        return False


def leftovers(cli: Any, container_id: str) -> list[str]:
    """State directory, cgroup directories and live processes a container left behind."""
    found = []
    if os.path.exists(cli.root / container_id):
        found.append(str(cli.root / container_id))
    relative = f"{cli.cgroup_parent}/{container_id}"
    for controller in os.listdir("/sys/fs/cgroup"):
        if os.path.exists(f"/sys/fs/cgroup/{controller}{relative}"):
            found.append(f"/sys/fs/cgroup/{controller}{relative}")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                member = relative in f.read()
            with open(f"/proc/{pid}/stat") as f:
                zombie = f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
        except OSError:
            continue
        if member and not zombie:
            found.append(f"process {pid}")
    return found
