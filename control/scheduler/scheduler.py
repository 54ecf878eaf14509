"""The scheduler's thin acting layer: watches in, Bindings and status out.

Threads (all owned by `Scheduler.run`, stopped and joined when it returns):
- a pod watch (all pods not finished) and a node watch feed the cache (cache.py)
  and the queue (queue.py): unbound pods whose schedulerName is ours are queued;
- the leader elector (leader.py), with --leader-elect: scheduling waits for `leading`;
- the loop (the calling thread): pop a pod, decide (decide.py, under the cache lock),
  assume it on the chosen node, and hand the Binding to a small pool of binder
  threads so the next decision does not wait on the network; an unschedulable pod
  gets its PodScheduled=False condition and a FailedScheduling Event from the pool.

A pod is assumed until the watch shows it bound (or the Binding fails, then it is
forgotten and retried after a backoff). A pod already placed in the cache is not
scheduled again, so a stale watch event cannot bind it twice; the API refuses a
second Binding anyway (409), which is how two leaders could never double-bind.
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from control.leader import LeaderElector, micro_time
from control.scheduler.cache import Cache
from control.scheduler.decide import Bind, schedule
from control.scheduler.queue import SchedulingQueue
from kubeapi.client import ApiError, Client, Watch

log = logging.getLogger(__name__)

Object = dict[str, Any]

DEFAULT_SCHEDULER = "default-scheduler"
BINDERS = 4
BIND_BACKOFF = 1.0


def _pod_path(pod: Object, sub: str = "") -> str:
    meta = pod["metadata"]
    path = f"/api/v1/namespaces/{meta.get('namespace', 'default')}/pods/{meta['name']}"
    return f"{path}/{sub}" if sub else path


def scheduled_condition(pod: Object) -> Object | None:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled":
            return dict(condition)
    return None


class Scheduler:
    def __init__(
        self, client: Client, *, name: str = DEFAULT_SCHEDULER, leader_elect: bool = False,
        identity: str = "", retry_interval: float = 15.0, lease_duration: float = 15.0,
        renew_deadline: float = 10.0, retry_period: float = 2.0,
        rng: random.Random | None = None, wall: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.client = client
        self.name = name
        self.identity = identity or f"{socket.gethostname()}_{uuid.uuid4()}"
        self.cache = Cache()
        self.queue = SchedulingQueue(retry_interval=retry_interval)
        self.rng = rng or random.Random()
        self.wall = wall
        self.elector = (
            LeaderElector(
                client,
                identity=self.identity,
                lease_duration=lease_duration,
                renew_deadline=renew_deadline,
                retry_period=retry_period,
            )
            if leader_elect
            else None
        )
        self.synced = threading.Event()
        self._pods_synced = threading.Event()
        self._nodes_synced = threading.Event()
        self.bound = 0  # Bindings this scheduler made (for tests and the bench)
        self._bound_lock = threading.Lock()

    # -- watches -------------------------------------------------------------------------

    def _ours(self, pod: Object) -> bool:
        spec = pod.get("spec") or {}
        return (
            not spec.get("nodeName")
            and (spec.get("schedulerName") or DEFAULT_SCHEDULER) == self.name
            and not (pod.get("metadata") or {}).get("deletionTimestamp")
            and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        )

    def on_pod_event(self, event: Object) -> None:
        kind, pod = event.get("type"), event.get("object") or {}
        if kind == "RELISTED":
            items = pod.get("items") or []
            self.cache.replace_pods(items)
            self.queue.replace([p for p in items if self._ours(p)])
            self.queue.move_all_to_active()
            self._pods_synced.set()
        elif kind in ("ADDED", "MODIFIED"):
            self.cache.set_pod(pod)
            if self._ours(pod):
                self.queue.add(pod)
            else:
                self.queue.remove(pod)
                if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                    self.queue.move_all_to_active()
        elif kind == "DELETED":
            self.cache.delete_pod(pod)
            self.queue.remove(pod)
            if (pod.get("spec") or {}).get("nodeName"):
                self.queue.move_all_to_active()

    def on_node_event(self, event: Object) -> None:
        kind, node = event.get("type"), event.get("object") or {}
        if kind == "RELISTED":
            self.cache.replace_nodes(node.get("items") or [])
            self._nodes_synced.set()
        elif kind in ("ADDED", "MODIFIED"):
            self.cache.set_node(node)
        elif kind == "DELETED":
            self.cache.delete_node(node)
            return
        self.queue.move_all_to_active()

    def _follow(self, watch: Watch, handle: Callable[[Object], None]) -> None:
        for event in watch:
            try:
                handle(event)
            except Exception:  # one bad object must not stop the watch
                log.exception("watch event %s", event.get("type"))

    # -- acting --------------------------------------------------------------------------

    def bind(self, pod: Object, node: str) -> None:
        meta = pod["metadata"]
        try:
            self.client.create(_pod_path(pod, "binding"), {
                "apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": meta["name"], "namespace": meta.get("namespace"),
                             "uid": meta.get("uid")},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node},
            })  # fmt: skip
        except (ApiError, OSError) as e:
            self.cache.forget(pod)
            if isinstance(e, ApiError) and e.code in (404, 409):
                log.info("binding %s: %s", meta["name"], e.status.get("message", e.reason))
                return
            log.warning("binding %s to %s: %s", meta["name"], node, e)
            self.queue.park(pod, after=BIND_BACKOFF)
            return
        with self._bound_lock:
            self.bound += 1
        log.debug("bound %s/%s to %s", meta.get("namespace"), meta["name"], node)

    def report_unschedulable(self, pod: Object, message: str) -> None:
        """PodScheduled=False (when it changed) and a FailedScheduling Event."""
        meta = pod["metadata"]
        condition = {
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": message, "lastProbeTime": None,
            "lastTransitionTime": micro_time(self.wall())[:19] + "Z",
        }  # fmt: skip
        current = scheduled_condition(pod)
        try:
            if current is None or any(
                current.get(k) != condition[k] for k in ("status", "reason", "message")
            ):
                others = [
                    c for c in (pod.get("status") or {}).get("conditions") or []
                    if c.get("type") != "PodScheduled"
                ]  # fmt: skip
                self.client.patch(_pod_path(pod, "status"),
                                  {"status": {"conditions": [*others, condition]}})  # fmt: skip
            now = micro_time(self.wall())[:19] + "Z"
            self.client.create(f"/api/v1/namespaces/{meta.get('namespace', 'default')}/events", {
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}",
                             "namespace": meta.get("namespace", "default")},
                "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"],
                                   "namespace": meta.get("namespace"), "uid": meta.get("uid"),
                                   "resourceVersion": meta.get("resourceVersion")},
                "reason": "FailedScheduling", "message": message, "type": "Warning",
                "source": {"component": self.name}, "reportingComponent": self.name,
                "reportingInstance": self.identity, "action": "Scheduling",
                "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            })  # fmt: skip
        except (ApiError, OSError) as e:
            log.warning("reporting %s unschedulable: %s", meta["name"], e)

    def schedule_one(self, pod: Object, binders: ThreadPoolExecutor) -> None:
        with self.cache.lock:
            if self.cache.placed_node(pod):
                return  # assumed or bound already: a stale event
            decision = schedule(pod, self.cache.nodes(), self.rng)
            if isinstance(decision, Bind):
                self.cache.assume(pod, decision.node)
        if isinstance(decision, Bind):
            binders.submit(self.bind, pod, decision.node)
        else:
            log.info("unschedulable %s: %s", pod["metadata"]["name"], decision.message)
            self.queue.park(pod)
            binders.submit(self.report_unschedulable, pod, decision.message)

    # -- the loop ------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Schedule until `stop` is set; every thread started here ends before it returns."""
        pods = self.client.watch(
            "/api/v1/pods", fieldSelector="status.phase!=Succeeded,status.phase!=Failed"
        )
        nodes = self.client.watch("/api/v1/nodes")
        threads = [
            threading.Thread(target=self._follow, args=(pods, self.on_pod_event),
                             name="scheduler-pods", daemon=True),
            threading.Thread(target=self._follow, args=(nodes, self.on_node_event),
                             name="scheduler-nodes", daemon=True),
        ]  # fmt: skip
        if self.elector is not None:
            threads.append(threading.Thread(target=self.elector.run, args=(stop,),
                                            name="scheduler-lease", daemon=True))  # fmt: skip
        for thread in threads:
            thread.start()
        binders = ThreadPoolExecutor(BINDERS, thread_name_prefix="scheduler-bind")
        try:
            while not stop.is_set():
                if not (self._pods_synced.is_set() and self._nodes_synced.is_set()):
                    stop.wait(0.05)
                    continue
                self.synced.set()
                if self.elector is not None and not self.elector.leading.is_set():
                    self.elector.leading.wait(0.2)
                    continue
                self.queue.flush()
                pod = self.queue.pop(timeout=0.5)
                if pod is not None:
                    self.schedule_one(pod, binders)
        finally:
            pods.close()
            nodes.close()
            binders.shutdown(wait=True)
            stop.set()
            for thread in threads:
                thread.join(10)
