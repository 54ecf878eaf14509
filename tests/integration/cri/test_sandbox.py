"""Pod sandboxes through the CRI server's gRPC stubs, against the real kernel (root):
run, status, list, stop, remove, host network, and a restart of the server.

Isolation: each test has its own state directory (supervisor, records, network
state), bridge (ksb<hex>), veth and chain prefixes, netns directory, a /24 of
10.214.0.0/16 no route or address uses, and cgroup parent; ip_forward and
br_netfilter are left alone. Teardown (support.serving) removes the sandboxes,
destroys the network and stops the supervisor by pid.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from cri.api import api_pb2
from cri.network.manager import veth_name
from images.store import ImageStore
from tests.integration.cri import support
from tests.integration.cri.support import alive, ip_json, serving

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in ("ip", "iptables", "nsenter", "skopeo")),
        reason="needs ip, iptables, nsenter and skopeo",
    ),
]


class Cri(support.Cri):
    """support.Cri with sandbox configs built from keyword arguments, sandbox lists and
    what a removed sandbox left behind."""

    def config(self, name: str, **kwargs: Any) -> api_pb2.PodSandboxConfig:
        kwargs.setdefault("metadata", {"name": name, "namespace": "test", "uid": f"uid-{name}"})
        kwargs.setdefault("hostname", name)
        linux = kwargs.setdefault("linux", {})
        linux.setdefault("cgroup_parent", self.cgroup_parent)
        return api_pb2.PodSandboxConfig(**kwargs)

    def run_config(self, config: api_pb2.PodSandboxConfig) -> str:
        response = self.runtime.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config))
        return str(response.pod_sandbox_id)

    def sandboxes(self, **filter: Any) -> list[str]:
        request = api_pb2.ListPodSandboxRequest(filter=api_pb2.PodSandboxFilter(**filter))
        return [item.id for item in self.runtime.ListPodSandbox(request).items]

    def leftovers(self, sandbox_id: str, pid: int) -> list[str]:
        found = []
        with open("/proc/self/mountinfo") as mountinfo:
            found += [line.split()[4] for line in mountinfo if sandbox_id in line.split()[4]]
        if (self.network.netns_dir / sandbox_id).exists():
            found.append("netns file")
        names = {str(link["ifname"]) for link in ip_json("link", "show")}
        if veth_name(self.network, sandbox_id) in names:
            found.append("veth")
        for controller in os.listdir("/sys/fs/cgroup"):
            if Path(f"/sys/fs/cgroup/{controller}{self.cgroup_parent}/{sandbox_id}").exists():
                found.append(f"cgroup {controller}")
        if pid and alive(pid):
            found.append(f"process {pid}")
        if (self.state / "sandboxes" / sandbox_id).exists():
            found.append("sandbox dir")
        return found


@pytest.fixture
def cri(images: ImageStore, tmp_path: Path) -> Iterator[Cri]:  # images: conftest.py's
    # No containers here: no image to pull.
    with serving(support.isolated_cri(images, tmp_path, "sb", "", cls=Cri)) as served:
        yield served


def test_run_status_list_stop_remove(cri: Cri) -> None:
    config = cri.config("web", labels={"app": "web"}, annotations={"a": "b"})
    sandbox_id = cri.run_config(config)
    assert len(sandbox_id) == 64
    status = cri.sandbox_status(sandbox_id, verbose=True)
    assert status.status.state == api_pb2.SANDBOX_READY
    assert status.status.metadata.name == "web"
    assert status.status.labels == {"app": "web"}
    assert status.status.annotations == {"a": "b"}
    assert status.status.created_at > 0
    ip = ipaddress.ip_address(status.status.network.ip)
    assert ip in ipaddress.ip_network(cri.network.pod_cidr)
    options = status.status.linux.namespaces.options
    assert options.network == api_pb2.POD
    info = json.loads(status.info["info"])
    pid = int(info["pid"])
    assert alive(pid)
    netns = info["netNamespacePath"]
    assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(netns).st_ino
    assert os.stat(f"/proc/{pid}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino
    links = ip_json("addr", "show", "eth0", netns=netns)
    assert links[0]["addr_info"][0]["local"] == str(ip)

    other = cri.run_config(cri.config("db", labels={"app": "db"}))
    assert cri.sandboxes() == [sandbox_id, other]
    assert cri.sandboxes(id=sandbox_id[:12]) == [sandbox_id]
    assert cri.sandboxes(label_selector={"app": "db"}) == [other]
    ready = api_pb2.PodSandboxStateValue(state=api_pb2.SANDBOX_READY)
    assert cri.sandboxes(state=ready) == [sandbox_id, other]

    with pytest.raises(grpc.RpcError) as taken:
        cri.run_config(config)
    assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS

    cri.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=sandbox_id))
    cri.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=sandbox_id))
    stopped = cri.sandbox_status(sandbox_id)
    assert stopped.status.state == api_pb2.SANDBOX_NOTREADY
    assert stopped.status.network.ip == ""
    assert not alive(pid)
    assert cri.node is not None
    assert sandbox_id not in cri.node.network.allocations()
    assert cri.sandboxes(state=ready) == [other]

    for _ in range(2):
        cri.runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id))
    assert cri.sandboxes() == [other]
    assert cri.leftovers(sandbox_id, pid) == []
    with pytest.raises(grpc.RpcError) as gone:
        cri.sandbox_status(sandbox_id)
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    # The name is free again.
    again = cri.run_config(config)
    assert cri.sandboxes() == [other, again]


def test_bad_and_unknown(cri: Cri) -> None:
    with pytest.raises(grpc.RpcError) as bad:
        cri.runtime.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=api_pb2.PodSandboxConfig()))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "config.metadata" in str(bad.value.details())
    unknown = "f" * 64
    cri.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=unknown))
    cri.runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=unknown))
    assert cri.sandboxes() == []


def test_host_network(cri: Cri) -> None:
    options = {"network": api_pb2.NODE}
    config = cri.config("host", linux={"security_context": {"namespace_options": options}})
    sandbox_id = cri.run_config(config)
    status = cri.sandbox_status(sandbox_id, verbose=True)
    assert status.status.state == api_pb2.SANDBOX_READY
    assert status.status.network.ip == ""
    pid = int(json.loads(status.info["info"])["pid"])
    assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat("/proc/self/ns/net").st_ino
    cri.runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id))
    assert cri.leftovers(sandbox_id, pid) == []


def test_restart_keeps_sandboxes(cri: Cri) -> None:
    sandbox_id = cri.run_config(cri.config("keep"))
    cri.stop_server()
    cri.start()
    assert cri.sandboxes() == [sandbox_id]
    assert cri.sandbox_status(sandbox_id).status.state == api_pb2.SANDBOX_READY
    with pytest.raises(grpc.RpcError) as taken:
        cri.run_config(cri.config("keep"))
    assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS
