"""Image GC against a fake CRI: thresholds, least-recently-used order, minimum age,
images in use, the sandbox image and pinned images kept, the ImageGCFailed event."""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import grpc
import pytest

from cri.api import api_pb2
from kubelet.image_gc import ImageGC, check_thresholds

MB = 2**20
BLOCK = 4096


class FakeCri:
    """ListImages/RemoveImage/ImageFsInfo/ListContainers/ListPodSandbox/PodSandboxStatus
    over lists the test changes; removing an image frees its size on the filesystem."""

    def __init__(self, capacity: int, available: int) -> None:
        self.images_list: list[api_pb2.Image] = []
        self.containers: list[api_pb2.Container] = []
        self.sandboxes: list[api_pb2.PodSandbox] = []
        self.sandbox_image = ""
        self.capacity = capacity
        self.available = available
        self.removed: list[str] = []
        self.fail_remove: set[str] = set()

    @property
    def images(self) -> FakeCri:
        return self

    @property
    def runtime(self) -> FakeCri:
        return self

    def add_image(self, image_id: str, size: int, *tags: str, pinned: bool = False) -> None:
        self.images_list.append(
            api_pb2.Image(id=image_id, repo_tags=list(tags), size=size, pinned=pinned)
        )

    def ListImages(self, request: Any, timeout: float) -> api_pb2.ListImagesResponse:
        return api_pb2.ListImagesResponse(images=self.images_list)

    def RemoveImage(self, request: Any, timeout: float) -> api_pb2.RemoveImageResponse:
        image_id = request.image.image
        if image_id in self.fail_remove:
            raise FakeRpcError("image is busy")
        for image in list(self.images_list):
            if image.id == image_id:
                self.images_list.remove(image)
                self.available += image.size
        self.removed.append(image_id)
        return api_pb2.RemoveImageResponse()

    def ImageFsInfo(self, request: Any, timeout: float) -> api_pb2.ImageFsInfoResponse:
        usage = api_pb2.FilesystemUsage(fs_id=api_pb2.FilesystemIdentifier(mountpoint="/images"))
        return api_pb2.ImageFsInfoResponse(image_filesystems=[usage])

    def statvfs(self, path: str) -> os.statvfs_result:
        assert path == "/images"
        blocks, free = self.capacity // BLOCK, self.available // BLOCK
        return os.statvfs_result((BLOCK, BLOCK, blocks, free, free, 100, 50, 50, 0, 255))

    def ListContainers(self, request: Any, timeout: float) -> api_pb2.ListContainersResponse:
        return api_pb2.ListContainersResponse(containers=self.containers)

    def ListPodSandbox(self, request: Any, timeout: float) -> api_pb2.ListPodSandboxResponse:
        return api_pb2.ListPodSandboxResponse(items=self.sandboxes)

    def PodSandboxStatus(self, request: Any, timeout: float) -> api_pb2.PodSandboxStatusResponse:
        response = api_pb2.PodSandboxStatusResponse()
        response.info["info"] = json.dumps({"image": self.sandbox_image})
        return response


class FakeRpcError(grpc.RpcError):
    def __init__(self, details: str) -> None:
        self._details = details

    def details(self) -> str:
        return self._details


def container(image: str, *, exited: bool = False) -> api_pb2.Container:
    state = api_pb2.CONTAINER_EXITED if exited else api_pb2.CONTAINER_RUNNING
    return api_pb2.Container(id=f"c-{image}", image=api_pb2.ImageSpec(image=image), state=state)


class Clock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


class Events:
    def __init__(self) -> None:
        self.recorded: list[tuple[str, str, str]] = []

    def record(
        self, obj: dict[str, Any], event_type: str, reason: str, message: str,
        *, field_path: str = "",
    ) -> None:  # fmt: skip
        self.recorded.append((event_type, reason, message))


def gc_of(cri: FakeCri, clock: Clock, events: Events | None = None, **kwargs: Any) -> ImageGC:
    settings: dict[str, Any] = {"high_threshold": 85, "low_threshold": 80, "minimum_age": 60.0}
    settings.update(kwargs)
    return ImageGC(cri, statvfs=cri.statvfs, clock=clock, events=events,
                   node=lambda: {"metadata": {"name": "n"}}, **settings)  # fmt: skip


def test_thresholds_are_checked() -> None:
    check_thresholds(85, 80)
    check_thresholds(0, 0)
    with pytest.raises(ValueError, match="above the high threshold"):
        check_thresholds(70, 80)
    with pytest.raises(ValueError, match="not in 0..100"):
        check_thresholds(101, 80)


