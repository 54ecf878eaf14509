"""Scheduling throughput: 1,000 pending pods on 100 fake nodes, against a real
`kubeling apiserver` process (started on a free 127.0.0.1 port in a temp dir, stopped
by PID), pods bound per second, next to the issue's target of 100 pods/s.

Usage: .venv/bin/python bench/scheduler.py [--pods 1000] [--nodes 100]
                                           [--stores memory,sqlite] [--runs 1]
                                           [--deployment [REPLICAS]]

The nodes and pods are created first (the pods pending: no scheduler yet); then a
`control.scheduler.Scheduler` runs in this process, and the clock runs from its
caches being synced to its last Binding answered, checked afterwards by listing
the pods (every one bound, to a node in the list). Pods ask for 100m cpu and 128Mi,
nodes have 16 cpu and 64Gi, so every pod fits and every decision runs all filters
and scores over 100 nodes. Not a test: nothing is asserted but the bindings.

Three runs on the 2-CPU development VM (the API server and this process share it):

    store     pods bound/s        target
    memory    969 / 855 / 954     100
    sqlite    691 / 689 / 689     100   (fsync per commit)

Before kubeapi.client turned on TCP_QUICKACK, every request waited 40 ms on the
server's Nagle vs the client's delayed ACK: 90 pods/s, the 4 binder threads' limit.

--deployment [100] measures instead the time from a Deployment's create (100
replicas by default) to all of its pods bound. Besides the API server it starts a
`kubeling controller-manager` process on the admin kubeconfig (every controller but
nodelifecycle and taint-eviction-controller: the fake nodes post no heartbeats),
stopped by PID, and the scheduler is the in-process Scheduler as above (the same
code `kubeling scheduler` runs). A one-replica Deployment in another namespace goes
first, so the clock starts with the controllers' and the scheduler's caches synced.
A pod watch on the namespace (opened before the create) gives each pod's first
appearance and the event that shows spec.nodeName set; the clock runs from just
before the create is sent to the last of those, then a list checks 100 pods, all on
the fake nodes. Six runs (two of --runs 3) on the same VM, loaded with other work
(load average 2.5-4; the throughput mode gave 517 and 478 pods/s at the time):

    store     create -> all 100 pods created    create -> all 100 bound
    memory    0.36 0.30 0.33 0.25 0.24 0.31     0.37 0.30 0.34 0.25 0.27 0.34
    sqlite    0.39 0.38 0.47 0.50 0.63 0.63     0.39 0.39 0.47 0.51 0.66 0.65

Each pod is bound within milliseconds of its creation: the time is the controllers'
(Deployment -> ReplicaSet -> 100 pod creates), not the scheduler's.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from control.scheduler.scheduler import Scheduler
from kubeapi.client import Client

TARGET = 100.0
KUBELING = str(Path(sys.executable).parent / "kubeling")
# The fake nodes post no heartbeats: leave out the controllers that would mark them
# NotReady and evict their pods; the rest run as `kubeling up` runs them.
CONTROLLERS = "*,-nodelifecycle,-taint-eviction-controller"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def node(i: int) -> dict[str, object]:
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": f"node-{i:03d}", "labels": {"kubernetes.io/hostname": f"node-{i}"}},
        "status": {"allocatable": {"cpu": "16", "memory": "64Gi", "pods": "110"},
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }  # fmt: skip


def pod(i: int) -> dict[str, object]:
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"pod-{i:04d}"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"}}}]},
    }  # fmt: skip


@contextlib.contextmanager
def serving(store: str) -> Iterator[tuple[Client, Path]]:
    """A `kubeling apiserver` on `store` in a temp dir: its admin client and kubeconfig."""
    with tempfile.TemporaryDirectory() as temporary:
        data = Path(temporary) / "control"
        url = "memory://" if store == "memory" else f"sqlite:///{data / 'state.db'}"
        api = subprocess.Popen(
            [KUBELING, "apiserver", "--data-dir", str(data), "--store", url,
             "--listen", f"127.0.0.1:{free_port()}", "--log-level", "warning"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            assert api.stdout is not None
            line = api.stdout.readline()
            assert "serving the API" in line, line
            client = Client.from_kubeconfig(data / "admin.kubeconfig")
            try:
                yield client, data / "admin.kubeconfig"
            finally:
                client.close()
        finally:
            if api.poll() is None:
                api.send_signal(signal.SIGTERM)
                api.wait(30)
            if api.stdout is not None:
                api.stdout.close()


def create_nodes(client: Client, nodes: int) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: client.create("/api/v1/nodes", node(i)), range(nodes)))


def run_once(store: str, pods: int, nodes: int) -> float:
    with serving(store) as (client, _):
        create_nodes(client, nodes)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(
                lambda i: client.create("/api/v1/namespaces/default/pods", pod(i)),
                range(pods),
            ))  # fmt: skip
        scheduler = Scheduler(client)
        stop = threading.Event()
        thread = threading.Thread(target=scheduler.run, args=(stop,))
        thread.start()
        scheduler.synced.wait(60)
        started = time.monotonic()
        deadline = started + 300
        while scheduler.bound < pods and time.monotonic() < deadline:
            time.sleep(0.005)
        elapsed = time.monotonic() - started
        stop.set()
        thread.join(30)
        listed = client.list("/api/v1/namespaces/default/pods")["items"]
        names = {f"node-{i:03d}" for i in range(nodes)}
        bound = [p for p in listed if p["spec"].get("nodeName") in names]
        per_node: dict[str, int] = {}
        for p in bound:
            per_node[p["spec"]["nodeName"]] = per_node.get(p["spec"]["nodeName"], 0) + 1
        if len(bound) != pods:
            raise SystemExit(f"{store}: only {len(bound)} of {pods} pods bound")
        print(f"  {store}: {pods} pods in {elapsed:.2f}s; pods per node "
              f"{min(per_node.values())}..{max(per_node.values())}")  # fmt: skip
        return pods / elapsed


def deployment(name: str, replicas: int) -> dict[str, object]:
    template = pod(0)
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": template["spec"]}},
    }  # fmt: skip


def wait_bound(client: Client, namespace: str, count: int, timeout: float) -> list[dict[str, Any]]:
    """Poll until `count` pods in `namespace` are bound (the warm-up only)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = client.list(f"/api/v1/namespaces/{namespace}/pods")["items"]
        bound = [p for p in pods if p["spec"].get("nodeName")]
        if len(bound) >= count:
            return bound
        time.sleep(0.05)
    raise SystemExit(f"{namespace}: {count} pods not bound in {timeout:.0f}s")


