"""The PodStatus the kubelet reports, computed from the desired pod, the runtime's view
of it and what the pod worker knows on top (why a container waits: back-off, pull
errors, config errors), without I/O (the kubelet's generateAPIPodStatus):

- containerStatuses / initContainerStatuses: one per spec container, from its newest
  instance (state) and the one before (lastState); a container in back-off waits with
  the last exit as lastState; a container with no instance yet waits with
  ContainerCreating (PodInitializing for app containers behind init containers).
- phase (getPhase): Failed once an init container failed under restartPolicy Never;
  Pending while initializing or any container waits; Running while one runs; once
  all stopped: Running under Always, Succeeded if all exited 0, Failed under Never,
  else Running (OnFailure restarts). A terminal phase never changes back.
- conditions PodReadyToStartContainers, Initialized, ContainersReady, Ready (readiness
  gates are not evaluated), PodScheduled; a condition keeps its lastTransitionTime
  while its status stays the same.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kubelet.pods.actions import ALWAYS, NEVER, init_done, restart_policy
from kubelet.pods.qos import pod_qos_class
from kubelet.pods.runtime import ContainerInfo, ContainerState, PodRuntime

PENDING = "Pending"
RUNNING = "Running"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
TERMINAL_PHASES = (SUCCEEDED, FAILED)


def rfc3339(ns_or_seconds: float, *, ns: bool = False) -> str:
    seconds = ns_or_seconds / 1e9 if ns else ns_or_seconds
    moment = datetime.datetime.fromtimestamp(int(seconds), datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Waiting:
    """Why the worker did not start a container this sync."""

    reason: str  # CrashLoopBackOff, ErrImagePull, ImagePullBackOff, CreateContainerConfigError...
    message: str = ""


@dataclass(frozen=True, slots=True)
class StatusInputs:
    """What the status needs besides the pod and its runtime view."""

    runtime_name: str
    host_ip: str
    now: float  # wall clock seconds
    waiting: Mapping[str, Waiting]  # by container name
    ready: Callable[[str], bool]  # container id -> readiness
    started: Callable[[str], bool]  # container id -> startup probe passed (or none)
    termination_message: Callable[[ContainerInfo], str]  # message file / log tail


DEADLINE_EXCEEDED = "DeadlineExceeded"
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"


def parse_rfc3339(text: str) -> float:
    """Seconds since the epoch of an API timestamp (UTC, `Z`, fractions ignored)."""
    moment = datetime.datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")
    return moment.replace(tzinfo=datetime.UTC).timestamp()


def active_deadline_left(pod: dict[str, Any], status: dict[str, Any], now: float) -> float | None:
    """Seconds left of spec.activeDeadlineSeconds since the pod's startTime (None
    without a deadline)."""
    deadline = (pod.get("spec") or {}).get("activeDeadlineSeconds")
    started = status.get("startTime")
    if deadline is None or not started:
        return None
    try:
        return float(deadline) - (now - parse_rfc3339(str(started)))
    except ValueError:
        return None


def is_terminal(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in TERMINAL_PHASES


def _terminated(info: ContainerInfo, inputs: StatusInputs, runtime_name: str) -> dict[str, Any]:
    reason = info.reason or ("Completed" if info.exit_code == 0 else "Error")
    state: dict[str, Any] = {"exitCode": info.exit_code, "reason": reason}
    message = inputs.termination_message(info) or info.message
    if message:
        state["message"] = message
    if info.started_at:
        state["startedAt"] = rfc3339(info.started_at, ns=True)
    if info.finished_at:
        state["finishedAt"] = rfc3339(info.finished_at, ns=True)
    state["containerID"] = f"{runtime_name}://{info.id}"
    return state


def _state_of(info: ContainerInfo, inputs: StatusInputs) -> dict[str, Any]:
    if info.state is ContainerState.RUNNING:
        return {"running": {"startedAt": rfc3339(info.started_at or info.created_at, ns=True)}}
    if info.state is ContainerState.EXITED:
        return {"terminated": _terminated(info, inputs, inputs.runtime_name)}
    if info.state is ContainerState.CREATED:
        return {"waiting": {"reason": "ContainerCreating"}}
    return {"waiting": {"reason": "ContainerStatusUnknown",
                        "message": "The container could not be located when the pod was "
                                   "terminated"}}  # fmt: skip


def container_status(
    container: dict[str, Any],
    instances: list[ContainerInfo],
    inputs: StatusInputs,
    *,
    default_waiting: str,
) -> dict[str, Any]:
    name = container["name"]
    status: dict[str, Any] = {
        "name": name, "image": container.get("image", ""), "imageID": "",
        "ready": False, "restartCount": 0, "started": False,
        "state": {}, "lastState": {},
    }  # fmt: skip
    waiting = inputs.waiting.get(name)
    latest = instances[0] if instances else None
    if latest is None:
        reason = waiting or Waiting(default_waiting)
        status["state"] = {"waiting": _waiting_dict(reason)}
        return status
    status["restartCount"] = latest.restart_count
    status["imageID"] = latest.image_ref
    status["containerID"] = f"{inputs.runtime_name}://{latest.id}"
    if latest.state is ContainerState.RUNNING:
        status["state"] = _state_of(latest, inputs)
        status["started"] = inputs.started(latest.id)
        status["ready"] = status["started"] and inputs.ready(latest.id)
        if len(instances) > 1:
            status["lastState"] = _state_of(instances[1], inputs)
        return status
    if waiting is not None and latest.state is ContainerState.EXITED:
        # Waiting to restart: the exit that made it wait is the last state.
        status["state"] = {"waiting": _waiting_dict(waiting)}
        status["lastState"] = _state_of(latest, inputs)
        return status
    status["state"] = _state_of(latest, inputs)
    if len(instances) > 1:
        status["lastState"] = _state_of(instances[1], inputs)
    return status


def _waiting_dict(waiting: Waiting) -> dict[str, Any]:
    found: dict[str, Any] = {"reason": waiting.reason}
    if waiting.message:
        found["message"] = waiting.message
    return found


def pod_phase(pod: dict[str, Any], init_statuses: list[dict[str, Any]],
              statuses: list[dict[str, Any]]) -> str:  # fmt: skip
    """getPhase of the kubelet (see the module docstring)."""
    policy = restart_policy(pod)
    pending_init = failed_init = 0
    for status in init_statuses:
        state = status["state"]
        if "terminated" in state:
            if state["terminated"].get("exitCode"):
                failed_init += 1
        elif "waiting" in state and (status["lastState"] or {}).get("terminated", {}).get(
            "exitCode"
        ):
            failed_init += 1
        else:
            pending_init += 1
    if failed_init and policy == NEVER:
        return FAILED
    if pending_init or failed_init:
        return PENDING
    running = waiting = stopped = succeeded = 0
    for status in statuses:
        state = status["state"]
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            if state["terminated"].get("exitCode") == 0:
                succeeded += 1
        elif (status["lastState"] or {}).get("terminated") is not None:
            stopped += 1
        else:
            waiting += 1
    if waiting:
        return PENDING
    if running:
        return RUNNING
    if stopped:
        if policy == ALWAYS:
            return RUNNING
        if stopped == succeeded:
            return SUCCEEDED
        if policy == NEVER:
            return FAILED
        return RUNNING
    return PENDING


def _condition(kind: str, true: bool, reason: str = "", message: str = "") -> dict[str, Any]:
    condition: dict[str, Any] = {"type": kind, "status": "True" if true else "False"}
    if not true and reason:
        condition["reason"] = reason
    if not true and message:
        condition["message"] = message
    return condition


def _not_ready(statuses: list[dict[str, Any]], what: str) -> str:
    names = " ".join(s["name"] for s in statuses)
    return f"containers with {what} status: [{names}]"


def stamp_conditions(
    conditions: list[dict[str, Any]], previous: list[dict[str, Any]], now: float
) -> list[dict[str, Any]]:
    """Conditions with lastProbeTime null and lastTransitionTime kept from `previous`
    while the status is the same, else `now`."""
    before = {c.get("type"): c for c in previous}
    stamped = []
    for condition in conditions:
        old = before.get(condition["type"])
        if (
            old is not None
            and old.get("status") == condition["status"]
            and old.get("lastTransitionTime")
        ):
            transition = old["lastTransitionTime"]
        else:
            transition = rfc3339(now)
        stamped.append({**condition, "lastProbeTime": None, "lastTransitionTime": transition})
    return stamped


def compute_pod_status(
    pod: dict[str, Any], runtime: PodRuntime, inputs: StatusInputs
) -> dict[str, Any]:
    """The pod's status now (see the module docstring)."""
    spec = pod.get("spec") or {}
    previous = pod.get("status") or {}
    init_containers = list(spec.get("initContainers") or [])
    containers = list(spec.get("containers") or [])
    initialized = init_done(pod, runtime) or any(not c.init for c in runtime.containers)
    init_statuses = [
        container_status(
            c, runtime.by_name(c["name"], init=True), inputs, default_waiting="PodInitializing"
        )
        for c in init_containers
    ]
    app_waiting = "ContainerCreating" if initialized else "PodInitializing"
    statuses = [
        container_status(
            c, runtime.by_name(c["name"], init=False), inputs, default_waiting=app_waiting
        )
        for c in containers
    ]
    phase = pod_phase(pod, init_statuses, statuses)
    terminal_before = previous.get("phase") in TERMINAL_PHASES
    if terminal_before:
        phase = str(previous["phase"])
    sandbox = runtime.latest_sandbox
    sandbox_ready = (
        sandbox is not None and sandbox.ready and (sandbox.host_network or bool(sandbox.ip))
    )
    incomplete = [s for s in init_statuses
                  if s["state"].get("terminated", {}).get("exitCode", 1) != 0]  # fmt: skip
    unready = [s for s in statuses if not s["ready"]]
    all_ready = not unready and phase == RUNNING
    conditions = [_condition("PodReadyToStartContainers", sandbox_ready)]
    conditions.append(_condition("Initialized", initialized or not incomplete,
                                 "ContainersNotInitialized",
                                 _not_ready(incomplete, "incomplete")))  # fmt: skip
    if phase in TERMINAL_PHASES:
        conditions.append(_condition("Ready", False, "PodCompleted"))
        conditions.append(_condition("ContainersReady", False, "PodCompleted"))
    else:
        message = _not_ready(unready, "unready")
        conditions.append(_condition("Ready", all_ready, "ContainersNotReady", message))
        conditions.append(_condition("ContainersReady", all_ready, "ContainersNotReady", message))
    owned = {c["type"] for c in conditions}
    # Conditions others own (PodScheduled, DisruptionTarget, readiness gates) are kept.
    others = [c for c in previous.get("conditions") or [] if c.get("type") not in owned]
    if not any(c.get("type") == "PodScheduled" for c in others):
        others += stamp_conditions([_condition("PodScheduled", True)], [], inputs.now)
    stamped = stamp_conditions(conditions, list(previous.get("conditions") or []), inputs.now)
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": stamped + others,
        "hostIP": inputs.host_ip,
        "hostIPs": [{"ip": inputs.host_ip}] if inputs.host_ip else [],
        "startTime": previous.get("startTime") or rfc3339(inputs.now),
        "qosClass": pod_qos_class(pod),
        "containerStatuses": statuses,
    }  # fmt: skip
    if init_statuses:
        status["initContainerStatuses"] = init_statuses
    if terminal_before:
        # Why the pod ended (DeadlineExceeded, OutOfpods) stays with the phase.
        for key in ("reason", "message"):
            if previous.get(key):
                status[key] = previous[key]
    pod_ip = ""
    pod_ips: list[str] = []
    if sandbox is not None and sandbox.ready:
        if sandbox.host_network:
            pod_ips = [inputs.host_ip] if inputs.host_ip else []
        elif sandbox.ip:
            pod_ips = [sandbox.ip, *sandbox.additional_ips]
    elif previous.get("podIP") and phase in TERMINAL_PHASES:
        pod_ips = [p.get("ip", "") for p in previous.get("podIPs") or []] or [previous["podIP"]]
    if pod_ips:
        pod_ip = pod_ips[0]
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": ip} for ip in pod_ips]
    return status
