"""The cluster store, SQLite vs etcd, side by side in the same run: write throughput
(one writer, then several threads), a linearizable get, listing 10,000 keys (in one
call and in pages of 500 at one revision) and watch latency (write -> event).

Usage: .venv/bin/python bench/storage.py [--writes 2000] [--keys 10000] [--runs 5]

etcd is the Debian etcd-server, started by control.storage.testing.LocalEtcd on free
127.0.0.1 ports in a temp dir (its defaults: fsync of its WAL per commit) and stopped
by PID at the end; SQLite is control.storage.sqlite in WAL with synchronous=FULL
(fsync per commit) in a temp dir on the same disk. Not a test: nothing is asserted.

Two runs on the 2-CPU development VM (--runs 7; sqlite, etcd):

    creates/s, 1 writer          4,777 / 4,334      991 / 912
    CAS updates/s, 1 writer      5,648 / 3,851    1,008 / 951
    creates/s, 8 threads         4,869 / 3,622    2,393 / 2,388
    get ms                        0.01 / 0.01      0.49 / 0.56
    list 10,000 keys ms           22.6 / 22.7     189.8 / 184.5
    list 10,000 in pages of 500   20.8 / 21.8     171.8 / 181.7
    count 10,000 keys ms           7.9 / 7.8        1.1 / 1.2
    watch latency ms              0.32 / 0.37      1.13 / 1.19
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from control.storage import Backend, open_backend
from control.storage.testing import LocalEtcd, etcd_binary

VALUE = b'{"kind":"Pod","apiVersion":"v1","metadata":{"name":"x"}}' + b" " * 900  # ~1 KB


def per_second(n: int, action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return n / (time.perf_counter() - start)


def median_ms(runs: int, action: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def list_in_pages(store: Backend, prefix: str, page: int) -> int:
    first = store.list(prefix, limit=page)
    n, last = len(first.items), first
    while last.more:
        last = store.list(
            prefix, revision=first.revision, limit=page, continue_from=last.items[-1].key
        )
        n += len(last.items)
    return n


def watch_latency_ms(store: Backend, samples: int) -> float:
    """Median time from just before a write to its event's arrival at a watcher."""
    latencies = []
    with store.watch("/bench/watch/", from_revision=store.current_revision()) as watch:
        rev = store.create("/bench/watch/k", b"0")
        watch.next_batch(timeout=10)
        for i in range(samples):
            start = time.perf_counter()
            rev = store.update("/bench/watch/k", b"%d" % i, rev)
            got = 0
            while got < rev:
                batch = watch.next_batch(timeout=10)
                if not batch:
                    raise RuntimeError("watch ended or stalled")
                got = batch[-1].revision
            latencies.append((time.perf_counter() - start) * 1000)
    return statistics.median(latencies)


def measure(store: Backend, args: argparse.Namespace) -> dict[str, float]:
    results: dict[str, float] = {}
    n = args.writes
    results["creates/s, 1 writer"] = per_second(
        n, lambda: [store.create(f"/bench/seq/{i:06d}", VALUE) for i in range(n)]
    )

    def updates() -> None:
        rev = store.create("/bench/upd", VALUE)
        for _ in range(n):
            rev = store.update("/bench/upd", VALUE, rev)

    results["CAS updates/s, 1 writer"] = per_second(n, updates)

    def threads(count: int) -> Callable[[], None]:
        def run() -> None:
            def work(t: int) -> None:
                for i in range(n // count):
                    store.create(f"/bench/par{count}/{t}/{i:06d}", VALUE)

            with ThreadPoolExecutor(count) as pool:
                list(pool.map(work, range(count)))

        return run

    results["creates/s, 8 threads"] = per_second(n // 8 * 8, threads(8))
    results["get ms"] = median_ms(args.runs * 20, lambda: store.get("/bench/upd"))

    # 10,000 keys to list, written by 8 threads (the setup, not measured)
    keys = args.keys
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: store.create(f"/bench/list/{i:06d}", VALUE), range(keys)))
    count = store.count("/bench/list/")
    assert count == keys, count
    results[f"list {keys:,} keys ms"] = median_ms(args.runs, lambda: store.list("/bench/list/"))
    results[f"list {keys:,} in pages of 500 ms"] = median_ms(
        args.runs, lambda: list_in_pages(store, "/bench/list/", 500)
    )
    results[f"count {keys:,} keys ms"] = median_ms(args.runs, lambda: store.count("/bench/list/"))
    results["watch latency ms"] = watch_latency_ms(store, 200)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    columns: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="kubeling-bench-storage-") as tmp:
        with open_backend(f"sqlite://{tmp}/state.db") as store:
            columns["sqlite"] = measure(store, args)
        if etcd_binary() is None:
            print("etcd not installed (Debian etcd-server): sqlite only")
        else:
            with LocalEtcd(Path(tmp) / "etcd") as etcd, open_backend(etcd.url) as store:
                columns["etcd"] = measure(store, args)

    names = list(columns)
    header = f"{'':34}" + "".join(f"{name:>12}" for name in names)
    print(header + (f"{'sqlite vs etcd':>16}" if len(names) == 2 else ""))
    for metric in columns["sqlite"]:
        row = [columns[name][metric] for name in names]
        line = f"{metric:34}" + "".join(f"{v:>12.2f}" for v in row)
        if len(row) == 2 and row[0] and row[1]:
            # how many times better sqlite does: higher rates, lower times
            better = (
                row[0] / row[1] if metric.endswith("/s") or "/s," in metric else row[1] / row[0]
            )
            line += f"{better:>15.2f}x"
        print(line)


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