def deployment_once(store: str, replicas: int, nodes: int) -> tuple[float, float]:
    """Seconds from just before the Deployment's create is sent to its last pod
    created and to its last pod bound, both as a pod watch shows them."""
    with serving(store) as (client, kubeconfig), tempfile.TemporaryFile("w+") as log:
        create_nodes(client, nodes)
        manager = subprocess.Popen(
            [KUBELING, "controller-manager", "--kubeconfig", str(kubeconfig),
             "--controllers", CONTROLLERS, "--log-level", "warning"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        scheduler = Scheduler(client)
        stop = threading.Event()
        thread = threading.Thread(target=scheduler.run, args=(stop,))
        thread.start()
        try:
            scheduler.synced.wait(60)
            # A one-pod Deployment elsewhere first: the clock starts with the
            # controllers' informers synced and every connection open.
            client.create("/api/v1/namespaces", {"metadata": {"name": "warm-up"}})
            client.create("/apis/apps/v1/namespaces/warm-up/deployments", deployment("w", 1))
            wait_bound(client, "warm-up", 1, 60)

            path = "/api/v1/namespaces/default/pods"
            since = str(client.list(path)["metadata"]["resourceVersion"])
            created: dict[str, float] = {}
            bound: dict[str, float] = {}
            everything_bound = threading.Event()
            watch = client.watch(path, resource_version=since)

            def follow() -> None:
                for event in watch:
                    obj = event["object"]
                    name = obj["metadata"]["name"]
                    now = time.perf_counter()
                    created.setdefault(name, now)
                    if obj["spec"].get("nodeName"):
                        bound.setdefault(name, now)
                        if len(bound) >= replicas:
                            everything_bound.set()

            watcher = threading.Thread(target=follow, daemon=True)
            watcher.start()
            time.sleep(0.2)  # the watch request on its way before the clock starts
            started = time.perf_counter()
            client.create("/apis/apps/v1/namespaces/default/deployments",
                          deployment("web", replicas))  # fmt: skip
            finished = everything_bound.wait(120)
            watch.close()
            watcher.join(10)
            if not finished:
                log.seek(0)
                raise SystemExit(f"{store}: {len(bound)} of {replicas} pods bound in 120 s; "
                                 f"controller-manager: {log.read()[-2000:]}")  # fmt: skip
        finally:
            stop.set()
            thread.join(30)
            if manager.poll() is None:
                manager.send_signal(signal.SIGTERM)
                manager.wait(30)
        listed = client.list(path)["items"]
        names = {f"node-{i:03d}" for i in range(nodes)}
        placed = [p for p in listed if p["spec"].get("nodeName") in names]
        if len(listed) != replicas or len(placed) != replicas:
            raise SystemExit(f"{store}: {len(listed)} pods, {len(placed)} bound; "
                             f"expected {replicas}")  # fmt: skip
        all_created = max(created.values()) - started
        all_bound = max(bound.values()) - started
        print(f"  {store}: Deployment of {replicas}: {replicas} pods created in "
              f"{all_created:.2f}s, all bound in {all_bound:.2f}s")  # fmt: skip
        return all_created, all_bound


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--stores", default="memory,sqlite")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument(
        "--deployment", type=int, nargs="?", const=100, default=0, metavar="REPLICAS",
        help="instead: time from a Deployment's create to all its pods bound (default 100)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.deployment:
        timings: dict[str, list[tuple[float, float]]] = {}
        for store in args.stores.split(","):
            for _ in range(args.runs):
                timings.setdefault(store, []).append(
                    deployment_once(store, args.deployment, args.nodes)
                )
        print(f"\nDeployment of {args.deployment} replicas on {args.nodes} nodes, seconds "
              "from its create to")  # fmt: skip
        print(f"  {'store':<8}  {'all pods created':<24}  all pods bound")
        for store, pairs in timings.items():
            made = " / ".join(f"{c:.2f}" for c, _ in pairs)
            placed = " / ".join(f"{b:.2f}" for _, b in pairs)
            print(f"  {store:<8}  {made:<24}  {placed}")
        return
    results: dict[str, list[float]] = {}
    for store in args.stores.split(","):
        for _ in range(args.runs):
            results.setdefault(store, []).append(run_once(store, args.pods, args.nodes))
    print(f"\n{args.pods} pods on {args.nodes} nodes   pods bound/s   target")
    for store, rates in results.items():
        shown = " / ".join(f"{r:,.0f}" for r in rates)
        verdict = "meets" if max(rates) >= TARGET else "below"
        print(f"  {store:<8}                  {shown:>12}   {TARGET:.0f} ({verdict})")


if __name__ == "__main__":
    main()
