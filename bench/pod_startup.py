"""Pod startup latency through a whole `kubeling up` cluster: a Deployment of 100
busybox replicas, create → Running per pod (p50/p90/p99/max), the time until all of
them are Running, and the CPU the kubelet and the runtime use at rest with them.

Usage (root): .venv/bin/python bench/pod_startup.py [--replicas 100] [--runs 1]
              [--settle-seconds 10] [--rest-seconds 30] [--timeout 300]
              [--kubelet-arg FLAG=VALUE ...] [--keep]

Targets (the issue's): p99 ≤ 5 s (the Kubernetes pod-startup SLO; 2 cores here), all
100 Running ≤ 30 s after the Deployment is created, kubelet + runtime (CRI server and
its node supervisor) ≤ 5% of one core at rest with the 100 pods running.

The cluster: `kubeling up --detach` on a temp dir (data, run, log and config dirs),
free API and kubelet ports, its own node name, bridge, iptables chain and veth
prefixes, a /24 pod CIDR that overlaps no route or address here, and its own cgroup
root, so it runs beside the host's cluster and the tests' ones. At the end (also on
failure, Ctrl-C or SIGTERM): `kubeling down --purge`, then whatever is left by pid
(only processes whose command line names the temp dir), the pod network, the pod
cgroups, mounts below the temp dir, and the temp dir. --keep leaves it running, with
the last run's pods.

Each run creates a Deployment (busybox image that `up` imports, imagePullPolicy
IfNotPresent, `sh` waiting on `sleep 3600` so SIGTERM ends it, requests 10m cpu /
8Mi, checked against the node's allocatable; max-pods is raised when --replicas
needs it) after a watch on its pods is open. The API's creationTimestamp has whole
seconds, so each pod's clock starts when the watch first sees it (ADDED) and stops
at the first event with phase Running and every container running and ready; the
creationTimestamp-based figure is printed beside it. Between runs the Deployment is
scaled to 0, its pods waited for until gone, and deleted.

CPU at rest: --settle-seconds after the last pod is Running, utime+stime of each
process over --rest-seconds (/proc/<pid>/stat; for the kubelet and the CRI server
also the CPU of children they reaped meanwhile, and of live descendants outside the
pod cgroups; the containers themselves are not counted; `up` is its own process
alone, its children have their own lines), as % of one core. The
supervisor is the CRI's daemon (its pid from its lock-held pid file); the other
pids come from `up`'s <run-dir>/pids. Not a test: nothing gates on the figures.

A run on the 2-CPU development VM with other work on it (load average ~2; --runs 2):

                                  p50    p90    p99    max   target
    ADDED → Running              6.45   7.36   7.62   7.71   p99 ≤ 5 (misses by 2.62)
    bound → Running              6.44   7.33   7.61   7.70
    all 100 Running after the create: 7.1 / 8.1 s        ≤ 30 (meets)
    pods Running by second:  5s:0 6s:3 7s:96 8s:100 (run 1)
    CPU at rest, % of one core: kubelet 4.1, CRI server 13.9-14.4, node supervisor
    2.9-3.0; kubelet + runtime 21.0-21.4 vs ≤ 5 (misses by 16.4); API server 0.2,
    controller-manager 0.2, scheduler 0.05.

An earlier run: p99 8.39 s, all Running after 9.0 s, at rest 21.7%. The pods come up
in lockstep: 100 pod workers share the CRI's 16 gRPC threads, so each pod's calls
queue behind every other pod's sandbox and container creation and nearly all
statuses are posted in the last second; the node starts ~14 pods/s, so a burst of
100 cannot have p99 under 5 s (30 replicas: p99 2.69 s, all Running in 2.9 s). At
rest each pod worker resyncs every 10 s (--sync-frequency; the real kubelet's default
is 1 min) with 8 CRI calls (the runtime fetched before and after the sync), and the
CRI's ListContainers refreshes every container from the supervisor; with
`--kubelet-arg sync-frequency=1m` the figures were kubelet 1.2, CRI server 5.9,
supervisor 0.4 (7.6%), and the CRI's remaining cost is mostly ListPodSandboxStats
(every 10 s), which opens a pyroute2 netlink socket inside each pod's netns for the
interface counters (the host end of each veth has the same counters, swapped).

After the fixes (sync-frequency 1 min by default; the pod counters from the host
ends of the veths, one net/dev read for all pods; ListContainers refreshing only
the containers its filter selects; ListPodSandboxStats refreshing the containers
once, not per pod, and reading one cgroup hierarchy for the process count; the
stats sampler quiet while the eviction manager's 10 s readings keep the rate bases
fresh; ImageFsInfo's store walk reused for 30 s; no fsync of the supervisor's
records; 64 CRI handler threads), same VM, load average ~1, --runs 2 (a run of the
old code just before, at load ~3-5: p99 9.94 s, all Running 10.5 s, at rest 30.5%):

                                  p50    p90    p99    max   target
    ADDED → Running              5.44   5.89   6.24   6.35   p99 ≤ 5 (misses by 1.24)
    all 100 Running after the create: 6.5 / 6.6 s        ≤ 30 (meets)
    pods Running by second:  5s:12 6s:80 7s:100 (run 1)
    CPU at rest, % of one core: kubelet 1.17, CRI server 2.03-2.20, node supervisor
    0.17; kubelet + runtime 3.36-3.53 vs ≤ 5 (meets).

Other runs of that code: p99 5.78-7.36 s, at rest 3.8-3.9%. Startup was then bound
by the node supervisor, busy 99% of the burst creating containers one at a time
(29 ms each, 60% of it waiting for the container's init to set itself up), with
every sandbox's network setup queued behind the others' on one lock (most of a
RunPodSandbox's 1.7 s) and three fsyncs per pod address under it.

After creates side by side in the supervisor (a create runs in steps on its loop
while init works: 12.7 ms of the loop per create), network setups side by side
(IPAM without fsync), tmpfs volumes checked by a stat instead of a mountinfo parse
per pod sync, events written by a thread of their own, 24 CRI handler threads and
watches sharing each change's decoding, same VM, load average ~1, --runs 3:

                                  p50    p90    p99    max   target
    ADDED → Running              5.01   5.45   5.65   5.69   p99 ≤ 5 (misses by 0.65)
    all 100 Running after the create: 5.6 / 5.4 / 6.2 s  ≤ 30 (meets)
    pods Running by second:  4s:1 5s:46 6s:100 (run 2)
    CPU from the create to all Running: CRI server 2.9-3.5 s, node supervisor
    1.5-1.9, kubelet 1.2-1.7, API server 1.1-1.4 (of 2 cores x ~5.7 s)
    CPU at rest, % of one core: kubelet + runtime 3.19-3.89 vs ≤ 5 (meets).

Other invocations of the same code: p99 4.85 s (2 runs, all Running in 5.3 / 4.8 s:
the target met), 5.31 and 6.00. The VM's speed varies by up to 70% from run to run
(the CRI server's CPU for the same 100 pods: 2.5-5.4 s), so comparisons below were
made in interleaved runs.
The node is CPU-bound: about 80% of both cores is busy during the burst, the CRI
server (one interpreter) most, and the pods still come
up in lockstep, nearly all in the last second, each pod's start sharing the machine
with all the others'. Limiting the pods started at once in the kubelet (12 or 32)
made them come up in order (p50 3.6 s) but lengthened the burst (p99 6.4-6.5 s).
24 CRI handler threads instead of 64 (before the watch change), four single runs
each, interleaved, on the VM when it was slower: p99 6.40/6.30/7.67/5.91 s vs
6.88/6.44/7.73/5.95, the CRI server's CPU 4.2/4.0/5.3/3.8 s vs 4.6/4.6/5.7/3.8 (so
24 it is).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import ipaddress
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cri.supervisor.client import running_supervisor
from kubeapi.client import MERGE_PATCH, ApiError, Client
from kubeapi.quantity import parse_quantity

KUBELING = str(Path(sys.executable).parent / "kubeling")
IMAGE = "kubeling.local/busybox:latest"
NAMESPACE = "default"
CPU_REQUEST = "10m"
MEMORY_REQUEST = "8Mi"
DEFAULT_MAX_PODS = 110
P99_TARGET = 5.0
ALL_RUNNING_TARGET = 30.0
REST_CPU_TARGET = 5.0  # % of one core, kubelet + runtime
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
RUNTIME_PROCESSES = ("kubelet", "cri", "supervisor")
CONTEXT_PROCESSES = ("apiserver", "controller-manager", "scheduler", "up")
SHOWN = {
    "kubelet": "kubelet",
    "cri": "CRI server",
    "supervisor": "node supervisor",
    "apiserver": "API server",
    "controller-manager": "controller-manager",
    "scheduler": "scheduler",
    "up": "kubeling up",
}


def run(*argv: str, check: bool = False, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, check=check, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_cidr() -> str:
    """A /24 in 10.200-247.x that overlaps no route or address on the host."""
    taken: list[ipaddress.IPv4Network] = []
    for entry in json.loads(run("ip", "-j", "-4", "route", "show", "table", "all").stdout or "[]"):
        with contextlib.suppress(ValueError):
            if entry.get("dst") not in (None, "default"):
                taken.append(ipaddress.IPv4Network(entry["dst"], strict=False))
    for link in json.loads(run("ip", "-j", "-4", "addr", "show").stdout or "[]"):
        for info in link.get("addr_info", []):
            taken.append(
                ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}", strict=False)
            )
    for second in range(247, 199, -1):
        for third in range(0, 256, 17):
            candidate = ipaddress.IPv4Network(f"10.{second}.{third}.0/24")
            if not any(candidate.overlaps(other) for other in taken if other.prefixlen > 0):
                return str(candidate)
    raise SystemExit("no free 10.x.y.0/24 for the pod network")


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p99 of 100 values is the 99th smallest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return False


# ---- the cluster -----------------------------------------------------------------------------


@dataclass
class Cluster:
    root: Path
    replicas: int
    kubelet_args: list[str] = field(default_factory=list)
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    api_port: int = field(default_factory=free_port)
    kubelet_port: int = field(default_factory=free_port)
    pod_cidr: str = field(default_factory=free_cidr)

    @property
    def node_name(self) -> str:
        return f"podstart-{self.suffix}"

    @property
    def bridge(self) -> str:
        return f"klp{self.suffix}"

    @property
    def chain_prefix(self) -> str:
        return f"KP-{self.suffix}"

    @property
    def veth_prefix(self) -> str:
        return f"p{self.suffix[:5]}"

    @property
    def cgroup_root(self) -> str:
        return f"/kubeling-podstart-{self.suffix}"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "etc" / "admin.kubeconfig"

    def up(self) -> float:
        """`kubeling up --detach`; seconds until it returned (the node Ready)."""
        argv = [
            KUBELING, "up", "--detach", "--data-dir", str(self.data_dir),
            "--run-dir", str(self.run_dir), "--log-dir", str(self.log_dir),
            "--config-dir", str(self.root / "etc"), "--listen", f"127.0.0.1:{self.api_port}",
            "--kubelet-port", str(self.kubelet_port), "--node-name", self.node_name,
            "--node-ip", "127.0.0.1", "--pod-cidr", self.pod_cidr, "--bridge", self.bridge,
            "--chain-prefix", self.chain_prefix, "--veth-prefix", self.veth_prefix,
            "--cgroup-root", self.cgroup_root, "--timeout", "120",
        ]  # fmt: skip
        needed = self.replicas + 10  # room for static and other pods
        if needed > DEFAULT_MAX_PODS:
            argv += ["--kubelet-arg", f"max-pods={needed}"]
        for extra in self.kubelet_args:
            argv += ["--kubelet-arg", extra]
        started = time.monotonic()
        result = run(*argv, timeout=240)
        if result.returncode != 0:
            raise SystemExit(
                f"kubeling up failed ({result.returncode}):\n{result.stdout}{result.stderr}"
                f"\n{self.logs()}"
            )
        return time.monotonic() - started

    def logs(self, tail: int = 2000) -> str:
        return "\n".join(
            f"== {log.name}\n{log.read_text(errors='replace')[-tail:]}"
            for log in sorted(self.log_dir.glob("*.log"))
        )

    def pids(self) -> dict[str, int]:
        """`up`, its children and the CRI's node supervisor, by name."""
        found: dict[str, int] = {}
        files = [("up", self.run_dir / "up.pid")]
        files += [(p.stem, p) for p in (self.run_dir / "pids").glob("*.pid")]
        for name, path in files:
            with contextlib.suppress(OSError, ValueError):
                found[name] = int(path.read_text().strip())
        supervisor_dir = self.data_dir / "cri" / "supervisor"
        if supervisor_dir.is_dir() and (pid := running_supervisor(supervisor_dir)) > 0:
            found["supervisor"] = pid
        return found

    def in_pod_cgroups(self, pid: int) -> bool:
        try:
            cgroups = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            return False
        return f"{self.cgroup_root}/kubepods" in cgroups

    def down(self, known_pids: dict[str, int]) -> None:
        """`kubeling down --purge`, then remove whatever it left."""
        started = time.monotonic()
        result = run(KUBELING, "down", "--run-dir", str(self.run_dir), "--purge",
                     "--timeout", "180", timeout=240)  # fmt: skip
        if result.returncode == 0:
            print(f"kubeling down --purge: {time.monotonic() - started:.1f}s")
        else:
            print(f"kubeling down --purge failed ({result.returncode}): {result.stderr.strip()}")
        self.remove_leftovers({**known_pids, **self.pids()})

    def remove_leftovers(self, pids: dict[str, int]) -> None:
        from cri.network import NetworkConfig, NetworkManager
        from kubeling.up import remove_pod_cgroups

        for name, pid in pids.items():
            if alive(pid) and str(self.root) in command_line(pid):
                print(f"cleanup: killing {name} (pid {pid})")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for pid in [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]:
            if self.in_pod_cgroups(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        links = json.loads(run("ip", "-j", "link", "show").stdout or "[]")
        if any(link.get("ifname") == self.bridge for link in links):
            print(f"cleanup: removing the pod network (bridge {self.bridge})")
            config = NetworkConfig(
                bridge=self.bridge, pod_cidr=self.pod_cidr,
                state_dir=self.data_dir / "cri" / "network", netns_dir=self.run_dir / "netns",
                chain_prefix=self.chain_prefix, veth_prefix=self.veth_prefix,
            )  # fmt: skip
            try:
                NetworkManager(config).destroy()
            except Exception as e:  # report and go on removing the rest
                print(f"cleanup: could not remove the pod network: {e}")
        with open("/proc/self/mounts") as f:
            targets = [line.split()[1] for line in f if line.split()[1].startswith(f"{self.root}/")]
        for target in sorted(targets, key=len, reverse=True):
            run("umount", "-l", target)
        for _ in range(20):  # killed processes leave their cgroups a moment later
            remove_pod_cgroups(self.cgroup_root)
            if not any(
                (h / self.cgroup_root.lstrip("/")).exists()
                for h in Path("/sys/fs/cgroup").iterdir()
            ):
                break
            time.sleep(0.1)
        shutil.rmtree(self.root, ignore_errors=True)


# ---- watching the pods -----------------------------------------------------------------------


@dataclass
class PodTimes:
    added: float  # monotonic, when the watch first saw the pod
    created: float  # metadata.creationTimestamp, epoch seconds (whole seconds)
    listed: bool = False  # first seen in a relist, not as ADDED: its start is late
    scheduled: float | None = None
    running: float | None = None
    running_wall: float | None = None


def running_and_ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    containers = status.get("containerStatuses") or []
    wanted = len((pod.get("spec") or {}).get("containers") or [])
    return (
        status.get("phase") == "Running"
        and len(containers) == wanted
        and all(c.get("ready") and "running" in (c.get("state") or {}) for c in containers)
    )


def epoch(stamp: str) -> float:
    moment = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")
    return moment.replace(tzinfo=datetime.UTC).timestamp()


class PodWatch:
    """A watch on the pods of one label selector, in a thread; per pod uid the
    moments it was first seen, bound to a node, and Running and ready."""

    def __init__(self, client: Client, selector: str) -> None:
        self.watch = client.watch(f"/api/v1/namespaces/{NAMESPACE}/pods", labelSelector=selector)
        self.pods: dict[str, PodTimes] = {}
        self.present: set[str] = set()
        self.relists = 0
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="pod-watch", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with contextlib.suppress(Exception):  # ends when closed
            for event in self.watch:
                now, wall = time.monotonic(), time.time()
                with self.changed:
                    if event["type"] == "RELISTED":
                        self.relists += 1
                        items = event["object"].get("items") or []
                        self.present = {item["metadata"]["uid"] for item in items}
                        for item in items:
                            self._observe(item, now, wall, listed=self.relists > 1)
                    elif event["type"] == "DELETED":
                        self.present.discard(event["object"]["metadata"]["uid"])
                    elif event["type"] in ("ADDED", "MODIFIED"):
                        self.present.add(event["object"]["metadata"]["uid"])
                        self._observe(event["object"], now, wall, listed=False)
                    self.changed.notify_all()

    def _observe(self, pod: dict[str, Any], now: float, wall: float, *, listed: bool) -> None:
        uid = pod["metadata"]["uid"]
        times = self.pods.get(uid)
        if times is None:
            times = PodTimes(now, epoch(pod["metadata"]["creationTimestamp"]), listed=listed)
            self.pods[uid] = times
        if times.scheduled is None and (pod.get("spec") or {}).get("nodeName"):
            times.scheduled = now
        if times.running is None and running_and_ready(pod):
            times.running, times.running_wall = now, wall

    def wait(self, what: str, timeout: float, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not done():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")
                self.changed.wait(min(left, 1.0))

    def close(self) -> None:
        self.watch.close()
        self.thread.join(10)


# ---- CPU -------------------------------------------------------------------------------------


def process_table() -> dict[int, tuple[int, int]]:
    """pid → (ppid, utime + stime in ticks) of every process."""
    table: dict[int, tuple[int, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            table[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    return table


def own_ticks(pid: int, *, reaped_children: bool) -> int:
    """utime + stime of `pid` (all its threads), plus cutime + cstime if asked."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0
    ticks = int(fields[11]) + int(fields[12])
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks


def cpu_ticks(cluster: Cluster, pids: dict[str, int]) -> dict[str, int]:
    """Ticks per component: the process, for the kubelet and the CRI server also their
    reaped children, and live descendants that are not containers."""
    table = process_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out: dict[str, int] = {}
    for name, pid in pids.items():
        ticks = own_ticks(pid, reaped_children=name in ("kubelet", "cri"))
        # `up`'s descendants are the other components, counted on their own lines.
        stack = [] if name == "up" else list(children.get(pid, []))
        while stack:
            child = stack.pop()
            if cluster.in_pod_cgroups(child):
                continue  # a container: not the runtime's own work
            ticks += table[child][1]
            stack += children.get(child, [])
        out[name] = ticks
    return out


def cpu_percent(before: dict[str, int], after: dict[str, int], seconds: float) -> dict[str, float]:
    return {
        name: (after[name] - before.get(name, after[name])) / CLOCK_TICKS / seconds * 100
        for name in after
    }


# ---- one run ---------------------------------------------------------------------------------


def deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {
                "terminationGracePeriodSeconds": 5,
                "containers": [{
                    "name": "sleep", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                    # PID 1 ignores SIGTERM unless it traps it: trap it, so deleting is quick.
                    "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
                    "resources": {"requests": {"cpu": CPU_REQUEST, "memory": MEMORY_REQUEST}},
                }],
            }},
        },
    }  # fmt: skip


def check_fits(client: Client, cluster: Cluster, replicas: int) -> None:
    node = client.get(f"/api/v1/nodes/{cluster.node_name}")
    allocatable = node["status"]["allocatable"]
    pods = int(parse_quantity(allocatable["pods"]))
    cpu = parse_quantity(allocatable["cpu"])
    memory = parse_quantity(allocatable["memory"])
    wanted_cpu = parse_quantity(CPU_REQUEST) * replicas
    wanted_memory = parse_quantity(MEMORY_REQUEST) * replicas
    print(f"node {cluster.node_name}: allocatable pods {pods}, cpu {float(cpu):g}, memory "
          f"{float(memory / 2**20):.0f}Mi; {replicas} replicas ask for cpu "
          f"{float(wanted_cpu):g}, memory {float(wanted_memory / 2**20):.0f}Mi")  # fmt: skip
    problems = []
    if pods < replicas:
        problems.append(f"pods {pods} < {replicas}")
    if cpu < wanted_cpu:
        problems.append(f"cpu {float(cpu):g} < {float(wanted_cpu):g}")
    if memory < wanted_memory:
        problems.append(f"memory {memory} < {wanted_memory}")
    if problems:
        raise SystemExit(f"the replicas do not fit the node: {', '.join(problems)}")


@dataclass
class RunResult:
    latencies: list[float]  # ADDED seen → Running and ready, s
    from_created: list[float]  # creationTimestamp → Running and ready (wall), s
    to_scheduled: list[float]
    scheduled_to_running: list[float]
    all_running: float  # Deployment create → the last pod Running, s
    late_starts: int  # pods first seen in a relist
    running_after_create: list[float]  # per pod: Deployment create → Running, s
    startup_cpu: dict[str, float]  # CPU seconds from create to all Running
    rest_cpu: dict[str, float]  # % of one core at rest


def run_once(client: Client, cluster: Cluster, index: int, args: argparse.Namespace) -> RunResult:
    name = f"startup-{index}"
    watch = PodWatch(client, f"app={name}")
    pids = cluster.pids()
    try:
        watch.wait("the pod watch to list", 30, lambda: watch.relists > 0)
        ticks_before = cpu_ticks(cluster, pids)
        created = time.monotonic()
        client.create(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments",
                      deployment(name, args.replicas))  # fmt: skip

        def all_running() -> bool:
            done = [t for t in watch.pods.values() if t.running is not None]
            return len(done) >= int(args.replicas)

        watch.wait(f"{args.replicas} pods Running", args.timeout, all_running)
        ticks_after = cpu_ticks(cluster, pids)
        with watch.changed:
            pods = [t for t in watch.pods.values() if t.running is not None]
        last = max(t.running for t in pods if t.running is not None)
        elapsed = last - created
        startup_cpu = {
            k: (ticks_after[k] - ticks_before.get(k, ticks_after[k])) / CLOCK_TICKS
            for k in ticks_after
        }
        print(f"run {index}: {len(pods)} pods Running {elapsed:.1f}s after the Deployment "
              f"create; settling {args.settle_seconds:g}s, then CPU over "
              f"{args.rest_seconds:g}s")  # fmt: skip
        time.sleep(args.settle_seconds)
        rest_before = cpu_ticks(cluster, pids)
        rest_started = time.monotonic()
        time.sleep(args.rest_seconds)
        rest = cpu_percent(rest_before, cpu_ticks(cluster, pids), time.monotonic() - rest_started)
        with watch.changed:
            still = [t for t in watch.pods.values() if t.running is not None]
            if len(watch.present) != args.replicas:
                print(f"  note: {len(watch.present)} pods exist at the end of the rest")
        result = RunResult(
            latencies=[t.running - t.added for t in pods if t.running is not None],
            from_created=[t.running_wall - t.created for t in pods
                          if t.running_wall is not None],
            to_scheduled=[t.scheduled - t.added for t in pods if t.scheduled is not None],
            scheduled_to_running=[t.running - t.scheduled for t in pods
                                  if t.running is not None and t.scheduled is not None],
            all_running=elapsed,
            running_after_create=[t.running - created for t in pods if t.running is not None],
            late_starts=sum(1 for t in still if t.listed),
            startup_cpu=startup_cpu,
            rest_cpu=rest,
        )  # fmt: skip
        if not (args.keep and index == args.runs):  # --keep: the last run's pods stay
            remove_deployment(client, watch, name, args.timeout)
        return result
    finally:
        watch.close()


def remove_deployment(client: Client, watch: PodWatch, name: str, timeout: float) -> None:
    """Scale to 0, wait for the pods to be gone, delete the Deployment (needs only the
    deployment and replicaset controllers, not the garbage collector)."""
    path = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{name}"
    client.patch(path, {"spec": {"replicas": 0}}, content_type=MERGE_PATCH)
    started = time.monotonic()
    watch.wait(f"the pods of {name} to be gone", timeout, lambda: not watch.present)
    print(f"  scaled {name} to 0: its pods gone in {time.monotonic() - started:.1f}s")
    with contextlib.suppress(ApiError):
        client.delete(path)


# ---- report ----------------------------------------------------------------------------------


def verdict(value: float, target: float) -> str:
    if value <= target:
        return "meets"
    return f"misses by {value - target:.2f}"


def report(results: list[RunResult], replicas: int) -> None:
    latencies = [x for r in results for x in r.latencies]
    from_created = [x for r in results for x in r.from_created]
    runs = len(results)
    print(f"\npod startup, {replicas} replicas x {runs} run(s), image present, seconds")
    print("  (start: the watch's first sight of the pod, ADDED; end: the first event with")
    print("   phase Running and every container running and ready)")
    print(f"  {'':<40}{'p50':>7}{'p90':>7}{'p99':>7}{'max':>7}   target")
    rows = [
        ("ADDED → Running", latencies),
        ("creationTimestamp → Running (1 s res.)", from_created),
        ("ADDED → bound to the node", [x for r in results for x in r.to_scheduled]),
        ("bound → Running", [x for r in results for x in r.scheduled_to_running]),
    ]
    for label, values in rows:
        if not values:
            continue
        figures = "".join(f"{percentile(values, p):>7.2f}" for p in (50, 90, 99, 100))
        target = ""
        if label == "ADDED → Running":
            p99 = percentile(values, 99)
            target = f"   p99 ≤ {P99_TARGET:g} ({verdict(p99, P99_TARGET)})"
        print(f"  {label:<40}{figures}{target}")
    shown = " / ".join(f"{r.all_running:.1f}" for r in results)
    worst = max(r.all_running for r in results)
    print(f"  all {replicas} Running after the create: {shown} s   "
          f"target ≤ {ALL_RUNNING_TARGET:g} ({verdict(worst, ALL_RUNNING_TARGET)})")  # fmt: skip
    print("  pods Running by each second after the create (per run):")
    for r in results:
        seconds = range(1, math.ceil(r.all_running) + 1)
        counts = [sum(1 for x in r.running_after_create if x <= s) for s in seconds]
        print("   " + " ".join(f"{s}s:{n}" for s, n in zip(seconds, counts, strict=True)))
    late = sum(r.late_starts for r in results)
    if late:
        print(f"  note: {late} pods were first seen in a relist (their start is late)")

    print("\nCPU seconds from the create to all Running (per run)")
    for name in (*RUNTIME_PROCESSES, *CONTEXT_PROCESSES):
        if name in results[0].startup_cpu:
            figures = " / ".join(f"{r.startup_cpu.get(name, 0.0):.1f}" for r in results)
            print(f"  {SHOWN[name]:<20}{figures}")

    print(f"\nCPU at rest with {replicas} pods Running, % of one core (per run)")
    for name in RUNTIME_PROCESSES:
        figures = " / ".join(f"{r.rest_cpu.get(name, 0.0):.2f}" for r in results)
        print(f"  {SHOWN[name]:<20}{figures}")
    sums = [sum(r.rest_cpu.get(n, 0.0) for n in RUNTIME_PROCESSES) for r in results]
    print(f"  {'kubelet + runtime':<20}{' / '.join(f'{s:.2f}' for s in sums)}   "
          f"target ≤ {REST_CPU_TARGET:g} ({verdict(max(sums), REST_CPU_TARGET)})")  # fmt: skip
    print("  context:")
    for name in CONTEXT_PROCESSES:
        if name in results[0].rest_cpu:
            figures = " / ".join(f"{r.rest_cpu.get(name, 0.0):.2f}" for r in results)
            print(f"  {SHOWN[name]:<20}{figures}")


# ---- main ------------------------------------------------------------------------------------


class Stopped(Exception):
    """SIGTERM or SIGINT: unwind, so the cluster is torn down."""


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """Let the clean-up finish even on a second Ctrl-C."""
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--replicas", type=int, default=100)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--settle-seconds", type=float, default=10.0,
                        help="wait after all are Running before the CPU sample")  # fmt: skip
    parser.add_argument("--rest-seconds", type=float, default=30.0,
                        help="how long CPU at rest is sampled")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds to wait for all pods to be Running (and gone)")  # fmt: skip
    parser.add_argument("--kubelet-arg", action="append", default=[], metavar="FLAG=VALUE",
                        help="to `kubeling up --kubelet-arg` (sync-frequency=1m)")  # fmt: skip
    parser.add_argument("--keep", action="store_true",
                        help="leave the cluster and the last run's pods running")  # fmt: skip
    args = parser.parse_args()
    if args.replicas < 1 or args.runs < 1 or args.rest_seconds <= 0 or args.settle_seconds < 0:
        parser.error("--replicas and --runs must be ≥ 1, --rest-seconds > 0, --settle ≥ 0")
    if os.geteuid() != 0:
        print("pod_startup: needs root (kubeling up)", file=sys.stderr)
        return 1

    def stopped(*_: object) -> None:
        raise Stopped

    for sig in (signal.SIGINT, signal.SIGTERM):  # SIGINT too: a background job ignores it
        signal.signal(sig, stopped)
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="klps-")), args.replicas, args.kubelet_arg)
    known_pids: dict[str, int] = {}
    print(f"cluster in {cluster.root}: node {cluster.node_name}, API 127.0.0.1:"
          f"{cluster.api_port}, pod CIDR {cluster.pod_cidr}, bridge {cluster.bridge}; "
          f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    try:
        print(f"kubeling up --detach: node Ready after {cluster.up():.1f}s")
        known_pids = cluster.pids()
        client = Client.from_kubeconfig(cluster.kubeconfig, timeout=30)
        try:
            check_fits(client, cluster, args.replicas)
            results = [run_once(client, cluster, i + 1, args) for i in range(args.runs)]
        finally:
            client.close()
        print(f"load average at the end {os.getloadavg()[0]:.2f}")
        report(results, args.replicas)
        return 0
    except (KeyboardInterrupt, Stopped):
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        with signals_ignored():
            if args.keep:
                print(f"\nkept: kubeling down --run-dir {cluster.run_dir} --purge; "
                      f"rm -rf {cluster.root}\nKUBECONFIG={cluster.kubeconfig}")  # fmt: skip
            else:
                cluster.down(known_pids)


if __name__ == "__main__":
    sys.exit(main())
