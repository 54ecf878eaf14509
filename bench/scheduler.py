"""Scheduling throughput: 1,000 pending pods on 100 fake nodes, against a real
`kubeling apiserver` process (started on a free 127.0.0.1 port in a temp dir, stopped
by PID), pods bound per second, next to the issue's target of 100 pods/s.

Usage: .venv/bin/python bench/scheduler.py [--pods 1000] [--nodes 100]
                                           [--stores memory,sqlite] [--runs 1]

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
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from control.scheduler.scheduler import Scheduler
from kubeapi.client import Client

TARGET = 100.0
KUBELING = str(Path(sys.executable).parent / "kubeling")


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


def run_once(store: str, pods: int, nodes: int) -> float:
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
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda i: client.create("/api/v1/nodes", node(i)), range(nodes)))
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
            client.close()
            return pods / elapsed
        finally:
            if api.poll() is None:
                api.send_signal(signal.SIGTERM)
                api.wait(30)
            if api.stdout is not None:
                api.stdout.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--stores", default="memory,sqlite")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
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
