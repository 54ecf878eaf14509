"""The sandbox image is pulled on demand: one that is not in the store (never pulled,
or removed since, as critest's image tests remove it) is pulled by RunPodSandbox from
its registry, as containerd does, rather than failing every later sandbox. The
server: conftest.py; the registry here also serves a pause image.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cri.api import api_pb2
from images.build import build_all, push
from images.testing import LocalRegistry
from tests.integration.cri.support import NEEDS_CRI, Cri

pytestmark = NEEDS_CRI


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    layout = tmp_path_factory.mktemp("layout")
    build_all(layout)
    with LocalRegistry(tmp_path_factory.mktemp("registry")) as served:
        push(layout, "busybox", f"{served.host}/kubeling/busybox:latest")
        push(layout, "pause", f"{served.host}/kubeling/pause:3.10")
        yield served


def image_id(cri: Cri, ref: str) -> str:
    request = api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=ref))
    return str(cri.image_service.ImageStatus(request).image.id)


def ready(cri: Cri, sandbox_id: str) -> bool:
    request = api_pb2.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id)
    return bool(cri.runtime.PodSandboxStatus(request).status.state == api_pb2.SANDBOX_READY)


def test_a_missing_sandbox_image_is_pulled_by_run_pod_sandbox(
    cri: Cri, registry: LocalRegistry
) -> None:
    pause = f"{registry.host}/kubeling/pause:3.10"
    assert cri.node is not None
    cri.node.sandbox_image = pause  # as `kubeling cri --sandbox-image` sets it
    assert image_id(cri, pause) == ""

    first = cri.run_sandbox("first")
    assert ready(cri, first)
    pulled = image_id(cri, pause)
    assert pulled

    cri.image_service.RemoveImage(api_pb2.RemoveImageRequest(image=api_pb2.ImageSpec(image=pulled)))
    assert image_id(cri, pause) == ""
    second = cri.run_sandbox("second")
    assert ready(cri, second)
    assert image_id(cri, pause) == pulled
