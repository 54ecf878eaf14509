"""Carrying out a pod's actions through the CRI (the kubelet's SyncPod, KillPod and the
cleanup of a removed pod). Decisions come from actions.py; this module only acts,
records events, and says why a container waits.

`sync_pod` steps, in order:
1. kill the pod's containers and sandbox when the actions say so (a new sandbox, or
   nothing left to run), then the single containers to kill (spec changed, liveness);
2. the pod directory, the pod cgroup and the volumes: on every sync of a pod that
   runs, even with nothing to start, so ConfigMap, Secret and downwardAPI changes
   reach running containers within a sync period (the worker resyncs every
   sync_frequency);
3. a new sandbox (RunPodSandbox) when needed, and its IP;
4. the next init container, or the app containers to start: each after its restart
   back-off, image pull, environment and mounts; CreateContainer, StartContainer,
   postStart hook (a failure kills the container), probes.

`kill_pod` runs preStop hooks and stops every running container in parallel, each
with its grace period (kubelet.lifecycle.termination_grace_period: the deletion's,
a failed probe's own, or the pod's), less the time the hook took and at least 2 s
(kubelet.lifecycle.run_pre_stop), then stops the sandboxes. `remove_pod` removes
what is left once the pod is gone.
"""

from __future__ import annotations

import logging
import math
import posixpath
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from cri.api import api_pb2
from kubelet.config import KubeletConfig
from kubelet.cri_client import CriClient
from kubelet.lifecycle import MINIMUM_GRACE_PERIOD, termination_grace_period
from kubelet.pods import configs
from kubelet.pods.actions import PodActions, compute_pod_actions
from kubelet.pods.backoff import Backoff, go_duration
from kubelet.pods.cgroups import PodCgroups
from kubelet.pods.dependencies import Collaborators, SyncError
from kubelet.pods.images import ImagePuller
from kubelet.pods.qos import (
    BESTEFFORT,
    BURSTABLE,
    GUARANTEED,
    pod_cgroup_limits,
    pod_cgroup_parent,
    qos_cgroup,
)
from kubelet.pods.runtime import ContainerInfo, ContainerState, PodRuntime
from kubelet.pods.status import Waiting

log = logging.getLogger(__name__)

PULL_FAILED_RESYNC_SECONDS = 0.2
WARNING = "Warning"
NORMAL = "Normal"


def field_path(container: dict[str, Any] | ContainerInfo, *, init: bool = False) -> str:
    name = container.name if isinstance(container, ContainerInfo) else container["name"]
    is_init = container.init if isinstance(container, ContainerInfo) else init
    return f"spec.{'initContainers' if is_init else 'containers'}{{{name}}}"


def _details(error: grpc.RpcError) -> str:
    details = error.details() if hasattr(error, "details") else ""
    return str(details or error)


@dataclass
class SyncResult:
    """What a sync leaves for the status and the next wake-up."""

    waiting: dict[str, Waiting] = field(default_factory=dict)
    retry_in: float | None = None  # seconds until a back-off ends, or a failed step is retried
    error: SyncError | None = None  # a pod-level failure (sandbox, volumes, DNS)
    # Whether the sync may have changed the runtime's state (so the status is computed
    # from a new relist); a resync of a settled pod changes nothing.
    acted: bool = True


@dataclass(frozen=True, slots=True)
class NodeFacts:
    host_ip: str
    memory_capacity: int


