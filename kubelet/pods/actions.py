"""What one sync of a pod must do, decided from the desired pod and the runtime's view
of it, without I/O (the kubelet's computePodActions):

1. A new sandbox when there is none, the newest is not ready, more than one is
   ready, its network mode changed, or it has no IP on the pod network. A new
   sandbox means killing everything of the old one and starting over: the first init
   container, or every app container (OnFailure skips those that succeeded).
   A pod with restartPolicy Never whose sandbox died after its containers ran gets
   no new sandbox: it is over.
2. Init containers run one at a time, in order, each to success; a failed one is
   restarted (after its back-off, applied by the caller) unless the policy is Never,
   which fails the pod.
3. Then every app container: started if it has no running instance and the policy
   says so (Always; OnFailure after a failure; Never only if it never ran); killed
   and started again when its spec hash changed or its liveness probe failed.
4. When nothing is left running or to start, the pod's sandbox is killed too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubelet.pods.runtime import ContainerInfo, ContainerState, PodRuntime

ALWAYS = "Always"
ON_FAILURE = "OnFailure"
NEVER = "Never"


def container_hash(container: dict[str, Any]) -> str:
    """A stable hash of a container's spec: a change of it (image, command, env, ...)
    restarts the container. Kept in the container's annotations."""
    canonical = json.dumps(container, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def restart_policy(pod: dict[str, Any]) -> str:
    return str((pod.get("spec") or {}).get("restartPolicy") or ALWAYS)


def host_network(pod: dict[str, Any]) -> bool:
    return bool((pod.get("spec") or {}).get("hostNetwork"))


@dataclass(frozen=True, slots=True)
class ContainerToKill:
    container: ContainerInfo
    message: str  # the Killing event's message
    reason: str  # why: "SpecChanged", "LivenessFailed", "Unknown"


@dataclass(frozen=True, slots=True)
class PodActions:
    kill_pod: bool = False
    create_sandbox: bool = False
    sandbox_id: str = ""  # the current (ready) sandbox, when one is kept
    attempt: int = 0  # the new sandbox's attempt
    init_to_start: str = ""  # the init container to (re)start now
    containers_to_start: tuple[str, ...] = ()
    containers_to_kill: tuple[ContainerToKill, ...] = ()
    init_failed: bool = False  # an init container failed and the policy is Never


def sandbox_changed(pod: dict[str, Any], runtime: PodRuntime) -> tuple[bool, int, str]:
    """(need a new sandbox, its attempt, the current sandbox id)."""
    latest = runtime.latest_sandbox
    if latest is None:
        return True, 0, ""
    ready = [s for s in runtime.sandboxes if s.ready]
    if len(ready) > 1 or not latest.ready:
        return True, latest.attempt + 1, latest.id
    if latest.host_network != host_network(pod):
        return True, latest.attempt + 1, latest.id
    if not latest.host_network and not latest.ip:
        return True, latest.attempt + 1, latest.id
    return False, latest.attempt, latest.id


def should_restart(policy: str, latest: ContainerInfo | None) -> bool:
    """Whether an app container that is not running should be started."""
    if latest is None:
        return True
    if latest.state in (ContainerState.CREATED, ContainerState.UNKNOWN):
        return True  # never ran to an exit the policy could judge
    if policy == NEVER:
        return False
    if policy == ON_FAILURE:
        return latest.exit_code != 0
    return True


def _init_containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return list((pod.get("spec") or {}).get("initContainers") or [])


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return list((pod.get("spec") or {}).get("containers") or [])


def init_done(pod: dict[str, Any], runtime: PodRuntime) -> bool:
    """Every init container succeeded (its newest instance exited 0)."""
    for container in _init_containers(pod):
        latest = runtime.latest(container["name"], init=True)
        if latest is None or latest.state is not ContainerState.EXITED or latest.exit_code:
            return False
    return True


def compute_pod_actions(
    pod: dict[str, Any], runtime: PodRuntime, *, liveness_failures: Mapping[str, str]
) -> PodActions:
    """The actions of one sync (see the module docstring). `liveness_failures` maps a
    container id to its liveness (or startup) probe's failure message."""
    policy = restart_policy(pod)
    create, attempt, sandbox_id = sandbox_changed(pod, runtime)
    if create:
        if policy == NEVER and attempt != 0 and runtime.containers:
            return PodActions(kill_pod=True)
        if _init_containers(pod):
            first = _init_containers(pod)[0]["name"]
            return PodActions(kill_pod=True, create_sandbox=True, attempt=attempt,
                              init_to_start=first)  # fmt: skip
        fresh_start = []
        for container in _containers(pod):
            latest = runtime.latest(container["name"], init=False)
            succeeded = (
                latest is not None
                and latest.state is ContainerState.EXITED
                and latest.exit_code == 0
            )
            if policy == ON_FAILURE and succeeded:
                continue
            fresh_start.append(container["name"])
        if not fresh_start:
            return PodActions(kill_pod=True)  # everything succeeded: nothing to run
        return PodActions(kill_pod=True, create_sandbox=True, attempt=attempt,
                          containers_to_start=tuple(fresh_start))  # fmt: skip

    to_kill: list[ContainerToKill] = []
    if not init_done(pod, runtime):
        for container in _init_containers(pod):
            name = container["name"]
            latest = runtime.latest(name, init=True)
            if latest is None:
                return PodActions(sandbox_id=sandbox_id, attempt=attempt, init_to_start=name)
            if latest.state is ContainerState.RUNNING:
                return PodActions(sandbox_id=sandbox_id, attempt=attempt)  # wait for it
            if latest.state is ContainerState.EXITED and latest.exit_code == 0:
                continue
            if latest.state is ContainerState.EXITED and policy == NEVER:
                return PodActions(kill_pod=True, sandbox_id=sandbox_id, init_failed=True)
            if latest.state in (ContainerState.CREATED, ContainerState.UNKNOWN):
                to_kill.append(ContainerToKill(latest, f"Container {name} is in an unknown "
                                               "state, will be restarted", "Unknown"))  # fmt: skip
            return PodActions(sandbox_id=sandbox_id, attempt=attempt, init_to_start=name,
                              containers_to_kill=tuple(to_kill))  # fmt: skip

    to_start: list[str] = []
    keep = 0
    for container in _containers(pod):
        name = container["name"]
        latest = runtime.latest(name, init=False)
        if latest is None or latest.state is not ContainerState.RUNNING:
            if latest is not None and latest.state in (
                ContainerState.CREATED, ContainerState.UNKNOWN,
            ):  # fmt: skip
                to_kill.append(ContainerToKill(latest, f"Container {name} is in an unknown "
                                               "state, will be restarted", "Unknown"))  # fmt: skip
            if should_restart(policy, latest):
                to_start.append(name)
            continue
        if latest.hash and latest.hash != container_hash(container):
            message = f"Container {name} definition changed, will be restarted"
            to_kill.append(ContainerToKill(latest, message, "SpecChanged"))
            to_start.append(name)
            continue
        failure = liveness_failures.get(latest.id)
        if failure is not None:
            message = f"Container {name} failed liveness probe, will be restarted"
            to_kill.append(ContainerToKill(latest, message, "LivenessFailed"))
            if policy != NEVER:
                to_start.append(name)
            continue
        keep += 1
    return PodActions(
        kill_pod=keep == 0 and not to_start,
        sandbox_id=sandbox_id,
        attempt=attempt,
        containers_to_start=tuple(to_start),
        containers_to_kill=tuple(to_kill),
    )