def test_below_the_high_threshold_nothing_goes() -> None:
    cri = FakeCri(capacity=1000 * MB, available=200 * MB)  # 80% used
    cri.add_image("sha256:old", 100 * MB, "old:1")
    clock = Clock()
    gc = gc_of(cri, clock)
    clock.now += 3600
    assert gc.collect() == 0 and cri.removed == []


def test_above_high_removes_least_recently_used_until_low() -> None:
    cri = FakeCri(capacity=1000 * MB, available=100 * MB)  # 90% used: free 100 MB to reach 80%
    for name in ("never-used", "used-long-ago", "used-lately", "running"):
        cri.add_image(f"sha256:{name}", 60 * MB, f"{name}:1")
    clock = Clock()
    gc = gc_of(cri, clock)
    cri.containers = [container("used-long-ago:1", exited=True), container("used-lately:1"),
                      container("sha256:running")]  # fmt: skip
    gc.detect()  # all first seen now; the three with containers used now
    clock.now += 600
    cri.containers = [container("used-lately:1"), container("sha256:running")]
    gc.detect()
    clock.now += 600
    cri.containers = [container("sha256:running")]  # the others' containers were removed
    freed = gc.collect()
    assert cri.removed == ["sha256:never-used", "sha256:used-long-ago"]
    assert freed == 120 * MB
    assert set(gc.records) == {"sha256:used-lately", "sha256:running"}


def test_minimum_age_protects_images_seen_lately() -> None:
    cri = FakeCri(capacity=1000 * MB, available=100 * MB)
    cri.add_image("sha256:old", 50 * MB, "old:1")
    clock = Clock()
    events = Events()
    gc = gc_of(cri, clock, events, minimum_age=120.0)
    gc.detect()
    clock.now += 100
    cri.add_image("sha256:fresh", 200 * MB, "fresh:1")
    clock.now += 30  # old: 130 s, fresh: 0 s (seen first by the next pass)
    assert gc.collect() == 50 * MB
    assert cri.removed == ["sha256:old"]
    assert events.recorded == [(
        "Warning", "ImageGCFailed",
        "Failed to garbage collect required amount of images. Attempted to free 104857600 "
        "bytes, but only found 52428800 bytes eligible to free.",
    )]  # fmt: skip


def test_sandbox_and_pinned_images_are_kept_and_failures_skipped() -> None:
    cri = FakeCri(capacity=1000 * MB, available=0)
    cri.add_image("sha256:pause", 1 * MB, "kubeling.local/pause:latest")
    cri.add_image("sha256:other-pause", 1 * MB, "registry.example/pause:3.9")
    cri.add_image("sha256:pinned", 1 * MB, "pinned:1", pinned=True)
    cri.add_image("sha256:busy", 1 * MB, "busy:1")
    cri.add_image("sha256:free", 1 * MB, "free:1")
    cri.fail_remove = {"sha256:busy"}
    cri.sandboxes = [api_pb2.PodSandbox(id="s1")]
    cri.sandbox_image = "registry.example/pause:3.9"
    clock = Clock()
    gc = gc_of(cri, clock, high_threshold=0, low_threshold=0, minimum_age=0.0,
               sandbox_images=["kubeling.local/pause:latest"])  # fmt: skip
    gc.collect()
    assert cri.removed == ["sha256:free"]
    remaining = {i.id for i in cri.images_list}
    assert remaining == {"sha256:pause", "sha256:other-pause", "sha256:pinned", "sha256:busy"}


def test_delete_unused_ignores_the_thresholds() -> None:
    cri = FakeCri(capacity=1000 * MB, available=900 * MB)  # 10% used
    cri.add_image("sha256:a", 10 * MB, "a:1")
    cri.add_image("sha256:b", 10 * MB, "b:1")
    cri.containers = [container("sha256:b")]
    clock = Clock()
    gc = gc_of(cri, clock, minimum_age=0.0)
    assert gc.delete_unused() == 10 * MB
    assert cri.removed == ["sha256:a"]


def test_the_loop_waits_one_period_first() -> None:
    cri = FakeCri(capacity=1000 * MB, available=0)
    cri.add_image("sha256:a", 10 * MB, "a:1")
    gc = gc_of(cri, Clock(), high_threshold=0, low_threshold=0, minimum_age=0.0, period=0.05)
    stop = threading.Event()
    thread = threading.Thread(target=gc.run, args=(stop,))
    thread.start()
    assert cri.removed == []
    try:
        for _ in range(100):
            if cri.removed:
                break
            stop.wait(0.02)
    finally:
        stop.set()
        thread.join(5)
    assert cri.removed == ["sha256:a"]
