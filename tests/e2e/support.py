"""Helpers of the e2e tests: one `kubeling up` cluster (`Cluster`: its flags, its
commands, kubectl and an API client on its admin kubeconfig) and `force_cleanup`,
which removes whatever a failed run left on the host."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cri.supervisor.client import running_supervisor
from kubeapi.client import Client
from tests.integration.control.support import wait_for as poll
from tests.integration.cri.support import mounted, run

KUBELING = str(Path(sys.executable).parent / "kubeling")
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Cluster:
    root: Path
    node_name: str
    api_port: int
    kubelet_port: int
    pod_cidr: str
    bridge: str
    chain_prefix: str
    veth_prefix: str
    cgroup_root: str

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "etc" / "admin.kubeconfig"

    def up_args(self) -> list[str]:
        root = self.root
        return [
            "--data-dir", str(self.data_dir), "--run-dir", str(self.run_dir),
            "--log-dir", str(root / "log"), "--config-dir", str(root / "etc"),
            "--listen", f"127.0.0.1:{self.api_port}", "--kubelet-port", str(self.kubelet_port),
            "--node-name", self.node_name, "--node-ip", "127.0.0.1",
            "--pod-cidr", self.pod_cidr, "--bridge", self.bridge,
            "--chain-prefix", self.chain_prefix, "--veth-prefix", self.veth_prefix,
            "--cgroup-root", self.cgroup_root, "--timeout", "120",
            "--kubelet-arg", "file-check-frequency=1s",  # static pods seen at once
        ]  # fmt: skip

    def up(self, *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [KUBELING, "up", "--detach", *self.up_args(), *extra],
            capture_output=True, text=True, timeout=200, cwd=REPO,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(f"kubeling up: {result.returncode}\n{result.stdout}"
                                 f"{result.stderr}\n{self.logs()}")  # fmt: skip
        return result

    def down(self, *, purge: bool = False, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [KUBELING, "down", "--run-dir", str(self.run_dir)] + (["--purge"] if purge else [])
        result = subprocess.run(argv, capture_output=True, text=True, timeout=200)
        if check and result.returncode != 0:
            raise AssertionError(f"kubeling down: {result.returncode}\n{result.stderr}")
        return result

    def logs(self, tail: int = 3000) -> str:
        out = []
        for log in sorted((self.root / "log").glob("*.log")):
            out.append(f"== {log.name}\n{log.read_text(errors='replace')[-tail:]}")
        return "\n".join(out)

    def client(self) -> Client:
        return Client.from_kubeconfig(self.kubeconfig, timeout=20)

    def kubectl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig),
               "KUBECACHEDIR": str(self.root / "kubecache")}  # fmt: skip
        result = subprocess.run(["kubectl", *args], env=env, capture_output=True, text=True,
                                timeout=timeout, cwd=REPO)  # fmt: skip
        if result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr}")
        return result

    def pids(self) -> dict[str, int]:
        """The `up` process, its children and the CRI's supervisor, by name."""
        found: dict[str, int] = {}
        files = [("up", self.run_dir / "up.pid")]
        files += [(p.stem, p) for p in (self.run_dir / "pids").glob("*.pid")]
        for name, path in files:
            with contextlib.suppress(OSError, ValueError):
                found[name] = int(path.read_text().strip())
        supervisor = self.data_dir / "cri" / "supervisor"
        if supervisor.is_dir() and (pid := running_supervisor(supervisor)) > 0:
            found["supervisor"] = pid
        return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def wait_for(probe: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """The control tests' wait_for, polling a whole cluster less often."""
    return poll(probe, timeout, what=what, interval=0.25)


def http_get(url: str, timeout: float = 3.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return str(response.read().decode())


def force_cleanup(cluster: Cluster) -> None:
    """Kill what still runs (by the pids the cluster recorded, and the containers in
    its cgroups), remove its network, cgroups, mounts and files."""
    for name, pid in cluster.pids().items():
        if alive(pid):
            print(f"e2e cleanup: killing {name} (pid {pid})")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    cgroup_dirs = [Path("/sys/fs/cgroup") / cluster.cgroup_root.lstrip("/")] + [
        entry / cluster.cgroup_root.lstrip("/") for entry in Path("/sys/fs/cgroup").iterdir()
        if entry.is_dir()
    ]  # fmt: skip
    for top in cgroup_dirs:
        if not top.is_dir():
            continue
        for directory, _, _ in os.walk(top):
            procs = Path(directory) / "cgroup.procs"
            with contextlib.suppress(OSError):
                for process in procs.read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(process), signal.SIGKILL)
    for target in sorted(mounted(str(cluster.root)), key=len, reverse=True):
        run("umount", "-l", target, check=False)
    for top in cgroup_dirs:
        if top.is_dir():
            for directory, _, _ in sorted(os.walk(top), key=lambda e: -len(e[0])):
                for _ in range(20):
                    try:
                        os.rmdir(directory)
                        break
                    except OSError:
                        time.sleep(0.1)
    links = json.loads(run("ip", "-j", "link", "show").stdout or "[]")
    for link in links:
        name = str(link.get("ifname", ""))
        if name == cluster.bridge or name.startswith(cluster.veth_prefix):
            run("ip", "link", "delete", name, check=False)
    for table in ("filter", "nat"):
        rules = run("iptables", "-t", table, "-S").stdout.splitlines()
        for rule in rules:
            if rule.startswith("-A ") and cluster.chain_prefix in rule:
                delete = shlex.split(rule.replace("-A ", "-D ", 1))
                run("iptables", "-t", table, *delete, check=False)
        for rule in rules:
            if rule.startswith("-N ") and rule.split()[1].startswith(cluster.chain_prefix):
                run("iptables", "-t", table, "-F", rule.split()[1], check=False)
                run("iptables", "-t", table, "-X", rule.split()[1], check=False)
    shutil.rmtree(cluster.root, ignore_errors=True)
