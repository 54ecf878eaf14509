"""PodStatus computation: container states, phases per restart policy, conditions and
their transition times, IPs."""

from __future__ import annotations

import dataclasses
from typing import Any

from kubelet.pods.runtime import ContainerInfo, ContainerState, PodRuntime
from kubelet.pods.status import (
    StatusInputs,
    Waiting,
    active_deadline_left,
    compute_pod_status,
    parse_rfc3339,
    rfc3339,
)
from tests.unit.kubelet.pods.factories import container, make_pod, runtime, sandbox

RUNNING, EXITED = ContainerState.RUNNING, ContainerState.EXITED
NOW = 1_700_000_000.0


def inputs(
    waiting: dict[str, Waiting] | None = None, *, ready: bool = True, message: str = ""
) -> StatusInputs:
    return StatusInputs(
        runtime_name="containerd",
        host_ip="192.168.1.10",
        now=NOW,
        waiting=waiting or {},
        ready=lambda _id: ready,
        started=lambda _id: True,
        termination_message=lambda _info: message,
    )


def conditions(status: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status["conditions"]}


def test_running_pod() -> None:
    pod = make_pod("a")
    status = compute_pod_status(pod, runtime(container("a", RUNNING, pod=pod, id_="c1")), inputs())
    assert status["phase"] == "Running"
    assert status["podIP"] == "10.0.0.5" and status["podIPs"] == [{"ip": "10.0.0.5"}]
    assert status["hostIP"] == "192.168.1.10" and status["hostIPs"] == [{"ip": "192.168.1.10"}]
    assert status["qosClass"] == "BestEffort"
    assert status["startTime"] == rfc3339(NOW)
    (c,) = status["containerStatuses"]
    assert c["state"] == {"running": {"startedAt": rfc3339(11)}}
    assert c["containerID"] == "containerd://c1" and c["imageID"] == "sha256:abc"
    assert c["ready"] and c["started"] and c["restartCount"] == 0 and c["lastState"] == {}
    assert conditions(status) == {
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "Ready": "True",
        "ContainersReady": "True",
        "PodScheduled": "True",
    }
    assert "initContainerStatuses" not in status


def test_unready_container_makes_the_pod_unready() -> None:
    pod = make_pod("a")
    status = compute_pod_status(pod, runtime(container("a", RUNNING, pod=pod)), inputs(ready=False))
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "ContainersNotReady"
    assert ready["message"] == "containers with unready status: [a]"


