"""The e2e fixture: a whole `kubeling up --detach` cluster per module, isolated from
the host's and from other tests' (its own data, run, log and config directories, API
and kubelet ports, node name, bridge, veth and iptables chain prefixes, a free /24
pod CIDR and a cgroup root), and removed on the way out: `kubeling down --purge`,
then whatever is still there by pid, bridge, chains, cgroups and mounts."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.support import Cluster, force_cleanup
from tests.integration.control.support import free_port
from tests.integration.cri.support import CRI_TOOLS, free_cidr

E2E_TOOLS = (*CRI_TOOLS, "kubectl", "gcc")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    missing = [tool for tool in E2E_TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    suffix = uuid.uuid4().hex[:6]
    root = Path(tempfile.mkdtemp(prefix="kle2e-"))  # short: unix socket paths below it
    cluster = Cluster(
        root=root,
        node_name=f"e2e-{suffix}",
        api_port=free_port(),
        kubelet_port=free_port(),
        pod_cidr=free_cidr(213),
        bridge=f"kle{suffix}",
        chain_prefix=f"KE-{suffix}",
        veth_prefix=f"e{suffix[:5]}",
        cgroup_root=f"/kubeling-e2e-{suffix}",
    )
    try:
        cluster.up()
        yield cluster
    finally:
        try:
            cluster.down(purge=True, check=False)
        finally:
            force_cleanup(cluster)
