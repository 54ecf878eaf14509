"""The kubelet: one object wiring the node's components together.

    kubelet = Kubelet(config)
    kubelet.run(stop)          # until stop is set; containers keep running after it

`run` order: wait for the CRI runtime (its name goes into containerIDs), start the node
HTTP API (its port goes into the Node), register the Node, then run side by side: the
node agent (lease, status), the PLEG relist, the pod sources (API watch, static
manifests), housekeeping, the eviction manager (kubelet/eviction.py: the node's
pressure conditions, admission and evictions) and image GC (kubelet/image_gc.py). The
pod workers start as pods appear. On stop: the
workers and loops end; containers, sandboxes and mirror pods stay, as the kubelet
leaves them, and the next kubelet adopts them.

The other components' errors become the pod sync's SyncError here (reason +
message), so the pod sync in kubelet/pods depends only on its own seams.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

from cri.api import api_pb2
from kubeapi.client import Client
from kubelet import dns as dns_config
from kubelet import env as container_env
from kubelet import lifecycle
from kubelet.config import KubeletConfig
from kubelet.cri_client import CriClient
from kubelet.events import WARNING, EventRecorder
from kubelet.eviction import EvictionManager, parse_thresholds
from kubelet.image_gc import ImageGC
from kubelet.node import NodeAgent
from kubelet.pods.backoff import Backoff
from kubelet.pods.cgroups import PodCgroups
from kubelet.pods.dependencies import Collaborators, SyncError
from kubelet.pods.gc import ContainerGC
from kubelet.pods.images import ImagePuller
from kubelet.pods.manager import PodManager
from kubelet.pods.pleg import Pleg
from kubelet.pods.runtime import RuntimeInfo
from kubelet.pods.status_manager import StatusManager
from kubelet.pods.sync import NodeFacts, PodSyncer
from kubelet.pods.worker import WorkerContext
from kubelet.probes import ProbeManager
from kubelet.server import NodeServer
from kubelet.volumes import VolumeError, VolumeManager

log = logging.getLogger(__name__)

CRI_WAIT_SECONDS = 5.0
MEMINFO = Path("/proc/meminfo")


def memory_capacity(meminfo: Path = MEMINFO) -> int:
    """MemTotal in bytes (0 when unreadable: OOM scores then use the Burstable max)."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


class _Volumes:
    """The volume manager with its errors as SyncError."""

    def __init__(self, manager: VolumeManager) -> None:
        self.manager = manager

    def setup(self, pod: dict[str, Any]) -> dict[str, Path]:
        try:
            return self.manager.setup(pod)
        except VolumeError as e:
            raise SyncError(e.reason, e.message) from e

    def mounts(
        self,
        pod: dict[str, Any],
        container: dict[str, Any],
        volumes: dict[str, Path],
        *,
        pod_ip: str,
        env: Sequence[api_pb2.KeyValue],
    ) -> list[api_pb2.Mount]:
        try:
            return self.manager.mounts(pod, container, volumes, pod_ip=pod_ip, env=env)
        except VolumeError as e:
            raise SyncError(e.reason, e.message) from e

    def teardown(self, pod_uid: str) -> None:
        self.manager.teardown(pod_uid)


