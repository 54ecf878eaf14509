"""Fixtures of the CRI integration tests that drive a real server (support.Cri).

Isolation: each test has its own state directory (supervisor, records, network
state), bridge (kct<hex>), veth and chain prefixes, netns directory, a /24 of
10.214.0.0/16 no route or address uses, and cgroup parent. The busybox image is
pulled through the ImageService from a LocalRegistry on 127.0.0.1. Teardown removes
the sandboxes (and so their containers), stops the server, destroys the network,
stops the supervisor by pid and removes the cgroup parent with whatever pod-level
cgroups a test made below it.

A test module that defines fixtures of the same names (test_sandbox.py,
test_image_service.py) uses its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from images.build import build_all, push
from images.store import ImageStore
from images.testing import LocalRegistry
from tests.integration.cri.support import Cri, isolated_cri, serving


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    layout = tmp_path_factory.mktemp("layout")
    build_all(layout)
    with LocalRegistry(tmp_path_factory.mktemp("registry")) as served:
        push(layout, "busybox", f"{served.host}/kubeling/busybox:latest")
        yield served


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImageStore]:
    store = ImageStore(tmp_path_factory.mktemp("images"))
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def cri_tag() -> str:
    """Tells this suite's bridges, chains and cgroups apart (another suite reusing `cri`
    overrides it)."""
    return "ct"


@pytest.fixture
def cri(images: ImageStore, registry: LocalRegistry, tmp_path: Path, cri_tag: str) -> Iterator[Cri]:
    image = f"{registry.host}/kubeling/busybox:latest"
    with serving(isolated_cri(images, tmp_path, cri_tag, image, cls=Cri)) as cri:
        cri.pull()
        yield cri
