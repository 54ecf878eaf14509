"""NodeAgent without an API server or a runtime: capacity and allocatable from a fake
/proc tree, conditions and their transition times, images, registration (new and
existing Node), lease creation and renewal, status only on change, and surviving an
API server that is away."""

from __future__ import annotations

import copy
import threading
import time
import uuid
from pathlib import Path
from typing import Any, cast

import grpc
import pytest

from cri.api import api_pb2
from kubeapi.client import ApiError, Client
from kubelet.config import KubeletConfig
from kubelet.cri_client import CriClient
from kubelet.events import EventRecorder
from kubelet.node import (
    Host,
    NodeAgent,
    Usage,
    allocatable,
    check_quantities,
    default_gateway,
    loadavg_entities,
    meminfo,
    merge_conditions,
    node_images,
    pressure_conditions,
    ready_condition,
    reconcile_node,
)

GiB = 1024**3
MEMINFO = "MemTotal:        8000000 kB\nMemFree:  100 kB\nMemAvailable:    4000000 kB\n"


class FakeClient:
    """An API server in a dict: path -> object, with resourceVersions, 404/409, and a
    switch that makes every call fail as a refused connection."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.down = False
        self.version = 0

    def _check(self, verb: str, path: str) -> None:
        self.calls.append((verb, path))
        if self.down:
            raise ConnectionRefusedError(111, "connection refused")

    def _stamp(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.version)
        obj["metadata"].setdefault("uid", str(uuid.uuid4()))
        return copy.deepcopy(obj)

    def _missing(self, verb: str, path: str) -> ApiError:
        return ApiError(verb, path, 404, {"reason": "NotFound"})

    def get(self, path: str, **query: Any) -> dict[str, Any]:
        self._check("GET", path)
        if path not in self.objects:
            raise self._missing("GET", path)
        return copy.deepcopy(self.objects[path])

    def create(self, path: str, body: dict[str, Any], **query: Any) -> dict[str, Any]:
        self._check("POST", path)
        key = f"{path}/{body['metadata']['name']}"
        if key in self.objects:
            raise ApiError("POST", path, 409, {"reason": "AlreadyExists"})
        self.objects[key] = copy.deepcopy(body)
        return self._stamp(self.objects[key])

    def update(self, path: str, body: dict[str, Any], **query: Any) -> dict[str, Any]:
        self._check("PUT", path)
        if path not in self.objects:
            raise self._missing("PUT", path)
        if (
            body["metadata"].get("resourceVersion")
            != self.objects[path]["metadata"]["resourceVersion"]
        ):
            raise ApiError("PUT", path, 409, {"reason": "Conflict"})
        self.objects[path] = copy.deepcopy(body)
        return self._stamp(self.objects[path])

    def patch(self, path: str, body: dict[str, Any], **query: Any) -> dict[str, Any]:
        self._check("PATCH", path)
        target = path.removesuffix("/status")
        if target not in self.objects:
            raise self._missing("PATCH", path)
        self.objects[target].update(copy.deepcopy(body))
        return self._stamp(self.objects[target])


class FakeRuntime:
    def __init__(self) -> None:
        self.network_ready = True
        self.fail = False

    def Status(self, request: Any, timeout: float = 0) -> api_pb2.StatusResponse:
        if self.fail:
            raise grpc.RpcError("unavailable")
        return api_pb2.StatusResponse(status=api_pb2.RuntimeStatus(conditions=[
            api_pb2.RuntimeCondition(type="RuntimeReady", status=True),
            api_pb2.RuntimeCondition(
                type="NetworkReady", status=self.network_ready,
                reason="" if self.network_ready else "NetworkPluginNotReady",
                message="" if self.network_ready else "bridge is missing",
            ),
        ]))  # fmt: skip

    def Version(self, request: Any, timeout: float = 0) -> api_pb2.VersionResponse:
        return api_pb2.VersionResponse(runtime_name="kubeling", runtime_version="0.1.0")


class FakeImages:
    def ListImages(self, request: Any, timeout: float = 0) -> api_pb2.ListImagesResponse:
        return api_pb2.ListImagesResponse(images=[
            api_pb2.Image(id="a", repo_tags=["kubeling.local/busybox:latest"], size=2_000_000),
            api_pb2.Image(id="b", repo_tags=["kubeling.local/pause:latest"],
                          repo_digests=["kubeling.local/pause@sha256:ab"], size=900_000),
        ])  # fmt: skip


class FakeCri:
    def __init__(self) -> None:
        self.runtime = FakeRuntime()
        self.images = FakeImages()


class FakeEvents:
    def __init__(self) -> None:
        self.recorded: list[tuple[str, str]] = []

    def record(self, obj: dict[str, Any], event_type: str, reason: str, message: str,
               **_: Any) -> None:  # fmt: skip
        self.recorded.append((reason, message))


def fake_root(root: Path) -> Path:
    files = {
        "proc/meminfo": MEMINFO,
        "proc/loadavg": "0.08 0.10 0.06 1/400 8134\n",
        "proc/sys/kernel/pid_max": "32768\n",
        "proc/sys/kernel/threads-max": "60000\n",
        "proc/sys/kernel/osrelease": "6.1.0-test\n",
        "proc/sys/kernel/random/boot_id": "boot-1\n",
        "etc/machine-id": "machine-1\n",
        "etc/os-release": 'NAME="Debian"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n',
        "sys/class/dmi/id/product_uuid": "uuid-1\n",
    }
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    return root


class Fixture:
    def __init__(self, tmp_path: Path, **settings: Any) -> None:
        self.client = FakeClient()
        self.cri = FakeCri()
        self.events = FakeEvents()
        self.now = 1_800_000_000.0
        self.config = KubeletConfig(
            kubeconfig="unused", node_name="node-a", root_dir=tmp_path / "kubelet",
            node_ip="10.0.0.5", pod_cidr="10.85.0.0/16", **settings,
        )  # fmt: skip
        self.agent = NodeAgent(
            cast(Client, self.client), self.config, cast(CriClient, self.cri),
            cast(EventRecorder, self.events), kubelet_port=lambda: 10250,
            host=Host(self.config.root_dir, root=fake_root(tmp_path / "root")),
            clock=lambda: self.now,
        )  # fmt: skip

    def stored_node(self) -> dict[str, Any]:
        return self.client.objects["/api/v1/nodes/node-a"]

    def condition(self, kind: str) -> dict[str, Any]:
        conditions = self.stored_node()["status"]["conditions"]
        return next(c for c in conditions if c["type"] == kind)


@pytest.fixture
def fx(tmp_path: Path) -> Fixture:
    return Fixture(tmp_path)


# -- pure computations -------------------------------------------------------------------


def test_meminfo_is_in_bytes() -> None:
    assert meminfo(MEMINFO)["MemTotal"] == 8_000_000 * 1024


def test_default_gateway_of_the_route_table() -> None:
    table = (
        "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n"
        "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n"
        "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\n"
    )
    assert default_gateway(table) == "192.0.2.1"
    assert default_gateway(table.splitlines()[0]) is None


def test_loadavg_gives_the_total_entities() -> None:
    assert loadavg_entities("0.1 0.2 0.3 2/345 999") == 345
    assert loadavg_entities("garbage") == 0


def test_allocatable_subtracts_reserved_and_the_hard_eviction_thresholds() -> None:
    node_capacity = {"cpu": "2", "memory": "8000000Ki", "ephemeral-storage": "1000000Ki",
                     "pods": "110", "hugepages-2Mi": "0"}  # fmt: skip
    result = allocatable(
        node_capacity, system_reserved={"cpu": "100m", "memory": "100Mi"},
        kube_reserved={"cpu": "200m", "ephemeral-storage": "1Gi"},
        eviction_hard={"memory.available": "100Mi", "nodefs.available": "10%"},
    )  # fmt: skip
    assert result["cpu"] == "1700m"
    assert result["memory"] == f"{8_000_000 - 2 * 100 * 1024}Ki"
    # 10% of the capacity is kept for eviction; 1Gi more than the disk: floored at 0.
    assert result["ephemeral-storage"] == "0"
    assert result["pods"] == "110"
    assert result["hugepages-2Mi"] == "0"


def test_allocatable_of_a_percentage_memory_threshold() -> None:
    result = allocatable({"memory": "1000Ki"}, system_reserved={}, kube_reserved={},
                         eviction_hard={"memory.available": "10%"})  # fmt: skip
    assert result["memory"] == "900Ki"


def usage(**changes: int) -> Usage:
    fields = dict(memory_available_bytes=4 * GiB, fs_capacity_bytes=100 * GiB,
                  fs_available_bytes=50 * GiB, inodes=1000, inodes_free=500,
                  pids_max=32768, pids_used=400)  # fmt: skip
    return Usage(**{**fields, **changes})


THRESHOLDS = {"memory.available": "100Mi", "nodefs.available": "10%",
              "nodefs.inodesFree": "5%", "pid.available": "1000"}  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "pressed"),
    [
        ({}, set()),
        ({"memory_available_bytes": 99 * 1024**2}, {"MemoryPressure"}),
        ({"fs_available_bytes": 9 * GiB}, {"DiskPressure"}),
        ({"inodes_free": 40}, {"DiskPressure"}),
        ({"pids_used": 32000}, {"PIDPressure"}),
    ],
)
def test_pressure_conditions(changes: dict[str, int], pressed: set[str]) -> None:
    conditions = pressure_conditions(usage(**changes), 8 * GiB, THRESHOLDS)
    assert [c.type for c in conditions] == ["MemoryPressure", "DiskPressure", "PIDPressure"]
    assert {c.type for c in conditions if c.status == "True"} == pressed
    reasons = {c.type: c.reason for c in conditions}
    if "MemoryPressure" in pressed:
        assert reasons["MemoryPressure"] == "KubeletHasInsufficientMemory"
    else:
        assert reasons["MemoryPressure"] == "KubeletHasSufficientMemory"
    expected_disk = (
        "KubeletHasDiskPressure" if "DiskPressure" in pressed else "KubeletHasNoDiskPressure"
    )
    assert reasons["DiskPressure"] == expected_disk
    expected_pid = (
        "KubeletHasInsufficientPID" if "PIDPressure" in pressed else "KubeletHasSufficientPID"
    )
    assert reasons["PIDPressure"] == expected_pid


def test_no_threshold_means_no_pressure() -> None:
    conditions = pressure_conditions(usage(memory_available_bytes=0, pids_used=32768), GiB, {})
    assert all(c.status == "False" for c in conditions)


def test_ready_condition() -> None:
    runtime = FakeRuntime()
    ready = ready_condition(runtime.Status(None), [])
    assert (ready.status, ready.reason, ready.message) == (
        "True", "KubeletReady", "kubelet is posting ready status",
    )  # fmt: skip
    runtime.network_ready = False
    not_ready = ready_condition(runtime.Status(None), [])
    assert (not_ready.status, not_ready.reason) == ("False", "KubeletNotReady")
    assert "NetworkReady=false reason:NetworkPluginNotReady message:bridge is missing" in (
        not_ready.message
    )
    down = ready_condition(None, ["PLEG is not healthy"])
    assert down.message == "container runtime is down; PLEG is not healthy"


def test_transition_time_moves_only_on_a_status_change() -> None:
    first = merge_conditions([], [ready_condition(None, [])], "t1")
    assert first[0]["lastTransitionTime"] == first[0]["lastHeartbeatTime"] == "t1"
    same = merge_conditions(first, [ready_condition(None, [])], "t2")
    assert (same[0]["lastHeartbeatTime"], same[0]["lastTransitionTime"]) == ("t2", "t1")
    changed = merge_conditions(same, [ready_condition(FakeRuntime().Status(None), [])], "t3")
    assert (changed[0]["status"], changed[0]["lastTransitionTime"]) == ("True", "t3")


def test_images_largest_first_with_digests_first_and_a_limit() -> None:
    listed = FakeImages().ListImages(None).images
    images = node_images(listed)
    assert images == [
        {"names": ["kubeling.local/busybox:latest"], "sizeBytes": 2_000_000},
        {"names": ["kubeling.local/pause@sha256:ab", "kubeling.local/pause:latest"],
         "sizeBytes": 900_000},
    ]  # fmt: skip
    many = [api_pb2.Image(id=str(n), repo_tags=[f"i{n}:1"], size=n) for n in range(80)]
    limited = node_images(many)
    assert len(limited) == 50 and limited[0]["sizeBytes"] == 79


def test_reconcile_keeps_other_labels_and_a_set_pod_cidr() -> None:
    taint = {"key": "a", "effect": "NoSchedule"}
    existing = {"metadata": {"name": "n", "labels": {"team": "x", "kubernetes.io/os": "old"}},
                "spec": {"podCIDR": "10.1.0.0/24", "taints": [taint]}}  # fmt: skip
    wanted = {"metadata": {"labels": {"kubernetes.io/os": "linux"}},
              "spec": {"podCIDR": "10.2.0.0/24", "podCIDRs": ["10.2.0.0/24"],
                       "taints": [{"key": "a", "effect": "NoSchedule"},
                                  {"key": "b", "value": "1", "effect": "NoExecute"}]}}  # fmt: skip
    result = reconcile_node(existing, wanted)
    assert result["metadata"]["labels"] == {"team": "x", "kubernetes.io/os": "linux"}
    assert result["spec"]["podCIDR"] == "10.1.0.0/24"
    assert [t["key"] for t in result["spec"]["taints"]] == ["a", "b"]


def test_bad_quantities_are_refused_by_setting() -> None:
    check_quantities({"system-reserved": {"cpu": "100m"}, "eviction-hard": {"x": "10%"}})
    with pytest.raises(ValueError, match="--kube-reserved memory=lots"):
        check_quantities({"kube-reserved": {"memory": "lots"}})


# -- the agent against fakes -------------------------------------------------------------


def test_register_creates_the_node_with_its_status(fx: Fixture) -> None:
    fx.config.node_labels = {"role": "edge"}
    fx.config.register_with_taints = [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]
    fx.agent.register()
    node = fx.stored_node()
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "node-a"
    assert node["metadata"]["labels"]["kubernetes.io/os"] == "linux"
    assert node["metadata"]["labels"]["kubernetes.io/arch"] in ("amd64", "arm64")
    assert node["metadata"]["labels"]["role"] == "edge"
    assert node["spec"] == {
        "podCIDR": "10.85.0.0/16", "podCIDRs": ["10.85.0.0/16"],
        "taints": [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}],
    }  # fmt: skip
    status = node["status"]
    assert status["capacity"]["memory"] == "8000000Ki"
    assert status["capacity"]["pods"] == "110"
    assert status["capacity"]["hugepages-2Mi"] == "0"
    assert status["allocatable"]["memory"] == f"{8_000_000 - 100 * 1024}Ki"
    assert status["addresses"] == [
        {"type": "InternalIP", "address": "10.0.0.5"}, {"type": "Hostname", "address": "node-a"},
    ]  # fmt: skip
    assert status["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 10250}}
    info = status["nodeInfo"]
    assert (info["machineID"], info["systemUUID"], info["bootID"]) == (
        "machine-1",
        "uuid-1",
        "boot-1",
    )
    assert info["kernelVersion"] == "6.1.0-test"
    assert info["osImage"] == "Debian GNU/Linux 12 (bookworm)"
    assert info["containerRuntimeVersion"] == "kubeling://0.1.0"
    assert info["kubeletVersion"].startswith("v1.32.")
    assert info["operatingSystem"] == "linux"
    assert [c["type"] for c in status["conditions"]] == [
        "MemoryPressure", "DiskPressure", "PIDPressure", "Ready",
    ]  # fmt: skip
    assert fx.condition("Ready")["status"] == "True"
    assert len(status["images"]) == 2
    reasons = [reason for reason, _ in fx.events.recorded]
    assert reasons[0] == "Starting"
    assert "NodeReady" in reasons and "NodeHasSufficientMemory" in reasons
    assert fx.agent.node()["metadata"]["name"] == "node-a"


def test_register_updates_an_existing_node_and_keeps_transition_times(fx: Fixture) -> None:
    fx.agent.register()
    before = fx.condition("Ready")["lastTransitionTime"]
    fx.stored_node()["metadata"]["labels"] = {"team": "x"}
    fx.now += 60
    restarted = NodeAgent(
        cast(Client, fx.client), fx.config, cast(CriClient, fx.cri),
        cast(EventRecorder, fx.events), kubelet_port=lambda: 10251, host=fx.agent.host,
        clock=lambda: fx.now,
    )  # fmt: skip
    fx.events.recorded.clear()
    restarted.register()
    node = fx.stored_node()
    assert node["metadata"]["labels"]["team"] == "x"
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "node-a"
    assert node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] == 10251
    assert fx.condition("Ready")["lastTransitionTime"] == before
    assert fx.condition("Ready")["lastHeartbeatTime"] != before
    assert [reason for reason, _ in fx.events.recorded] == ["Starting"]


def test_status_is_posted_only_when_something_changed(fx: Fixture) -> None:
    fx.agent.register()
    fx.now += 1
    assert fx.agent.post_status() is None  # only the heartbeat would move
    assert not fx.agent.conditions_changed()
    fx.cri.runtime.network_ready = False
    assert fx.agent.conditions_changed()
    fx.now += 1
    assert fx.agent.post_status() is not None
    ready = fx.condition("Ready")
    assert (ready["status"], ready["reason"]) == ("False", "KubeletNotReady")
    assert "NodeNotReady" in [reason for reason, _ in fx.events.recorded]


def test_pleg_health_gates_ready(tmp_path: Path) -> None:
    fx = Fixture(tmp_path)
    healthy = [False]
    fx.agent.pleg_healthy = lambda: healthy[0]
    fx.agent.register()
    assert fx.condition("Ready")["status"] == "False"
    assert "PLEG is not healthy" in fx.condition("Ready")["message"]
    healthy[0] = True
    fx.agent.post_status()
    assert fx.condition("Ready")["status"] == "True"


def test_runtime_down_is_not_ready(fx: Fixture) -> None:
    fx.cri.runtime.fail = True
    fx.agent.register()
    assert fx.condition("Ready")["message"] == "container runtime is down"


def test_lease_is_created_with_an_owner_then_renewed(fx: Fixture) -> None:
    fx.agent.register()
    lease = fx.agent.renew_lease()
    path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-a"
    stored = fx.client.objects[path]
    assert stored["spec"]["holderIdentity"] == "node-a"
    assert stored["spec"]["leaseDurationSeconds"] == 40
    assert stored["spec"]["renewTime"] == "2027-01-15T08:00:00.000000Z"
    owner = stored["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("Node", "node-a")
    assert owner["uid"] == fx.stored_node()["metadata"]["uid"]
    fx.now += 10.5
    renewed = fx.agent.renew_lease()
    assert renewed["spec"]["renewTime"] == "2027-01-15T08:00:10.500000Z"
    assert renewed["metadata"]["resourceVersion"] != lease["metadata"]["resourceVersion"]


def test_a_lease_changed_elsewhere_is_read_again(fx: Fixture) -> None:
    fx.agent.register()
    fx.agent.renew_lease()
    path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-a"
    fx.client.objects[path]["metadata"]["resourceVersion"] = "9999"
    with pytest.raises(ApiError):
        fx.agent.renew_lease()
    assert fx.agent.renew_lease()["spec"]["holderIdentity"] == "node-a"


def test_a_deleted_node_is_registered_again(fx: Fixture) -> None:
    fx.agent.register()
    del fx.client.objects["/api/v1/nodes/node-a"]
    fx.agent.post_status(force=True)
    assert fx.stored_node()["status"]["conditions"]


def test_register_retries_until_the_api_answers(
    fx: Fixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    fx.client.down = True
    stop = threading.Event()
    waits: list[float] = []

    def wait(delay: float) -> bool:
        waits.append(delay)
        if len(waits) == 3:
            fx.client.down = False
        return False

    monkeypatch.setattr(stop, "wait", wait)
    fx.agent.register(stop)
    assert waits == [0.5, 1.0, 2.0]
    assert fx.stored_node()["metadata"]["name"] == "node-a"


def test_register_gives_up_when_stopped(fx: Fixture) -> None:
    fx.client.down = True
    stop = threading.Event()
    stop.set()
    with pytest.raises(RuntimeError, match="stopped"):
        fx.agent.register(stop)


def test_run_survives_an_outage_and_keeps_renewing(fx: Fixture) -> None:
    fx.config.node_lease_duration_seconds = 4  # renew every second
    fx.config.node_status_update_frequency = 1.0
    fx.agent.register()
    stop = threading.Event()
    thread = threading.Thread(target=fx.agent.run, args=(stop,))
    fx.client.down = True
    thread.start()
    try:
        path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-a"
        deadline = time.monotonic() + 10
        while sum(1 for _, p in fx.client.calls if p.endswith("leases/node-a")) < 2:
            assert time.monotonic() < deadline, "no lease attempts"
            stop.wait(0.05)
        fx.client.down = False
        while path not in fx.client.objects:
            assert time.monotonic() < deadline, "lease never written"
            stop.wait(0.05)
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
