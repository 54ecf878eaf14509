"""CRI pod lifecycle latency and memory per running pod: kubeling's CRI server vs containerd's.

Usage (root): .venv/bin/python bench/cri_pod_start.py [--pods 15] [--memory-pods 20] [--keep]

One Python gRPC client (cri.api) drives both servers with the same requests and the
same images, in the same run:

- kubeling: `kubeling cri` on its own socket, state dir, image store, pod CIDR,
  bridge, iptables chain prefix, veth prefix and netns directory (with the default
  chain prefix it would take over the KUBELING-* chains of another kubeling here).
- containerd (Debian package, runc) with a generated version-2 config: root, state,
  socket, runc root and opt dir in the bench's temp dir, the CRI plugin with a bridge
  CNI conflist (bridge + host-local + portmap, as containerd's own example) on its own
  bridge and CIDR, host-local's data dir in the temp dir, a hosts.toml that maps the
  local registry to plain HTTP, restrict_oom_score_adj (CAP_SYS_RESOURCE is missing
  here), no AppArmor.

Images: kubeling's busybox and pause (images/build.py), pushed to a docker-registry on
127.0.0.1 and pulled by each server with PullImage; the pause image is the sandbox
image of both. Pods get an explicit cgroup parent (/kb-bench-<runtime>/pod<uid>),
a log directory and one container, busybox `sleep 3600`.

Latency: one warm-up pod per runtime, then --pods rounds; each round runs one full
pod lifecycle per runtime (RunPodSandbox, CreateContainer, StartContainer,
StopContainer with timeout 0, RemoveContainer, StopPodSandbox, RemovePodSandbox),
alternating which runtime goes first. Times are client-side wall times per RPC;
"pod start" is Run + Create + Start of the same pod. Compare pod start, not Create
and Start alone: containerd's CreateContainer only writes the spec and snapshot and
its StartContainer starts a shim and runs `runc create` + `runc start`, while
kubeling's supervisor sets the container up in CreateContainer already.

Memory: --memory-pods pods running on each runtime at once. containerd: the RSS, PSS
and USS (private pages) of its containerd-shim-runc-v2 processes, summed, plus the
growth of containerd itself from the empty baseline. kubeling: the node supervisor
(cri/supervisor; every container is its child, it holds no shim per pod) as a whole,
plus the growth of the `kubeling cri` process. The container processes themselves
(pause, sleep: the same binaries on both sides) are printed apart and not counted
in the per-pod figures. PSS splits shared
pages among all processes that map them, so kubeling's Python processes look
smaller while other Python processes run on the host: USS does not move with that.

Clean-up: every pod is removed through the CRI; both servers are stopped by PID, then
the supervisor (by the pid in <state>/supervisor/supervisor.pid); kubeling's pod
network is destroyed with its own NetworkManager.destroy (bridge, chains, netns
mount); containerd's bridge is deleted; the cgroup parents, mounts below the temp
dir and the temp dir are removed, and so are /run/containerd, /var/run/netns and
/var/lib/cni when the bench made them and they hold only empty directories. SIGTERM
unwinds like Ctrl-C. Links, iptables rules, mounts and netns files are
compared before and after, and whatever of ours is left is printed. Benchmarks
never gate anything on time.
"""

from __future__ import annotations

import abc
import argparse
import contextlib
import ipaddress
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from cri.api import api_pb2, api_pb2_grpc
from images.testing import LocalRegistry

KUBELING = str(Path(sys.executable).parent / "kubeling")
KUBELING_BRIDGE = "kbbench0"
CONTAINERD_BRIDGE = "kbctrd0"
CHAIN_PREFIX = "KBBENCH"  # kubeling's chains: KBBENCH-POSTROUTING, -FORWARD, ...
VETH_PREFIX = "kbv"
CNI_NETWORK = "kb-bench"
LIFECYCLE = (
    "RunPodSandbox",
    "CreateContainer",
    "StartContainer",
    "StopContainer",
    "RemoveContainer",
    "StopPodSandbox",
    "RemovePodSandbox",
)
START = ("RunPodSandbox", "CreateContainer", "StartContainer")


# ---- small helpers --------------------------------------------------------------------------


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, check=check, stdin=subprocess.DEVNULL
    )


