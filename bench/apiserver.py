"""The API server on its two durable stores, SQLite vs etcd, side by side in the same
run: CREATE, GET and LIST (1,000 pods) requests per second from 1 and 8 client
threads, and watch latency (write -> event delivered to each of 100 watchers).

Usage: .venv/bin/python bench/apiserver.py [--pods 1000] [--watchers 100] [--runs 1]
                                           [--stores sqlite,etcd] [--gets 2000]
                                           [--lists 20] [--writes 100] [--rate 20]

Each store gets a real `kubeling apiserver` process on a free 127.0.0.1 port (HTTPS,
the admin token), stopped by PID: SQLite in a temp dir (`sqlite:///...`, fsync per
commit), etcd through the Debian etcd-server that control.storage.testing.LocalEtcd
starts on free loopback ports (`--store etcd://127.0.0.1:<port>`). The requests go
through kubeapi.client.Client (kept-alive connections, one per thread):

- create: `--pods` small pods (labels, one container with requests and a port,
  ~600 bytes of JSON) from 1 thread into one namespace, then `--pods` more from 8
  threads into another — the one the GETs and LISTs read;
- get: `--gets` GETs of those pods by name; list: `--lists` LISTs of all of them;
- watch: `--watchers` watches of /api/v1/namespaces/x/pods, each its own connection
  and thread, then `--writes` merge PATCHes of one pod at `--rate` per second. A
  delivery's latency runs from just before the PATCH is sent to the event's arrival
  at that watcher (matched by resourceVersion); "last watcher" is, per write, the
  time until the last of them has it. "PATCH answered" is the write's own round trip.

Rates are requests per second; with several runs each figure is the median. Not a
test: nothing is asserted but that every watcher saw every write.

Two runs on the 2-CPU development VM, loaded with other work (load average 2-5; the
API server, etcd and this client share the two CPUs), run 1 / run 2:

                                     sqlite          etcd     sqlite vs etcd
    create pods/s, 1 thread         731 / 863     376 / 370     1.9x / 2.3x
    create pods/s, 8 threads      1,186 / 1,153   455 / 319     2.6x / 3.6x
    get pod/s, 1 thread           2,289 / 2,352   753 / 665     3.0x / 3.5x
    get pod/s, 8 threads          2,506 / 2,893 1,409 / 1,314   1.8x / 2.2x
    list 1,000 pods/s, 1 thread    18.9 / 20.8   13.2 / 11.7    1.4x / 1.8x
    list 1,000 pods ms             53.0 / 48.0   75.6 / 85.8    1.4x / 1.8x
    list 1,000 pods/s, 8 threads   21.8 / 18.2   13.0 / 11.6    1.7x / 1.6x
    PATCH answered ms (p50)         2.4 / 2.7    40.5 / 23.9     17x / 8.9x
    watch delivery ms (p50)        11.3 / 12.9   52.3 / 31.6    4.6x / 2.5x
    watch delivery ms (p99)        28.2 / 28.4  206.9 / 103.9   7.3x / 3.7x
    last of 100 watchers ms (p50)  17.2 / 20.8   68.8 / 44.2    4.0x / 2.1x
    last of 100 watchers ms (p99)  34.0 / 40.0  251.7 / 195.7   7.4x / 4.9x

With --watchers 10 the same writes take 2.4 vs 7.1 ms, a delivery 3.3 vs 6.9 ms
(p50) and the last of the 10 watchers 3.8 vs 7.8 ms. The difference at 100: the
etcd backend opens one etcd watch stream, with its own reader thread, per API watch
(control/storage/etcd.py), so each write comes back from etcd 100 times and is
decoded 100 times in the API server, which slows the writes as well; the SQLite
backend's poller reads it once and fans it out in process (control/storage/fanout.py).
A watch cache per resource, as kube-apiserver has, would give etcd one stream. The
delivery figures include this process's own 100 threads taking turns on one GIL.
Eight client threads do not raise etcd's rates: the API server's Python, etcd and
this client already fill the two CPUs.
"""

from __future__ import annotations

import argparse
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from control.storage.testing import LocalEtcd, etcd_binary
from kubeapi.client import ApiError, Client, Watch