class Kubelet:
    def __init__(self, config: KubeletConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.client = Client.from_kubeconfig(config.kubeconfig)
        self.cri = CriClient(config.container_runtime_endpoint,
                             timeout=config.runtime_request_timeout)  # fmt: skip
        self.events = EventRecorder(
            self.client, config.node_name, qps=config.event_qps, burst=config.event_burst
        )
        self.volumes = VolumeManager(self.client, config)
        self.probes = ProbeManager(self.cri, self.events, on_change=self._wake)
        self.server = NodeServer(config, self.cri, self.pods)
        self.pleg = Pleg(self.cri, period=config.pleg_relist_period, on_change=self._wake,
                         timeout=config.runtime_request_timeout)  # fmt: skip
        self.image_gc = ImageGC(
            self.cri, high_threshold=config.image_gc_high_threshold,
            low_threshold=config.image_gc_low_threshold,
            minimum_age=config.image_minimum_gc_age,
            sandbox_images=[config.pod_infra_container_image], period=config.image_gc_period,
            timeout=config.runtime_request_timeout, events=self.events, node=self._node_object,
        )  # fmt: skip
        self.eviction = EvictionManager(
            parse_thresholds(config.eviction_hard, config.eviction_soft,
                             config.eviction_soft_grace_period, config.eviction_minimum_reclaim),
            stats=self.server.stats.collect, pods=self.pods, evict=self._evict,
            reclaim_disk=[self._collect_dead_containers, self.image_gc.delete_unused],
            events=self.events, transition_period=config.eviction_pressure_transition_period,
            monitoring_interval=config.eviction_monitoring_interval,
            max_pod_grace_period=config.eviction_max_pod_grace_period,
        )  # fmt: skip
        self.node_agent = NodeAgent(
            self.client, config, self.cri, self.events,
            kubelet_port=lambda: self.server.port, pleg_healthy=self.pleg.healthy,
            pressure=self.eviction,
        )  # fmt: skip
        self.runtime_info = RuntimeInfo()
        self._host_ip = config.node_ip
        self._memory = memory_capacity()
        backoff = Backoff(config.backoff_initial, config.backoff_max, clock=clock)
        deps = Collaborators(
            volumes=_Volumes(self.volumes),
            probes=self.probes,
            events=self.events,
            env=self._env,
            dns=self._dns,
            hostname=self._hostname,
            post_start=functools.partial(lifecycle.run_post_start, self.cri, self.events),
            pre_stop=functools.partial(lifecycle.run_pre_stop, self.cri, self.events),
        )
        puller = ImagePuller(
            self.cri, self.client, self.events,
            Backoff(config.backoff_initial, config.backoff_max, clock=clock),
            serialize=config.serialize_image_pulls, timeout=config.image_pull_progress_deadline,
            clock=clock,
        )  # fmt: skip
        cgroups = PodCgroups()
        self.syncer = PodSyncer(config, self.cri, deps, puller, backoff, cgroups,
                                self._node_facts, clock=clock)  # fmt: skip
        self.statuses = StatusManager(self.client)
        context = WorkerContext(
            config=config, cri=self.cri, client=self.client, syncer=self.syncer,
            statuses=self.statuses, probes=self.probes, events=self.events,
            runtime_info=self.runtime_info,
            node=self._node_facts, status_target=lambda pod: None,
            on_exit=lambda uid, worker: None, forget_events=self.events.forget, clock=clock,
        )  # fmt: skip
        self.manager: PodManager | None = None
        gc = ContainerGC(self.cri, keep=config.max_dead_containers_per_container,
                         live=lambda uid: self.manager is not None
                         and uid in self.manager.desired(),
                         timeout=config.runtime_request_timeout)  # fmt: skip
        self.manager = PodManager(config, self.client, context, self.pleg, gc, cgroups,
                                  node=self._node_object,
                                  orphaned_volumes=self.volumes.cleanup_orphans)  # fmt: skip
        self.manager.admitters.append(self.eviction.admit)

    # -- what other components ask ---------------------------------------------------------

    def pods(self) -> list[dict[str, Any]]:
        """The pods the kubelet runs, each with the latest status it computed."""
        return self.manager.pods() if self.manager is not None else []

    def _wake(self, uid: str) -> None:
        if self.manager is not None:
            self.manager.wake(uid)

    def _node_facts(self) -> NodeFacts:
        return NodeFacts(host_ip=self._host_ip, memory_capacity=self._memory)

    def _evict(self, pod: dict[str, Any], grace: int, message: str,
               condition: dict[str, Any]) -> bool:  # fmt: skip
        """The eviction manager's kill: the pod's worker makes it Failed/Evicted."""
        uid = str((pod.get("metadata") or {}).get("uid", ""))
        worker = self.manager.worker(uid) if self.manager is not None else None
        if worker is None:
            return False
        worker.fail("Evicted", message, grace=grace, condition=condition)
        return True

    def _collect_dead_containers(self) -> None:
        if self.manager is not None:
            self.manager.gc.collect()

    def _node_object(self) -> dict[str, Any] | None:
        node = self.node_agent.node()
        return node if node.get("metadata", {}).get("uid") else None

    # -- adapters of the other components ------------------------------------------------

    def _env(
        self, pod: dict[str, Any], container: dict[str, Any], *, pod_ip: str, host_ip: str
    ) -> list[api_pb2.KeyValue]:
        def warn(reason: str, message: str) -> None:
            self.events.record(pod, WARNING, reason, message)

        try:
            return container_env.container_env(
                self.client, pod, container, pod_ip=pod_ip, host_ip=host_ip,
                on_warning=warn, node_config=self.config,
            )  # fmt: skip
        except container_env.ConfigError as e:
            raise SyncError("CreateContainerConfigError", e.message) from e

    def _dns(self, pod: dict[str, Any]) -> api_pb2.DNSConfig:
        def warn(reason: str, message: str) -> None:
            self.events.record(pod, WARNING, reason, message)

        try:
            return dns_config.sandbox_dns(pod, self.config, on_warning=warn)
        except dns_config.DNSError as e:
            raise SyncError("DNSConfigForming", str(e)) from e

    def _hostname(self, pod: dict[str, Any]) -> str:
        try:
            return dns_config.hostname(pod, cluster_domain=self.config.cluster_domain)
        except dns_config.DNSError as e:
            raise SyncError("DNSConfigForming", str(e)) from e

    # -- running -------------------------------------------------------------------------

    def _wait_for_runtime(self, stop: threading.Event) -> bool:
        while not stop.is_set():
            try:
                version = self.cri.wait_ready(CRI_WAIT_SECONDS)
            except grpc.FutureTimeoutError:
                log.warning("container runtime %s: not answering yet",
                            self.config.container_runtime_endpoint)  # fmt: skip
                continue
            except grpc.RpcError as e:
                log.warning("container runtime %s: %s", self.config.container_runtime_endpoint,
                            e.details() if hasattr(e, "details") else e)  # fmt: skip
                stop.wait(1.0)
                continue
            self.runtime_info.name = version.runtime_name or "kubeling"
            self.runtime_info.version = version.runtime_version
            log.info("container runtime %s %s (CRI %s)", version.runtime_name,
                     version.runtime_version, version.runtime_api_version)  # fmt: skip
            return True
        return False

    def run(self, stop: threading.Event) -> None:
        """Run until `stop` is set (see the module docstring)."""
        manager = self.manager
        assert manager is not None
        if not self._wait_for_runtime(stop):
            return
        self.server.start()
        self.events.start()
        threads: list[threading.Thread] = []
        try:
            try:
                self.node_agent.register(stop)
            except RuntimeError:
                return
            if not self._host_ip:
                addresses = self.node_agent.node().get("status", {}).get("addresses") or []
                internal = [a for a in addresses if a.get("type") == "InternalIP"]
                self._host_ip = str(internal[0]["address"]) if internal else "127.0.0.1"
            loops: list[tuple[str, Callable[[threading.Event], None]]] = [
                ("node-agent", self.node_agent.run),
                ("pleg", self.pleg.run),
                ("pod-watch", manager.run_api_source),
                ("static-pods", manager.run_static_source),
                ("housekeeping", manager.run_housekeeping),
                ("eviction", self.eviction.run),
                ("image-gc", self.image_gc.run),
            ]
            for name, loop in loops:
                thread = threading.Thread(target=loop, args=(stop,), name=name, daemon=True)
                thread.start()
                threads.append(thread)
            log.info("kubelet %s running", self.config.node_name)
            stop.wait()
        finally:
            log.info("kubelet %s stopping", self.config.node_name)
            for thread in threads:
                thread.join(10)
            manager.stop_workers()
            self.probes.stop()
            self.server.stop()
            self.events.stop()
            self.cri.close()
            self.client.close()