def stop_pid(pid: int, timeout: float = 20.0) -> None:
    """SIGTERM the process `pid` (SIGKILL after `timeout`) and wait until it is gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and not _zombie(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
        time.sleep(0.05)


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def stop_child(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        stop_pid(process.pid)
    process.wait()


def unmount_below(path: Path) -> None:
    with open("/proc/self/mounts") as f:
        targets = [line.split()[1] for line in f if line.split()[1].startswith(f"{path}/")]
    for target in sorted(targets, key=len, reverse=True):
        run("umount", target, check=False)
    with open("/proc/self/mounts") as f:
        left = [line.split()[1] for line in f if line.split()[1].startswith(f"{path}/")]
    for target in sorted(left, key=len, reverse=True):
        run("umount", "-l", target, check=False)


def remove_cgroups(name: str) -> None:
    """Remove /sys/fs/cgroup/<hierarchy>/<name> and everything below it, leaves first."""
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        top = hierarchy / name
        if not top.is_dir():
            continue
        for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)


def free_cidrs(count: int) -> list[str]:
    """`count` /24s in 10.200-254.x that overlap no route or address on the host."""
    used: list[ipaddress.IPv4Network] = []
    for line in run("ip", "-4", "route", "show", "table", "all").stdout.splitlines():
        dest = line.split()[0] if line.split() else ""
        if dest in ("default", "broadcast", "local", "unreachable"):
            dest = line.split()[1] if len(line.split()) > 1 else ""
        with contextlib.suppress(ValueError):
            used.append(ipaddress.IPv4Network(dest, strict=False))
    for line in run("ip", "-4", "-o", "addr").stdout.splitlines():
        with contextlib.suppress(ValueError, IndexError):
            used.append(ipaddress.IPv4Interface(line.split()[3]).network)
    found: list[str] = []
    for second in range(247, 200, -1):
        candidate = ipaddress.IPv4Network(f"10.{second}.0.0/24")
        if not any(candidate.overlaps(u) for u in used if u.prefixlen > 0):
            found.append(str(candidate))
            if len(found) == count:
                return found
    raise RuntimeError("no free 10.x.0.0/24 for the pod networks")


# ---- host state before/after ---------------------------------------------------------------


@dataclass(frozen=True)
class HostState:
    links: frozenset[str]
    rules: frozenset[str]
    mounts: frozenset[str]
    netns: frozenset[str]

    @staticmethod
    def take() -> HostState:
        links = run("ip", "-o", "link", "show").stdout.splitlines()
        names = frozenset(line.split(":")[1].strip().split("@")[0] for line in links)
        rules: set[str] = set()
        table = ""
        for line in run("iptables-save").stdout.splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(("-A", ":")):
                rules.add(f"{table} {line.split(' [')[0] if line.startswith(':') else line}")
        with open("/proc/self/mounts") as f:
            mounts = frozenset(line.split()[1] for line in f)
        netns_dir = Path("/var/run/netns")
        netns = frozenset(p.name for p in netns_dir.iterdir()) if netns_dir.is_dir() else None
        return HostState(names, frozenset(rules), mounts, netns or frozenset())

    def added_since(self, before: HostState, markers: tuple[str, ...]) -> list[str]:
        """What appeared since `before` and names one of `markers` (others' test runs
        change the host meanwhile too)."""
        out: list[str] = []
        for kind in ("links", "rules", "mounts", "netns"):
            new = getattr(self, kind) - getattr(before, kind)
            out += [f"{kind}: {x}" for x in sorted(new) if any(m in x for m in markers)]
        return out


# ---- the CRI client ------------------------------------------------------------------------


class CriClient:
    """The same client for both servers; every call returns its wall time in ms too."""

    def __init__(self, socket_path: Path) -> None:
        self.channel = grpc.insecure_channel(
            f"unix://{socket_path}",
            options=[("grpc.max_receive_message_length", 16 * 1024 * 1024)],
        )
        self.runtime = api_pb2_grpc.RuntimeServiceStub(self.channel)
        self.images = api_pb2_grpc.ImageServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def ready(self) -> bool:
        try:
            self.runtime.Version(api_pb2.VersionRequest(), timeout=2)
        except grpc.RpcError:
            return False
        return True

    def pull(self, ref: str) -> str:
        request = api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=ref))
        response: api_pb2.PullImageResponse = self.images.PullImage(request, timeout=120)
        return response.image_ref


@dataclass
class Pod:
    sandbox_id: str
    container_id: str
    times: dict[str, float] = field(default_factory=dict)


def timed_call(times: dict[str, float], name: str, call: Callable[[], object]) -> object:
    start = time.perf_counter()
    result = call()
    times[name] = (time.perf_counter() - start) * 1000
    return result


# ---- the two runtimes ----------------------------------------------------------------------


class Runtime(abc.ABC):
    """One CRI server under test: started by the bench, stopped by PID."""

    name = ""
    cgroup_root = ""

    def __init__(self, work: Path, images: dict[str, str]) -> None:
        self.work = work
        work.mkdir(parents=True)
        self.images = images
        self.socket = work / "cri.sock"
        self.logs = work / "pod-logs"
        self.log = work / f"{self.name}.log"  # the server's output
        self.client: CriClient | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.pods: list[Pod] = []

    @property
    def cri(self) -> CriClient:
        assert self.client is not None
        return self.client

    def launch(self, argv: list[str]) -> None:
        """Start the server (output to self.log) and wait until it answers Version."""
        with self.log.open("ab") as log:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        self.process = process
        self.client = CriClient(self.socket)
        deadline = time.monotonic() + 60
        while not (self.socket.exists() and self.cri.ready()):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{self.name} did not start; its log ends:\n{tail}")
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def pull_images(self) -> None:
        for ref in self.images.values():
            self.cri.pull(ref)

    def sandbox_config(self, n: int) -> api_pb2.PodSandboxConfig:
        uid = uuid.uuid4().hex
        return api_pb2.PodSandboxConfig(
            metadata=api_pb2.PodSandboxMetadata(
                name=f"bench-{n}", uid=uid, namespace="kb-bench", attempt=0
            ),
            hostname=f"bench-{n}",
            log_directory=str(self.logs / uid),
            linux=api_pb2.LinuxPodSandboxConfig(
                cgroup_parent=f"/{self.cgroup_root}/pod{uid}",
                security_context=api_pb2.LinuxSandboxSecurityContext(
                    namespace_options=api_pb2.NamespaceOption(
                        network=api_pb2.POD, pid=api_pb2.CONTAINER, ipc=api_pb2.POD
                    )
                ),
            ),
        )

    def start_pod(self, n: int) -> Pod:
        config = self.sandbox_config(n)
        times: dict[str, float] = {}
        rt = self.cri.runtime
        sandbox = timed_call(
            times,
            "RunPodSandbox",
            lambda: rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config), timeout=60),
        )
        assert isinstance(sandbox, api_pb2.RunPodSandboxResponse)
        pod = Pod(sandbox.pod_sandbox_id, "", times)
        self.pods.append(pod)
        container = api_pb2.ContainerConfig(
            metadata=api_pb2.ContainerMetadata(name="sleep", attempt=0),
            image=api_pb2.ImageSpec(image=self.images["busybox"]),
            command=["sleep", "3600"],
            log_path="sleep/0.log",
            linux=api_pb2.LinuxContainerConfig(
                security_context=api_pb2.LinuxContainerSecurityContext(
                    namespace_options=api_pb2.NamespaceOption(
                        network=api_pb2.POD, pid=api_pb2.CONTAINER, ipc=api_pb2.POD
                    )
                )
            ),
        )
        request = api_pb2.CreateContainerRequest(
            pod_sandbox_id=pod.sandbox_id, config=container, sandbox_config=config
        )
        created = timed_call(
            times, "CreateContainer", lambda: rt.CreateContainer(request, timeout=60)
        )
        assert isinstance(created, api_pb2.CreateContainerResponse)
        pod.container_id = created.container_id
        start = api_pb2.StartContainerRequest(container_id=pod.container_id)
        timed_call(times, "StartContainer", lambda: rt.StartContainer(start, timeout=60))
        return pod

    def remove_pod(self, pod: Pod) -> None:
        rt, times = self.cri.runtime, pod.times
        if pod.container_id:
            cid = pod.container_id
            stop = api_pb2.StopContainerRequest(container_id=cid, timeout=0)
            timed_call(times, "StopContainer", lambda: rt.StopContainer(stop, timeout=60))
            remove = api_pb2.RemoveContainerRequest(container_id=cid)
            timed_call(times, "RemoveContainer", lambda: rt.RemoveContainer(remove, timeout=60))
        sid = pod.sandbox_id
        stop_sandbox = api_pb2.StopPodSandboxRequest(pod_sandbox_id=sid)
        timed_call(times, "StopPodSandbox", lambda: rt.StopPodSandbox(stop_sandbox, timeout=60))
        remove_sandbox = api_pb2.RemovePodSandboxRequest(pod_sandbox_id=sid)
        timed_call(
            times, "RemovePodSandbox", lambda: rt.RemovePodSandbox(remove_sandbox, timeout=60)
        )
        self.pods.remove(pod)

    def lifecycle(self, n: int) -> dict[str, float]:
        pod = self.start_pod(n)
        self.remove_pod(pod)
        return pod.times

    def remove_all_pods(self) -> None:
        """Every pod the bench started, and any other the server lists (a failed run)."""
        for pod in list(self.pods):
            with contextlib.suppress(grpc.RpcError):
                self.remove_pod(pod)
        with contextlib.suppress(grpc.RpcError):
            listed = self.cri.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=30)
            for sandbox in listed.items:
                request = api_pb2.StopPodSandboxRequest(pod_sandbox_id=sandbox.id)
                self.cri.runtime.StopPodSandbox(request, timeout=60)
                remove = api_pb2.RemovePodSandboxRequest(pod_sandbox_id=sandbox.id)
                self.cri.runtime.RemovePodSandbox(remove, timeout=60)

    @abc.abstractmethod
    def start(self) -> None: ...

    @abc.abstractmethod
    def overhead_pids(self) -> dict[str, list[int]]:
        """Processes whose memory counts: {"daemon": [...], "per node": [...]}."""

    @abc.abstractmethod
    def stop(self) -> None: ...


class Kubeling(Runtime):
    name = "kubeling"
    cgroup_root = "kb-bench-kubeling"

    def __init__(self, work: Path, images: dict[str, str], cidr: str) -> None:
        super().__init__(work, images)
        self.cidr = cidr
        self.state = work / "state"
        self.netns_dir = work / "netns"
        registries = work / "registries.toml"
        registries.write_text("# loopback registries are insecure by default\n")
        self.argv = [
            KUBELING, "cri",
            "--socket", str(self.socket), "--state-dir", str(self.state),
            "--images-root", str(work / "images"), "--registries", str(registries),
            "--pod-cidr", cidr, "--bridge", KUBELING_BRIDGE,
            "--chain-prefix", CHAIN_PREFIX, "--veth-prefix", VETH_PREFIX,
            "--netns-dir", str(self.netns_dir), "--streaming-address", "127.0.0.1:0",
            "--sandbox-image", images["pause"], "--log-level", "warning",
        ]  # fmt: skip

    def start(self) -> None:
        self.launch(self.argv)

    def supervisor_pid(self) -> int | None:
        try:
            text = (self.state / "supervisor" / "supervisor.pid").read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def overhead_pids(self) -> dict[str, list[int]]:
        supervisor = self.supervisor_pid()
        return {"daemon": [self.pid], "per node": [supervisor] if supervisor else []}

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.process is not None:
            stop_child(self.process)
        supervisor = self.supervisor_pid()
        if supervisor is not None:
            stop_pid(supervisor)
        # kubeling leaves its bridge, chains and netns mount after the last pod (by
        # design); destroy them with its own code and the same configuration.
        from cri.network import NetworkConfig, NetworkManager

        config = NetworkConfig(
            bridge=KUBELING_BRIDGE,
            pod_cidr=self.cidr,
            state_dir=self.state / "network",
            netns_dir=self.netns_dir,
            veth_prefix=VETH_PREFIX,
            chain_prefix=CHAIN_PREFIX,
        )
        NetworkManager(config).destroy()
        unmount_below(self.work)
        remove_cgroups(self.cgroup_root)


class Containerd(Runtime):
    name = "containerd"
    cgroup_root = "kb-bench-containerd"

    def __init__(self, work: Path, images: dict[str, str], cidr: str, registry: str) -> None:
        super().__init__(work, images)
        cni_conf = work / "cni"
        cni_conf.mkdir(parents=True)
        (cni_conf / "10-kb-bench.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": CNI_NETWORK,
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": CONTAINERD_BRIDGE,
                            "isGateway": True,
                            "ipMasq": True,
                            "promiscMode": True,
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": cidr}]],
                                "routes": [{"dst": "0.0.0.0/0"}],
                                "dataDir": str(work / "cni-ipam"),
                            },
                        },
                        {"type": "portmap", "capabilities": {"portMappings": True}},
                    ],
                },
                indent=2,
            )
        )
        hosts = work / "certs.d" / registry
        hosts.mkdir(parents=True)
        (hosts / "hosts.toml").write_text(
            f'server = "http://{registry}"\n\n'
            f'[host."http://{registry}"]\n'
            '  capabilities = ["pull", "resolve"]\n'
            "  skip_verify = true\n"
        )
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        config = work / "config.toml"
        config.write_text(
            "version = 2\n"
            f'root = "{work / "root"}"\n'
            f'state = "{work / "state"}"\n'
            "[grpc]\n"
            f'  address = "{self.socket}"\n'
            '[plugins."io.containerd.internal.v1.opt"]\n'
            f'  path = "{work / "opt"}"\n'
            f"[{cri}]\n"
            f'  sandbox_image = "{images["pause"]}"\n'
            "  restrict_oom_score_adj = true\n"
            "  disable_apparmor = true\n"
            '  stream_server_address = "127.0.0.1"\n'
            '  stream_server_port = "0"\n'
            f"[{cri}.cni]\n"
            '  bin_dir = "/usr/lib/cni"\n'
            f'  conf_dir = "{cni_conf}"\n'
            "  max_conf_num = 1\n"
            f"[{cri}.registry]\n"
            f'  config_path = "{work / "certs.d"}"\n'
            f"[{cri}.containerd]\n"
            '  snapshotter = "overlayfs"\n'
            '  default_runtime_name = "runc"\n'
            f"[{cri}.containerd.runtimes.runc]\n"
            '  runtime_type = "io.containerd.runc.v2"\n'
            f"[{cri}.containerd.runtimes.runc.options]\n"
            '  BinaryName = "runc"\n'
            f'  Root = "{work / "runc"}"\n'
            "  SystemdCgroup = false\n"
        )
        self.config = config

    def start(self) -> None:
        self.launch(["containerd", "--config", str(self.config)])

    def shim_pids(self) -> list[int]:
        """containerd-shim-runc-v2 processes serving this containerd (by -address)."""
        pids: list[int] = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if not argv or not argv[0].endswith(b"containerd-shim-runc-v2"):
                continue
            if os.fsencode(str(self.socket)) in argv:
                pids.append(int(entry.name))
        return pids

    def overhead_pids(self) -> dict[str, list[int]]:
        return {"daemon": [self.pid], "per node": self.shim_pids()}

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.process is not None:
            stop_child(self.process)
        for pid in self.shim_pids():  # none once every pod is removed
            print(f"containerd: stopping leftover shim {pid}")
            stop_pid(pid)
        unmount_below(self.work)
        run("ip", "link", "delete", CONTAINERD_BRIDGE, check=False)
        remove_cgroups(self.cgroup_root)


# ---- memory --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Memory:
    rss: float  # MiB
    pss: float
    uss: float

    def __add__(self, other: Memory) -> Memory:
        return Memory(self.rss + other.rss, self.pss + other.pss, self.uss + other.uss)

    def __sub__(self, other: Memory) -> Memory:
        return Memory(self.rss - other.rss, self.pss - other.pss, self.uss - other.uss)

    def __truediv__(self, n: float) -> Memory:
        return Memory(self.rss / n, self.pss / n, self.uss / n)


ZERO = Memory(0.0, 0.0, 0.0)


def children_of(parents: list[int]) -> list[int]:
    """The processes whose parent is one of `parents` (the containers' init processes)."""
    wanted, found = set(parents), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError):
            stat = (entry / "stat").read_text()
            if int(stat.rpartition(")")[2].split()[1]) in wanted:
                found.append(int(entry.name))
    return found


