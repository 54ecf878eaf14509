"""ContainerStats and ListContainerStats, as containerd's CRI plugin serves them
(internal/cri/server/container_stats.go, container_stats_list.go).

Where each figure comes from: cpu and memory from the container's cgroup (the one its
config.json names, while it exists), usage_nano_cores from the CPU time since the
previous call for the same container over the time between the two (0 on the first
call; the samples are `Containers.cpu`, forgotten on Remove); writable_layer from the
usage of the container's snapshot (its overlay upper dir). cpu and memory are absent
once the cgroup is gone, writable_layer when the snapshot's usage cannot be read.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from cri.api import api_pb2
from cri.runtime_service.containers import Containers, rootfs_key
from cri.runtime_service.usage import memory_usage
from cri.store import ContainerRecord, ContainerState
from images import errors as image_errors


def container_stats(containers: Containers, container_id: str) -> api_pb2.ContainerStats:
    """ContainerStats: NOT_FOUND for an unknown id (or prefix)."""
    return _stats(containers, containers.current(container_id))


def list_container_stats(
    containers: Containers, request: api_pb2.ListContainerStatsRequest
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
    containers.refresh_selected(filter)
    stats = []
    for record in containers.node.store.list_containers(filter):
        if record.state in (ContainerState.CREATED, ContainerState.RUNNING):
            stats.append(_stats(containers, record))
    return api_pb2.ListContainerStatsResponse(stats=stats)


def container_stats_by_sandbox(
    containers: Containers, sandbox_ids: Iterable[str]
) -> dict[str, list[api_pb2.ContainerStats]]:
    """Sandbox id -> the stats of its created and running containers, for each of
    `sandbox_ids`, the records brought up to date by one supervisor `list` and
    gone through once (ListPodSandboxStats), not once per sandbox."""
    by_sandbox: dict[str, list[api_pb2.ContainerStats]] = {i: [] for i in sandbox_ids}
    if not by_sandbox:
        return by_sandbox
    containers.refresh_all()
    for record in containers.node.store.list_containers():
        wanted = by_sandbox.get(record.sandbox_id)
        if wanted is not None and record.state in (ContainerState.CREATED, ContainerState.RUNNING):
            wanted.append(_stats(containers, record))
    return by_sandbox


def _stats(containers: Containers, record: ContainerRecord) -> api_pb2.ContainerStats:
    stats = api_pb2.ContainerStats(
        attributes=api_pb2.ContainerAttributes(
            id=record.id,
            metadata=record.metadata(),
            labels=dict(record.labels),
            annotations=dict(record.annotations),
        )
    )
    manager = containers.cgroup(record)
    if manager is not None:
        sample = manager.stats()
        timestamp = time.time_ns()
        stats.cpu.CopyFrom(containers.cpu.usage(record.id, timestamp, sample.cpu.usage_total_ns))
        stats.memory.CopyFrom(memory_usage(timestamp, sample))
    layer = _writable_layer(containers, record)
    if layer is not None:
        stats.writable_layer.CopyFrom(layer)
    return stats


def _writable_layer(
    containers: Containers, record: ContainerRecord
) -> api_pb2.FilesystemUsage | None:
    """Bytes and inodes of the container's snapshot (its overlay upper dir)."""
    images = containers.node.images
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