KUBELING = str(Path(sys.executable).parent / "kubeling")
THREADS = (1, 8)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pod(name: str, index: int) -> dict[str, Any]:
    """A small pod as a Deployment's template would make it (~600 bytes of JSON)."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "web", "tier": "frontend",
                                              "pod-template-hash": f"{index % 7:06x}"}},
        "spec": {
            "containers": [{
                "name": "web", "image": "registry.local/web:1.4.2",
                "args": ["--listen", ":8080"],
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "env": [{"name": "MODE", "value": "production"}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                              "limits": {"memory": "256Mi"}},
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
            }],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
        },
    }  # fmt: skip


class ApiServerProcess:
    """`kubeling apiserver` on a free port with `store`; its output is drained (a full
    pipe would stall it) and the last lines kept for an error message."""

    def __init__(self, data_dir: Path, store: str) -> None:
        self.process = subprocess.Popen(
            [KUBELING, "apiserver", "--data-dir", str(data_dir), "--store", store,
             "--listen", f"127.0.0.1:{free_port()}", "--log-level", "warning"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        assert self.process.stdout is not None
        first = self.process.stdout.readline()
        if "serving the API" not in first:
            self.stop()
            raise SystemExit(f"kubeling apiserver --store {store} did not start: {first}")
        self.output: deque[str] = deque(maxlen=20)
        threading.Thread(target=self._drain, daemon=True).start()
        self.client = Client.from_kubeconfig(data_dir / "admin.kubeconfig")

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def in_threads(count: int, items: Sequence[Any], action: Callable[[Any], object]) -> float:
    """Items per second when `count` threads share `items` (each takes every count-th)."""

    def work(first: int) -> None:
        for item in items[first::count]:
            action(item)

    start = time.perf_counter()
    with ThreadPoolExecutor(count) as pool:
        list(pool.map(work, range(count)))
    return len(items) / (time.perf_counter() - start)


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def watch_latency(client: Client, watchers: int, writes: int, rate: float) -> dict[str, float]:
    """Open `watchers` watches on namespace x, then PATCH one pod `writes` times at
    `rate`/s; the latencies of every delivery, in ms."""
    path = "/api/v1/namespaces/x/pods"
    since = str(client.list(path)["metadata"]["resourceVersion"])
    arrivals: list[dict[str, float]] = [{} for _ in range(watchers)]
    watches: list[Watch] = [client.watch(path, resource_version=since) for _ in range(watchers)]

    def follow(index: int) -> None:
        seen = arrivals[index]
        for event in watches[index]:
            if event["type"] in ("ADDED", "MODIFIED"):
                seen[event["object"]["metadata"]["resourceVersion"]] = time.perf_counter()

    threads = [threading.Thread(target=follow, args=(i,), daemon=True) for i in range(watchers)]
    for thread in threads:
        thread.start()

    def wait_all(version: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(version in seen for seen in arrivals):
                return True
            time.sleep(0.01)
        return False

    try:
        # The first write also tells when every watch is open on the server.
        created = client.create(path, pod("watched", 0))
        if not wait_all(created["metadata"]["resourceVersion"], 60):
            raise SystemExit("not every watcher saw the first write within 60 s")
        sent: dict[str, float] = {}
        answered_ms: list[float] = []
        interval = 1.0 / rate
        next_write = time.perf_counter()
        for i in range(writes):
            next_write += interval
            start = time.perf_counter()
            patched = client.patch(f"{path}/watched", {"metadata": {"annotations": {
                "bench/write": str(i)}}})  # fmt: skip
            answered_ms.append((time.perf_counter() - start) * 1000)
            sent[patched["metadata"]["resourceVersion"]] = start
            time.sleep(max(0.0, next_write - time.perf_counter()))
        last_version = max(sent, key=lambda version: sent[version])
        if not wait_all(last_version, 30):
            missing = sum(1 for seen in arrivals for version in sent if version not in seen)
            raise SystemExit(f"{missing} deliveries missing 30 s after the last write")
    finally:
        for watch in watches:
            watch.close()
        for thread in threads:
            thread.join(10)
    deliveries = [
        (seen[version] - start) * 1000 for seen in arrivals for version, start in sent.items()
    ]
    last = [
        (max(seen[version] for seen in arrivals) - start) * 1000 for version, start in sent.items()
    ]
    return {
        "PATCH answered ms (p50)": statistics.median(answered_ms),
        "watch delivery ms (p50)": statistics.median(deliveries),
        "watch delivery ms (p99)": percentile(deliveries, 0.99),
        f"last of {watchers} watchers ms (p50)": statistics.median(last),
        f"last of {watchers} watchers ms (p99)": percentile(last, 0.99),
    }


def measure(client: Client, args: argparse.Namespace) -> dict[str, float]:
    results: dict[str, float] = {}
    for namespace in ("one", "list", "x"):
        client.create("/api/v1/namespaces", {"metadata": {"name": namespace}})
    for threads, namespace in zip(THREADS, ("one", "list"), strict=True):

        def create(index: int, namespace: str = namespace) -> object:
            return client.create(
                f"/api/v1/namespaces/{namespace}/pods", pod(f"web-{index:05d}", index)
            )

        results[f"create pods/s, {threads} thread{'s' * (threads > 1)}"] = in_threads(
            threads, range(args.pods), create
        )
    names = [f"web-{(i * 7919) % args.pods:05d}" for i in range(args.gets)]
    for threads in THREADS:
        results[f"get pod/s, {threads} thread{'s' * (threads > 1)}"] = in_threads(
            threads, names, lambda name: client.get(f"/api/v1/namespaces/list/pods/{name}")
        )
    listed = len(client.list("/api/v1/namespaces/list/pods")["items"])
    if listed != args.pods:
        raise SystemExit(f"listed {listed} pods, created {args.pods}")
    for threads in THREADS:
        rate = in_threads(
            threads, range(args.lists), lambda _: client.list("/api/v1/namespaces/list/pods")
        )
        plural = "s" * (threads > 1)
        results[f"list {args.pods:,} pods/s, {threads} thread{plural}"] = rate
        if threads == 1:
            results[f"list {args.pods:,} pods ms"] = 1000 / rate
    results.update(watch_latency(client, args.watchers, args.writes, args.rate))
    return results


def run_store(store: str, tmp: Path, args: argparse.Namespace) -> dict[str, float]:
    etcd: LocalEtcd | None = None
    if store == "sqlite":
        url = f"sqlite:///{tmp / 'state.db'}"
    elif store == "etcd":
        etcd = LocalEtcd(tmp / "etcd").start()
        url = etcd.url
    else:
        url = store  # memory:// or a given URL
    try:
        api = ApiServerProcess(tmp / "control", url)
        try:
            # one connection per client thread, opened before the clock runs
            in_threads(max(THREADS), range(max(THREADS)), lambda _: api.client.get("/version"))
            return measure(api.client, args)
        except ApiError as e:
            raise SystemExit(f"{store}: {e}; server said: {''.join(api.output)}") from e
        finally:
            api.client.close()
            api.stop()
    finally:
        if etcd is not None:
            etcd.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--stores", default="sqlite,etcd")
    parser.add_argument("--gets", type=int, default=2000)
    parser.add_argument("--lists", type=int, default=20)
    parser.add_argument("--writes", type=int, default=100, help="watched PATCHes")
    parser.add_argument("--rate", type=float, default=20.0, help="watched PATCHes per second")
    args = parser.parse_args()
    stores = [s for s in args.stores.split(",") if s]
    if "etcd" in stores and etcd_binary() is None:
        print("etcd not installed (Debian etcd-server): leaving it out")
        stores.remove("etcd")

    runs: dict[str, list[dict[str, float]]] = {store: [] for store in stores}
    for run in range(args.runs):
        for store in stores:
            with tempfile.TemporaryDirectory(prefix=f"kubeling-bench-api-{store[:6]}-") as tmp:
                started = time.monotonic()
                runs[store].append(run_store(store, Path(tmp), args))
                print(f"  run {run + 1}, {store}: {time.monotonic() - started:.1f}s")
    columns = {
        store: {metric: statistics.median(r[metric] for r in results) for metric in results[0]}
        for store, results in runs.items()
    }

    names = list(columns)
    header = f"{'':38}" + "".join(f"{name:>12}" for name in names)
    print("\n" + header + (f"{names[0] + ' vs ' + names[1]:>18}" if len(names) == 2 else ""))
    for metric in columns[names[0]]:
        row = [columns[name][metric] for name in names]
        line = f"{metric:38}" + "".join(f"{v:>12,.1f}" for v in row)
        if len(row) == 2 and row[0] > 0 and row[1] > 0:
            # how many times better the first does: higher rates, lower times
            better = row[0] / row[1] if "/s" in metric else row[1] / row[0]
            line += f"{better:>17.2f}x"
        print(line)


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