def memory_of(pids: list[int]) -> Memory:
    total = ZERO
    for pid in pids:
        fields: dict[str, int] = {}
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
                key, _, value = line.partition(":")
                fields[key] = int(value.split()[0])
        private = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
        kib = Memory(fields.get("Rss", 0), fields.get("Pss", 0), private)
        total = total + kib / 1024
    return total


@dataclass
class MemoryResult:
    pods: int
    daemon_before: Memory
    daemon_after: Memory
    node_before: Memory
    node_after: Memory
    node_processes: int
    containers: Memory  # the pods' own processes (pause, sleep), for comparison only
    container_processes: int

    @property
    def per_pod(self) -> Memory:
        """Per-node processes whole (shims / supervisor) plus the daemon's growth."""
        return (self.node_after + (self.daemon_after - self.daemon_before)) / self.pods

    @property
    def per_pod_growth(self) -> Memory:
        """Only what grew from the empty baseline (the supervisor's base size left out)."""
        grown = (self.node_after - self.node_before) + (self.daemon_after - self.daemon_before)
        return grown / self.pods


def measure_memory(runtime: Runtime, pods: int) -> MemoryResult:
    time.sleep(1.0)
    before = runtime.overhead_pids()
    daemon_before, node_before = memory_of(before["daemon"]), memory_of(before["per node"])
    started = [runtime.start_pod(1000 + n) for n in range(pods)]
    time.sleep(2.0)  # let the shims and the supervisor settle
    after = runtime.overhead_pids()
    result = MemoryResult(
        pods=pods,
        daemon_before=daemon_before,
        daemon_after=memory_of(after["daemon"]),
        node_before=node_before,
        node_after=memory_of(after["per node"]),
        node_processes=len(after["per node"]),
        containers=memory_of(children_of(after["per node"])),
        container_processes=len(children_of(after["per node"])),
    )
    for pod in started:
        runtime.remove_pod(pod)
    return result