class PodSyncer:
    def __init__(
        self,
        config: KubeletConfig,
        cri: CriClient,
        deps: Collaborators,
        puller: ImagePuller,
        backoff: Backoff,
        cgroups: PodCgroups,
        node: Callable[[], NodeFacts],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.cri = cri
        self.deps = deps
        self.puller = puller
        self.backoff = backoff
        self.cgroups = cgroups
        self.node = node
        self.clock = clock
        self.timeout = config.runtime_request_timeout

    # -- paths ---------------------------------------------------------------------------

    def pod_dir(self, pod: dict[str, Any]) -> Path:
        return self.config.pod_dir(str(configs.meta(pod).get("uid")))

    def logs_root(self) -> Path:
        """Pod log directories, <logs root>/<namespace>_<name>_<uid>, as /var/log/pods."""
        return self.config.pod_logs_root

    def log_dir(self, pod: dict[str, Any]) -> Path:
        return self.logs_root() / configs.pod_log_dir_name(pod)

    # -- sync ----------------------------------------------------------------------------

    def liveness_failures(self, runtime: PodRuntime) -> dict[str, str]:
        failures = {}
        for container in runtime.running():
            message = self.deps.probes.liveness_failed(container.id)
            if message is not None:
                failures[container.id] = message
        return failures

    def sync_pod(self, pod: dict[str, Any], runtime: PodRuntime) -> SyncResult:
        actions = compute_pod_actions(
            pod, runtime, liveness_failures=self.liveness_failures(runtime)
        )
        log.debug("pod %s actions %s", configs.pod_full_name(pod), actions)
        self._probe_running(pod, runtime)
        result = SyncResult()
        if actions.create_sandbox and runtime.sandboxes:
            message = "Pod sandbox changed, it will be killed and re-created."
            self.deps.events.record(pod, NORMAL, "SandboxChanged", message)
        if actions.kill_pod:
            self.kill_pod(pod, runtime, stop_sandboxes=True, message="")
            if not actions.create_sandbox:
                return result
        for kill in actions.containers_to_kill:
            spec = _spec_of(pod, kill.container)
            self.deps.events.record(pod, NORMAL, "Killing", kill.message,
                                    field_path=field_path(kill.container))  # fmt: skip
            self.kill_container(pod, kill.container, spec)
        try:
            volumes = self._prepare(pod)
            if (
                not actions.create_sandbox
                and not actions.init_to_start
                and not actions.containers_to_start
            ):
                result.acted = bool(actions.containers_to_kill)
                return result  # the volumes are fresh; nothing to start
            sandbox_id, sandbox_config, pod_ip = self._sandbox(pod, runtime, actions)
        except SyncError as e:
            result.error = e
            result.retry_in = self.config.backoff_initial
            return result
        if not sandbox_id:
            return result
        context = _StartContext(pod, sandbox_id, sandbox_config, pod_ip, volumes, runtime)
        names = [actions.init_to_start] if actions.init_to_start else []
        names += list(actions.containers_to_start)
        for name in names:
            init = name == actions.init_to_start
            container = _find(pod, name, init=init)
            if container is None:
                continue
            waiting = self.start_container(context, container, init=init)
            if waiting is not None:
                result.waiting[name] = waiting
                remaining = self._retry_in(pod, container, waiting, runtime.latest(name, init=init))
                result.retry_in = min(result.retry_in or remaining, remaining)
        return result

    def _probe_running(self, pod: dict[str, Any], runtime: PodRuntime) -> None:
        """Probe every running app container (a no-op for those already probed): after
        a kubelet restart, the containers it adopted."""
        sandbox = runtime.latest_sandbox
        if sandbox is None:
            return
        pod_ip = self.node().host_ip if sandbox.host_network else sandbox.ip
        for container in runtime.running():
            spec = _spec_of(pod, container)
            if container.init or spec is None:
                continue
            try:
                self.deps.probes.add(pod, spec, container.id, pod_ip,
                                     started_at=container.started_at / 1e9 or None)  # fmt: skip
            except ValueError as e:
                log.warning("probes of %s in %s: %s", container.name,
                            configs.pod_full_name(pod), e)  # fmt: skip

    def _retry_in(
        self,
        pod: dict[str, Any],
        container: dict[str, Any],
        waiting: Waiting,
        latest: ContainerInfo | None,
    ) -> float:
        """When to sync again for a container that waits: as its back-off ends; soon
        after a failed pull, so the status moves on to ImagePullBackOff as the kubelet's
        does; after the initial back-off for other errors."""
        if waiting.reason == "ErrImagePull":
            return PULL_FAILED_RESYNC_SECONDS
        if waiting.reason == "ImagePullBackOff":
            return self.puller.retry_in(pod, container) or PULL_FAILED_RESYNC_SECONDS
        if waiting.reason == "CrashLoopBackOff" and latest is not None:
            since = (latest.finished_at or latest.created_at) / 1e9
            remaining = self.backoff.remaining(self.backoff_key(pod, container["name"]), since)
            if remaining:
                return remaining
        return self.config.backoff_initial

    def _prepare(self, pod: dict[str, Any]) -> dict[str, Path]:
        directory = self.pod_dir(pod)
        directory.mkdir(parents=True, exist_ok=True)
        self.cgroups.ensure(pod_cgroup_parent(pod, self.config.cgroup_root),
                            pod_cgroup_limits(pod))  # fmt: skip
        try:
            return self.deps.volumes.setup(pod)
        except SyncError as e:
            self.deps.events.record(pod, WARNING, e.reason, e.message)
            raise

    def _sandbox(
        self, pod: dict[str, Any], runtime: PodRuntime, actions: PodActions
    ) -> tuple[str, api_pb2.PodSandboxConfig, str]:
        """The sandbox to start containers in (made now if the actions say so), its
        config and the pod IP."""
        try:
            dns = self.deps.dns(pod)
            hostname = self.deps.hostname(pod)
        except SyncError as e:
            self.deps.events.record(pod, WARNING, e.reason, e.message)
            raise
        log_dir = self.log_dir(pod)
        log_dir.mkdir(parents=True, exist_ok=True)
        inputs = configs.SandboxInputs(
            attempt=actions.attempt,
            hostname=hostname,
            log_directory=str(log_dir),
            cgroup_parent=pod_cgroup_parent(pod, self.config.cgroup_root),
            dns=dns,
        )
        config = configs.sandbox_config(pod, inputs)
        sandbox_id = actions.sandbox_id
        if actions.create_sandbox:
            try:
                sandbox_id = self.cri.runtime.RunPodSandbox(
                    api_pb2.RunPodSandboxRequest(config=config), timeout=self.timeout
                ).pod_sandbox_id
            except grpc.RpcError as e:
                message = f"Failed to create pod sandbox: {_details(e)}"
                self.deps.events.record(pod, WARNING, "FailedCreatePodSandBox", message)
                raise SyncError("FailedCreatePodSandBox", message) from e
            log.info("pod %s: sandbox %s", configs.pod_full_name(pod), sandbox_id[:12])
        if not sandbox_id:
            return "", config, ""
        try:
            status = self.cri.runtime.PodSandboxStatus(
                api_pb2.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id), timeout=self.timeout
            ).status
        except grpc.RpcError as e:
            raise SyncError("FailedCreatePodSandBox", f"sandbox status: {_details(e)}") from e
        pod_ip = (
            self.node().host_ip if pod.get("spec", {}).get("hostNetwork") else status.network.ip
        )
        return sandbox_id, config, pod_ip

    def backoff_key(self, pod: dict[str, Any], container_name: str) -> str:
        return f"{configs.meta(pod).get('uid')}/{container_name}"

    def start_container(
        self, context: _StartContext, container: dict[str, Any], *, init: bool
    ) -> Waiting | None:
        """Start one container; the reason it waits instead, if it does."""
        pod = context.pod
        name = str(container["name"])
        where = field_path(container, init=init)
        latest = context.runtime.latest(name, init=init)
        restart_count = latest.restart_count + 1 if latest is not None else 0
        if latest is not None and latest.state is ContainerState.EXITED:
            key = self.backoff_key(pod, name)
            finished = (latest.finished_at or latest.created_at) / 1e9
            if self.backoff.in_backoff(key, finished):
                m = configs.meta(pod)
                delay = go_duration(self.backoff.get(key))
                pod_ref = f"{m.get('name')}_{m.get('namespace') or 'default'}({m.get('uid')})"
                self.deps.events.record(pod, WARNING, "BackOff",
                                        f"Back-off restarting failed container {name} in "
                                        f"pod {pod_ref}", field_path=where)  # fmt: skip
                return Waiting("CrashLoopBackOff",
                               f"back-off {delay} restarting failed container={name} "
                               f"pod={pod_ref}")  # fmt: skip
            self.backoff.next(key, finished)
        try:
            image = self.puller.ensure(pod, container, where)
        except SyncError as e:
            return Waiting(e.reason, e.message)
        violation = configs.run_as_non_root_violation(pod, container)
        if violation:
            return self._failed(pod, where, "CreateContainerConfigError", violation)
        node = self.node()
        try:
            envs = self.deps.env(pod, container, pod_ip=context.pod_ip, host_ip=node.host_ip)
            # The sandbox's IP: the pod's status has none yet on a first start, and the
            # managed /etc/hosts needs it.
            mounts = self.deps.volumes.mounts(pod, container, context.volumes,
                                              pod_ip=context.pod_ip, env=envs)  # fmt: skip
        except SyncError as e:
            return self._failed(pod, where, "CreateContainerConfigError", e.message)
        message_file = self._termination_message_file(pod, name, context.runtime)
        config = configs.container_config(pod, container, configs.ContainerInputs(
            restart_count=restart_count, init=init, image=image, envs=envs, mounts=mounts,
            termination_message_host_path=str(message_file),
            memory_capacity=node.memory_capacity,
        ))  # fmt: skip
        request = api_pb2.CreateContainerRequest(
            pod_sandbox_id=context.sandbox_id, config=config, sandbox_config=context.sandbox_config
        )
        try:
            container_id = self.cri.runtime.CreateContainer(
                request, timeout=self.timeout
            ).container_id
        except grpc.RpcError as e:
            return self._failed(pod, where, "CreateContainerError", _details(e))
        self.deps.events.record(pod, NORMAL, "Created", f"Created container {name}",
                                field_path=where)  # fmt: skip
        try:
            self.cri.runtime.StartContainer(
                api_pb2.StartContainerRequest(container_id=container_id), timeout=self.timeout
            )
        except grpc.RpcError as e:
            return self._failed(pod, where, "RunContainerError", _details(e))
        self.deps.events.record(pod, NORMAL, "Started", f"Started container {name}",
                                field_path=where)  # fmt: skip
        error = self.deps.post_start(pod, container, container_id, context.pod_ip,
                                     timeout=float(self.timeout))  # fmt: skip
        if error is not None:  # the FailedPostStartHook event is recorded
            self._stop(container_id, int(termination_grace_period(pod, container)))
            return Waiting("PostStartHookError", error)
        if not init:
            try:
                self.deps.probes.add(pod, container, container_id, context.pod_ip)
            except ValueError as e:
                log.warning("probes of %s in %s: %s", name, configs.pod_full_name(pod), e)
        log.info("pod %s: started %s (%s, restart %d)", configs.pod_full_name(pod), name,
                 container_id[:12], restart_count)  # fmt: skip
        return None

    def _failed(self, pod: dict[str, Any], where: str, reason: str, message: str) -> Waiting:
        """A container that could not be made or started: a Failed event, as the
        kubelet records, and the reason it waits."""
        self.deps.events.record(pod, WARNING, "Failed", f"Error: {message}", field_path=where)
        return Waiting(reason, message)

    def _termination_message_file(
        self, pod: dict[str, Any], name: str, runtime: PodRuntime
    ) -> Path:
        """A fresh, empty, world-writable file per container instance (any user the
        container runs as may write its message). Files of instances the runtime no
        longer has (collected) are removed, so a crash loop does not pile them up."""
        directory = configs.termination_message_dir(self.pod_dir(pod), name)
        directory.mkdir(parents=True, exist_ok=True)
        in_use = {c.termination_message_path for c in runtime.containers}
        for old in directory.iterdir():
            if str(old) not in in_use:
                old.unlink(missing_ok=True)
        path = directory / uuid.uuid4().hex[:8]
        path.touch(mode=0o666)
        path.chmod(0o666)
        return path

    # -- kill ----------------------------------------------------------------------------

    def _stop(self, container_id: str, timeout: int) -> None:
        try:
            self.cri.runtime.StopContainer(
                api_pb2.StopContainerRequest(container_id=container_id, timeout=timeout),
                timeout=self.timeout + timeout,
            )
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                raise

    def kill_container(
        self,
        pod: dict[str, Any],
        container: ContainerInfo,
        spec: dict[str, Any] | None,
        grace: int | None = None,
    ) -> None:
        """preStop (when the container runs and has one), then StopContainer with what
        is left of the grace period: `grace`, else the container's
        (termination_grace_period, with the probe that failed, if one did)."""
        if grace is None:
            failed = self.deps.probes.failed_probe(container.id)
            grace = int(termination_grace_period(pod, spec or {}, failed_probe=failed))
        stop_timeout = max(grace, int(MINIMUM_GRACE_PERIOD))
        if container.state is ContainerState.RUNNING and spec is not None:
            pod_ip = str((pod.get("status") or {}).get("podIP") or "")
            left = self.deps.pre_stop(pod, spec, container.id, pod_ip, grace_period=float(grace))
            stop_timeout = math.ceil(left)
        self.deps.probes.remove(container.id)
        if container.state in (ContainerState.RUNNING, ContainerState.CREATED,
                               ContainerState.UNKNOWN):  # fmt: skip
            self._stop(container.id, stop_timeout)

    def kill_pod(
        self,
        pod: dict[str, Any],
        runtime: PodRuntime,
        *,
        stop_sandboxes: bool,
        message: str = "Stopping container {name}",
        grace: int | None = None,
    ) -> None:
        """Stop the pod's running containers in parallel (each with its own grace
        period unless `grace` is given), then (if asked) its ready sandboxes. Raises
        grpc.RpcError when a stop fails (the worker retries)."""
        live = [c for c in runtime.containers if c.state is not ContainerState.EXITED]
        errors: list[BaseException] = []

        def kill(container: ContainerInfo) -> None:
            try:
                if message and container.state is ContainerState.RUNNING:
                    self.deps.events.record(pod, NORMAL, "Killing",
                                            message.format(name=container.name),
                                            field_path=field_path(container))  # fmt: skip
                self.kill_container(pod, container, _spec_of(pod, container), grace)
            except BaseException as e:  # re-raised in the worker's thread below
                errors.append(e)

        threads = [threading.Thread(target=kill, args=(c,), daemon=True) for c in live[1:]]
        for thread in threads:
            thread.start()
        if live:
            kill(live[0])
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        if stop_sandboxes:
            for sandbox in runtime.sandboxes:
                if sandbox.ready:
                    self.cri.runtime.StopPodSandbox(
                        api_pb2.StopPodSandboxRequest(pod_sandbox_id=sandbox.id),
                        timeout=self.timeout,
                    )

    def remove_pod(self, uid: str, runtime: PodRuntime) -> None:
        """Remove what is left of a pod that is gone: containers, sandboxes, volumes,
        the pod cgroup, its directory and logs."""
        for container in runtime.containers:
            self.cri.runtime.RemoveContainer(
                api_pb2.RemoveContainerRequest(container_id=container.id), timeout=self.timeout
            )
        for sandbox in runtime.sandboxes:
            self.cri.runtime.StopPodSandbox(
                api_pb2.StopPodSandboxRequest(pod_sandbox_id=sandbox.id), timeout=self.timeout
            )
            self.cri.runtime.RemovePodSandbox(
                api_pb2.RemovePodSandboxRequest(pod_sandbox_id=sandbox.id), timeout=self.timeout
            )
        self.deps.probes.remove_pod(uid)
        self.deps.volumes.teardown(uid)
        # The pod's QoS class may be unknown (a pod found only in the runtime): try each.
        for qos in (GUARANTEED, BURSTABLE, BESTEFFORT):
            self.cgroups.remove(
                posixpath.join(qos_cgroup(self.config.cgroup_root, qos), f"pod{uid}")
            )
        for log_dir in self.logs_root().glob(f"*_{uid}"):
            shutil.rmtree(log_dir, ignore_errors=True)
        shutil.rmtree(self.config.pod_dir(uid), ignore_errors=True)
        self.backoff.forget_prefix(f"{uid}/")
        self.puller.backoff.forget_prefix(f"{uid}/")


@dataclass(frozen=True)
class _StartContext:
    pod: dict[str, Any]
    sandbox_id: str
    sandbox_config: api_pb2.PodSandboxConfig
    pod_ip: str
    volumes: dict[str, Path]
    runtime: PodRuntime


def _find(pod: dict[str, Any], name: str, *, init: bool) -> dict[str, Any] | None:
    key = "initContainers" if init else "containers"
    for container in (pod.get("spec") or {}).get(key) or []:
        if container.get("name") == name:
            return dict(container)
    return None


def _spec_of(pod: dict[str, Any], container: ContainerInfo) -> dict[str, Any] | None:
    return _find(pod, container.name, init=container.init)
