"""Containers: CreateContainer, StartContainer, StopContainer, RemoveContainer,
ListContainers, ContainerStatus, ExecSync, ReopenContainerLog, ContainerStats and
ListContainerStats, as containerd's CRI plugin does them
(internal/cri/server/container_*.go).

A container runs in its sandbox's namespaces: the network namespace by the sandbox's
netns path, IPC, UTS (and pid when the pod shares it) through the pause process's
/proc/<pid>/ns/... files. Per container, under <state>/containers/<id>/: rootfs/ (the
image's snapshot "container-<id>", mounted) and config.json; the bundle is that
directory. The node supervisor forks, reaps and logs it; the record in cri.store holds
what the CRI reports, and its state is brought up to date from the supervisor's (which
records exits) whenever it is read.

Create registers an undo after each acquisition (STYLE.md §4) and pops them all once
the record is written. Stop and Remove are idempotent: an unknown id succeeds.

Events (events.py): creation, every change of state (whoever makes it: Start, Stop,
a refresh that finds the container exited) and removal are published under one lock
with the store write, so each is announced once and in order; EXITED is final, a
late report of an earlier state changes nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import secrets
import shutil
import signal as signals
import stat
import threading
import time
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from cri import oci_spec
from cri.api import api_pb2
from cri.errors import DeadlineExceeded, InvalidArgument
from cri.node import Node
from cri.oci_spec import DeviceInfo, SandboxInfo
from cri.runtime_service.container_update import container_resources
from cri.runtime_service.events import Publish, no_events
from cri.runtime_service.sandbox import host_facts, load_seccomp, read_users
from cri.store import (
    ContainerRecord,
    ContainerState,
    Kind,
    NotFound,
    SandboxRecord,
    SandboxState,
    container_name_key,
    to_container,
)
from cri.supervisor import ContainerInfo, Status
from cri.supervisor import InvalidState as SupervisorInvalidState
from cri.supervisor import NotFound as SupervisorNotFound
from images import errors as image_errors
from images.metadata import Image
from runtime import errors as runtime_errors
from runtime.cgroups import CgroupError, Manager, open_manager
from runtime.cgroups.stats import CgroupStats
from runtime.mounts import unmount_rootfs

log = logging.getLogger(__name__)

REASON_COMPLETED = "Completed"
REASON_ERROR = "Error"
REASON_OOM_KILLED = "OOMKilled"


def rootfs_key(container_id: str) -> str:
    return f"container-{container_id}"


def image_user(container_id: str) -> str:
    """The name under which a container holds its image (ImageStore.add_user)."""
    return f"container:{container_id}"


class CpuSamples:
    """The previous CPU sample per key (a container or sandbox id), for
    usage_nano_cores: the usage between two calls over the time between them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._samples: dict[str, tuple[int, int]] = {}  # (timestamp ns, usage ns)

    def usage(self, key: str, timestamp: int, usage: int) -> api_pb2.CpuUsage:
        with self._lock:
            previous = self._samples.get(key)
            self._samples[key] = (timestamp, usage)
        nano_cores = 0
        if previous is not None and timestamp > previous[0] and usage >= previous[1]:
            nano_cores = (usage - previous[1]) * 1_000_000_000 // (timestamp - previous[0])
        return api_pb2.CpuUsage(
            timestamp=timestamp,
            usage_core_nano_seconds=api_pb2.UInt64Value(value=usage),
            usage_nano_cores=api_pb2.UInt64Value(value=nano_cores),
        )

    def forget(self, key: str) -> None:
        with self._lock:
            self._samples.pop(key, None)

    def retain(self, keys: set[str]) -> None:
        """Forget the samples of every key not in `keys` (ids that are gone)."""
        with self._lock:
            for key in self._samples.keys() - keys:
                del self._samples[key]


