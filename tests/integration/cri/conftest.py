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

import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cri.api import api_pb2
from cri.network import NetworkConfig
from cri.supervisor.client import running_supervisor
from images.build import build_all, push
from images.store import ImageStore
from images.testing import LocalRegistry
from tests.integration.cri.support import Cri, alive, free_cidr, wait_for


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
def cri(images: ImageStore, registry: LocalRegistry, tmp_path: Path) -> Iterator[Cri]:
    suffix = uuid.uuid4().hex[:6]
    state = Path(tempfile.mkdtemp(prefix="klct-"))  # short: the supervisor's socket path
    network = NetworkConfig(
        bridge=f"kct{suffix}",
        pod_cidr=free_cidr(214),
        state_dir=state / "network",
        netns_dir=tmp_path / "netns",
        veth_prefix=f"c{suffix[:5]}",
        chain_prefix=f"KC-{suffix}",
        ip_forward=False,
        load_br_netfilter=False,
    )
    cri = Cri(
        state,
        str(tmp_path / "cri.sock"),
        network,
        images,
        f"/kubeling-test-ct-{suffix}",
        f"{registry.host}/kubeling/busybox:latest",
        tmp_path / "logs",
    )
    cri.start()
    try:
        cri.pull()
        yield cri
    finally:
        try:
            assert cri.node is not None
            for record in cri.node.store.list_sandboxes():
                cri.runtime.RemovePodSandbox(
                    api_pb2.RemovePodSandboxRequest(pod_sandbox_id=record.id)
                )
            cri.stop_server()
            cri.node.network.destroy()
        finally:
            pid = running_supervisor(state / "supervisor")
            if pid > 0:
                os.kill(pid, signal.SIGTERM)
                wait_for(lambda: not alive(pid), f"supervisor {pid} to exit")
            for parent in cri.cgroup_dirs(cri.cgroup_parent):
                if parent.is_dir():
                    remove_cgroup_tree(parent)
            shutil.rmtree(state)


def remove_cgroup_tree(top: Path) -> None:
    """rmdir `top` and every cgroup below it, deepest first (all must be empty)."""
    for directory, _, _ in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
        os.rmdir(directory)