# ---- the run -------------------------------------------------------------------------------


def build_images(work: Path, registry: LocalRegistry) -> dict[str, str]:
    layout = work / "layout"
    run(
        KUBELING, "images", "build-busybox", "--layout", str(layout),
        "--push", registry.host, "--name", "busybox", "--name", "pause",
    )  # fmt: skip
    return {name: f"{registry.host}/kubeling/{name}:latest" for name in ("busybox", "pause")}


def measure_latency(runtimes: list[Runtime], rounds: int) -> dict[str, list[dict[str, float]]]:
    samples: dict[str, list[dict[str, float]]] = {r.name: [] for r in runtimes}
    for runtime in runtimes:  # warm up: first sandbox, first container, caches
        runtime.lifecycle(0)
    for n in range(rounds):
        order = runtimes if n % 2 == 0 else runtimes[::-1]
        for runtime in order:
            samples[runtime.name].append(runtime.lifecycle(n + 1))
    return samples


def report_latency(samples: dict[str, list[dict[str, float]]], kub: str, ctr: str) -> None:
    rounds = len(samples[kub])
    print(f"\nCRI latency, client-side ms, median of {rounds} pods per runtime (same run)")
    print(f"  {'RPC':<18}{kub:>10}{ctr:>12}{'ratio':>8}{kub + ' p90':>14}{ctr + ' p90':>16}")
    rows = [(name, [s[name] for s in samples[kub]], [s[name] for s in samples[ctr]])
            for name in LIFECYCLE]  # fmt: skip
    rows.append(("pod start", [sum(s[n] for n in START) for s in samples[kub]],
                 [sum(s[n] for n in START) for s in samples[ctr]]))  # fmt: skip
    for name, ours, theirs in rows:
        a, b = statistics.median(ours), statistics.median(theirs)
        spread = f"{p90(ours):>14.1f}{p90(theirs):>16.1f}"
        print(f"  {name:<18}{a:>10.1f}{b:>12.1f}{a / b:>7.2f}x{spread}")
    print("  pod start = RunPodSandbox + CreateContainer + StartContainer of the same pod")
    ratio = statistics.median(rows[-1][1]) / statistics.median(rows[-1][2])
    print(f"  target: pod start <= 0.50x containerd's; this run {ratio:.2f}x")


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(int(len(ordered) * 0.9) - 1, 0)]