class Containers:
    """The container RPCs over one node; every method is safe from any thread."""

    def __init__(self, node: Node, *, publish: Publish = no_events) -> None:
        self.node = node
        self._publish = publish
        self._lock = threading.Lock()
        self._busy: dict[str, threading.Lock] = {}
        # Held around each store write that creates, moves or removes a record and
        # the event announcing it, so that events go out in the order of the changes.
        self._transitions = threading.Lock()
        self._cpu = CpuSamples()

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

    # -- create ------------------------------------------------------------------------

    def create(self, request: api_pb2.CreateContainerRequest) -> str:
        config = request.config
        check_metadata(config)
        if not request.pod_sandbox_id:
            raise InvalidArgument("pod_sandbox_id: required")
        if not config.image.image:
            raise InvalidArgument("config.image.image: required")
        node = self.node
        sandbox = node.store.get_sandbox(request.pod_sandbox_id)
        if sandbox.state is not SandboxState.READY:
            raise runtime_errors.InvalidState(f"sandbox {sandbox.id} is not ready")
        image = node.images.get(config.image.image)  # NOT_FOUND names the image
        container_id = secrets.token_hex(32)
        name_key = container_name_key(config.metadata, sandbox.metadata())
        self.containers_dir.mkdir(mode=0o711, exist_ok=True)
        with contextlib.ExitStack() as undo:
            node.store.reserve_name(Kind.CONTAINER, name_key, container_id)
            undo.callback(node.store.release_name, Kind.CONTAINER, name_key)
            info = self._sandbox_info(sandbox)
            directory = self._dir(container_id)
            directory.mkdir(mode=0o711)
            undo.callback(shutil.rmtree, directory, ignore_errors=True)
            rootfs = str(directory / "rootfs")
            node.mount_image_rootfs(image, rootfs_key(container_id), rootfs, undo)
            spec = oci_spec.container_spec(
                container_id=container_id,
                config=config,
                sandbox=info,
                image=image,
                rootfs=rootfs,
                users=read_users(Path(rootfs)),
                stat_device=stat_device,
                load_seccomp=load_seccomp,
            )
            (directory / "config.json").write_text(json.dumps(spec))
            log_path = ""
            if sandbox.log_directory and config.log_path:
                log_path = os.path.join(sandbox.log_directory, config.log_path)
                os.makedirs(os.path.dirname(log_path), mode=0o755, exist_ok=True)
            node.images.add_user(image.id, image_user(container_id))
            undo.callback(node.images.remove_user, image.id, image_user(container_id))
            created = node.supervisor.create(
                container_id, str(directory), log_path=log_path, stdin=config.stdin
            )
            undo.callback(_forget, node, container_id)
            record = ContainerRecord(
                id=container_id,
                sandbox_id=sandbox.id,
                name=config.metadata.name,
                attempt=config.metadata.attempt,
                state=ContainerState.CREATED,
                created_at=created.created_at or time.time_ns(),
                labels=dict(config.labels),
                annotations=dict(config.annotations),
                image=config.image.image,
                image_ref=image_ref(image),
                image_id=image.id,
                log_path=log_path,
                config=config.SerializeToString(),
            )
            with self._transitions:
                node.store.add_container(record)
                self._publish(container_id, sandbox.id, api_pb2.CONTAINER_CREATED_EVENT)
            undo.pop_all()
        log.info(
            "container %s created in sandbox %s",
            container_id,
            sandbox.id,
            extra={"container": container_id, "sandbox": sandbox.id},
        )
        return container_id

    def _sandbox_info(self, sandbox: SandboxRecord) -> SandboxInfo:
        config = api_pb2.PodSandboxConfig.FromString(sandbox.config)
        options = config.linux.security_context.namespace_options
        try:
            pause = self.node.supervisor.state(sandbox.id)
        except SupervisorNotFound:
            raise runtime_errors.InvalidState(f"sandbox {sandbox.id}: no pause process") from None
        if pause.status is not Status.RUNNING or not pause.pid:
            raise runtime_errors.InvalidState(f"sandbox {sandbox.id}: pause is not running")

        def ns(kind: str, host: bool) -> str:
            return oci_spec.HOST if host else f"/proc/{pause.pid}/ns/{kind}"

        host_network = options.network == api_pb2.NODE
        directory = self.node.sandboxes_dir / sandbox.id
        shm = directory / "shm"
        pid_namespaces = {}
        for record in self.node.store.list_containers(
            api_pb2.ContainerFilter(pod_sandbox_id=sandbox.id)
        ):
            with contextlib.suppress(SupervisorNotFound):
                state = self.node.supervisor.state(record.id)
                if state.status is Status.RUNNING and state.pid:
                    pid_namespaces[record.id] = f"/proc/{state.pid}/ns/pid"
        return SandboxInfo(
            id=sandbox.id,
            network_ns=oci_spec.HOST if host_network else sandbox.netns_path,
            ipc_ns=ns("ipc", options.ipc == api_pb2.NODE),
            uts_ns=ns("uts", host_network),
            pid_ns=ns("pid", options.pid == api_pb2.NODE),
            name=sandbox.name,
            namespace=sandbox.namespace,
            uid=sandbox.uid,
            cgroup_parent=sandbox.cgroup_parent,
            hostname=config.hostname or _read_hostname(directory),
            hostname_path=str(directory / "hostname"),
            hosts_path=str(directory / "hosts"),
            resolv_path=str(directory / "resolv.conf"),
            shm_path=str(shm) if os.path.ismount(shm) else "",
            log_directory=sandbox.log_directory,
            privileged=config.linux.security_context.privileged,
            container_pid_ns=pid_namespaces,
            host=host_facts(),
        )

    # -- start, stop, remove -----------------------------------------------------------

    def start(self, id_or_prefix: str) -> None:
        container_id = self.node.store.resolve_id(Kind.CONTAINER, id_or_prefix)
        with self._container_lock(container_id):
            record = self._refresh(self.node.store.get_container(container_id))
            if record.state is not ContainerState.CREATED:
                raise runtime_errors.InvalidState(
                    f"container {container_id} is {record.state.value}, not CREATED"
                )
            try:
                info = self.node.supervisor.start(container_id)
            except SupervisorInvalidState as e:
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
        record = self._refresh(record)
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
        self._cpu.forget(container_id)

    def _remove(self, record: ContainerRecord) -> None:
        node = self.node
        self._stop(record, 0)
        _forget(node, record.id)  # a forced delete kills whatever init left behind
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
        """The manager of the container's cgroup, if it still exists."""
        return spec_cgroup(self._spec(record))

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

    def _refresh(
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
            self._refresh(self.node.store.get_container(container_id))

    def refresh_all(self) -> None:
        """Bring every record up to date from one supervisor `list`."""
        try:
            infos = {info.id: info for info in self.node.supervisor.list()}
        except SupervisorNotFound:
            infos = {}
        for record in self.node.store.list_containers():
            info = infos.get(record.id)
            if info is not None:
                with contextlib.suppress(NotFound):
                    self._refresh(record, info)

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
        return self._refresh(self.node.store.get_container(id_or_prefix))

    # -- status and list ---------------------------------------------------------------

    def status(self, request: api_pb2.ContainerStatusRequest) -> api_pb2.ContainerStatusResponse:
        record = self.current(request.container_id)
        config = api_pb2.ContainerConfig.FromString(record.config)
        image_spec = api_pb2.ImageSpec()
        image_spec.CopyFrom(config.image)
        with contextlib.suppress(image_errors.ImageError):
            image = self.node.images.get(record.image_id)
            if image.repo_tags:
                image_spec.image = image.repo_tags[0]
        status = api_pb2.ContainerStatus(
            id=record.id,
            metadata=record.metadata(),
            state=record.state.to_cri(),
            created_at=record.created_at,
            started_at=record.started_at,
            finished_at=record.finished_at,
            exit_code=record.exit_code,
            image=image_spec,
            image_ref=record.image_ref,
            image_id=record.image_id,
            reason=record.reason,
            message=record.message,
            labels=dict(record.labels),
            annotations=dict(record.annotations),
            mounts=list(config.mounts),
            log_path=record.log_path,
        )
        spec = self._spec(record)
        if spec is not None:
            status.resources.CopyFrom(container_resources(spec))
        response = api_pb2.ContainerStatusResponse(status=status)
        if request.verbose:
            response.info["info"] = json.dumps(self._verbose_info(record, config, spec))
        return response

    def _spec(self, record: ContainerRecord) -> dict[str, Any] | None:
        """The container's config.json, or None if it cannot be read."""
        try:
            spec = json.loads((self._dir(record.id) / "config.json").read_text())
        except (OSError, ValueError):
            return None
        return spec if isinstance(spec, dict) else None

    def _verbose_info(
        self,
        record: ContainerRecord,
        config: api_pb2.ContainerConfig,
        spec: dict[str, Any] | None,
    ) -> Any:
        pid = 0
        with contextlib.suppress(SupervisorNotFound):
            info = self.node.supervisor.state(record.id)
            if info.status is Status.RUNNING:
                pid = info.pid
        return {
            "sandboxID": record.sandbox_id,
            "pid": pid,
            "removing": False,
            "snapshotKey": rootfs_key(record.id),
            "image": record.image_id,
            "config": json_format.MessageToDict(config),
            "runtimeSpec": spec,
        }

    def list(self, request: api_pb2.ListContainersRequest) -> api_pb2.ListContainersResponse:
        self.refresh_all()
        filter = request.filter if request.HasField("filter") else None
        items = [to_container(r) for r in self.node.store.list_containers(filter)]
        return api_pb2.ListContainersResponse(containers=items)

    # -- exec --------------------------------------------------------------------------

    def reopen_log(self, container_id: str) -> None:
        """ReopenContainerLog: the supervisor closes and reopens the container's log
        file (after the kubelet rotated it); only for a running container."""
        record = self.current(container_id)
        if record.state is not ContainerState.RUNNING:
            raise runtime_errors.InvalidState(
                f"container {record.id} is {record.state.value}, not RUNNING"
            )
        try:
            self.node.supervisor.reopen_log(record.id)
        except SupervisorInvalidState as e:
            raise runtime_errors.InvalidState(str(e)) from None
        except SupervisorNotFound as e:
            raise NotFound(str(e)) from None

    def exec_sync(self, request: api_pb2.ExecSyncRequest) -> api_pb2.ExecSyncResponse:
        if not request.cmd:
            raise InvalidArgument("cmd: required")
        record = self.current(request.container_id)
        if record.state is not ContainerState.RUNNING:
            raise runtime_errors.InvalidState(
                f"container {record.id} is {record.state.value}, not RUNNING"
            )
        try:
            result = self.node.supervisor.exec_sync(
                record.id, list(request.cmd), timeout=float(max(request.timeout, 0))
            )
        except SupervisorInvalidState as e:
            raise runtime_errors.InvalidState(str(e)) from None
        except SupervisorNotFound as e:
            raise NotFound(str(e)) from None
        if result.timed_out:
            raise DeadlineExceeded(
                f"command {list(request.cmd)!r} timed out after {request.timeout} s"
            )
        return api_pb2.ExecSyncResponse(
            stdout=result.stdout, stderr=result.stderr, exit_code=result.exit_code
        )

    # -- stats -------------------------------------------------------------------------

    def stats(self, container_id: str) -> api_pb2.ContainerStats:
        """ContainerStats: NOT_FOUND for an unknown id (or prefix)."""
        return self._stats(self.current(container_id))

    def list_stats(
        self, request: api_pb2.ListContainerStatsRequest
    ) -> api_pb2.ListContainerStatsResponse:
        """ListContainerStats: the created and running containers the filter selects (id
        or unique id prefix, sandbox id or prefix, labels); an id matching nothing
        selects nothing, as containerd's normalizeContainerStatsFilter leaves it."""
        filter = None
        if request.HasField("filter"):
            wanted = request.filter
            filter = api_pb2.ContainerFilter(
                id=wanted.id,
                pod_sandbox_id=wanted.pod_sandbox_id,
                label_selector=dict(wanted.label_selector),
            )
        stats = []
        for listed in self.node.store.list_containers(filter):
            with contextlib.suppress(NotFound):
                record = self._refresh(listed)
                if record.state in (ContainerState.CREATED, ContainerState.RUNNING):
                    stats.append(self._stats(record))
        return api_pb2.ListContainerStatsResponse(stats=stats)

    def _stats(self, record: ContainerRecord) -> api_pb2.ContainerStats:
        stats = api_pb2.ContainerStats(
            attributes=api_pb2.ContainerAttributes(
                id=record.id,
                metadata=record.metadata(),
                labels=dict(record.labels),
                annotations=dict(record.annotations),
            )
        )
        manager = self.cgroup(record)
        if manager is not None:
            sample = manager.stats()
            timestamp = time.time_ns()
            stats.cpu.CopyFrom(self._cpu.usage(record.id, timestamp, sample.cpu.usage_total_ns))
            stats.memory.CopyFrom(memory_usage(timestamp, sample))
        layer = self._writable_layer(record)
        if layer is not None:
            stats.writable_layer.CopyFrom(layer)
        return stats

    def _writable_layer(self, record: ContainerRecord) -> api_pb2.FilesystemUsage | None:
        """Bytes and inodes of the container's snapshot (its overlay upper dir)."""
        images = self.node.images
        try:
            usage = images.snapshots.usage(rootfs_key(record.id))
        except (image_errors.ImageError, OSError):
            return None
        return api_pb2.FilesystemUsage(
            timestamp=time.time_ns(),
            fs_id=api_pb2.FilesystemIdentifier(mountpoint=str(images.root)),
            used_bytes=api_pb2.UInt64Value(value=usage.size),
            inodes_used=api_pb2.UInt64Value(value=usage.inodes),
        )


# -- steps ---------------------------------------------------------------------------------


def check_metadata(config: api_pb2.ContainerConfig) -> None:
    if not config.HasField("metadata"):
        raise InvalidArgument("config.metadata: required")
    if not config.metadata.name:
        raise InvalidArgument("config.metadata.name: required")


def memory_usage(timestamp: int, sample: CgroupStats) -> api_pb2.MemoryUsage:
    memory = sample.memory
    usage = api_pb2.MemoryUsage(
        timestamp=timestamp,
        working_set_bytes=api_pb2.UInt64Value(value=memory.working_set_bytes),
        usage_bytes=api_pb2.UInt64Value(value=memory.usage_bytes),
        rss_bytes=api_pb2.UInt64Value(value=memory.rss_bytes),
        page_faults=api_pb2.UInt64Value(value=memory.pgfault),
        major_page_faults=api_pb2.UInt64Value(value=memory.pgmajfault),
    )
    if memory.limit_bytes is not None:
        available = max(memory.limit_bytes - memory.working_set_bytes, 0)
        usage.available_bytes.CopyFrom(api_pb2.UInt64Value(value=available))
    return usage


def spec_cgroup(spec: dict[str, Any] | None) -> Manager | None:
    """The manager of the cgroup a config.json names, if that cgroup exists."""
    try:
        manager = open_manager(str(spec["linux"]["cgroupsPath"])) if spec else None
    except (TypeError, KeyError, CgroupError):
        return None
    return manager if manager is not None and manager.exists() else None


def image_ref(image: Image) -> str:
    """What containerd reports as the image ref: the first repo digest, else the id."""
    return image.repo_digests[0] if image.repo_digests else image.id


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


def stat_device(path: str) -> DeviceInfo:
    st = os.stat(path)
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    elif stat.S_ISFIFO(st.st_mode):
        kind = "p"
    else:
        raise ValueError(f"{path} is not a device node")
    return DeviceInfo(
        kind,  # type: ignore[arg-type]
        os.major(st.st_rdev),
        os.minor(st.st_rdev),
        stat.S_IMODE(st.st_mode),
        st.st_uid,
        st.st_gid,
    )


def _read_hostname(directory: Path) -> str:
    try:
        return (directory / "hostname").read_text().strip()
    except OSError:
        return ""


def _forget(node: Node, container_id: str) -> None:
    with contextlib.suppress(SupervisorNotFound):
        node.supervisor.delete(container_id, force=True)
