"""The eviction manager with fake stats, pods and clock: signals, thresholds, pressure
with its transition period, ranking, messages, admission, node-level reclaim."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from kubelet.config import KubeletConfig
from kubelet.eviction import (
    DISK_PRESSURE,
    MEMORY_AVAILABLE,
    MEMORY_PRESSURE,
    NODEFS_AVAILABLE,
    PID_AVAILABLE,
    Amount,
    EvictionManager,
    Observation,
    Threshold,
    eviction_message,
    observe,
    parse_thresholds,
    quantity_text,
    rank,
)
from kubelet.main import build_parser, config_from_args
from kubelet.pods.runtime import ContainerState, PodRuntime, RuntimeInfo
from kubelet.pods.sync import NodeFacts
from kubelet.pods.worker import PodWorker, WorkerContext
from kubelet.stats.snapshot import ContainerUsage, Fs, Machine, Memory, NodeUsage, PodUsage
from tests.unit.kubelet.pods.factories import container, make_pod, runtime
from tests.unit.kubelet.pods.test_manager import api_pod
from tests.unit.kubelet.pods.test_manager import manager as pod_manager

MI = 2**20
GI = 2**30


def node_usage(
    *,
    memory_available: int = 8 * GI,
    fs_available: int = 50 * GI,
    pods: list[PodUsage] | None = None,
    running: int = 500,
) -> NodeUsage:
    total = 16 * GI
    return NodeUsage(
        node_name="n", time=0.0, start_time=0.0, machine=Machine(4, total), cpu=None,
        memory=Memory(0.0, total - memory_available, total - memory_available,
                      limit_bytes=total, available_bytes=memory_available),
        network=None,
        fs=Fs(0.0, capacity_bytes=100 * GI, available_bytes=fs_available, inodes=1000,
              inodes_free=900),
        image_fs=Fs(0.0, capacity_bytes=200 * GI, available_bytes=150 * GI, inodes=10,
                    inodes_free=9),
        max_pid=4096, running_processes=running, system_containers=[], pods=pods or [],
    )  # fmt: skip


def pod(name: str, *, memory_request: str | None = None, priority: int | None = None,
        tolerations: list[dict[str, Any]] | None = None, phase: str = "Running",
        annotations: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    container: dict[str, Any] = {"name": "main", "image": "busybox"}
    if memory_request is not None:
        container["resources"] = {"requests": {"memory": memory_request}}
    spec: dict[str, Any] = {"containers": [container], "terminationGracePeriodSeconds": 30}
    if priority is not None:
        spec["priority"] = priority
    if tolerations:
        spec["tolerations"] = tolerations
    return {
        "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}",
                     "annotations": annotations or {}},
        "spec": spec, "status": {"phase": phase},
    }  # fmt: skip


def stats(name: str, memory: int, *, disk: int = 0, processes: int = 1) -> PodUsage:
    container = ContainerUsage(
        name="main", id=f"c-{name}", image="busybox", start_time=None, cgroup=None,
        memory=Memory(0.0, memory, memory),
        rootfs=Fs(0.0, used_bytes=disk), logs=Fs(0.0, used_bytes=0),
    )  # fmt: skip
    return PodUsage(
        name=name, namespace="default", uid=f"uid-{name}", sandbox_id=f"s-{name}",
        start_time=None, cgroup=None, containers=[container], process_count=processes,
        ephemeral_storage=Fs(0.0, used_bytes=disk, inodes_used=disk // MI),
    )  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str]] = []

    def record(
        self, obj: dict[str, Any], event_type: str, reason: str, message: str,
        *, field_path: str = "",
    ) -> None:  # fmt: skip
        self.events.append((obj["metadata"]["name"], event_type, reason, message))


class Harness:
    """An EvictionManager over mutable fake stats and pods."""

    def __init__(self, thresholds: list[Threshold], **kwargs: Any) -> None:
        self.usage = node_usage()
        self.pods: list[dict[str, Any]] = []
        self.evicted: list[tuple[str, int, str, dict[str, Any]]] = []
        self.reclaims: list[str] = []
        self.clock = Clock()
        self.events = Recorder()
        self.manager = EvictionManager(
            thresholds, stats=lambda: self.usage, pods=lambda: self.pods, evict=self.evict,
            events=self.events, clock=self.clock, transition_period=kwargs.pop("transition", 5.0),
            **kwargs,
        )  # fmt: skip

    def evict(self, pod: dict[str, Any], grace: int, message: str, cond: dict[str, Any]) -> bool:
        self.evicted.append((pod["metadata"]["name"], grace, message, cond))
        pod["status"] = {"phase": "Failed", "reason": "Evicted"}
        return True


# -- thresholds ------------------------------------------------------------------------


def test_parse_thresholds_quantities_percentages_soft_and_reclaim() -> None:
    found = parse_thresholds(
        {"memory.available": "100Mi", "nodefs.available": "10%"},
        {"memory.available": "1Gi"}, {"memory.available": 90.0},
        {"memory.available": "50Mi"},
    )  # fmt: skip
    hard_memory, hard_disk, soft_memory = found
    assert hard_memory == Threshold(MEMORY_AVAILABLE, Amount(quantity=Fraction(100 * MI)),
                                    min_reclaim=Amount(quantity=Fraction(50 * MI)))  # fmt: skip
    assert hard_disk.value.of(1000) == 100 and hard_disk.hard
    assert not soft_memory.hard and soft_memory.grace_period == 90.0
    assert soft_memory.value.of(0) == GI


@pytest.mark.parametrize(
    ("hard", "soft", "grace", "error"),
    [
        ({"memory.free": "1Mi"}, {}, {}, "unsupported eviction signal 'memory.free'"),
        ({"memory.available": "lots"}, {}, {}, "invalid threshold 'lots'"),
        ({"memory.available": "-1Mi"}, {}, {}, "must not be negative"),
        ({"nodefs.available": "120%"}, {}, {}, "not in 0..100%"),
        ({}, {"memory.available": "1Gi"}, {}, "no grace period"),
        ({}, {}, {"memory.available": 10.0}, "without a soft threshold"),
    ],
)
def test_parse_thresholds_rejects_bad_settings(
    hard: dict[str, str], soft: dict[str, str], grace: dict[str, float], error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        parse_thresholds(hard, soft, grace)


def test_eviction_flags_in_the_kubelets_syntax() -> None:
    args = build_parser().parse_args([
        "--kubeconfig", "k", "--eviction-hard", "memory.available<200Mi,nodefs.available<5%",
        "--eviction-soft", "memory.available<1Gi", "--eviction-soft-grace-period",
        "memory.available=1m30s", "--eviction-minimum-reclaim", "memory.available=0Mi",
        "--eviction-pressure-transition-period", "1s", "--image-gc-high-threshold", "90",
        "--image-gc-low-threshold", "70", "--image-minimum-gc-age", "5m",
    ])  # fmt: skip
    config = config_from_args(args)
    assert config.eviction_hard == {"memory.available": "200Mi", "nodefs.available": "5%"}
    assert config.eviction_soft == {"memory.available": "1Gi"}
    assert config.eviction_soft_grace_period == {"memory.available": 90.0}
    assert config.eviction_minimum_reclaim == {"memory.available": "0Mi"}
    assert config.eviction_pressure_transition_period == 1.0
    assert (config.image_gc_high_threshold, config.image_gc_low_threshold) == (90, 70)
    assert config.image_minimum_gc_age == 300.0
    defaults = config_from_args(build_parser().parse_args(["--kubeconfig", "k"]))
    assert defaults.eviction_hard == {"memory.available": "100Mi", "nodefs.available": "10%"}


def test_eviction_flag_without_its_separator_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--kubeconfig", "k", "--eviction-hard", "memory.available=1Mi"])
    assert exit_info.value.code == 2


# -- signals and messages --------------------------------------------------------------


def test_observations_of_a_stats_reading() -> None:
    seen = observe(node_usage(memory_available=3 * GI, running=96))
    assert seen[MEMORY_AVAILABLE] == Observation(3 * GI, 16 * GI)
    assert seen[NODEFS_AVAILABLE] == Observation(50 * GI, 100 * GI)
    assert seen["nodefs.inodesFree"] == Observation(900, 1000)
    assert seen["imagefs.available"] == Observation(150 * GI, 200 * GI)
    assert seen[PID_AVAILABLE] == Observation(4000, 4096)
    assert MEMORY_AVAILABLE not in observe(replace(node_usage(), memory=None))


def test_quantity_text_as_the_kubelet_prints_it() -> None:
    assert quantity_text(50 * MI) == "50Mi"
    assert quantity_text(1536 * 1024) == "1536Ki"
    assert quantity_text(2 * GI) == "2Gi"
    assert quantity_text(1000) == "1000"
    assert quantity_text(0) == "0"
    assert quantity_text(2048, "inodes") == "2048"


def test_eviction_message_names_the_threshold_and_the_greedy_containers() -> None:
    threshold = Threshold(MEMORY_AVAILABLE, Amount(quantity=Fraction(100 * MI)))
    message = eviction_message(pod("a", memory_request="10Mi"), stats("a", 30 * MI), threshold,
                               Observation(50 * MI, 16 * GI))  # fmt: skip
    assert message == (
        "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. "
        "Container main was using 30Mi, request is 10Mi, has larger consumption of memory."
    )
    within = eviction_message(pod("b", memory_request="64Mi"), stats("b", 30 * MI), threshold,
                              Observation(50 * MI, 16 * GI))  # fmt: skip
    assert within.endswith("available: 50Mi.")
    disk = Threshold(NODEFS_AVAILABLE, Amount(percentage=Fraction(1, 10)))
    text = eviction_message(pod("c"), stats("c", 0, disk=4 * MI), disk,
                            Observation(5 * GI, 100 * GI))  # fmt: skip
    assert text == (
        "The node was low on resource: ephemeral-storage. Threshold quantity: 10Gi, "
        "available: 5Gi. Container main was using 4Mi, request is 0, has larger consumption "
        "of ephemeral-storage."
    )


# -- ranking ---------------------------------------------------------------------------


def names(pods: list[dict[str, Any]]) -> list[str]:
    return [p["metadata"]["name"] for p in pods]


def test_memory_ranking_over_requests_then_priority_then_usage_above_requests() -> None:
    pods = [
        pod("within", memory_request="100Mi"),  # uses 50Mi of 100Mi
        pod("over-high-priority", memory_request="10Mi", priority=1000),
        pod("over-small", memory_request="10Mi"),  # 20Mi: 10Mi over
        pod("over-big"),  # BestEffort, 40Mi over
        pod("no-stats", memory_request="1Gi"),
    ]
    usage = {s.uid: s for s in (stats("within", 50 * MI), stats("over-high-priority", 400 * MI),
                                stats("over-small", 20 * MI),
                                stats("over-big", 40 * MI))}  # fmt: skip
    assert names(rank(pods, usage, MEMORY_AVAILABLE)) == [
        "no-stats", "over-big", "over-small", "over-high-priority", "within",
    ]  # fmt: skip


def test_disk_ranking_by_ephemeral_storage_and_pid_ranking_by_processes() -> None:
    pods = [pod("small"), pod("big"), pod("important", priority=100)]
    usage = {s.uid: s for s in (stats("small", 0, disk=MI, processes=50),
                                stats("big", 0, disk=10 * MI, processes=2),
                                stats("important", 0, disk=100 * MI, processes=90))}  # fmt: skip
    assert names(rank(pods, usage, NODEFS_AVAILABLE)) == ["big", "small", "important"]
    assert names(rank(pods, usage, PID_AVAILABLE)) == ["small", "big", "important"]


# -- the manager -----------------------------------------------------------------------


def test_memory_pressure_evicts_one_pod_per_pass_with_grace_zero() -> None:
    h = Harness(parse_thresholds({"memory.available": "100Mi"}))
    h.pods = [pod("guaranteed-ish", memory_request="1Gi"), pod("besteffort")]
    h.usage = node_usage(
        memory_available=50 * MI,
        pods=[stats("guaranteed-ish", 100 * MI), stats("besteffort", 30 * MI)],
    )
    evicted = h.manager.synchronize()
    assert evicted is not None and evicted["metadata"]["name"] == "besteffort"
    assert h.manager.memory_pressure() and not h.manager.disk_pressure()
    name, grace, message, condition = h.evicted[0]
    assert (name, grace) == ("besteffort", 0)
    assert message.startswith("The node was low on resource: memory. Threshold quantity: "
                              "100Mi, available: 50Mi. Container main was using 30Mi")  # fmt: skip
    assert condition["type"] == "DisruptionTarget" and condition["message"] == message
    assert h.events.events == [("besteffort", "Warning", "Evicted", message)]
    # The next pass takes the next pod; the evicted one is terminal now.
    h.manager.synchronize()
    assert [e[0] for e in h.evicted] == ["besteffort", "guaranteed-ish"]


def test_critical_pods_are_never_evicted() -> None:
    h = Harness(parse_thresholds({"memory.available": "100Mi"}))
    h.pods = [
        pod("static", annotations={"kubernetes.io/config.source": "file"}),
        pod("system", priority=2_000_001_000),
    ]
    h.usage = node_usage(memory_available=MI)
    assert h.manager.synchronize() is None and h.evicted == []
    assert h.manager.memory_pressure()


def test_pressure_holds_for_the_transition_period() -> None:
    h = Harness(parse_thresholds({"memory.available": "100Mi"}), transition=5.0)
    h.usage = node_usage(memory_available=50 * MI)
    h.manager.synchronize()
    assert h.manager.memory_pressure()
    h.usage = node_usage(memory_available=GI)
    h.clock.now += 4
    h.manager.synchronize()
    assert h.manager.memory_pressure(), "cleared before the transition period"
    h.clock.now += 2
    h.manager.synchronize()
    assert not h.manager.memory_pressure()


def test_minimum_reclaim_keeps_the_threshold_met() -> None:
    thresholds = parse_thresholds(
        {"memory.available": "100Mi"}, min_reclaim={"memory.available": "200Mi"}
    )
    h = Harness(thresholds, transition=0.0)
    h.pods = [pod("a"), pod("b")]
    h.usage = node_usage(memory_available=50 * MI, pods=[stats("a", MI), stats("b", MI)])
    h.manager.synchronize()
    h.usage = node_usage(memory_available=150 * MI, pods=h.usage.pods)
    h.manager.synchronize()  # above 100Mi, below 100Mi + 200Mi: still evicting
    assert len(h.evicted) == 2
    h.usage = node_usage(memory_available=400 * MI, pods=h.usage.pods)
    assert h.manager.synchronize() is None and not h.manager.memory_pressure()


def test_soft_threshold_waits_for_its_grace_period_and_caps_the_pod_grace() -> None:
    h = Harness(parse_thresholds({}, {"memory.available": "1Gi"}, {"memory.available": 30.0}),
                max_pod_grace_period=10)  # fmt: skip
    h.pods = [pod("a")]
    h.usage = node_usage(memory_available=512 * MI, pods=[stats("a", MI)])
    assert h.manager.synchronize() is None
    assert h.manager.memory_pressure(), "the condition does not wait for the grace period"
    h.clock.now += 31
    h.manager.synchronize()
    assert [(e[0], e[1]) for e in h.evicted] == [("a", 10)]


def test_disk_pressure_reclaims_node_resources_before_evicting() -> None:
    h = Harness(parse_thresholds({"nodefs.available": "10%"}))
    h.pods = [pod("a")]
    h.usage = node_usage(fs_available=5 * GI, pods=[stats("a", MI, disk=GI)])

    def free_images() -> None:
        h.reclaims.append("images")
        h.usage = node_usage(fs_available=20 * GI, pods=h.usage.pods)

    h.manager.reclaim_disk = [lambda: h.reclaims.append("containers"), free_images]
    assert h.manager.synchronize() is None
    assert h.reclaims == ["containers", "images"] and h.evicted == []
    assert h.manager.disk_pressure()
    # Reclaiming not enough: a pod goes.
    h.usage = node_usage(fs_available=5 * GI, pods=[stats("a", MI, disk=GI)])
    h.manager.reclaim_disk = [lambda: h.reclaims.append("containers")]
    h.manager.synchronize()
    assert [e[0] for e in h.evicted] == ["a"]
    assert h.evicted[0][2].startswith("The node was low on resource: ephemeral-storage.")


def test_admission_under_memory_pressure_refuses_besteffort_pods_only() -> None:
    h = Harness(parse_thresholds({"memory.available": "100Mi"}))
    assert h.manager.admit(pod("before")) is None
    h.usage = node_usage(memory_available=MI)
    h.manager.synchronize()
    assert h.manager.admit(pod("besteffort")) == (
        "Evicted",
        "Pod was rejected: The node had condition: [MemoryPressure].",
    )
    assert h.manager.admit(pod("burstable", memory_request="1Mi")) is None
    tolerating = pod("tolerating", tolerations=[{
        "key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule",
    }])  # fmt: skip
    assert h.manager.admit(tolerating) is None
    assert h.manager.admit(pod("critical", priority=2_000_000_000)) is None


def test_admission_under_disk_pressure_refuses_every_pod() -> None:
    h = Harness(parse_thresholds({"memory.available": "100Mi", "nodefs.available": "10%"}))
    h.usage = node_usage(memory_available=MI, fs_available=GI)
    h.manager.synchronize()
    assert h.manager.conditions() == {MEMORY_PRESSURE, DISK_PRESSURE}
    assert h.manager.admit(pod("burstable", memory_request="1Mi")) == (
        "Evicted",
        "Pod was rejected: The node had condition: [DiskPressure MemoryPressure].",
    )


def test_no_thresholds_no_pressure() -> None:
    h = Harness([])
    h.usage = node_usage(memory_available=0, fs_available=0)
    assert h.manager.synchronize() is None
    assert not (h.manager.memory_pressure() or h.manager.disk_pressure()
                or h.manager.pid_pressure())  # fmt: skip


def test_pid_pressure() -> None:
    h = Harness(parse_thresholds({"pid.available": "10%"}))
    h.pods = [pod("forky")]
    h.usage = node_usage(running=4000, pods=[stats("forky", MI, processes=3000)])
    h.manager.synchronize()
    assert h.manager.pid_pressure()
    assert h.evicted[0][2] == (
        "The node was low on resource: pids. Threshold quantity: 409, available: 96."
    )


def test_the_pod_managers_admission_asks_the_eviction_manager(tmp_path: Path) -> None:
    h = Harness(parse_thresholds({"memory.available": "100Mi"}))
    h.usage = node_usage(memory_available=MI)
    h.manager.synchronize()
    found, _, context = pod_manager(tmp_path)
    found.admitters.append(h.manager.admit)
    found.handle({"type": "ADDED", "object": api_pod("besteffort", "u1")})
    burstable = api_pod("burstable", "u2")
    burstable["spec"]["containers"][0]["resources"] = {"requests": {"memory": "1Mi"}}
    found.handle({"type": "ADDED", "object": burstable})
    assert set(found._workers) == {"u2"}
    ((target, status),) = context.statuses.set_calls
    assert target["metadata"]["uid"] == "u1"
    assert (status["phase"], status["reason"], status["message"]) == (
        "Failed", "Evicted", "Pod was rejected: The node had condition: [MemoryPressure]."
    )  # fmt: skip
    assert context.events.reasons == ["Evicted"]


# -- the pod worker's side: an eviction makes the pod terminal ------------------------


class FakeSyncer:
    def __init__(self, worker_runtime: list[PodRuntime]) -> None:
        self.runtime = worker_runtime
        self.kills: list[int | None] = []
        self.syncs = 0

    def kill_pod(self, pod: dict[str, Any], runtime: PodRuntime, *, stop_sandboxes: bool,
                 message: str = "", grace: int | None = None) -> None:  # fmt: skip
        self.kills.append(grace)
        stopped = tuple(replace(c, state=ContainerState.EXITED, exit_code=137, finished_at=20)
                        for c in runtime.containers)  # fmt: skip
        self.runtime[0] = replace(runtime, containers=stopped,
                                  sandboxes=tuple(replace(s, ready=False)
                                                  for s in runtime.sandboxes))  # fmt: skip

    def sync_pod(self, pod: dict[str, Any], runtime: PodRuntime) -> Any:
        self.syncs += 1
        raise AssertionError("an evicted pod is not synced")


class FakeProbes:
    def ready(self, container_id: str) -> bool:
        return True

    def started(self, container_id: str) -> bool:
        return True


class FakeStatuses:
    def __init__(self) -> None:
        self.written: list[dict[str, Any]] = []

    def set(self, target: dict[str, Any], status: dict[str, Any]) -> bool:
        self.written.append(status)
        return True


def test_an_evicted_pod_is_killed_with_the_grace_given_and_stays_failed() -> None:
    spec = make_pod("main")
    current = [runtime(container("main", ContainerState.RUNNING, pod=spec))]
    syncer = FakeSyncer(current)
    statuses = FakeStatuses()
    context = WorkerContext(
        config=KubeletConfig(kubeconfig="k"), cri=None, client=None,  # type: ignore[arg-type]
        syncer=syncer, statuses=statuses, probes=FakeProbes(),  # type: ignore[arg-type]
        events=Recorder(), runtime_info=RuntimeInfo(),
        node=lambda: NodeFacts(host_ip="10.0.0.1", memory_capacity=0),
        status_target=lambda pod: pod, on_exit=lambda uid, worker: None,
        forget_events=lambda uid: None, clock=lambda: 100.0,
    )  # fmt: skip

    class Worker(PodWorker):
        def _fetch(self) -> PodRuntime:
            return current[0]

    worker = Worker(context, "uid-1", spec)
    condition = {"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet",
                 "message": "low", "lastTransitionTime": "2024-01-01T00:00:00Z"}  # fmt: skip
    worker.fail("Evicted", "The node was low on resource: memory.", grace=0, condition=condition)
    assert worker._pass() is False
    assert syncer.kills == [0] and syncer.syncs == 0
    status = statuses.written[-1]
    assert (status["phase"], status["reason"]) == ("Failed", "Evicted")
    assert status["message"] == "The node was low on resource: memory."
    assert condition in status["conditions"]
    assert "terminated" in status["containerStatuses"][0]["state"]
    assert not worker.active
    worker._pass()  # nothing restarts it
    assert syncer.syncs == 0 and statuses.written[-1]["phase"] == "Failed"
    assert statuses.written[-1]["reason"] == "Evicted"
