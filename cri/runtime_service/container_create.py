"""CreateContainer, as containerd's CRI plugin does it
(internal/cri/server/container_create.go): the request checked, the sandbox's
namespaces and files gathered (`sandbox_info`), the image's snapshot mounted as the
rootfs, config.json written, the supervisor asked to create the container, the record
stored and CONTAINER_CREATED_EVENT published.

A container runs in its sandbox's namespaces: the network namespace by the sandbox's
netns path, IPC, UTS (and pid when the pod shares it) through the pause process's
/proc/<pid>/ns/... files. What Create makes, per container, is laid out in
containers.py; the OCI spec itself is cri.oci_spec's.

Create registers an undo after each acquisition (STYLE.md §4) and pops them all once
the record is written: a failure anywhere leaves no name, directory, mount, image user
or supervised container behind. The record is stored and announced through
`Containers.add`, in order with every other change of the node's containers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import stat
import time
from pathlib import Path

from cri import oci_spec
from cri.api import api_pb2
from cri.errors import InvalidArgument
from cri.node import Node
from cri.oci_spec import DeviceInfo, SandboxInfo
from cri.runtime_service.containers import Containers, forget, image_user, rootfs_key
from cri.runtime_service.sandbox import host_facts, load_seccomp, read_users
from cri.store import (
    ContainerRecord,
    ContainerState,
    Kind,
    SandboxRecord,
    SandboxState,
    container_name_key,
)
from cri.supervisor import NotFound as SupervisorNotFound
from cri.supervisor import Status
from images.metadata import Image
from runtime import errors as runtime_errors

log = logging.getLogger(__name__)


def create_container(containers: Containers, request: api_pb2.CreateContainerRequest) -> str:
    """CreateContainer: the new container's id."""
    config = request.config
    check_metadata(config)
    if not request.pod_sandbox_id:
        raise InvalidArgument("pod_sandbox_id: required")
    if not config.image.image:
        raise InvalidArgument("config.image.image: required")
    node = containers.node
    sandbox = node.store.get_sandbox(request.pod_sandbox_id)
    if sandbox.state is not SandboxState.READY:
        raise runtime_errors.InvalidState(f"sandbox {sandbox.id} is not ready")
    image = node.images.get(config.image.image)  # NOT_FOUND names the image
    container_id = secrets.token_hex(32)
    name_key = container_name_key(config.metadata, sandbox.metadata())
    containers.containers_dir.mkdir(mode=0o711, exist_ok=True)
    with contextlib.ExitStack() as undo:
        node.store.reserve_name(Kind.CONTAINER, name_key, container_id)
        undo.callback(node.store.release_name, Kind.CONTAINER, name_key)
        info = sandbox_info(node, sandbox)
        directory = containers.bundle(container_id)
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
        undo.callback(forget, node, container_id)
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
        containers.add(record)
        undo.pop_all()
    log.info(
        "container %s created in sandbox %s",
        container_id,
        sandbox.id,
        extra={"container": container_id, "sandbox": sandbox.id},
    )
    return container_id


def sandbox_info(node: Node, sandbox: SandboxRecord) -> SandboxInfo:
    """What the container's spec takes from its sandbox: its namespaces (through the
    pause process, which must be running), files, cgroup parent and log directory."""
    config = api_pb2.PodSandboxConfig.FromString(sandbox.config)
    options = config.linux.security_context.namespace_options
    try:
        pause = node.supervisor.state(sandbox.id)
    except SupervisorNotFound:
        raise runtime_errors.InvalidState(f"sandbox {sandbox.id}: no pause process") from None
    if pause.status is not Status.RUNNING or not pause.pid:
        raise runtime_errors.InvalidState(f"sandbox {sandbox.id}: pause is not running")

    def ns(kind: str, host: bool) -> str:
        return oci_spec.HOST if host else f"/proc/{pause.pid}/ns/{kind}"

    host_network = options.network == api_pb2.NODE
    directory = node.sandboxes_dir / sandbox.id
    shm = directory / "shm"
    pid_namespaces = {}
    for record in node.store.list_containers(api_pb2.ContainerFilter(pod_sandbox_id=sandbox.id)):
        with contextlib.suppress(SupervisorNotFound):
            state = node.supervisor.state(record.id)
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


# -- steps ---------------------------------------------------------------------------------


def check_metadata(config: api_pb2.ContainerConfig) -> None:
    if not config.HasField("metadata"):
        raise InvalidArgument("config.metadata: required")
    if not config.metadata.name:
        raise InvalidArgument("config.metadata.name: required")


def image_ref(image: Image) -> str:
    """What containerd reports as the image ref: the first repo digest, else the id."""
    return image.repo_digests[0] if image.repo_digests else image.id


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