def report_memory(results: dict[str, MemoryResult]) -> None:
    pods = next(iter(results.values())).pods
    print(f"\nmemory with {pods} running pods (MiB; container processes not counted)")
    print(f"  {'':<54}{'RSS':>8}{'PSS':>8}{'USS':>8}")

    def line(label: str, m: Memory) -> None:
        print(f"  {label:<54}{m.rss:>8.2f}{m.pss:>8.2f}{m.uss:>8.2f}")

    for name, r in results.items():
        node = "shims" if name == "containerd" else "supervisor"
        line(f"{name}: {r.node_processes} {node}, total", r.node_after)
        line(f"{name}: {node} before (no pods)", r.node_before)
        line(f"{name}: daemon before", r.daemon_before)
        line(f"{name}: daemon growth", r.daemon_after - r.daemon_before)
        line(f"{name}: per pod, ({node} + daemon growth) / {pods}", r.per_pod)
        line(f"{name}: per pod, growth only", r.per_pod_growth)
        line(f"{name}: {r.container_processes} pod processes (not counted above)", r.containers)
    if {"kubeling", "containerd"} <= results.keys():
        k, c = results["kubeling"].per_pod, results["containerd"].per_pod
        print(f"  per pod kubeling/containerd: RSS {k.rss / c.rss:.2f}x, "
              f"PSS {k.pss / c.pss:.2f}x, USS {k.uss / c.uss:.2f}x")  # fmt: skip
        print(f"  target: <= 2 MiB per running pod; kubeling {k.pss:.2f} MiB PSS, "
              f"{k.rss:.2f} MiB RSS")  # fmt: skip


