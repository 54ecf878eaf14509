"""The pods this node should run and their workers (the kubelet's pod manager, config
sources and housekeeping):

- API pods: a watch of /api/v1/pods?fieldSelector=spec.nodeName=<node> (a RELISTED
  replaces the whole set: pods missing from it are gone). Mirror pods in it are not
  run; they are the API's copy of static pods.
- Static pods: the manifest directory, re-read every file_check_frequency
  (static.py). Each gets a mirror pod in the API, recreated when deleted, replaced
  when stale; its status is written to the mirror pod.
- Workers: one per desired pod uid (worker.py), created on the first sight of the
  pod, updated on every change, told to terminate when the pod goes away; woken by
  the PLEG and the probes.
- Housekeeping (every HOUSEKEEPING_SECONDS, once both sources have been read): pods
  the runtime holds that nobody desires (deleted while the kubelet was down) get a
  terminating worker; mirror pods are reconciled; the directories (volumes) of pods
  nobody knows any more are removed; dead containers are collected.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kubeapi.client import ApiError, Client
from kubelet.config import KubeletConfig
from kubelet.pods import configs
from kubelet.pods.cgroups import PodCgroups
from kubelet.pods.gc import ContainerGC
from kubelet.pods.pleg import Pleg
from kubelet.pods.qos import BURSTABLE, milli_cpu_to_shares, pod_qos_class, requests_of
from kubelet.pods.static import is_mirror, mirror_hash, mirror_pod, read_static_pods
from kubelet.pods.status import TERMINAL_PHASES
from kubelet.pods.worker import PodWorker, WorkerContext

log = logging.getLogger(__name__)

HOUSEKEEPING_SECONDS = 2.0
GC_SECONDS = 30.0
# How long the uid of a terminated pod is remembered, so late watch events of it (its
# final status) do not start its termination again.
FINISHED_MEMORY_SECONDS = 60.0
# A pod known only from the runtime has no spec to read its grace period from.
ORPHAN_GRACE_SECONDS = 2

Key = tuple[str, str]  # (namespace, name)


def _key(pod: dict[str, Any]) -> Key:
    meta = configs.meta(pod)
    return (str(meta.get("namespace") or "default"), str(meta.get("name")))


def _uid(pod: dict[str, Any]) -> str:
    return str(configs.meta(pod).get("uid") or "")


class PodManager:
    def __init__(
        self,
        config: KubeletConfig,
        client: Client,
        context: WorkerContext,
        pleg: Pleg,
        gc: ContainerGC,
        cgroups: PodCgroups,
        *,
        node: Callable[[], dict[str, Any] | None],
        clock: Callable[[], float] = time.monotonic,
        new_worker: Callable[[WorkerContext, str, dict[str, Any]], PodWorker] = PodWorker,
        orphaned_volumes: Callable[[set[str]], list[str]] | None = None,
    ) -> None:
        self.config = config
        self.client = client
        self.context = context
        self.pleg = pleg
        self.gc = gc
        self.cgroups = cgroups
        self.node = node
        self.clock = clock
        self.new_worker = new_worker
        # Removes the pod directories of uids not in the set (VolumeManager.cleanup_orphans).
        self.orphaned_volumes = orphaned_volumes
        context.status_target = self.status_target
        context.on_exit = self._worker_done
        self._lock = threading.RLock()
        self._api: dict[str, dict[str, Any]] = {}  # uid -> pod (not mirrors)
        self._mirrors: dict[Key, dict[str, Any]] = {}
        self._static: dict[str, dict[str, Any]] = {}  # uid -> static pod
        self._workers: dict[str, PodWorker] = {}
        self._finished: dict[str, float] = {}  # uid -> when its worker finished it
        self._api_synced = threading.Event()
        self._static_synced = threading.Event()
        if config.pod_manifest_path is None:
            self._static_synced.set()
        self._watch: Any = None
        self._last_gc = 0.0
        self.gc_period = GC_SECONDS  # the kubelet collects dead containers every minute
        # Admission checks of new pods: None admits, (reason, message) rejects.
        self.admitters: list[Callable[[dict[str, Any]], tuple[str, str] | None]] = []

    # -- queries -------------------------------------------------------------------------

    def pods(self) -> list[dict[str, Any]]:
        """The pods the kubelet runs, each with the latest status it computed."""
        with self._lock:
            workers = list(self._workers.values())
        return [w.api_view() for w in workers]

    def worker(self, uid: str) -> PodWorker | None:
        with self._lock:
            return self._workers.get(uid)

    def synced(self) -> bool:
        return self._api_synced.is_set() and self._static_synced.is_set()

    def status_target(self, pod: dict[str, Any]) -> dict[str, Any] | None:
        """Where the status of `pod` goes: the API pod itself, or a static pod's
        mirror (None until the mirror exists)."""
        uid = _uid(pod)
        with self._lock:
            if uid in self._static:
                mirror = self._mirrors.get(_key(pod))
                if mirror is not None and mirror_hash(mirror) == uid:
                    return mirror
                return None
            return self._api.get(uid)

    def desired(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {**self._api, **self._static}

    # -- workers -------------------------------------------------------------------------

    def _dispatch(self, pod: dict[str, Any]) -> None:
        uid = _uid(pod)
        if not uid:
            return
        with self._lock:
            worker = self._workers.get(uid)
            if worker is not None:
                worker.update(pod)
                return
            if uid in self._finished and configs.meta(pod).get("deletionTimestamp"):
                return  # an event from before its deletion went through
            terminal = (pod.get("status") or {}).get("phase") in TERMINAL_PHASES
            deleting = bool(configs.meta(pod).get("deletionTimestamp"))
            known = uid in self.pleg.pods()
            if terminal and not deleting and not known:
                return  # finished before this kubelet saw it; nothing of it runs here
            active = sum(1 for w in self._workers.values() if w.active)
            rejected = not known and not deleting and active >= self.config.max_pods
            # The other admission checks (the eviction manager's node pressure):
            # (reason, message) of the first that refuses a new pod.
            refusal = None
            if not rejected and not known and not deleting:
                refusal = next(filter(None, (admit(pod) for admit in self.admitters)), None)
            if not rejected and refusal is None:
                worker = self.new_worker(self.context, uid, pod)
                self._workers[uid] = worker
        if rejected:
            self._reject(pod, "OutOfpods", "Pod was rejected: Node didn't have enough "
                         f"resource: pods, requested: 1, used: {active}, capacity: "
                         f"{self.config.max_pods}")  # fmt: skip
            return
        if refusal is not None:
            self._reject(pod, *refusal)
            return
        assert worker is not None
        log.debug("pod %s: new worker", configs.pod_full_name(pod))
        worker.start()

    def _reject(self, pod: dict[str, Any], reason: str, message: str) -> None:
        """Admission refused the pod (the kubelet's rejection): it fails at once,
        nothing of it runs."""
        log.info("pod %s rejected: %s", configs.pod_full_name(pod), message)
        self.context.events.record(pod, "Warning", reason, message)
        if target := self.status_target(pod):
            self.context.statuses.set(target, {**(pod.get("status") or {}),
                                                   "phase": "Failed", "reason": reason,
                                                   "message": message})  # fmt: skip

    def _remove(self, uid: str, pod: dict[str, Any] | None = None) -> None:
        with self._lock:
            worker = self._workers.get(uid)
            if worker is None and pod is not None and uid in self.pleg.pods():
                worker = self.new_worker(self.context, uid, pod)
                self._workers[uid] = worker
                worker.start()
        if worker is not None:
            worker.remove()

    def _worker_done(self, uid: str, worker: PodWorker) -> None:
        with self._lock:
            if self._workers.get(uid) is worker:
                del self._workers[uid]
            self._finished[uid] = self.clock()
            pod = self._api.get(uid) or self._static.get(uid)
        # Still desired (e.g. a delete that did not go through): start over.
        if pod is not None and not configs.meta(pod).get("deletionTimestamp"):
            self._dispatch(pod)

    def wake(self, uid: str) -> None:
        with self._lock:
            worker = self._workers.get(uid)
        if worker is not None:
            worker.wake()

    # -- API source ----------------------------------------------------------------------

    def handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "RELISTED":
            items = list(obj.get("items") or [])
            with self._lock:
                old = dict(self._api)
                self._api = {_uid(p): p for p in items if not is_mirror(p) and _uid(p)}
                self._mirrors = {_key(p): p for p in items if is_mirror(p)}
                current = dict(self._api)
            for uid, pod in old.items():
                if uid not in current:
                    self._remove(uid, pod)
            for pod in current.values():
                self._dispatch(pod)
            self._api_synced.set()
            self._sync_mirrors_now()
            return
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            return
        if is_mirror(obj):
            with self._lock:
                if kind == "DELETED":
                    if self._mirrors.get(_key(obj), {}).get("metadata", {}).get("uid") == _uid(obj):
                        del self._mirrors[_key(obj)]
                else:
                    self._mirrors[_key(obj)] = obj
            if kind == "DELETED" or configs.meta(obj).get("deletionTimestamp"):
                self._sync_mirrors_now()  # bring it back without waiting for housekeeping
            return
        uid = _uid(obj)
        if kind == "DELETED":
            with self._lock:
                self._api.pop(uid, None)
            self._remove(uid, obj)
            return
        with self._lock:
            self._api[uid] = obj
        self._dispatch(obj)

    def run_api_source(self, stop: threading.Event) -> None:
        watch = self.client.watch(
            "/api/v1/pods", fieldSelector=f"spec.nodeName={self.config.node_name}"
        )
        self._watch = watch

        def close_on_stop() -> None:
            stop.wait()
            watch.close()

        stopper = threading.Thread(target=close_on_stop, name="pod-watch-stop", daemon=True)
        stopper.start()
        try:
            for event in watch:
                if stop.is_set():
                    break
                try:
                    self.handle(event)
                except Exception:
                    log.exception("pod event %s", event.get("type"))
        except Exception:
            if not stop.is_set():
                log.exception("pod watch ended")

    # -- static pods ---------------------------------------------------------------------

    def read_static(self) -> None:
        directory = self.config.pod_manifest_path
        if directory is None:
            return
        found = read_static_pods(directory, self.config.node_name)
        with self._lock:
            old = dict(self._static)
            self._static = found
        for uid, pod in old.items():
            if uid not in found:
                log.info("static pod %s: manifest gone", configs.pod_full_name(pod))
                self._remove(uid, pod)
        for uid, pod in found.items():
            if uid not in old:
                log.info("static pod %s: from manifest", configs.pod_full_name(pod))
                self._dispatch(pod)
        self._static_synced.set()
        if set(found) != set(old):
            self._sync_mirrors_now()

    def run_static_source(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.read_static()
            except Exception:
                log.exception("static pods")
            stop.wait(self.config.file_check_frequency)

    def _sync_mirrors_now(self) -> None:
        if not self.synced():
            return  # the API's mirror pods are not known yet
        try:
            self.sync_mirror_pods()
        except (ApiError, OSError) as e:
            log.warning("mirror pods: %s", e)

    def sync_mirror_pods(self) -> None:
        with self._lock:
            static = dict(self._static)
            mirrors = dict(self._mirrors)
        wanted = {_key(p): p for p in static.values()}
        for key, mirror in mirrors.items():
            pod = wanted.get(key)
            stale = pod is None or mirror_hash(mirror) != _uid(pod)
            if stale or configs.meta(mirror).get("deletionTimestamp"):
                self._delete_mirror(mirror)
        node: dict[str, Any] | None = None
        for key, pod in wanted.items():
            if (
                key in mirrors
                and mirror_hash(mirrors[key]) == _uid(pod)
                and not configs.meta(mirrors[key]).get("deletionTimestamp")
            ):
                continue
            if key in mirrors:
                continue  # being deleted above; created on the next pass
            node = node or self.node()
            if node is None:
                return  # the mirror pods' owner is not registered yet
            try:
                created = self.client.create(f"/api/v1/namespaces/{key[0]}/pods",
                                             mirror_pod(pod, node))  # fmt: skip
            except ApiError as e:
                if e.code != 409:
                    log.warning("mirror pod %s/%s: %s", *key, e)
                continue
            log.info("mirror pod %s/%s created", *key)
            with self._lock:
                self._mirrors[key] = created
            worker = self.worker(_uid(pod))
            if worker is not None:
                worker.wake()  # its status can be written now

    def _delete_mirror(self, mirror: dict[str, Any]) -> None:
        namespace, name = _key(mirror)
        try:
            self.client.delete(f"/api/v1/namespaces/{namespace}/pods/{name}", {
                "kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0,
                "preconditions": {"uid": _uid(mirror)},
            })  # fmt: skip
        except ApiError as e:
            if e.code not in (404, 409):
                log.warning("mirror pod %s/%s: delete: %s", namespace, name, e)
                return
        with self._lock:
            if self._mirrors.get((namespace, name)) is mirror:
                del self._mirrors[(namespace, name)]

    # -- housekeeping --------------------------------------------------------------------

    def housekeeping(self) -> None:
        if not self.synced() or not self.pleg.relisted():
            return
        desired = self.desired()
        with self._lock:
            running = set(self._workers)
        for uid in self.pleg.pods() - set(desired) - running:
            log.info("pod %s: in the runtime, not desired: stopping it", uid)
            namespace, name = self.pleg.identity(uid)
            orphan = {"metadata": {"uid": uid, "name": name or uid,
                                   "namespace": namespace or "default"},
                      "spec": {"terminationGracePeriodSeconds": ORPHAN_GRACE_SECONDS}}  # fmt: skip
            self._remove(uid, orphan)
        self._remove_orphaned_volumes()
        self.sync_mirror_pods()
        self._update_qos(desired)
        now = self.clock()
        with self._lock:
            for uid in [u for u, t in self._finished.items() if now - t > FINISHED_MEMORY_SECONDS]:
                del self._finished[uid]
        if now - self._last_gc >= self.gc_period:
            self._last_gc = now
            self.gc.collect()

    def _remove_orphaned_volumes(self) -> None:
        """The pod directories of pods no source desires, no worker handles (a
        terminating worker removes its own) and the runtime has no containers of: left
        by a kubelet that stopped mid-removal. Under the lock, so no new pod gets a
        worker (and makes its directory) between taking the set and the removal."""
        if self.orphaned_volumes is None:
            return
        in_runtime = self.pleg.pods()  # before the lock: the PLEG calls back into wake()
        with self._lock:
            active = set(self._api) | set(self._static) | set(self._workers) | in_runtime
            removed = self.orphaned_volumes(active)
        for uid in removed:
            log.info("pod %s: orphaned pod directory removed", uid)

    def _update_qos(self, desired: dict[str, dict[str, Any]]) -> None:
        shares = 0
        for pod in desired.values():
            if pod_qos_class(pod) == BURSTABLE:
                for container in (pod.get("spec") or {}).get("containers") or []:
                    request = requests_of(container).get("cpu")
                    shares += milli_cpu_to_shares(int(request * 1000)) if request else 0
        self.cgroups.ensure_qos(self.config.cgroup_root, burstable_shares=shares)

    def run_housekeeping(self, stop: threading.Event) -> None:
        while not stop.wait(HOUSEKEEPING_SECONDS):
            try:
                self.housekeeping()
            except Exception:
                log.exception("housekeeping")

    def stop_workers(self, timeout: float = 10.0) -> None:
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.stop()
        deadline = time.monotonic() + timeout
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
