"""The CRI server's ImageService and runtime info RPCs, through the generated gRPC
stubs on a unix socket, against a real docker-registry on 127.0.0.1 with images
built from busybox-static."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cri.api import api_pb2, api_pb2_grpc
from cri.server import build_server
from images.build import build_all, push
from images.store import ImageStore
from images.testing import LocalRegistry

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(
        shutil.which("skopeo") is None or shutil.which("docker-registry") is None,
        reason="needs the skopeo and docker-registry packages",
    ),
]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    layout = tmp_path_factory.mktemp("layout")
    build_all(layout)
    with LocalRegistry(tmp_path_factory.mktemp("registry")) as served:
        for name in ("busybox", "nonroot"):
            push(layout, name, f"{served.host}/kubeling/{name}:latest")
        yield served


class Client:
    def __init__(self, channel: grpc.Channel) -> None:
        self.runtime = api_pb2_grpc.RuntimeServiceStub(channel)
        self.images = api_pb2_grpc.ImageServiceStub(channel)


@pytest.fixture
def cri(tmp_path: Path) -> Iterator[Client]:
    socket_path = str(tmp_path / "cri.sock")
    store = ImageStore(tmp_path / "images")
    server, _ = build_server(socket_path, store, workers=8)
    channel = grpc.insecure_channel(f"unix://{socket_path}")
    try:
        yield Client(channel)
    finally:
        channel.close()
        server.stop(grace=None).wait()
        store.close()


def spec(image: str) -> api_pb2.ImageSpec:
    return api_pb2.ImageSpec(image=image)


def test_version_status_and_runtime_config(cri: Client) -> None:
    version: api_pb2.VersionResponse = cri.runtime.Version(api_pb2.VersionRequest())
    assert version.runtime_name == "kubeling"
    assert version.runtime_api_version == "v1"
    status: api_pb2.StatusResponse = cri.runtime.Status(api_pb2.StatusRequest())
    conditions = {c.type: c for c in status.status.conditions}
    assert conditions["RuntimeReady"].status
    assert not conditions["NetworkReady"].status
    assert conditions["NetworkReady"].reason == "NetworkPluginNotReady"
    config: api_pb2.RuntimeConfigResponse = cri.runtime.RuntimeConfig(
        api_pb2.RuntimeConfigRequest()
    )
    assert config.linux.cgroup_driver == api_pb2.CGROUPFS


def test_update_runtime_config_checks_the_cidr(cri: Client) -> None:
    good = api_pb2.UpdateRuntimeConfigRequest(
        runtime_config=api_pb2.RuntimeConfig(
            network_config=api_pb2.NetworkConfig(pod_cidr="10.85.0.0/16")
        )
    )
    cri.runtime.UpdateRuntimeConfig(good)
    status: api_pb2.StatusResponse = cri.runtime.Status(api_pb2.StatusRequest(verbose=True))
    assert status.info["podCIDR"] == "10.85.0.0/16"
    bad = api_pb2.UpdateRuntimeConfigRequest(
        runtime_config=api_pb2.RuntimeConfig(network_config=api_pb2.NetworkConfig(pod_cidr="x"))
    )
    with pytest.raises(grpc.RpcError) as info:
        cri.runtime.UpdateRuntimeConfig(bad)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "pod_cidr" in (info.value.details() or "")


def test_pull_list_status_remove(cri: Client, registry: LocalRegistry) -> None:
    ref = f"{registry.host}/kubeling/busybox:latest"
    pulled: api_pb2.PullImageResponse = cri.images.PullImage(
        api_pb2.PullImageRequest(image=spec(ref))
    )
    assert pulled.image_ref.startswith("sha256:")
    listed: api_pb2.ListImagesResponse = cri.images.ListImages(api_pb2.ListImagesRequest())
    assert [i.id for i in listed.images] == [pulled.image_ref]
    image = listed.images[0]
    assert list(image.repo_tags) == [ref]
    assert image.repo_digests[0].startswith(f"{registry.host}/kubeling/busybox@sha256:")
    assert image.size > 0
    # By tag, by id and by repo digest: the same image, field for field.
    statuses = [
        cri.images.ImageStatus(api_pb2.ImageStatusRequest(image=spec(name))).image
        for name in (ref, pulled.image_ref, image.repo_digests[0])
    ]
    assert all(s == image for s in statuses)
    verbose: api_pb2.ImageStatusResponse = cri.images.ImageStatus(
        api_pb2.ImageStatusRequest(image=spec(ref), verbose=True)
    )
    assert '"repoTags"' in verbose.info["info"]
    filtered: api_pb2.ListImagesResponse = cri.images.ListImages(
        api_pb2.ListImagesRequest(filter=api_pb2.ImageFilter(image=spec(ref)))
    )
    assert len(filtered.images) == 1
    cri.images.RemoveImage(api_pb2.RemoveImageRequest(image=spec(ref)))
    gone: api_pb2.ImageStatusResponse = cri.images.ImageStatus(
        api_pb2.ImageStatusRequest(image=spec(ref))
    )
    assert not gone.HasField("image")
    # Idempotent: removing again, or an image never seen, succeeds.
    cri.images.RemoveImage(api_pb2.RemoveImageRequest(image=spec(ref)))
    cri.images.RemoveImage(api_pb2.RemoveImageRequest(image=spec("never/seen:1")))


def test_image_user_becomes_uid_or_username(cri: Client, registry: LocalRegistry) -> None:
    ref = f"{registry.host}/kubeling/nonroot:latest"
    cri.images.PullImage(api_pb2.PullImageRequest(image=spec(ref)))
    image = cri.images.ImageStatus(api_pb2.ImageStatusRequest(image=spec(ref))).image
    assert image.HasField("uid") and image.uid.value == 1000
    assert image.username == ""


def test_concurrent_removes_of_one_image_all_succeed(cri: Client, registry: LocalRegistry) -> None:
    ref = f"{registry.host}/kubeling/busybox:latest"
    image_id = cri.images.PullImage(api_pb2.PullImageRequest(image=spec(ref))).image_ref
    errors: list[BaseException] = []

    def remove() -> None:
        try:
            cri.images.RemoveImage(api_pb2.RemoveImageRequest(image=spec(image_id)))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=remove) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert not cri.images.ListImages(api_pb2.ListImagesRequest()).images


def test_bad_requests_get_the_right_codes(cri: Client, registry: LocalRegistry) -> None:
    cases = [
        (api_pb2.PullImageRequest(image=spec("")), grpc.StatusCode.INVALID_ARGUMENT, "image"),
        (
            api_pb2.PullImageRequest(image=spec("Not A Reference")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid reference",
        ),
        (
            api_pb2.PullImageRequest(image=spec(f"{registry.host}/kubeling/missing:1")),
            grpc.StatusCode.UNKNOWN,
            "missing",
        ),
    ]
    for request, code, words in cases:
        with pytest.raises(grpc.RpcError) as info:
            cri.images.PullImage(request)
        assert info.value.code() == code
        assert words in (info.value.details() or "")
    with pytest.raises(grpc.RpcError) as info:
        cri.images.ImageStatus(api_pb2.ImageStatusRequest())
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # The server keeps serving after bad input.
    assert cri.runtime.Version(api_pb2.VersionRequest()).runtime_name == "kubeling"


def test_image_fs_info(cri: Client, registry: LocalRegistry) -> None:
    cri.images.PullImage(
        api_pb2.PullImageRequest(image=spec(f"{registry.host}/kubeling/busybox:latest"))
    )
    info: api_pb2.ImageFsInfoResponse = cri.images.ImageFsInfo(api_pb2.ImageFsInfoRequest())
    usage = info.image_filesystems[0]
    assert usage.used_bytes.value > 1_000_000  # at least the busybox binary
    assert usage.inodes_used.value > 10
    assert usage.timestamp > 0


def test_rpcs_not_built_yet_answer_unimplemented(cri: Client) -> None:
    with pytest.raises(grpc.RpcError) as info:
        cri.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest())
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_pod_rpcs_of_a_server_without_a_node_answer_unimplemented(cri: Client) -> None:
    calls = [
        lambda: cri.runtime.UpdateContainerResources(
            api_pb2.UpdateContainerResourcesRequest(container_id="c")
        ),
        lambda: cri.runtime.PodSandboxStats(api_pb2.PodSandboxStatsRequest(pod_sandbox_id="s")),
        lambda: cri.runtime.ListPodSandboxStats(api_pb2.ListPodSandboxStatsRequest()),
        lambda: list(cri.runtime.GetContainerEvents(api_pb2.GetEventsRequest(), timeout=10)),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
