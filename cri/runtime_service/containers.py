"""Containers: the records of a node's containers and their lifecycle after creation:
StartContainer, StopContainer, RemoveContainer (and those of a whole sandbox, for
StopPodSandbox and RemovePodSandbox), as containerd's CRI plugin does them
(internal/cri/server/container_start.go, container_stop.go, container_remove.go), and
keeping each record's state up to date from the supervisor's.

The other container RPCs are functions over `Containers`, one module per family:
CreateContainer (container_create.py), ContainerStatus and ListContainers
(container_status.py), ContainerStats and ListContainerStats (container_stats.py),
ExecSync and ReopenContainerLog (container_exec.py), UpdateContainerResources
(container_update.py).

Per container, under <state>/containers/<id>/: rootfs/ (the image's snapshot
"container-<id>", mounted) and config.json; the bundle is that directory. The node
supervisor forks, reaps and logs it; the record in cri.store holds what the CRI
reports, and its state is brought up to date from the supervisor's (which records
exits) whenever it is read.

Stop and Remove are idempotent: an unknown id succeeds. Start, Stop and Remove hold
the container's lock (`lock`) while they act.

Events (events.py): creation (`add`), every change of state (whoever makes it: Start,
Stop, a refresh that finds the container exited) and removal are published under one
lock with the store write, so each is announced once and in order; EXITED is final, a
late report of an earlier state changes nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import shutil
import signal as signals
import threading
import time
from pathlib import Path
from typing import Any

from cri.api import api_pb2
from cri.node import Node
from cri.runtime_service.events import Publish, no_events
from cri.runtime_service.usage import CpuSamples
from cri.store import ContainerRecord, ContainerState, Kind, NotFound
from cri.supervisor import ContainerInfo, Status
from cri.supervisor import InvalidState as SupervisorInvalidState
from cri.supervisor import NotFound as SupervisorNotFound
from images import errors as image_errors
from runtime import errors as runtime_errors
from runtime.cgroups import CgroupError, Layout, Manager, detect_layout
from runtime.cgroups.base import parse_cgroups_path
from runtime.mounts import unmount_rootfs

log = logging.getLogger(__name__)

REASON_COMPLETED = "Completed"
REASON_ERROR = "Error"
REASON_OOM_KILLED = "OOMKilled"
# Up to this many records are refreshed with a supervisor `state` call each, more
# with one `list` (which describes every container the supervisor has).
FEW_CONTAINERS = 4
LAYOUT_SECONDS = 60.0  # how long a detected cgroup layout is used (open_cgroup)


def rootfs_key(container_id: str) -> str:
    return f"container-{container_id}"


def image_user(container_id: str) -> str:
    """The name under which a container holds its image (ImageStore.add_user)."""
    return f"container:{container_id}"


class Containers:
    """The containers of one node: their records, locks and lifecycle, through which
    every container RPC acts; every method is safe from any thread."""

    def __init__(self, node: Node, *, publish: Publish = no_events) -> None:
        self.node = node
        self._publish = publish
        self._lock = threading.Lock()
        self._busy: dict[str, threading.Lock] = {}
        self._cgroup_paths: dict[str, str] = {}  # id -> linux.cgroupsPath ("": none)
        # Held around each store write that creates, moves or removes a record and
        # the event announcing it, so that events go out in the order of the changes.
        self._transitions = threading.Lock()
        self.cpu = CpuSamples()  # for ContainerStats (container_stats.py)

    @property
    def containers_dir(self) -> Path:
        return self.node.state_dir / "containers"

    def _container_lock(self, container_id: str) -> threading.Lock:
        with self._lock:
            return self._busy.setdefault(container_id, threading.Lock())

    def lock(self, container_id: str) -> threading.Lock:
        """The lock Start, Stop and Remove hold for the container while they act."""
        return self._container_lock(container_id)

    def _dir(self, container_id: str) -> Path:
        return self.containers_dir / container_id

    def bundle(self, container_id: str) -> Path:
        """The container's bundle directory (config.json, rootfs/)."""
        return self._dir(container_id)

    def add(self, record: ContainerRecord) -> None:
        """Store the record of a container just created and announce it
        (CONTAINER_CREATED_EVENT), in order with every other change."""
        with self._transitions:
            self.node.store.add_container(record)
            self._publish(record.id, record.sandbox_id, api_pb2.CONTAINER_CREATED_EVENT)

    # -- start, stop, remove -----------------------------------------------------------

    def start(self, id_or_prefix: str) -> None:
        container_id = self.node.store.resolve_id(Kind.CONTAINER, id_or_prefix)
        with self._container_lock(container_id):
            # No refresh first: only Start moves a record out of CREATED but an exit,
            # and the supervisor refuses to start one that is not created (a round
            # trip saved per container while a node starts its pods).
            record = self.node.store.get_container(container_id)
            if record.state is not ContainerState.CREATED:
                raise runtime_errors.InvalidState(
                    f"container {container_id} is {record.state.value}, not CREATED"
                )
            try:
                info = self.node.supervisor.start(container_id)
            except SupervisorInvalidState as e:
                with contextlib.suppress(NotFound):
                    self.refreshed(record)  # it has exited: the record says so now
                raise runtime_errors.InvalidState(str(e)) from None
            except SupervisorNotFound as e:
                raise NotFound(str(e)) from None
            self._update(record, info)
        log.info("container %s started", container_id, extra={"container": container_id})

    def stop(self, id_or_prefix: str, timeout: float) -> None:
        try:
            container_id = self.node.store.resolve_id(Kind.CONTAINER, id_or_prefix)
        except NotFound:
            return  # idempotent, as the kubelet expects
        with self._container_lock(container_id):
            self._stop(self.node.store.get_container(container_id), timeout)

    def _stop(self, record: ContainerRecord, timeout: float) -> None:
        record = self.refreshed(record)
        if record.state not in (ContainerState.RUNNING, ContainerState.UNKNOWN):
            return  # containerd leaves a created or exited one alone
        signum = signals.SIGKILL if timeout <= 0 else self._stop_signal(record)
        try:
            info = self.node.supervisor.stop(record.id, timeout=max(timeout, 0.0), signal=signum)
        except SupervisorNotFound:
            return
        self._update(record, info)
        log.info("container %s stopped", record.id, extra={"container": record.id})

    def _stop_signal(self, record: ContainerRecord) -> int:
        try:
            name = self.node.images.get(record.image_id).config.stop_signal
        except image_errors.ImageError:
            return signals.SIGTERM
        return parse_signal(name)

    def remove(self, id_or_prefix: str) -> None:
        try:
            container_id = self.node.store.resolve_id(Kind.CONTAINER, id_or_prefix)
        except NotFound:
            return
        with self._container_lock(container_id):
            self._remove(self.node.store.get_container(container_id))
        with self._lock:
            self._busy.pop(container_id, None)
            self._cgroup_paths.pop(container_id, None)
        self.cpu.forget(container_id)

    def _remove(self, record: ContainerRecord) -> None:
        node = self.node
        self._stop(record, 0)
        forget(node, record.id)  # a forced delete kills whatever init left behind
        directory = self._dir(record.id)
        unmount_rootfs(str(directory / "rootfs"))
        with contextlib.suppress(image_errors.NotFound):
            node.images.remove_rootfs(rootfs_key(record.id))
        with contextlib.suppress(image_errors.NotFound):
            node.images.remove_user(record.image_id, image_user(record.id))
        shutil.rmtree(directory, ignore_errors=True)
        with self._transitions:
            node.store.remove_container(record.id)
            self._publish(record.id, record.sandbox_id, api_pb2.CONTAINER_DELETED_EVENT)
        log.info("container %s removed", record.id, extra={"container": record.id})

    def cgroup(self, record: ContainerRecord) -> Manager | None:
        """The manager of the container's cgroup, if it still exists. Its path is
        read from config.json once (nothing changes it after creation): stats ask
        for it for every container every few seconds."""
        with self._lock:
            path = self._cgroup_paths.get(record.id)
        if path is None:
            spec = self.spec(record)
            if spec is None:
                return None
            path = spec_cgroups_path(spec) or ""
            with self._lock, contextlib.suppress(NotFound):
                self.node.store.get_container(record.id)  # not removed meanwhile
                self._cgroup_paths[record.id] = path
        return open_cgroup(path) if path else None

    def spec(self, record: ContainerRecord) -> dict[str, Any] | None:
        """The container's config.json, or None if it cannot be read."""
        try:
            spec = json.loads((self._dir(record.id) / "config.json").read_text())
        except (OSError, ValueError):
            return None
        return spec if isinstance(spec, dict) else None

    def stop_sandbox(self, sandbox_id: str) -> None:
        """Stop every container of the sandbox at once (StopPodSandbox)."""
        for record in self._of_sandbox(sandbox_id):
            self.stop(record.id, 0)

    def remove_sandbox(self, sandbox_id: str) -> None:
        """Remove every container of the sandbox (RemovePodSandbox)."""
        for record in self._of_sandbox(sandbox_id):
            self.remove(record.id)

    def _of_sandbox(self, sandbox_id: str) -> list[ContainerRecord]:
        return self.node.store.list_containers(api_pb2.ContainerFilter(pod_sandbox_id=sandbox_id))

    # -- state from the supervisor -----------------------------------------------------

    def refreshed(
        self, record: ContainerRecord, info: ContainerInfo | None = None
    ) -> ContainerRecord:
        """The record with the supervisor's state, saved if it changed. Exited is final."""
        if record.state is ContainerState.EXITED:
            return record
        if info is None:
            try:
                info = self.node.supervisor.state(record.id)
            except SupervisorNotFound:
                return record
        return self._update(record, info)

    def _update(self, record: ContainerRecord, info: ContainerInfo) -> ContainerRecord:
        changes: dict[str, Any] = {}
        if info.status is Status.RUNNING:
            changes = {"state": ContainerState.RUNNING, "started_at": info.started_at}
        elif info.status is Status.STOPPED:
            code = 255 if info.exit_code is None else info.exit_code
            changes = {
                "state": ContainerState.EXITED,
                "started_at": info.started_at,
                "finished_at": info.finished_at or time.time_ns(),
                "exit_code": code,
                "reason": self._exit_reason(record, code),
            }
        if not changes or all(getattr(record, k) == v for k, v in changes.items()):
            return record
        before: list[ContainerState] = []

        def change(current: ContainerRecord) -> ContainerRecord:
            before.append(current.state)
            if current.state is ContainerState.EXITED:
                return current  # final: a stale report (a slow Start's) changes nothing
            return dataclasses.replace(current, **changes)

        with self._transitions:
            updated = self.node.store.update_container(record.id, change)
            self._announce(before[0], updated)
        return updated

    def _announce(self, before: ContainerState, record: ContainerRecord) -> None:
        """Publish the events of a move from `before` to `record.state`."""
        if before is record.state:
            return
        if record.state is ContainerState.RUNNING:
            self._publish(record.id, record.sandbox_id, api_pb2.CONTAINER_STARTED_EVENT)
        elif record.state is ContainerState.EXITED:
            if before is ContainerState.CREATED and record.started_at:
                # It ran and ended before anyone saw it running.
                self._publish(record.id, record.sandbox_id, api_pb2.CONTAINER_STARTED_EVENT)
            self._publish(record.id, record.sandbox_id, api_pb2.CONTAINER_STOPPED_EVENT)

    def refresh(self, container_id: str) -> None:
        """Bring one record up to date (the supervisor reported an exit); an unknown
        id (a sandbox's, or one removed meanwhile) is ignored."""
        with contextlib.suppress(NotFound):
            self.refreshed(self.node.store.get_container(container_id))

    def refresh_all(self) -> None:
        """Bring every record up to date from one supervisor `list`."""
        self._refresh_listed(self.node.store.list_containers())

    def refresh_selected(self, filter: api_pb2.ContainerFilter | None) -> None:
        """Bring the records `filter` selects up to date, whatever their state (the
        state the filter asks for is the refreshed one): one supervisor `state` call
        each when they are few (a pod's), else one `list`. Exited records are final,
        so they cost nothing: a per-pod ListContainers never makes the supervisor
        describe every container of the node."""
        unstated = None
        if filter is not None:
            unstated = api_pb2.ContainerFilter()
            unstated.CopyFrom(filter)
            unstated.ClearField("state")
        live = [
            record
            for record in self.node.store.list_containers(unstated)
            if record.state is not ContainerState.EXITED
        ]
        if len(live) > FEW_CONTAINERS:
            self._refresh_listed(live)
            return
        for record in live:
            with contextlib.suppress(NotFound):
                self.refreshed(record)

    def _refresh_listed(self, records: list[ContainerRecord]) -> None:
        if not any(record.state is not ContainerState.EXITED for record in records):
            return
        try:
            infos = {info.id: info for info in self.node.supervisor.list()}
        except SupervisorNotFound:
            infos = {}
        for record in records:
            info = infos.get(record.id)
            if info is not None:
                with contextlib.suppress(NotFound):
                    self.refreshed(record, info)

    def _exit_reason(self, record: ContainerRecord, code: int) -> str:
        if code == 0:
            return REASON_COMPLETED
        if self._oom_killed(record):
            return REASON_OOM_KILLED
        return REASON_ERROR

    def _oom_killed(self, record: ContainerRecord) -> bool:
        """Whether the container's cgroup counts an OOM kill (while it still exists)."""
        manager = self.cgroup(record)
        return manager is not None and manager.stats().memory.oom_kill_count > 0

    def current(self, id_or_prefix: str) -> ContainerRecord:
        """The record of the container (an id or unique prefix), up to date;
        NOT_FOUND if there is none."""
        return self.refreshed(self.node.store.get_container(id_or_prefix))


