"""NodeAgent against a real `kubeling apiserver` process and a real kubeling CRI
server: the Node registers Ready with the runtime's version and images, the Lease in
kube-node-lease is created with the Node as owner and renewed, and the node turns
NotReady (with an event) when the runtime goes away."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubeapi.client import Client
from kubelet.cri_client import CriClient
from kubelet.events import EventRecorder
from kubelet.node import NodeAgent
from tests.integration.cri.support import NEEDS_CRI, Cri
from tests.integration.kubelet.support import ApiServer, get_or_none, kubelet_config, wait_for

pytestmark = NEEDS_CRI

LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"


def ready(node: dict[str, Any] | None) -> dict[str, Any]:
    conditions = ((node or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Ready"), {})


@pytest.fixture
def agent(api: ApiServer, cri: Cri, tmp_path: Path) -> Iterator[NodeAgent]:
    config = kubelet_config(
        api,
        cri,
        tmp_path / "kubelet",
        node_lease_duration_seconds=4,
        node_status_update_frequency=2.0,
        pod_cidr=cri.network.pod_cidr,
    )
    client = Client.from_kubeconfig(config.kubeconfig)
    runtime = CriClient(config.container_runtime_endpoint, timeout=10)
    try:
        yield NodeAgent(
            client,
            config,
            runtime,
            EventRecorder(client, config.node_name),
            kubelet_port=lambda: 10250,
        )
    finally:
        runtime.close()
        client.close()
        api.client.delete(f"/api/v1/nodes/{config.node_name}")


def test_node_registers_ready_and_renews_its_lease(
    agent: NodeAgent, api: ApiServer, cri: Cri
) -> None:
    name = agent.name
    agent.register()
    node = api.client.get(f"/api/v1/nodes/{name}")
    assert ready(node)["status"] == "True", ready(node)
    assert ready(node)["reason"] == "KubeletReady"
    status = node["status"]
    assert status["nodeInfo"]["containerRuntimeVersion"].startswith("kubeling://")
    assert status["addresses"][0] == {"type": "InternalIP", "address": "127.0.0.1"}
    assert status["daemonEndpoints"]["kubeletEndpoint"]["Port"] == 10250
    assert node["spec"]["podCIDR"] == cri.network.pod_cidr
    names = [n for image in status["images"] for n in image["names"]]
    assert cri.image in names
    assert int(status["allocatable"]["pods"]) == 110

    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,))
    thread.start()
    try:
        lease = wait_for(lambda: get_or_none(api.client, f"{LEASES}/{name}"), "the lease", 10)
        assert lease["spec"]["holderIdentity"] == name
        assert lease["spec"]["leaseDurationSeconds"] == 4
        owner = lease["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["uid"]) == ("Node", node["metadata"]["uid"])
        first = lease["spec"]["renewTime"]
        wait_for(
            lambda: api.client.get(f"{LEASES}/{name}")["spec"]["renewTime"] != first,
            "the lease to be renewed",
            5,
        )

        transition = ready(api.client.get(f"/api/v1/nodes/{name}"))["lastTransitionTime"]
        cri.stop_server()
        down = wait_for(
            lambda: ready(n := api.client.get(f"/api/v1/nodes/{name}"))["status"] == "False" and n,
            "the node to turn NotReady",
            10,
        )
        assert ready(down)["reason"] == "KubeletNotReady"
        assert "container runtime is down" in ready(down)["message"]
        assert ready(down)["lastTransitionTime"] >= transition
        events = api.client.list("/api/v1/namespaces/default/events")["items"]
        reasons = {e["reason"] for e in events if e["involvedObject"].get("name") == name}
        assert {"Starting", "NodeReady", "NodeNotReady"} <= reasons
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
