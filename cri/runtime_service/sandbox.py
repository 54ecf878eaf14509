"""Pod sandboxes: RunPodSandbox, StopPodSandbox, RemovePodSandbox, PodSandboxStatus and
ListPodSandbox, as containerd's CRI plugin does them (internal/cri/server/sandbox_*.go).

A sandbox is a pause container run by the node supervisor in the pod's namespaces:
its own network namespace (a bind-mounted nsfs file from cri.network, so that it
outlives the pause process and containers join it by path), IPC, UTS and pid
namespaces (the pause process holds them; containers join /proc/<pid>/ns/...).
Per sandbox, under <state>/sandboxes/<id>/: hostname, hosts and resolv.conf (for the
pod's containers), shm/ (a tmpfs, the pod's /dev/shm, unless host IPC), rootfs/ (the
pause image's snapshot "sandbox-<id>") and config.json (the pause bundle).

Run registers an undo after each acquisition (STYLE.md §4) and pops them all once the
record is written. Stop and Remove are idempotent: an unknown id succeeds, and each
step tolerates what an earlier, interrupted call already did.

Events (events.py), with the sandbox's id as the container id, as containerd sends
them: CREATED and STARTED once Run has written the record, STOPPED when Stop turns it
NOTREADY, DELETED once Remove has forgotten it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from cri import oci_spec
from cri.api import api_pb2
from cri.errors import InvalidArgument
from cri.network import PortMapping, Protocol
from cri.node import Node
from cri.oci_spec import HostFacts, UserDB
from cri.runtime_service.events import Publish, no_events
from cri.store import (
    Kind,
    NotFound,
    SandboxRecord,
    SandboxState,
    sandbox_name_key,
    to_pod_sandbox,
)
from cri.supervisor import NotFound as SupervisorNotFound
from images import errors as image_errors
from runtime.mounts import mount_rootfs, unmount_rootfs

log = logging.getLogger(__name__)

STOP_TIMEOUT = 10.0  # seconds of grace for the pause process before SIGKILL
SHM_SIZE = "65536k"  # containerd's defaultShmSize (64 MiB)
_PROTOCOLS = {api_pb2.TCP: Protocol.TCP, api_pb2.UDP: Protocol.UDP, api_pb2.SCTP: Protocol.SCTP}


def rootfs_key(sandbox_id: str) -> str:
    return f"sandbox-{sandbox_id}"


class Sandboxes:
    """The sandbox RPCs over one node; every method is safe from any thread."""

    def __init__(
        self,
        node: Node,
        *,
        stop_containers: Callable[[str], None] | None = None,
        remove_containers: Callable[[str], None] | None = None,
        publish: Publish = no_events,
    ) -> None:
        self.node = node
        self._publish = publish
        # The sandbox's containers: stopped by Stop, removed by Remove (containers.py).
        self._stop_containers = stop_containers
        self._remove_containers = remove_containers
        self._lock = threading.Lock()
        self._busy: dict[str, threading.Lock] = {}

    def _sandbox_lock(self, sandbox_id: str) -> threading.Lock:
        with self._lock:
            return self._busy.setdefault(sandbox_id, threading.Lock())

    def _dir(self, sandbox_id: str) -> Path:
        return self.node.sandboxes_dir / sandbox_id

    # -- run ---------------------------------------------------------------------------

    def run(self, request: api_pb2.RunPodSandboxRequest) -> str:
        config = request.config
        check_metadata(config)
        node = self.node
        sandbox_id = secrets.token_hex(32)
        name_key = sandbox_name_key(config.metadata)
        options = config.linux.security_context.namespace_options
        host_network = options.network == api_pb2.NODE
        host_ipc = options.ipc == api_pb2.NODE
        mappings = port_mappings(config)
        with contextlib.ExitStack() as undo:
            node.store.reserve_name(Kind.SANDBOX, name_key, sandbox_id)
            undo.callback(node.store.release_name, Kind.SANDBOX, name_key)
            image = node.ensure_sandbox_image()
            directory = self._dir(sandbox_id)
            directory.mkdir(mode=0o711)
            undo.callback(shutil.rmtree, directory, ignore_errors=True)
            hostname = config.hostname or socket.gethostname()
            write_etc_files(directory, config, hostname)
            shm_path = ""
            if not host_ipc:
                shm_path = str(directory / "shm")
                mount_shm(shm_path)
                undo.callback(unmount_rootfs, shm_path)
            netns_path, ip = "", ""
            if not host_network:
                netns_path = node.network.create_netns(sandbox_id)
                undo.callback(node.network.remove_netns, netns_path)
                undo.callback(node.network.teardown, sandbox_id, netns_path)
                ip = node.network.setup(sandbox_id, netns_path, mappings).ip
            rootfs = str(directory / "rootfs")
            node.mount_image_rootfs(image, rootfs_key(sandbox_id), rootfs, undo)
            spec = oci_spec.sandbox_spec(
                sandbox_id=sandbox_id,
                config=config,
                image=image,
                rootfs=rootfs,
                cgroup_parent=config.linux.cgroup_parent,
                users=read_users(Path(rootfs)),
                load_seccomp=load_seccomp,
                netns_path=netns_path,
                shm_path=shm_path,
                resolv_path=str(directory / "resolv.conf"),
                image_name=node.sandbox_image,
                host=host_facts(),
            )
            (directory / "config.json").write_text(json.dumps(spec))
            # The pause process writes nothing worth keeping.
            node.supervisor.create(sandbox_id, str(directory), log_path=os.devnull)
            undo.callback(_forget_container, node, sandbox_id)
            node.supervisor.start(sandbox_id)
            node.store.add_sandbox(
                SandboxRecord(
                    id=sandbox_id,
                    name=config.metadata.name,
                    uid=config.metadata.uid,
                    namespace=config.metadata.namespace,
                    attempt=config.metadata.attempt,
                    state=SandboxState.READY,
                    created_at=time.time_ns(),
                    labels=dict(config.labels),
                    annotations=dict(config.annotations),
                    netns_path=netns_path,
                    ip=ip,
                    cgroup_parent=config.linux.cgroup_parent,
                    log_directory=config.log_directory,
                    runtime_handler=request.runtime_handler,
                    config=config.SerializeToString(),
                )
            )
            undo.pop_all()
        self._publish(sandbox_id, sandbox_id, api_pb2.CONTAINER_CREATED_EVENT)
        self._publish(sandbox_id, sandbox_id, api_pb2.CONTAINER_STARTED_EVENT)
        log.info("sandbox %s ready", sandbox_id, extra={"sandbox": sandbox_id, "ip": ip})
        return sandbox_id

    # -- stop and remove ---------------------------------------------------------------

    def stop(self, id_or_prefix: str) -> None:
        try:
            sandbox_id = self.node.store.resolve_id(Kind.SANDBOX, id_or_prefix)
        except NotFound:
            return  # idempotent, as the kubelet expects
        with self._sandbox_lock(sandbox_id):
            self._stop(self.node.store.get_sandbox(sandbox_id))

    def _stop(self, record: SandboxRecord) -> None:
        node = self.node
        if self._stop_containers is not None:
            self._stop_containers(record.id)
        try:
            node.supervisor.stop(record.id, timeout=STOP_TIMEOUT)
        except SupervisorNotFound:
            pass
        if record.netns_path:
            node.network.teardown(record.id, record.netns_path)
            node.network.remove_netns(record.netns_path)
        if record.state is not SandboxState.NOTREADY or record.ip:
            before: list[SandboxState] = []

            def change(current: SandboxRecord) -> SandboxRecord:
                before.append(current.state)
                return _replace(current, state=SandboxState.NOTREADY, ip="")

            node.store.update_sandbox(record.id, change)
            if before[0] is SandboxState.READY:
                self._publish(record.id, record.id, api_pb2.CONTAINER_STOPPED_EVENT)
        log.info("sandbox %s stopped", record.id, extra={"sandbox": record.id})

    def remove(self, id_or_prefix: str) -> None:
        try:
            sandbox_id = self.node.store.resolve_id(Kind.SANDBOX, id_or_prefix)
        except NotFound:
            return
        node = self.node
        with self._sandbox_lock(sandbox_id):
            self._stop(node.store.get_sandbox(sandbox_id))
            if self._remove_containers is not None:
                self._remove_containers(sandbox_id)
            _forget_container(node, sandbox_id)
            directory = self._dir(sandbox_id)
            unmount_rootfs(str(directory / "rootfs"))
            unmount_rootfs(str(directory / "shm"))
            with contextlib.suppress(image_errors.NotFound):
                node.images.remove_rootfs(rootfs_key(sandbox_id))
            shutil.rmtree(directory, ignore_errors=True)
            node.store.remove_sandbox(sandbox_id)
            self._publish(sandbox_id, sandbox_id, api_pb2.CONTAINER_DELETED_EVENT)
        with self._lock:
            self._busy.pop(sandbox_id, None)
        log.info("sandbox %s removed", sandbox_id, extra={"sandbox": sandbox_id})

    # -- status and list ---------------------------------------------------------------

    def status(self, request: api_pb2.PodSandboxStatusRequest) -> api_pb2.PodSandboxStatusResponse:
        record = self.node.store.get_sandbox(request.pod_sandbox_id)
        config = api_pb2.PodSandboxConfig.FromString(record.config)
        status = api_pb2.PodSandboxStatus(
            id=record.id,
            metadata=record.metadata(),
            state=record.state.to_cri(),
            created_at=record.created_at,
            network=api_pb2.PodSandboxNetworkStatus(ip=record.ip),
            linux=api_pb2.LinuxPodSandboxStatus(
                namespaces=api_pb2.Namespace(
                    options=config.linux.security_context.namespace_options
                )
            ),
            labels=dict(record.labels),
            annotations=dict(record.annotations),
            runtime_handler=record.runtime_handler,
        )
        response = api_pb2.PodSandboxStatusResponse(status=status)
        if request.verbose:
            response.info["info"] = json.dumps(self._verbose_info(record, config))
        return response

    def _verbose_info(self, record: SandboxRecord, config: api_pb2.PodSandboxConfig) -> Any:
        pid = 0
        with contextlib.suppress(SupervisorNotFound):
            pid = self.node.supervisor.state(record.id).pid
        spec_path = self._dir(record.id) / "config.json"
        try:
            spec = json.loads(spec_path.read_text())
        except (OSError, ValueError):
            spec = None
        return {
            "pid": pid,
            "netNamespacePath": record.netns_path,
            "image": self.node.sandbox_image,
            "runtimeHandler": record.runtime_handler,
            "config": json_format.MessageToDict(config),
            "runtimeSpec": spec,
        }

    def list(self, request: api_pb2.ListPodSandboxRequest) -> api_pb2.ListPodSandboxResponse:
        filter = request.filter if request.HasField("filter") else None
        items = [to_pod_sandbox(r) for r in self.node.store.list_sandboxes(filter)]
        return api_pb2.ListPodSandboxResponse(items=items)


# -- steps ---------------------------------------------------------------------------------


def check_metadata(config: api_pb2.PodSandboxConfig) -> None:
    if not config.HasField("metadata"):
        raise InvalidArgument("config.metadata: required")
    for field in ("name", "namespace", "uid"):
        if not getattr(config.metadata, field):
            raise InvalidArgument(f"config.metadata.{field}: required")


def port_mappings(config: api_pb2.PodSandboxConfig) -> list[PortMapping]:
    out = []
    for index, mapping in enumerate(config.port_mappings):
        protocol = _PROTOCOLS.get(mapping.protocol)
        if protocol is None:
            raise InvalidArgument(f"config.port_mappings[{index}].protocol: unknown")
        try:
            out.append(
                PortMapping(mapping.container_port, mapping.host_port, protocol, mapping.host_ip)
            )
        except ValueError as e:
            raise InvalidArgument(f"config.port_mappings[{index}]: {e}") from None
    return out


def write_etc_files(directory: Path, config: api_pb2.PodSandboxConfig, hostname: str) -> None:
    """hostname, hosts (the host's, as containerd copies it) and resolv.conf (from the
    DNS config, else the host's)."""
    (directory / "hostname").write_text(hostname + "\n")
    try:
        hosts = Path("/etc/hosts").read_bytes()
    except FileNotFoundError:
        hosts = b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    (directory / "hosts").write_bytes(hosts)
    dns = config.dns_config
    if dns.servers or dns.searches or dns.options:
        lines = [f"search {' '.join(dns.searches)}"] if dns.searches else []
        lines += [f"nameserver {server}" for server in dns.servers]
        lines += [f"options {' '.join(dns.options)}"] if dns.options else []
        (directory / "resolv.conf").write_text("\n".join(lines) + "\n")
    else:
        try:
            resolv = Path("/etc/resolv.conf").read_bytes()
        except FileNotFoundError:
            resolv = b""
        (directory / "resolv.conf").write_bytes(resolv)
    for name in ("hostname", "hosts", "resolv.conf"):
        os.chmod(directory / name, 0o644)


def mount_shm(path: str) -> None:
    options = ["nosuid", "nodev", "noexec", "mode=1777", f"size={SHM_SIZE}"]
    mount_rootfs([{"type": "tmpfs", "source": "shm", "options": options}], path)


def read_users(rootfs: Path) -> UserDB:
    def read(name: str) -> str | None:
        try:
            return (rootfs / "etc" / name).read_text(errors="replace")
        except OSError:
            return None

    return UserDB.parse(read("passwd"), read("group"))


def load_seccomp(path: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(Path(path).read_text())
    return value


def host_facts() -> HostFacts:
    cgroup_v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    return HostFacts(cgroup_v2=cgroup_v2, capabilities=_bounding_capabilities())


def _bounding_capabilities() -> tuple[str, ...]:
    """The capabilities this process can pass on (CapBnd): privileged containers get
    these, not every capability the kernel knows (on some hosts root lacks some)."""
    from runtime.capabilities import CAPABILITY_NAMES, names

    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapBnd:"):
                    return tuple(names(int(line.split()[1], 16)))
    except OSError:
        pass
    return CAPABILITY_NAMES


def _forget_container(node: Node, sandbox_id: str) -> None:
    with contextlib.suppress(SupervisorNotFound):
        node.supervisor.delete(sandbox_id, force=True)


def _replace(record: SandboxRecord, **changes: Any) -> SandboxRecord:
    return dataclasses.replace(record, **changes)
