"""Image garbage collection by disk usage (the kubelet's image GC manager).

Every `period` (first one period after start: images pulled for the pods starting
now are not in use yet) the image filesystem's usage, 100 - available*100/capacity of
the filesystem holding the image store (CRI ImageFsInfo's mountpoint, statvfs'd here),
is compared with the high threshold; at or above it, unused images are removed through
CRI RemoveImage until the usage would be down to the low threshold.

Unused: no container the runtime knows (running or exited, ListContainers) refers to
the image by id, tag or digest; not the sandbox (pause) image, not pinned. The order
is least recently used first, never-used before used, then first seen: what this
process saw (`ImageRecord`, in memory as the kubelet keeps it). An image seen less than
`minimum_age` ago stays (it may have been pulled for a container about to start).

`delete_unused()` is what the eviction manager calls under disk pressure: every
unused image past the minimum age, whatever the thresholds.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from cri.api import api_pb2

log = logging.getLogger(__name__)

DEFAULT_PERIOD = 300.0
DEFAULT_MINIMUM_AGE = 120.0


class Cri(Protocol):
    """What image GC needs of kubelet.cri_client.CriClient."""

    @property
    def runtime(self) -> Any: ...

    @property
    def images(self) -> Any: ...


class Events(Protocol):
    def record(
        self, obj: dict[str, Any], event_type: str, reason: str, message: str,
        *, field_path: str = "",
    ) -> None: ...  # fmt: skip


@dataclass
class ImageRecord:
    first_seen: float
    last_used: float = 0.0  # 0: never seen in use


@dataclass(frozen=True, slots=True)
class FsFigures:
    capacity: int
    available: int

    @property
    def usage_percent(self) -> int:
        return 100 - self.available * 100 // self.capacity


def check_thresholds(high: int, low: int) -> None:
    """ValueError unless 0 <= low <= high <= 100 (the kubelet's rule)."""
    for name, value in (("high", high), ("low", low)):
        if not 0 <= value <= 100:
            raise ValueError(f"image GC {name} threshold {value}: not in 0..100")
    if low > high:
        raise ValueError(f"image GC low threshold {low} is above the high threshold {high}")


def image_names(image: api_pb2.Image) -> set[str]:
    return {image.id, *image.repo_tags, *image.repo_digests}


def in_use(
    images: Iterable[api_pb2.Image], container_refs: set[str], protected: set[str]
) -> set[str]:
    """Ids of the images a container refers to, pinned ones and the sandbox image."""
    return {
        image.id
        for image in images
        if image.pinned or image_names(image) & (container_refs | protected)
    }


def removal_order(
    images: Sequence[api_pb2.Image],
    records: Mapping[str, ImageRecord],
    used: set[str],
    *,
    now: float,
    minimum_age: float,
) -> list[api_pb2.Image]:
    """The images GC may remove, least recently used (then first seen) first."""
    candidates = [
        image
        for image in images
        if image.id not in used
        and image.id in records
        and now - records[image.id].first_seen >= minimum_age
    ]
    return sorted(candidates, key=lambda i: (records[i.id].last_used, records[i.id].first_seen))


class ImageGC:
    def __init__(
        self,
        cri: Cri,
        *,
        high_threshold: int = 85,
        low_threshold: int = 80,
        minimum_age: float = DEFAULT_MINIMUM_AGE,
        sandbox_images: Sequence[str] = (),
        period: float = DEFAULT_PERIOD,
        timeout: float = 60.0,
        events: Events | None = None,
        node: Callable[[], dict[str, Any] | None] = lambda: None,
        statvfs: Callable[[str], os.statvfs_result] = os.statvfs,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_thresholds(high_threshold, low_threshold)
        self.cri = cri
        self.high_threshold = high_threshold
        self.low_threshold = low_threshold
        self.minimum_age = minimum_age
        self.sandbox_images = set(sandbox_images)
        self.period = period
        self.timeout = timeout
        self.events = events
        self.node = node
        self.statvfs = statvfs
        self.clock = clock
        self._lock = threading.Lock()  # one pass at a time: the loop and the eviction manager
        self.records: dict[str, ImageRecord] = {}

    # -- reading the runtime -----------------------------------------------------------

    def image_fs(self) -> FsFigures:
        """Capacity and available bytes of the image store's filesystem."""
        info = self.cri.images.ImageFsInfo(api_pb2.ImageFsInfoRequest(), timeout=self.timeout)
        if not info.image_filesystems:
            raise RuntimeError("the runtime reports no image filesystem")
        mountpoint = info.image_filesystems[0].fs_id.mountpoint
        if not mountpoint:
            raise RuntimeError("the runtime's image filesystem has no mountpoint")
        st = self.statvfs(mountpoint)
        capacity = st.f_blocks * st.f_frsize
        if capacity <= 0:
            raise RuntimeError(f"invalid capacity {capacity} of the image filesystem {mountpoint}")
        return FsFigures(capacity, st.f_bavail * st.f_frsize)

    def _sandbox_images(self) -> set[str]:
        """The configured sandbox image and the one the runtime reports for a sandbox
        (its verbose status' "image"), which may be another name of the runtime's own."""
        found = set(self.sandbox_images)
        sandboxes = self.cri.runtime.ListPodSandbox(
            api_pb2.ListPodSandboxRequest(), timeout=self.timeout
        ).items
        for sandbox in sandboxes[:1]:
            try:
                status = self.cri.runtime.PodSandboxStatus(
                    api_pb2.PodSandboxStatusRequest(pod_sandbox_id=sandbox.id, verbose=True),
                    timeout=self.timeout,
                )
                image = json.loads(status.info.get("info", "{}")).get("image")
            except (grpc.RpcError, ValueError, AttributeError):
                continue
            if isinstance(image, str) and image:
                found.add(image)
        return found

    def detect(self) -> tuple[list[api_pb2.Image], set[str]]:
        """The runtime's images and the ids of those in use; the records updated."""
        now = self.clock()
        images = list(
            self.cri.images.ListImages(api_pb2.ListImagesRequest(), timeout=self.timeout).images
        )
        containers = self.cri.runtime.ListContainers(
            api_pb2.ListContainersRequest(), timeout=self.timeout
        ).containers
        refs = {c.image_ref for c in containers} | {c.image.image for c in containers}
        used = in_use(images, refs - {""}, self._sandbox_images())
        for image in images:
            record = self.records.setdefault(image.id, ImageRecord(first_seen=now))
            if image.id in used:
                record.last_used = now
        for gone in set(self.records) - {i.id for i in images}:
            del self.records[gone]
        return images, used

    # -- collecting --------------------------------------------------------------------

    def free(self, amount: int) -> int:
        """Remove unused images until `amount` bytes are freed; the bytes freed."""
        images, used = self.detect()
        freed = 0
        for image in removal_order(images, self.records, used, now=self.clock(),
                                   minimum_age=self.minimum_age):  # fmt: skip
            if freed >= amount:
                break
            names = ", ".join(image.repo_tags) or image.id
            try:
                self.cri.images.RemoveImage(
                    api_pb2.RemoveImageRequest(image=api_pb2.ImageSpec(image=image.id)),
                    timeout=self.timeout,
                )
            except grpc.RpcError as e:
                log.warning("image gc: remove %s: %s", names, e.details())
                continue
            log.info("image gc: removed %s (%d bytes)", names, image.size)
            self.records.pop(image.id, None)
            freed += image.size
        return freed

    def collect(self) -> int:
        """One threshold-driven pass; the bytes freed. Records an ImageGCFailed event
        on the node when the unused images are not enough."""
        with self._lock:
            fs = self.image_fs()
            if fs.usage_percent < self.high_threshold:
                self.detect()  # keep first-seen and last-used times current
                return 0
            amount = fs.capacity * (100 - self.low_threshold) // 100 - fs.available
            log.info("image gc: image filesystem %d%% used (high threshold %d%%): freeing "
                     "%d bytes", fs.usage_percent, self.high_threshold, amount)  # fmt: skip
            freed = self.free(amount)
        if freed < amount:
            message = (
                "Failed to garbage collect required amount of images. Attempted to free "
                f"{amount} bytes, but only found {freed} bytes eligible to free."
            )
            log.warning("image gc: %s", message)
            node = self.node()
            if self.events is not None and node is not None:
                self.events.record(node, "Warning", "ImageGCFailed", message)
        return freed

    def delete_unused(self) -> int:
        """Every unused image past the minimum age (disk pressure); the bytes freed."""
        with self._lock:
            return self.free(1 << 62)

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.period):
            try:
                self.collect()
            except (grpc.RpcError, OSError, RuntimeError) as e:
                log.warning("image gc: %s", e.details() if isinstance(e, grpc.RpcError) else e)
            except Exception:
                log.exception("image gc")
