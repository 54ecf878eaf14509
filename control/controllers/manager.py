"""The controller manager: shared informers and the controllers over them, in one
process. With leader election, nothing reconciles until this process holds the
kube-system/kube-controller-manager Lease; losing it ends `run` (as kube's does, so
a restarted process starts from a fresh cache)."""

from __future__ import annotations

import logging
import socket
import threading
import uuid

from control.controllers.base import Controller, Informer
from control.controllers.deployment import DeploymentController
from control.controllers.endpoints import EndpointsController
from control.controllers.garbagecollector import GarbageCollector
from control.controllers.namespace import NamespaceController
from control.controllers.nodelifecycle import (
    LEASE_NAMESPACE,
    NodeLifecycleController,
    TaintEvictionController,
)
from control.controllers.replicaset import ReplicaSetController
from control.controllers.serviceaccount import ServiceAccountController
from control.leader import LeaderElector
from kubeapi.client import Client

log = logging.getLogger(__name__)

LEASE = "kube-controller-manager"


def enabled(names: list[str], wanted: list[str]) -> set[str]:
    """kube-controller-manager's --controllers: `*` (all), `name`, `-name` (not it)."""
    chosen: set[str] = set()
    for item in (w.strip() for w in wanted):
        name = item.removeprefix("-")
        if name != "*" and name not in names:
            raise ValueError(f"--controllers: unknown controller {name!r} "
                             f"(known: {', '.join(sorted(names))})")  # fmt: skip
        if item == "*":
            chosen.update(names)
    for item in (w.strip() for w in wanted):
        if item.startswith("-"):
            chosen.discard(item[1:])
        elif item and item != "*":
            chosen.add(item)
    return chosen


class ControllerManager:
    def __init__(
        self, client: Client, *, leader_elect: bool = False, identity: str = "",
        lease_duration: float = 15.0, renew_deadline: float = 10.0, retry_period: float = 2.0,
        workers: int = 2, node_monitor_period: float = 5.0,
        node_monitor_grace_period: float = 40.0, namespace_recheck_period: float = 1.0,
        controllers: tuple[str, ...] = ("*",),
    ) -> None:  # fmt: skip
        self.client = client
        self.identity = identity or f"{socket.gethostname()}_{uuid.uuid4()}"
        self.informers = {
            "pods": Informer(client, "/api/v1/pods"),
            "replicasets": Informer(client, "/apis/apps/v1/replicasets"),
            "deployments": Informer(client, "/apis/apps/v1/deployments"),
            "namespaces": Informer(client, "/api/v1/namespaces"),
            "serviceaccounts": Informer(client, "/api/v1/serviceaccounts"),
            "services": Informer(client, "/api/v1/services"),
            "endpoints": Informer(client, "/api/v1/endpoints"),
            "nodes": Informer(client, "/api/v1/nodes"),
            "leases": Informer(
                client, f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases"
            ),
        }
        i = self.informers
        self.controllers: list[Controller] = [
            ReplicaSetController(client, i["replicasets"], i["pods"], workers=workers),
            DeploymentController(client, i["deployments"], i["replicasets"], workers=workers),
            ServiceAccountController(client, i["namespaces"], i["serviceaccounts"]),
            EndpointsController(client, i["services"], i["pods"], i["endpoints"], workers=workers),
            NamespaceController(
                client, i["namespaces"], workers=workers, recheck_period=namespace_recheck_period
            ),
            NodeLifecycleController(
                client,
                i["nodes"],
                i["leases"],
                i["pods"],
                grace_period=node_monitor_grace_period,
                monitor_period=node_monitor_period,
            ),
            TaintEvictionController(client, i["nodes"], i["pods"]),
            # Its informers (one per kind served) are its own: it discovers them.
            GarbageCollector(client, workers=workers),
        ]
        chosen = enabled([c.name for c in self.controllers], list(controllers))
        self.controllers = [c for c in self.controllers if c.name in chosen]
        self.elector = (
            LeaderElector(
                client,
                identity=self.identity,
                name=LEASE,
                lease_duration=lease_duration,
                renew_deadline=renew_deadline,
                retry_period=retry_period,
            )
            if leader_elect
            else None
        )

    def run(self, stop: threading.Event) -> bool:
        """Reconcile until `stop` (True) or the lease is lost (False)."""
        threads: list[threading.Thread] = []
        done = threading.Event()  # ends informers and workers
        if self.elector is not None:
            threads.append(threading.Thread(target=self.elector.run, args=(done,), daemon=True))
            threads[-1].start()
            while not stop.is_set() and not self.elector.leading.wait(0.2):
                pass
            if stop.is_set():
                done.set()
                threads[0].join(10)
                return True
            log.info("leading as %s", self.identity)
        for name, informer in self.informers.items():
            thread = threading.Thread(target=informer.run, args=(done,), name=name, daemon=True)
            thread.start()
        for informer in self.informers.values():
            while not stop.is_set() and not informer.synced.wait(0.2):
                pass
        for controller in self.controllers:
            threads.extend(controller.run(done))
        kept = True
        while not stop.wait(0.5):
            if self.elector is not None and not self.elector.leading.is_set():
                log.error("leader election lost")
                kept = False
                break
        done.set()
        for controller in self.controllers:
            controller.queue.shut_down()
        for thread in threads:
            thread.join(10)
        return kept
