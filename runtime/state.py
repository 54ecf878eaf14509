"""Container state on disk and the status it implies.

Layout under the runtime root (`--root`, default /run/kubeling/runtime):

    <root>/<id>/state.json   written once `create` succeeds (atomically); its
                             absence with the directory present means "creating"
    <root>/<id>/exec.fifo    exists from create until start: init blocks reading it
    <root>/<id>/exit         written by the monitor when init exits: "<code> <signal>"

Status is derived, never stored: a live init with the fifo present is `created`,
without it `running` (or `paused` when frozen); a dead init is `stopped`. A pid is
"live" only if /proc/<pid>/stat still shows the start time recorded at create, so a
recycled pid is never mistaken for the container.

Statuses are plain strings (the OCI state values) with predicates below; an Enum
would cost an `enum` import on every CLI call.
"""

from __future__ import annotations

import os
import time

from runtime import jsonio as json
from runtime.errors import AlreadyExists, InvalidState, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CREATING = "creating"
CREATED = "created"
RUNNING = "running"
PAUSED = "paused"
STOPPED = "stopped"

OCI_VERSION = "1.0.2"


def can_start(status: str) -> bool:
    return status == CREATED


def can_kill(status: str) -> bool:
    return status in (CREATED, RUNNING, PAUSED)


def can_delete(status: str) -> bool:
    """Without --force only a stopped container (runtime spec: deleting one that is
    not stopped must fail and change nothing)."""
    return status == STOPPED


def can_exec(status: str) -> bool:
    return status in (CREATED, RUNNING)


def can_pause(status: str) -> bool:
    return status == RUNNING


def can_resume(status: str) -> bool:
    return status == PAUSED


def validate_id(container_id: str) -> None:
    if (
        not container_id
        or container_id in (".", "..")
        or "/" in container_id
        or "\0" in container_id
        or len(container_id) > 1024
    ):
        raise InvalidState(f"invalid container id {container_id!r}")


def atomic_write(path: str, data: bytes, mode: int = 0o644, *, sync: bool = True) -> None:
    """Write to a temporary file in the same directory, fsync (unless not `sync`),
    rename over `path`."""
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (clock ticks since boot), None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


class ContainerState:
    """What `create` recorded about one container, plus its derived status."""

    __slots__ = ("directory", "record")

    def __init__(self, directory: str, record: dict[str, Any]) -> None:
        self.directory = directory
        self.record = record

    @property
    def id(self) -> str:
        return str(self.record["id"])

    @property
    def pid(self) -> int:
        return int(self.record["pid"])

    @property
    def bundle(self) -> str:
        return str(self.record["bundle"])

    @property
    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = self.record["config"]
        return config

    @property
    def fifo_path(self) -> str:
        return os.path.join(self.directory, "exec.fifo")

    def init_alive(self) -> bool:
        return bool(process_start_time(self.pid) == self.record["init_start_time"])

    def exit_status(self) -> tuple[int, int] | None:
        """(exit code, signal) as recorded by the monitor, if it has recorded it."""
        try:
            with open(os.path.join(self.directory, "exit"), "rb") as f:
                parts = f.read().split()
        except OSError:
            return None
        if len(parts) != 2:
            return None
        return int(parts[0]), int(parts[1])

    def status(self, *, frozen: bool = False) -> str:
        if not self.init_alive():
            return STOPPED
        if os.path.exists(self.fifo_path):
            return CREATED
        return PAUSED if frozen else RUNNING

    def oci_state(self, status: str) -> dict[str, Any]:
        """The OCI state JSON, with runc's extra fields (rootfs, created, owner)."""
        state: dict[str, Any] = {
            "ociVersion": OCI_VERSION,
            "id": self.id,
            "pid": self.pid if status != STOPPED else 0,
            "status": status,
            "bundle": self.bundle,
            "rootfs": self.record["rootfs"],
            "created": self.record["created"],
            "owner": "",
        }
        annotations = self.config.get("annotations")
        if annotations:
            state["annotations"] = annotations
        exit_status = self.exit_status()
        if status == STOPPED and exit_status is not None:
            state["exitCode"], state["exitSignal"] = exit_status
        return state


class StateStore:
    """The runtime root: one directory per container.

    state.json is not fsynced: it describes processes, and a crash of the machine
    ends them all (runc keeps its state on a tmpfs; a supervisor's root may be on
    disk, where an fsync per create was a twelfth of its time with 100 pods starting).
    A state.json such a crash left unreadable loads as InvalidState, which `delete
    --force` clears as it clears an interrupted create (from creating.json)."""

    __slots__ = ("root",)

    def __init__(self, root: str) -> None:
        self.root = root

    def directory(self, container_id: str) -> str:
        validate_id(container_id)
        return os.path.join(self.root, container_id)

    def reserve(self, container_id: str) -> str:
        """Create the container's directory; fails if the id is taken."""
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        directory = self.directory(container_id)
        try:
            os.mkdir(directory, 0o711)
        except FileExistsError:
            raise AlreadyExists(f"container {container_id} exists already") from None
        return directory

    def save(self, directory: str, record: dict[str, Any]) -> None:
        atomic_write(os.path.join(directory, "state.json"), json.dumps(record).encode(), sync=False)

    def load(self, container_id: str) -> ContainerState:
        directory = self.directory(container_id)
        try:
            with open(os.path.join(directory, "state.json"), "rb") as f:
                record = json.loads(f.read())
        except FileNotFoundError:
            if os.path.isdir(directory):
                raise InvalidState(f"container {container_id} is still being created") from None
            raise NotFound(f"container {container_id} does not exist") from None
        except ValueError:
            raise InvalidState(
                f"container {container_id}: its state.json is unreadable (delete --force clears it)"
            ) from None
        return ContainerState(directory, record)

    def ids(self) -> list[str]:
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if os.path.isfile(os.path.join(self.root, n, "state.json")))


def rfc3339_now() -> str:
    """UTC time with nanoseconds, as runc writes `created`."""
    now = time.time_ns()
    seconds, nanos = divmod(now, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"
