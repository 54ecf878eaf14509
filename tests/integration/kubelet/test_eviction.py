"""Eviction and image GC of a real kubelet on a real `kubeling apiserver` and CRI server.

Memory pressure is made by a memory.available threshold above the node's memory: the
node reports MemoryPressure, a running BestEffort pod (admitted because it tolerates
the memory-pressure taint) is evicted (Failed/Evicted, its containers stopped, an
Evicted event), and a new BestEffort pod is rejected. A nodefs.available threshold of
100% makes DiskPressure, under which even a Burstable pod is rejected. Image GC with
0%/0% thresholds removes an image no container uses and keeps the one in use and the
sandbox image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cri.api import api_pb2
from images.build import build_image
from images.store import ImageStore
from kubeapi.quantity import parse_quantity
from kubelet.eviction import quantity_text
from tests.integration.cri.support import NEEDS_CRI, Cri
from tests.integration.kubelet.support import (
    ApiServer,
    get_or_none,
    kubelet_config,
    pod,
    running_kubelet,
    unique_name,
    wait_for,
)

pytestmark = NEEDS_CRI

PODS = "/api/v1/namespaces/default/pods"
TOLERATE_MEMORY_PRESSURE = [
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"}
]


def _status(api: ApiServer, name: str) -> dict[str, Any]:
    found = get_or_none(api.client, f"{PODS}/{name}")
    return dict((found or {}).get("status") or {})


def _condition(api: ApiServer, node: str, kind: str) -> str:
    found = get_or_none(api.client, f"/api/v1/nodes/{node}") or {}
    for condition in (found.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return str(condition.get("status"))
    return ""


def _containers_of(cri: Cri, uid: str) -> list[api_pb2.Container]:
    request = api_pb2.ListContainersRequest(
        filter=api_pb2.ContainerFilter(label_selector={"io.kubernetes.pod.uid": uid})
    )
    return list(cri.runtime.ListContainers(request).containers)


def _sandboxes_of(cri: Cri, uid: str) -> list[api_pb2.PodSandbox]:
    request = api_pb2.ListPodSandboxRequest(
        filter=api_pb2.PodSandboxFilter(label_selector={"io.kubernetes.pod.uid": uid})
    )
    return list(cri.runtime.ListPodSandbox(request).items)


def _memory_total() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


def test_memory_pressure_evicts_and_rejects_besteffort_pods(
    api: ApiServer, cri: Cri, tmp_path: Path
) -> None:
    above_all_memory = f"{_memory_total() // 2**20 + 1024}Mi"
    config = kubelet_config(
        api, cri, tmp_path / "kubelet",
        eviction_hard={"memory.available": above_all_memory},
        eviction_pressure_transition_period=1.0, eviction_monitoring_interval=0.5,
    )  # fmt: skip
    with running_kubelet(config):
        node = config.node_name
        wait_for(lambda: _condition(api, node, "MemoryPressure") == "True", "MemoryPressure")
        victim = unique_name("besteffort")
        created = api.client.create(
            PODS, pod(victim, node, cri.image, tolerations=TOLERATE_MEMORY_PRESSURE)
        )
        uid = created["metadata"]["uid"]
        status = wait_for(
            lambda: (s := _status(api, victim)).get("reason") == "Evicted" and s, "the eviction"
        )
        assert status["phase"] == "Failed"
        threshold = quantity_text(parse_quantity(above_all_memory))
        assert status["message"].startswith(
            f"The node was low on resource: memory. Threshold quantity: {threshold}, available: "
        ), status["message"]
        assert any(c.get("type") == "DisruptionTarget" for c in status["conditions"])
        wait_for(
            lambda: (
                all(c.state != api_pb2.CONTAINER_RUNNING for c in _containers_of(cri, uid))
                and not any(s.state == api_pb2.SANDBOX_READY for s in _sandboxes_of(cri, uid))
            ),
            "the evicted pod's containers to stop",
        )

        def evicted_event() -> bool:  # the recorder's thread writes it
            events = api.client.list(
                "/api/v1/namespaces/default/events", fieldSelector=f"involvedObject.uid={uid}"
            )["items"]
            return any(e["reason"] == "Evicted" and e["type"] == "Warning" for e in events)

        wait_for(evicted_event, "the Evicted event")

        rejected = unique_name("rejected")
        created = api.client.create(PODS, pod(rejected, node, cri.image))
        status = wait_for(lambda: _status(api, rejected).get("phase") == "Failed"
                          and _status(api, rejected), "the rejection")  # fmt: skip
        assert status["reason"] == "Evicted"
        assert status["message"] == "Pod was rejected: The node had condition: [MemoryPressure]."
        assert _sandboxes_of(cri, created["metadata"]["uid"]) == []


def test_image_gc_removes_unused_images_and_keeps_used_ones(
    api: ApiServer, cri: Cri, images: ImageStore, tmp_path: Path
) -> None:
    config = kubelet_config(
        api, cri, tmp_path / "kubelet",
        image_gc_high_threshold=0, image_gc_low_threshold=0, image_minimum_gc_age=0.0,
        image_gc_period=3600.0,
    )  # fmt: skip
    layout = tmp_path / "layout"
    build_image("nonroot", layout, tag="unused")
    images.import_archive(f"oci:{layout}:unused")
    unused = images.get("unused").id
    in_use = images.get(cri.image).id
    try:
        with running_kubelet(config) as kubelet:
            name = unique_name("user")
            api.client.create(PODS, pod(name, config.node_name, cri.image))
            wait_for(lambda: _status(api, name).get("phase") == "Running", "the pod to run")
            freed = kubelet.image_gc.collect()
            left = {i.id for i in images.list()}
            assert unused not in left
            assert in_use in left
            assert any("pause" in tag for i in images.list() for tag in i.repo_tags), left
            assert freed > 0
    finally:
        if unused in {i.id for i in images.list()}:
            images.remove(unused)


def test_disk_pressure_rejects_every_new_pod(api: ApiServer, cri: Cri, tmp_path: Path) -> None:
    config = kubelet_config(
        api, cri, tmp_path / "kubelet",
        eviction_hard={"nodefs.available": "100%"},  # nothing is ever that free
        eviction_pressure_transition_period=1.0, eviction_monitoring_interval=0.5,
    )  # fmt: skip
    with running_kubelet(config):
        node = config.node_name
        wait_for(lambda: _condition(api, node, "DiskPressure") == "True", "DiskPressure")
        assert _condition(api, node, "MemoryPressure") == "False"
        name = unique_name("burstable")
        body = pod(name, config.node_name, cri.image)
        body["spec"]["containers"][0]["resources"] = {"requests": {"memory": "8Mi"}}
        created = api.client.create(PODS, body)
        status = wait_for(lambda: _status(api, name).get("phase") == "Failed"
                          and _status(api, name), "the rejection")  # fmt: skip
        assert (status["reason"], status["message"]) == (
            "Evicted", "Pod was rejected: The node had condition: [DiskPressure]."
        )  # fmt: skip
        assert _sandboxes_of(cri, created["metadata"]["uid"]) == []
