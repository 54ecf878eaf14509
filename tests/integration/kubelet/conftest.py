"""Fixtures of the kubelet integration tests: a local registry with the busybox image
and an image store (per module), a real CRI server per test (`cri`: its own state
directory, bridge kkl<hex>, veth and chain prefixes, netns directory, a /24 of
10.214.0.0/16 and cgroup parent, torn down with everything below it), and a real
`kubeling apiserver --store memory://` process per module (`api`; tests use node and
pod names of their own). support.kubelet_config(api, cri, tmp_path) gives a kubelet
configuration on both. Test modules set `pytestmark = NEEDS_CRI` (cri/support.py)."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from images.build import build_all, push
from images.store import ImageStore
from images.testing import LocalRegistry
from tests.integration.cri.support import Cri, network_config, serving
from tests.integration.kubelet.support import ApiServer, apiserver


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


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    with apiserver(tmp_path_factory.mktemp("control")) as running:
        yield running


@pytest.fixture
def cri(images: ImageStore, registry: LocalRegistry, tmp_path: Path) -> Iterator[Cri]:
    suffix = uuid.uuid4().hex[:6]
    state = Path(tempfile.mkdtemp(prefix="klkl-"))  # short: the supervisor's socket path
    network = network_config(
        state,
        tmp_path / "netns",
        bridge=f"kkl{suffix}",
        veth_prefix=f"k{suffix[:5]}",
        chain_prefix=f"KK-{suffix}",
    )
    cri = Cri(
        state,
        str(tmp_path / "cri.sock"),
        network,
        images,
        f"/kubeling-test-kl-{suffix}",
        f"{registry.host}/kubeling/busybox:latest",
        tmp_path / "logs",
    )
    with serving(cri):
        cri.pull()
        yield cri
