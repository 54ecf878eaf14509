"""The pod syncer against a recording fake CRI: the calls of a first sync, why a
container waits (back-off, pull and config errors, failed create/start, postStart),
preStop and the grace period on kill, and removal of a pod that is gone."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import grpc
import pytest

from cri.api import api_pb2
from kubelet.config import KubeletConfig
from kubelet.pods.backoff import Backoff
from kubelet.pods.cgroups import PodCgroups
from kubelet.pods.dependencies import Collaborators, SyncError
from kubelet.pods.images import ImagePuller
from kubelet.pods.runtime import ContainerState, PodRuntime
from kubelet.pods.sync import NodeFacts, PodSyncer
from kubelet.probes.spec import ProbeType
from tests.unit.kubelet.pods.factories import FakeProbes, container, make_pod, runtime, sandbox
from tests.unit.kubelet.probe_servers import FakeRpcError as RpcFailure


class FakeRuntime:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.fail: dict[str, RpcFailure] = {}
        self.count = 0

    def _call(self, name: str, request: Any) -> None:
        self.calls.append((name, request))
        if name in self.fail:
            raise self.fail[name]

    def RunPodSandbox(self, request: Any, timeout: float) -> Any:
        self._call("RunPodSandbox", request)
        return api_pb2.RunPodSandboxResponse(pod_sandbox_id="sb-new")

    def PodSandboxStatus(self, request: Any, timeout: float) -> Any:
        self._call("PodSandboxStatus", request)
        return api_pb2.PodSandboxStatusResponse(
            status=api_pb2.PodSandboxStatus(
                id=request.pod_sandbox_id, network=api_pb2.PodSandboxNetworkStatus(ip="10.1.0.9")
            )
        )

    def CreateContainer(self, request: Any, timeout: float) -> Any:
        self._call("CreateContainer", request)
        self.count += 1
        return api_pb2.CreateContainerResponse(container_id=f"new-{self.count}")

    def StartContainer(self, request: Any, timeout: float) -> Any:
        self._call("StartContainer", request)

    def StopContainer(self, request: Any, timeout: float) -> Any:
        self._call("StopContainer", request)

    def StopPodSandbox(self, request: Any, timeout: float) -> Any:
        self._call("StopPodSandbox", request)

    def RemoveContainer(self, request: Any, timeout: float) -> Any:
        self._call("RemoveContainer", request)

    def RemovePodSandbox(self, request: Any, timeout: float) -> Any:
        self._call("RemovePodSandbox", request)

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


class FakeImages:
    def __init__(self) -> None:
        self.present: set[str] = set()
        self.pulls: list[Any] = []
        self.fail: RpcFailure | None = None

    def ImageStatus(self, request: Any, timeout: float) -> Any:
        if request.image.image in self.present:
            return api_pb2.ImageStatusResponse(image=api_pb2.Image(id="sha256:1"))
        return api_pb2.ImageStatusResponse()

    def PullImage(self, request: Any, timeout: float) -> Any:
        self.pulls.append(request)
        if self.fail is not None:
            raise self.fail
        return api_pb2.PullImageResponse(image_ref="sha256:1")


class FakeCri:
    timeout = 5.0

    def __init__(self) -> None:
        self.runtime = FakeRuntime()
        self.images = FakeImages()


class FakeVolumes:
    def __init__(self) -> None:
        self.fail: SyncError | None = None
        self.torn_down: list[str] = []
        self.setups = 0
        self.mounted: list[tuple[str, str, dict[str, bytes]]] = []  # container, pod IP, env

    def setup(self, pod: dict[str, Any]) -> dict[str, Path]:
        self.setups += 1
        if self.fail is not None:
            raise self.fail
        return {}

    def mounts(
        self, pod: Any, container: Any, volumes: Any, *, pod_ip: str, env: Any
    ) -> list[api_pb2.Mount]:
        self.mounted.append((container["name"], pod_ip, {kv.key: kv.value for kv in env}))
        return []

    def teardown(self, pod_uid: str) -> None:
        self.torn_down.append(pod_uid)


class FakeEvents:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def record(self, obj: Any, event_type: str, reason: str, message: str, **_: Any) -> None:
        self.seen.append((reason, message))

    def reasons(self) -> list[str]:
        return [reason for reason, _ in self.seen]


@dataclasses.dataclass
class Rig:
    syncer: PodSyncer
    cri: FakeCri
    volumes: FakeVolumes
    probes: FakeProbes
    events: FakeEvents
    env_error: list[SyncError]
    hook: list[str | None]
    hooks_run: list[tuple[str, float]]
    hostname_error: list[SyncError]
    clock: list[float]


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    config = KubeletConfig(
        kubeconfig="k",
        root_dir=tmp_path / "root",
        backoff_initial=10,
        backoff_max=40,
        cgroup_root="/test",
    )
    cri, volumes, probes, events = FakeCri(), FakeVolumes(), FakeProbes(), FakeEvents()
    env_error: list[SyncError] = []
    hook: list[str | None] = [None]
    hooks_run: list[tuple[str, float]] = []
    hostname_error: list[SyncError] = []
    clock = [1000.0]

    def env(pod: Any, container: Any, *, pod_ip: str, host_ip: str) -> list[api_pb2.KeyValue]:
        if env_error:
            raise env_error[0]
        return [api_pb2.KeyValue(key="POD_IP", value=pod_ip.encode())]

    def post_start(pod: Any, spec: Any, cid: str, ip: str, *, timeout: float) -> str | None:
        if not (spec.get("lifecycle") or {}).get("postStart"):
            return None
        hooks_run.append((cid, timeout))
        if hook[0] is not None:
            events.record(pod, "Warning", "FailedPostStartHook", hook[0])
        return hook[0]

    def pre_stop(pod: Any, spec: Any, cid: str, ip: str, *, grace_period: float) -> float:
        if (spec.get("lifecycle") or {}).get("preStop"):
            hooks_run.append((cid, grace_period))
            return max(grace_period - 3, 2.0)  # the hook took 3 s
        return max(grace_period, 2.0)

    def hostname(pod: Any) -> str:
        if hostname_error:
            raise hostname_error[0]
        return "web"

    deps = Collaborators(
        volumes=volumes,
        probes=probes,
        events=events,
        env=env,
        dns=lambda pod: api_pb2.DNSConfig(servers=["10.96.0.10"]),
        hostname=hostname,
        post_start=post_start,
        pre_stop=pre_stop,
    )
    backoff = Backoff(10, 40, clock=lambda: clock[0])
    puller = ImagePuller(
        cri,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        events,
        Backoff(10, 40, clock=lambda: clock[0]),
        serialize=True,
        timeout=5,
        clock=lambda: clock[0],
    )
    syncer = PodSyncer(
        config,
        cri,  # type: ignore[arg-type]
        deps,
        puller,
        backoff,
        PodCgroups(tmp_path / "cgroup"),
        lambda: NodeFacts("192.168.1.2", 1 << 30),
        clock=lambda: clock[0],
    )
    return Rig(
        syncer, cri, volumes, probes, events, env_error, hook, hooks_run, hostname_error, clock
    )


def test_first_sync_creates_the_sandbox_and_starts_containers(rig: Rig) -> None:
    pod = make_pod("a", "b")
    result = rig.syncer.sync_pod(pod, PodRuntime("uid-1"))
    assert result.waiting == {} and result.error is None and result.acted
    names = rig.cri.runtime.names()
    assert names[:2] == ["RunPodSandbox", "PodSandboxStatus"]
    assert names[2:] == ["CreateContainer", "StartContainer"] * 2
    run = rig.cri.runtime.calls[0][1]
    assert run.config.linux.cgroup_parent == "/test/kubepods/besteffort/poduid-1"
    assert run.config.log_directory.endswith("pod-logs/default_web_uid-1")
    create = rig.cri.runtime.calls[2][1]
    assert create.pod_sandbox_id == "sb-new"
    assert create.config.envs[0].value == b"10.1.0.9"  # the new sandbox's IP
    message_mount = create.config.mounts[-1]
    assert message_mount.container_path == "/dev/termination-log"
    assert Path(message_mount.host_path).is_file()
    assert rig.probes.added == ["new-1", "new-2"]
    assert rig.events.reasons() == ["Pulling", "Pulled", "Created", "Started"] * 2


def test_crash_loop_back_off(rig: Rig) -> None:
    pod = make_pod("a")
    crashed = runtime(container("a", ContainerState.EXITED, pod=pod, exit_code=1, finished=999))
    assert rig.syncer.sync_pod(pod, crashed).waiting == {}  # the first restart is at once
    again = runtime(
        container("a", ContainerState.EXITED, pod=pod, exit_code=1, restarts=1, finished=1000)
    )
    result = rig.syncer.sync_pod(pod, again)
    waiting = result.waiting["a"]
    assert waiting.reason == "CrashLoopBackOff"
    assert waiting.message == ("back-off 10s restarting failed container=a pod=web_default(uid-1)")
    assert result.retry_in == pytest.approx(10)
    assert "BackOff" in rig.events.reasons()
    rig.clock[0] += 10
    assert rig.syncer.sync_pod(pod, again).waiting == {}
    created = [r for n, r in rig.cri.runtime.calls if n == "CreateContainer"]
    assert created[-1].config.annotations["io.kubernetes.container.restartCount"] == "2"


def test_pull_errors_and_never_policy(rig: Rig) -> None:
    pod = make_pod("a")
    rig.cri.images.fail = RpcFailure(grpc.StatusCode.NOT_FOUND, "manifest unknown")
    view = runtime()
    assert rig.syncer.sync_pod(pod, view).waiting["a"].reason == "ErrImagePull"
    assert rig.syncer.sync_pod(pod, view).waiting["a"].reason == "ImagePullBackOff"
    assert len(rig.cri.images.pulls) == 1
    never = make_pod("a")
    never["spec"]["containers"][0]["imagePullPolicy"] = "Never"
    assert rig.syncer.sync_pod(never, view).waiting["a"].reason == "ErrImageNeverPull"
    rig.cri.images.present.add("busybox")
    present = make_pod("a")
    present["spec"]["containers"][0]["imagePullPolicy"] = "IfNotPresent"
    assert rig.syncer.sync_pod(present, view).waiting == {}
    assert len(rig.cri.images.pulls) == 1  # present: not pulled


def test_config_create_and_start_errors(rig: Rig) -> None:
    pod, view = make_pod("a"), runtime()
    rig.env_error.append(SyncError("CreateContainerConfigError", 'configmap "c" not found'))
    waiting = rig.syncer.sync_pod(pod, view).waiting["a"]
    assert (waiting.reason, waiting.message) == (
        "CreateContainerConfigError",
        'configmap "c" not found',
    )
    rig.env_error.clear()
    rig.cri.runtime.fail["CreateContainer"] = RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, "bad")
    assert rig.syncer.sync_pod(pod, view).waiting["a"].reason == "CreateContainerError"
    del rig.cri.runtime.fail["CreateContainer"]
    rig.cri.runtime.fail["StartContainer"] = RpcFailure(grpc.StatusCode.UNKNOWN, "exec failed")
    assert rig.syncer.sync_pod(pod, view).waiting["a"].reason == "RunContainerError"


def test_failed_post_start_hook_kills_the_container(rig: Rig) -> None:
    pod = make_pod("a")
    pod["spec"]["containers"][0]["lifecycle"] = {"postStart": {"exec": {"command": ["false"]}}}
    rig.hook[0] = 'Exec lifecycle hook ([false]) for Container "a" failed'
    waiting = rig.syncer.sync_pod(pod, runtime()).waiting["a"]
    assert waiting.reason == "PostStartHookError"
    assert "FailedPostStartHook" in rig.events.reasons()
    assert rig.cri.runtime.names()[-1] == "StopContainer"
    assert rig.probes.added == []


def test_volume_failure_stops_the_sync(rig: Rig) -> None:
    rig.volumes.fail = SyncError("FailedMount", 'MountVolume.SetUp failed for volume "v"')
    result = rig.syncer.sync_pod(make_pod("a"), PodRuntime("uid-1"))
    assert result.error is not None and result.error.reason == "FailedMount"
    assert rig.cri.runtime.calls == [] and "FailedMount" in rig.events.reasons()


def test_kill_runs_pre_stop_within_the_grace_period(rig: Rig) -> None:
    pod = make_pod("a", "b", terminationGracePeriodSeconds=7)
    pod["spec"]["containers"][0]["lifecycle"] = {"preStop": {"exec": {"command": ["sleep"]}}}
    view = runtime(
        container("a", ContainerState.RUNNING, pod=pod, id_="ca"),
        container("b", ContainerState.RUNNING, pod=pod, id_="cb"),
        container("b", ContainerState.EXITED, pod=pod, id_="old", created=1),
    )
    rig.syncer.kill_pod(pod, view, stop_sandboxes=True)
    assert rig.hooks_run == [("ca", 7.0)]
    stops = {r.container_id: r.timeout for n, r in rig.cri.runtime.calls if n == "StopContainer"}
    assert stops == {"ca": 4, "cb": 7}  # less what preStop took; the exited one is not stopped
    assert rig.cri.runtime.names()[-1] == "StopPodSandbox"
    assert sorted(rig.probes.removed) == ["ca", "cb"]
    killing = sorted(m for r, m in rig.events.seen if r == "Killing")
    assert killing == ["Stopping container a", "Stopping container b"]


def test_remove_pod_cleans_everything(rig: Rig, tmp_path: Path) -> None:
    pod = make_pod("a")
    rig.syncer.sync_pod(pod, PodRuntime("uid-1"))
    pod_dir = rig.syncer.pod_dir(pod)
    assert pod_dir.is_dir() and rig.syncer.log_dir(pod).is_dir()
    view = runtime(
        container("a", ContainerState.EXITED, pod=pod, id_="c1"),
        sandboxes=(sandbox("sb1", ready=False),),
    )
    before = len(rig.cri.runtime.calls)
    rig.syncer.remove_pod("uid-1", view)
    removal = rig.cri.runtime.calls[before:]
    assert [n for n, _ in removal] == ["RemoveContainer", "StopPodSandbox", "RemovePodSandbox"]
    assert removal[0][1].container_id == "c1" and removal[2][1].pod_sandbox_id == "sb1"
    assert rig.volumes.torn_down == ["uid-1"]
    assert not pod_dir.exists() and not rig.syncer.log_dir(pod).exists()


def test_sandbox_failure_is_a_pod_error(rig: Rig) -> None:
    rig.cri.runtime.fail["RunPodSandbox"] = RpcFailure(grpc.StatusCode.UNKNOWN, "no IPs left")
    result = rig.syncer.sync_pod(make_pod("a"), PodRuntime("uid-1"))
    assert result.error is not None and result.error.reason == "FailedCreatePodSandBox"
    assert "no IPs left" in result.error.message
    assert result.retry_in == 10


def _running(pod: dict[str, Any]) -> PodRuntime:
    return runtime(container("a", ContainerState.RUNNING, pod=pod, id_="ca", started=11))


def test_a_running_pod_gets_its_volumes_refreshed_on_every_sync(rig: Rig) -> None:
    pod = make_pod("a")
    for _ in range(2):
        result = rig.syncer.sync_pod(pod, _running(pod))
        assert result.error is None and result.waiting == {}
        assert not result.acted  # settled: the worker need not relist after it
    assert rig.volumes.setups == 2  # ConfigMap/Secret updates reach the running container
    assert rig.cri.runtime.calls == []  # and nothing was started or stopped for it
    rig.volumes.fail = SyncError("FailedMount", 'configmap "c" not found')
    result = rig.syncer.sync_pod(pod, _running(pod))
    assert result.error is not None and result.error.reason == "FailedMount"
    assert result.retry_in == 10 and rig.cri.runtime.calls == []


def test_mounts_get_the_sandbox_ip_and_the_resolved_environment(rig: Rig) -> None:
    rig.syncer.sync_pod(make_pod("a"), PodRuntime("uid-1"))
    assert rig.volumes.mounted == [("a", "10.1.0.9", {"POD_IP": b"10.1.0.9"})]


def test_a_bad_hostname_is_a_pod_error_with_an_event(rig: Rig) -> None:
    rig.hostname_error.append(
        SyncError("DNSConfigForming", 'pod Hostname "Not_A_Label" is not a valid DNS label')
    )
    result = rig.syncer.sync_pod(make_pod("a"), PodRuntime("uid-1"))
    assert result.error is not None and result.error.reason == "DNSConfigForming"
    assert ("DNSConfigForming", result.error.message) in rig.events.seen
    assert "RunPodSandbox" not in rig.cri.runtime.names()


def test_adopted_containers_are_probed_from_their_start(rig: Rig) -> None:
    pod = make_pod("a")
    rig.syncer.sync_pod(pod, _running(pod))
    assert rig.probes.started_at == {"ca": 11.0}  # initialDelaySeconds counts from then
    rig.syncer.sync_pod(make_pod("b"), PodRuntime("uid-1"))
    assert rig.probes.started_at["new-1"] is None  # just started: now


def test_a_liveness_kill_uses_the_probe_grace_period(rig: Rig) -> None:
    pod = make_pod("a", terminationGracePeriodSeconds=30)
    pod["spec"]["containers"][0]["livenessProbe"] = {
        "exec": {"command": ["true"]},
        "terminationGracePeriodSeconds": 5,
    }
    rig.probes.failed["ca"] = ProbeType.LIVENESS
    rig.syncer.sync_pod(pod, _running(pod))
    stops = [r for n, r in rig.cri.runtime.calls if n == "StopContainer"]
    assert [(r.container_id, r.timeout) for r in stops] == [("ca", 5)]
    assert "Killing" in rig.events.reasons()


def test_a_deletion_grace_period_wins_and_stop_gets_at_least_two_seconds(rig: Rig) -> None:
    pod = make_pod("a", terminationGracePeriodSeconds=30)
    pod["metadata"]["deletionGracePeriodSeconds"] = 1
    pod["spec"]["containers"][0]["lifecycle"] = {"preStop": {"exec": {"command": ["sleep"]}}}
    rig.syncer.kill_pod(pod, _running(pod), stop_sandboxes=False)
    assert rig.hooks_run == [("ca", 1.0)]  # preStop is bounded by the grace period
    stops = [r.timeout for n, r in rig.cri.runtime.calls if n == "StopContainer"]
    assert stops == [2]