@contextlib.contextmanager
def workspace(keep: bool) -> Iterator[Path]:
    work = Path(tempfile.mkdtemp(prefix="kb-cri-"))  # short: unix socket paths
    try:
        yield work
    finally:
        unmount_below(work)
        if keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def ensure_containerd() -> None:
    missing = [t for t in ("containerd", "ctr", "containerd-shim-runc-v2", "runc")
               if shutil.which(t) is None]  # fmt: skip
    if not Path("/usr/lib/cni/bridge").exists():
        missing.append("cni plugins")
    if missing:
        print(f"installing containerd, runc, containernetworking-plugins ({missing} missing)")
        subprocess.run(
            ["apt-get", "install", "-y", "containerd", "runc", "containernetworking-plugins"],
            check=True,
            stdout=subprocess.DEVNULL,
            env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=15, help="measured pods per runtime")
    parser.add_argument("--memory-pods", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/cri_pod_start.py needs root (namespaces, mounts, iptables)", file=sys.stderr)
        return 2
    ensure_containerd()
    # SIGTERM unwinds like Ctrl-C, so the clean-up below runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    created = [p for p in ("/run/containerd", "/var/run/netns", "/var/lib/cni")
               if not os.path.exists(p)]  # fmt: skip
    before = HostState.take()
    kub_cidr, ctr_cidr = free_cidrs(2)
    runtimes: list[Runtime] = []
    try:
        with workspace(args.keep) as work, LocalRegistry(work / "registry") as registry:
            images = build_images(work, registry)
            print(f"images {images['busybox']}, sandbox {images['pause']}")
            print(f"kubeling: {kub_cidr} on {KUBELING_BRIDGE}; "
                  f"containerd: {ctr_cidr} on {CONTAINERD_BRIDGE}")  # fmt: skip
            try:
                runtimes.append(Kubeling(work / "k", images, kub_cidr))
                runtimes.append(Containerd(work / "c", images, ctr_cidr, registry.host))
                for runtime in runtimes:
                    runtime.start()
                    runtime.pull_images()
                samples = measure_latency(runtimes, args.pods)
                memory = {r.name: measure_memory(r, args.memory_pods) for r in runtimes}
            finally:
                for runtime in runtimes:
                    try:
                        if runtime.client is not None:
                            runtime.remove_all_pods()
                    finally:
                        runtime.stop()
    finally:
        for path in created:  # made by containerd (shim sockets, netns, CNI cache)
            if os.path.isdir(path) and all(p.is_dir() for p in Path(path).rglob("*")):
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.isdir(path):
                print(f"left {path}: not empty")
    report_latency(samples, "kubeling", "containerd")
    report_memory(memory)
    markers = (KUBELING_BRIDGE, CONTAINERD_BRIDGE, CHAIN_PREFIX, VETH_PREFIX, "CNI-",
               kub_cidr, ctr_cidr, "kb-cri-", "cni-", CNI_NETWORK)  # fmt: skip
    left = HostState.take().added_since(before, markers)
    print("\nhost after the run: " + ("nothing of ours left" if not left else "LEFT:"))
    for item in left:
        print(f"  {item}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
