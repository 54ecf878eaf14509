"""ContainerStatus and ListContainers, as containerd's CRI plugin answers them
(internal/cri/server/container_status.go, container_list.go).

Both read records brought up to date from the supervisor first (Containers.current,
Containers.refresh_selected: only the records the filter selects), so an exit the
supervisor has recorded shows, and is announced, before it is reported.
ContainerStatus's image is the image's first repo tag when it has one, else what
the config asked for; its resources are those in the container's config.json (as
UpdateContainerResources leaves them); `verbose` adds containerd's info map (pid,
snapshot key, config, runtime spec).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from google.protobuf import json_format

from cri.api import api_pb2
from cri.node import Node
from cri.runtime_service.container_update import container_resources
from cri.runtime_service.containers import Containers, rootfs_key
from cri.store import ContainerRecord, to_container
from cri.supervisor import NotFound as SupervisorNotFound
from cri.supervisor import Status
from images import errors as image_errors


def container_status(
    containers: Containers, request: api_pb2.ContainerStatusRequest
) -> api_pb2.ContainerStatusResponse:
    """ContainerStatus: NOT_FOUND for an unknown id (or prefix)."""
    record = containers.current(request.container_id)
    config = api_pb2.ContainerConfig.FromString(record.config)
    image_spec = api_pb2.ImageSpec()
    image_spec.CopyFrom(config.image)
    with contextlib.suppress(image_errors.ImageError):
        image = containers.node.images.get(record.image_id)
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
    spec = containers.spec(record)
    if spec is not None:
        status.resources.CopyFrom(container_resources(spec))
    response = api_pb2.ContainerStatusResponse(status=status)
    if request.verbose:
        response.info["info"] = json.dumps(_verbose_info(containers.node, record, config, spec))
    return response


def _verbose_info(
    node: Node,
    record: ContainerRecord,
    config: api_pb2.ContainerConfig,
    spec: dict[str, Any] | None,
) -> Any:
    pid = 0
    with contextlib.suppress(SupervisorNotFound):
        info = node.supervisor.state(record.id)
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


def list_containers(
    containers: Containers, request: api_pb2.ListContainersRequest
) -> api_pb2.ListContainersResponse:
    """ListContainers: the containers the filter selects, up to date."""
    filter = request.filter if request.HasField("filter") else None
    containers.refresh_selected(filter)
    items = [to_container(r) for r in containers.node.store.list_containers(filter)]
    return api_pb2.ListContainersResponse(containers=items)