# -- steps ---------------------------------------------------------------------------------


def spec_cgroup(spec: dict[str, Any] | None) -> Manager | None:
    """The manager of the cgroup a config.json names, if that cgroup exists."""
    path = spec_cgroups_path(spec)
    return open_cgroup(path) if path else None


def spec_cgroups_path(spec: dict[str, Any] | None) -> str | None:
    """The linux.cgroupsPath of a config.json, if it has one."""
    try:
        path = spec["linux"]["cgroupsPath"] if spec else None
    except (TypeError, KeyError):
        return None
    return str(path) if path else None


def open_cgroup(cgroups_path: str) -> Manager | None:
    """The manager of the cgroup at `cgroups_path`, if that cgroup exists (for
    reading stats: the hierarchies' layout is the one detected at most
    `LAYOUT_SECONDS` ago)."""
    try:
        manager = Manager(_LAYOUT.get(), parse_cgroups_path(cgroups_path))
    except CgroupError:
        return None
    return manager if manager.exists() else None


class _LayoutCache:
    """The cgroup layout, detected again once it is `LAYOUT_SECONDS` old: detecting
    it for every cgroup read (a listing of /sys/fs/cgroup and more) was a tenth of
    the CRI server's work serving stats, while the hierarchies mounted do not change
    under running containers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._layout: Layout | None = None
        self._detected = 0.0

    def get(self) -> Layout:
        with self._lock:
            now = time.monotonic()
            if self._layout is None or now - self._detected > LAYOUT_SECONDS:
                layout = detect_layout()
                if not layout.v1_mounts and layout.unified_mount is None:
                    raise CgroupError("no cgroup hierarchy found under /sys/fs/cgroup")
                self._layout, self._detected = layout, now
            return self._layout


_LAYOUT = _LayoutCache()


def parse_signal(name: str) -> int:
    """An image's StopSignal (SIGQUIT, QUIT or 3); SIGTERM when empty or unknown."""
    text = name.strip().upper()
    if not text:
        return signals.SIGTERM
    if text.isdigit():
        return int(text)
    try:
        return int(signals.Signals[text if text.startswith("SIG") else f"SIG{text}"])
    except KeyError:
        log.warning("unknown stop signal %r, using SIGTERM", name)
        return signals.SIGTERM


def forget(node: Node, container_id: str) -> None:
    """Have the supervisor delete the container, forced (killing whatever init left
    behind); one it does not know is fine."""
    with contextlib.suppress(SupervisorNotFound):
        node.supervisor.delete(container_id, force=True)
