"""`kubeling scheduler` against a real `kubeling apiserver` process (memory store),
with fake Node objects (no kubelet, no containers): placement by resources,
nodeSelector, node affinity, taints and tolerations; the unschedulable condition,
message and Event, and scheduling once a fitting node appears; two schedulers with
leader election, each pod bound once, and a takeover when the leader dies."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kubeapi.client import ApiError, Client
from tests.integration.control.support import free_port, stop, wait_for

KUBELING = str(Path(sys.executable).parent / "kubeling")
PODS = "/api/v1/namespaces/default/pods"


@dataclass
class Cluster:
    data: Path
    api: subprocess.Popen[str]
    client: Client
    schedulers: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def kubeconfig(self) -> Path:
        return self.data / "admin.kubeconfig"

    def scheduler(self, *args: str, log: Path | None = None) -> subprocess.Popen[str]:
        output = open(log or self.data / f"scheduler-{len(self.schedulers)}.log", "w")  # noqa: SIM115
        process = subprocess.Popen(
            [KUBELING, "scheduler", "--kubeconfig", str(self.kubeconfig), "--log-level", "debug",
             "--retry-interval", "2", *args],
            stdout=output, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        output.close()
        self.schedulers.append(process)
        return process

    def node(self, name: str, *, cpu: str = "4", memory: str = "8Gi", pods: str = "110",
             labels: dict[str, str] | None = None, taints: list[Any] | None = None,
             ready: str = "True", unschedulable: bool = False) -> None:  # fmt: skip
        self.client.create("/api/v1/nodes", {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name,
                         "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": {"taints": taints or [], "unschedulable": unschedulable},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods,
                                       "ephemeral-storage": "10Gi"},
                       "capacity": {"cpu": cpu, "memory": memory, "pods": pods},
                       "conditions": [{"type": "Ready", "status": ready}]},
        })  # fmt: skip

    def pod(self, name: str, *, cpu: str = "", spec: dict[str, Any] | None = None) -> None:
        container: dict[str, Any] = {"name": "c", "image": "busybox:1.36"}
        if cpu:
            container["resources"] = {"requests": {"cpu": cpu}}
        self.client.create(PODS, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [container], **(spec or {})},
        })  # fmt: skip

    def get_pod(self, name: str) -> dict[str, Any]:
        return self.client.get(f"{PODS}/{name}")

    def node_of(self, name: str, timeout: float = 20.0) -> str:
        node = wait_for(lambda: self.get_pod(name)["spec"].get("nodeName"), timeout)
        return str(node)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    data = tmp_path / "control"
    api = subprocess.Popen(
        [KUBELING, "apiserver", "--data-dir", str(data), "--store", "memory://",
         "--listen", f"127.0.0.1:{free_port()}", "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert api.stdout is not None
        line = api.stdout.readline()
        assert "serving the API on" in line, line
        running = Cluster(data, api, Client.from_kubeconfig(data / "admin.kubeconfig"))
        try:
            yield running
        finally:
            for process in running.schedulers:
                stop(process)
            running.client.close()
    finally:
        stop(api)
        if api.stdout is not None:
            api.stdout.close()


def test_placement_by_resources_selectors_affinity_and_taints(cluster: Cluster) -> None:
    cluster.node("small", cpu="1", labels={"disk": "hdd", "gen": "3"})
    cluster.node("big", cpu="8", labels={"disk": "ssd", "gen": "5"})
    cluster.node("gpu", cpu="8", labels={"disk": "ssd", "gen": "4"},
                 taints=[{"key": "gpu", "value": "true", "effect": "NoSchedule"}])  # fmt: skip
    cluster.node("down", cpu="64", ready="False")
    cluster.node("cordoned", cpu="64", unschedulable=True)
    cluster.scheduler()

    cluster.pod("needs-4-cpu", cpu="4")
    cluster.pod("on-hdd", spec={"nodeSelector": {"disk": "hdd"}})
    gen_above_4 = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "gen", "operator": "Gt", "values": ["4"]},
            {"key": "disk", "operator": "In", "values": ["ssd", "nvme"]}]}]}}}  # fmt: skip
    cluster.pod("gen-above-4", spec={"affinity": gen_above_4})
    cluster.pod("tolerates-gpu", spec={
        "tolerations": [{"key": "gpu", "operator": "Equal", "value": "true",
                         "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "gen", "operator": "NotIn", "values": ["3", "5"]}]}]}}},
    })  # fmt: skip
    prefers_small = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "preference": {"matchExpressions": [
            {"key": "disk", "operator": "In", "values": ["hdd"]}]}}]}}  # fmt: skip
    cluster.pod("prefers-hdd", spec={"affinity": prefers_small})

    assert cluster.node_of("needs-4-cpu") == "big"
    assert cluster.node_of("on-hdd") == "small"
    assert cluster.node_of("gen-above-4") == "big"
    assert cluster.node_of("tolerates-gpu") == "gpu"
    assert cluster.node_of("prefers-hdd") == "small"
    pod = cluster.get_pod("needs-4-cpu")
    assert {"type": "PodScheduled", "status": "True"}.items() <= pod["status"]["conditions"][
        0
    ].items()

    # Five pods of 1 cpu each, with no tolerations: never on gpu (tainted), down (not
    # Ready) or cordoned; big has 4 cpu left and small 1.
    for i in range(5):
        cluster.pod(f"cpu-{i}", cpu="1")
    placed = [cluster.node_of(f"cpu-{i}") for i in range(5)]
    assert placed.count("big") == 4 and placed.count("small") == 1, placed


def test_unschedulable_message_event_and_retry(cluster: Cluster) -> None:
    cluster.node("a", cpu="1")
    cluster.node("b", cpu="1")
    cluster.node("c", cpu="8", taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])
    cluster.scheduler()
    cluster.pod("big", cpu="2")

    def condition() -> dict[str, Any] | None:
        for c in cluster.get_pod("big").get("status", {}).get("conditions") or []:
            if c.get("type") == "PodScheduled" and c.get("status") == "False":
                return dict(c)
        return None

    found = wait_for(condition)
    assert found["reason"] == "Unschedulable"
    assert found["message"] == (
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: db}, "
        "2 Insufficient cpu. preemption: 0/3 nodes are available: "
        "1 Preemption is not helpful for scheduling, "
        "2 No preemption victims found for incoming pod."
    )
    events = wait_for(lambda: [
        e for e in cluster.client.list("/api/v1/namespaces/default/events")["items"]
        if e["reason"] == "FailedScheduling" and e["involvedObject"]["name"] == "big"
    ])  # fmt: skip
    assert events[0]["type"] == "Warning" and events[0]["message"] == found["message"]
    assert not cluster.get_pod("big")["spec"].get("nodeName")

    cluster.node("d", cpu="2")  # a node that fits: the pod is retried at once
    assert cluster.node_of("big", timeout=10) == "d"
    scheduled = [c for c in cluster.get_pod("big")["status"]["conditions"]
                 if c["type"] == "PodScheduled"]  # fmt: skip
    assert [c["status"] for c in scheduled] == ["True"]


def test_scheduler_name_is_honoured(cluster: Cluster) -> None:
    cluster.node("a")
    cluster.scheduler("--scheduler-name", "other")
    cluster.pod("mine", spec={"schedulerName": "other"})
    cluster.pod("not-mine")
    assert cluster.node_of("mine") == "a"
    time.sleep(1.0)
    assert not cluster.get_pod("not-mine")["spec"].get("nodeName")


def _bindings(log: Path) -> int:
    return sum(1 for line in log.read_text().splitlines() if " bound default/" in line)


def test_two_leader_elected_schedulers_bind_each_pod_once(cluster: Cluster) -> None:
    for i in range(3):
        cluster.node(f"n{i}")
    logs = [cluster.data / "first.log", cluster.data / "second.log"]
    flags = ("--leader-elect", "--lease-duration", "2", "--renew-deadline", "1.5",
             "--retry-period", "0.3")  # fmt: skip
    first = cluster.scheduler(*flags, log=logs[0])
    cluster.scheduler(*flags, log=logs[1])
    for i in range(20):
        cluster.pod(f"p{i}")
    for i in range(20):
        cluster.node_of(f"p{i}")
    time.sleep(0.5)
    counts = [_bindings(log) for log in logs]
    assert sorted(counts) == [0, 20], counts
    lease = cluster.client.get(
        "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-scheduler"
    )
    holder = lease["spec"]["holderIdentity"]

    leader = 0 if counts[0] else 1
    # The leader dies without releasing the lease: the other takes over once it expires.
    stop(cluster.schedulers[leader], signal.SIGKILL)
    assert leader == 0 or cluster.schedulers[leader] is not first
    for i in range(20, 30):
        cluster.pod(f"p{i}")
    for i in range(20, 30):
        cluster.node_of(f"p{i}", timeout=30)
    time.sleep(0.5)
    assert _bindings(logs[1 - leader]) == 10
    lease = cluster.client.get(
        "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-scheduler"
    )
    assert lease["spec"]["holderIdentity"] != holder
    assert lease["spec"]["leaseTransitions"] >= 1


def test_binding_twice_is_refused(cluster: Cluster) -> None:
    """What makes a double bind impossible even if two leaders overlapped."""
    cluster.node("a")
    cluster.pod("p")
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"},
               "target": {"kind": "Node", "name": "a"}}  # fmt: skip
    cluster.client.create(f"{PODS}/p/binding", binding)
    with pytest.raises(ApiError) as refused:
        cluster.client.create(f"{PODS}/p/binding", binding)
    assert refused.value.code == 409
