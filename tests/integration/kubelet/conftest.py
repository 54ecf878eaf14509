"""Fixtures of the kubelet integration tests, those of tests/integration/cri reused: a
local registry with the busybox image and an image store (per module), a real CRI
server per test (`cri`: its own state
directory, bridge kkl<hex>, veth and chain prefixes, netns directory, a /24 of
10.214.0.0/16 and cgroup parent, torn down with everything below it), and a real
`kubeling apiserver --store memory://` process per module (`api`; tests use node and
pod names of their own). support.kubelet_config(api, cri, tmp_path) gives a kubelet
configuration on both. Test modules set `pytestmark = NEEDS_CRI` (cri/support.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.cri import conftest as cri_fixtures
from tests.integration.kubelet.support import ApiServer, apiserver

# The CRI tests' fixtures, the same here; `cri` with names of this suite (cri_tag).
registry = cri_fixtures.registry
images = cri_fixtures.images
cri = cri_fixtures.cri


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    with apiserver(tmp_path_factory.mktemp("control")) as running:
        yield running


@pytest.fixture
def cri_tag() -> str:
    return "kl"