def test_new_pod_waits_for_container_creation() -> None:
    status = compute_pod_status(make_pod("a"), PodRuntime("uid-1"), inputs())
    assert status["phase"] == "Pending"
    assert status["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert "podIP" not in status
    assert conditions(status)["PodReadyToStartContainers"] == "False"


def test_crash_loop_back_off_keeps_the_last_exit() -> None:
    pod = make_pod("a")
    view = runtime(container("a", EXITED, pod=pod, exit_code=2, restarts=3, finished=12))
    waiting = {"a": Waiting("CrashLoopBackOff", "back-off 40s restarting failed container=a")}
    status = compute_pod_status(pod, view, inputs(waiting, message="boom"))
    (c,) = status["containerStatuses"]
    assert c["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    last = c["lastState"]["terminated"]
    assert last == {
        "exitCode": 2,
        "reason": "Error",
        "message": "boom",
        "startedAt": rfc3339(11),
        "finishedAt": rfc3339(12),
        "containerID": "containerd://a-3",
    }
    assert c["restartCount"] == 3
    assert status["phase"] == "Running"  # Always: it will run again


def test_last_state_of_a_restarted_container() -> None:
    pod = make_pod("a")
    view = runtime(
        container("a", EXITED, pod=pod, restarts=0, exit_code=137, reason="OOMKilled"),
        container("a", RUNNING, pod=pod, restarts=1, created=20, started=21),
    )
    (c,) = compute_pod_status(pod, view, inputs())["containerStatuses"]
    assert "running" in c["state"] and c["restartCount"] == 1
    assert c["lastState"]["terminated"]["reason"] == "OOMKilled"


def test_phases_once_everything_stopped() -> None:
    for policy, codes, phase in [
        ("Always", (0, 0), "Running"),
        ("OnFailure", (0, 0), "Succeeded"),
        ("OnFailure", (0, 1), "Running"),
        ("Never", (0, 0), "Succeeded"),
        ("Never", (0, 1), "Failed"),
    ]:
        pod = make_pod("a", "b", restart_policy=policy)
        view = runtime(
            container("a", EXITED, pod=pod, exit_code=codes[0]),
            container("b", EXITED, pod=pod, exit_code=codes[1]),
        )
        status = compute_pod_status(pod, view, inputs())
        assert status["phase"] == phase, (policy, codes)
        if phase in ("Succeeded", "Failed"):
            ready = next(c for c in status["conditions"] if c["type"] == "Ready")
            assert ready["reason"] == "PodCompleted"


def test_terminated_reason_defaults_and_termination_message() -> None:
    pod = make_pod("a", restart_policy="Never")
    view = runtime(container("a", EXITED, pod=pod, exit_code=0))
    (c,) = compute_pod_status(pod, view, inputs(message="done\n"))["containerStatuses"]
    assert c["state"]["terminated"]["reason"] == "Completed"
    assert c["state"]["terminated"]["message"] == "done\n"


def test_terminal_phase_never_changes_back() -> None:
    pod = make_pod("a", restart_policy="Never")
    pod["status"] = {"phase": "Failed"}
    status = compute_pod_status(pod, runtime(container("a", RUNNING, pod=pod)), inputs())
    assert status["phase"] == "Failed"


def test_init_containers() -> None:
    pod = make_pod("app", init=("i1", "i2"))
    view = runtime(
        container("i1", EXITED, pod=pod, init=True),
        container("i2", RUNNING, pod=pod, init=True, created=20),
    )
    status = compute_pod_status(pod, view, inputs())
    assert status["phase"] == "Pending"
    i1, i2 = status["initContainerStatuses"]
    assert i1["state"]["terminated"]["reason"] == "Completed" and "running" in i2["state"]
    assert status["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"
    initialized = next(c for c in status["conditions"] if c["type"] == "Initialized")
    assert initialized["status"] == "False"
    assert initialized["message"] == "containers with incomplete status: [i2]"


def test_failed_init_container_fails_a_never_pod() -> None:
    pod = make_pod("app", init=("i1",), restart_policy="Never")
    view = runtime(container("i1", EXITED, pod=pod, init=True, exit_code=1))
    assert compute_pod_status(pod, view, inputs())["phase"] == "Failed"
    always = make_pod("app", init=("i1",))
    view = runtime(container("i1", EXITED, pod=always, init=True, exit_code=1))
    assert compute_pod_status(always, view, inputs())["phase"] == "Pending"


def test_transition_times_are_kept_while_the_status_holds() -> None:
    pod = make_pod("a")
    view = runtime(container("a", RUNNING, pod=pod))
    first = compute_pod_status(pod, view, inputs(ready=False))
    later = dataclasses.replace(inputs(ready=False), now=NOW + 100)
    again = compute_pod_status({**pod, "status": first}, view, later)
    assert again == first  # nothing changed: equal, so no status write
    ready_now = dataclasses.replace(later, ready=lambda _id: True)
    changed = compute_pod_status({**pod, "status": first}, view, ready_now)
    times = {c["type"]: c["lastTransitionTime"] for c in changed["conditions"]}
    assert times["Ready"] == rfc3339(NOW + 100)
    assert times["Initialized"] == rfc3339(NOW)
    assert changed["startTime"] == first["startTime"]


def test_host_network_pod_reports_the_host_ip() -> None:
    pod = make_pod("a", hostNetwork=True)
    host_sandbox = dataclasses.replace(sandbox(ip=""), host_network=True)
    view = PodRuntime("uid-1", (host_sandbox,), (container("a", RUNNING, pod=pod),))
    status = compute_pod_status(pod, view, inputs())
    assert status["podIP"] == "192.168.1.10"


def test_container_info_is_a_value() -> None:
    info = container("a", RUNNING)
    assert isinstance(info, ContainerInfo) and info == container("a", RUNNING)


def test_conditions_of_others_are_kept() -> None:
    pod = make_pod("a")
    pod["status"] = {
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "True",
                "lastTransitionTime": "2020-01-01T00:00:00Z",
            },
            {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"},
            {"type": "Ready", "status": "False", "lastTransitionTime": "2020-01-01T00:00:00Z"},
        ]
    }
    status = compute_pod_status(pod, runtime(container("a", RUNNING, pod=pod)), inputs())
    by_type = {c["type"]: c for c in status["conditions"]}
    assert by_type["PodScheduled"]["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    assert by_type["DisruptionTarget"]["reason"] == "EvictionByEvictionAPI"
    assert by_type["Ready"]["status"] == "True"
    assert by_type["Ready"]["lastTransitionTime"] == rfc3339(NOW)
    assert len(status["conditions"]) == 6


def test_active_deadline() -> None:
    pod = make_pod("a", activeDeadlineSeconds=30)
    started = {"startTime": rfc3339(NOW)}
    assert active_deadline_left(pod, started, NOW + 10) == 20
    assert active_deadline_left(pod, started, NOW + 31) == -1
    assert active_deadline_left(make_pod("a"), started, NOW) is None
    assert active_deadline_left(pod, {}, NOW) is None
    assert parse_rfc3339("2024-01-02T03:04:05Z") == 1704164645


def test_terminal_reason_and_message_stay() -> None:
    pod = make_pod("a")
    pod["status"] = {"phase": "Failed", "reason": "DeadlineExceeded", "message": "too long"}
    status = compute_pod_status(pod, runtime(container("a", EXITED, pod=pod)), inputs())
    assert (status["phase"], status["reason"], status["message"]) == (
        "Failed",
        "DeadlineExceeded",
        "too long",
    )
