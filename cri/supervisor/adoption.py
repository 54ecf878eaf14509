"""Re-adoption: a supervisor that starts again takes back the containers a previous
one left running (`adopt_all`, before it serves), from their records (records.py)
and the runtime's state.

A record still "creating" is an interrupted create: the runtime's leftovers are
deleted, and the record. One "stopped" is listed as it is. One "created" or
"running" whose init lives is watched through a pidfd (we are no longer its parent,
so no SIGCHLD and no wait status), and is "running" if the runtime says so; when the
pidfd fires, or when a forced delete has killed it (`adopted_exited`), the exit code
is the one the runtime recorded if any, else the zombie's (read from /proc/<pid>/stat
if its new parent has not reaped it yet), else unknown (255), as for one the runtime
no longer knows.

Their stdout/stderr pipes died with the old supervisor: their output is no longer
logged, `reopen_log`, `stdin` and `attach` refuse (stdio.py), and a container that
writes to its stdout gets EPIPE (or SIGPIPE).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from cri.supervisor.container import Container
from cri.supervisor.protocol import Status
from cri.supervisor.records import ContainerRecord
from runtime import errors as runtime_errors

if TYPE_CHECKING:
    from cri.supervisor.containers import ContainerManager

log = logging.getLogger(__name__)


def adopt_all(manager: ContainerManager) -> None:
    """Take back every container the records list; one that fails is logged and left."""
    for record in manager.store.load_all():
        try:
            _adopt(manager, record)
        except Exception:
            log.exception("re-adopt container %s", record.id)


def _adopt(manager: ContainerManager, record: ContainerRecord) -> None:
    runtime = manager.runtime
    if record.status is Status.CREATING:
        log.warning("container %s: its create was interrupted; removing it", record.id)
        try:
            runtime.delete(record.id, force=True)
        except runtime_errors.NotFound:
            pass
        manager.store.remove(record.id)
        return
    container = Container(record, adopted=True)
    manager.containers[record.id] = container
    if record.status is Status.STOPPED:
        return
    try:
        created = runtime.load(record.id)
    except runtime_errors.NotFound:
        log.warning("container %s: the runtime no longer knows it", record.id)
        manager.exited(container, None)
        return
    try:
        pidfd = os.pidfd_open(created.pid)
    except ProcessLookupError:
        pidfd = -1
    # Checked after opening the pidfd: it then surely refers to this init.
    if pidfd >= 0 and not created.init_alive():
        os.close(pidfd)
        pidfd = -1
    if pidfd < 0:
        adopted_exited(manager, container)
        return
    container.pidfd = pidfd
    manager.reactor.add_reader(pidfd, lambda: adopted_exited(manager, container))
    if record.status is Status.CREATED and runtime.status(created) == "running":
        record.status = Status.RUNNING
        manager.store.save(record)
    log.info(
        "re-adopted container %s (pid %d, %s); its output is no longer captured",
        record.id, record.pid, record.status.value,
    )  # fmt: skip


def adopted_exited(manager: ContainerManager, container: Container) -> None:
    """The init of a re-adopted container is gone: find its exit status as well as
    can be done without waiting for it, and handle the exit."""
    manager.close_pidfd(container)
    status: int | None = None
    try:
        created = manager.runtime.load(container.id)
    except runtime_errors.RuntimeFailure:
        created = None
    if created is not None:
        recorded = created.exit_status()
        if recorded is not None:
            code, signum = recorded
            status = signum if signum else code << 8
        else:
            status = zombie_status(created.pid, created.record["init_start_time"])
    manager.exited(container, status)


def zombie_status(pid: int, start_time: int) -> int | None:
    """The wait status of `pid` if it is a zombie started at `start_time` (field 52 of
    /proc/<pid>/stat, Linux 3.5 and later), else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    if len(fields) < 50 or fields[0] != b"Z" or int(fields[19]) != start_time:
        return None
    return int(fields[49])
