"""`kubeling up`, `kubeling down`, `kubeling kubeconfig`: a single-node cluster with one
command, as root.

    kubeling up [--detach] [--data-dir /var/lib/kubeling] [--run-dir /run/kubeling]
                [--log-dir /var/log/kubeling] [--config-dir /etc/kubeling]
                [--listen 127.0.0.1:6443] [--kubelet-port 10250] [--node-name NAME]
                [--node-ip IP] [--pod-cidr 10.85.0.0/16] [--bridge kubeling0]
                [--chain-prefix KUBELING] [--veth-prefix veth] [--cgroup-root /]
                [--kubelet-arg FLAG=VALUE ...] [--timeout 300]
    kubeling down [--run-dir /run/kubeling] [--purge] [--timeout 120]
    kubeling kubeconfig [--config-dir /etc/kubeling]

Process model: `up` is the parent of five child processes, each in its own session
with its output in <log-dir>/<name>.log: the API server (SQLite store), the CRI
server, the scheduler, the controller-manager and the kubelet. The CRI server's node
supervisor (the parent of the containers) is a daemon of its own, as always. `up`
prepares credentials (see kubeling.cluster), imports the node images, starts the
children in dependency order, waits until the node is Ready, prints how to reach the
cluster, then supervises: a child that dies is reported and restarted with back-off
(1 s doubling to 30 s). With --detach it does the same in the background and returns
once the node is Ready.

Stopping (Ctrl-C, SIGTERM, or `kubeling down` from elsewhere, which signals the pid
in <run-dir>/up.pid): the kubelet first (so nothing reacts), the controller-manager
and the scheduler, then every pod sandbox is stopped through CRI (its containers get
SIGTERM), then the CRI server, its supervisor, and the API server last. The state
stays: the store (pods keep their node and spec), certificates, images and the
runtime's records. The next `up` resumes the same cluster: the kubelet finds its pods'
sandboxes stopped and starts them again, as after a reboot of a Kubernetes node.
`down --purge` removes the pods' sandboxes and containers instead of stopping them,
and then the pod network (bridge, iptables chains, netns mount) and the pod cgroups:
nothing of the cluster stays on the host but its files.
"""

from __future__ import annotations

import argparse
import datetime
import fcntl
import ipaddress
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TextIO

from control.apiserver.main import parse_listen
from kubeapi.client import ApiError, Client
from kubeling.cluster import Layout, import_node_images, issue_credentials
from kubeling.cluster_processes import Children, alive, stop_leftovers, terminate

DEFAULTS = {
    "data_dir": "/var/lib/kubeling",
    "run_dir": "/run/kubeling",
    "log_dir": "/var/log/kubeling",
    "config_dir": "/etc/kubeling",
}
STOP_ORDER_BEFORE_PODS = ("kubelet", "controller-manager", "scheduler")


class UpError(Exception):
    """A reason `up` cannot go on, said in one line."""


def kubeling_command() -> list[str]:
    """How to run `kubeling` itself: the console script beside this interpreter."""
    script = Path(sys.executable).parent / "kubeling"
    if script.exists():
        return [sys.executable, str(script)]
    return [sys.executable, "-m", "kubeling.cli"]


LAYOUT_HELP = {
    "data_dir": "the store, certificates, images, runtime and kubelet state",
    "run_dir": "the CRI socket, network namespaces, up.pid",
    "log_dir": "one log per component",
    "config_dir": "admin.kubeconfig, registries.toml, manifests/ (static pods)",
}


def add_layout_arguments(parser: argparse.ArgumentParser, *names: str) -> None:
    for name in names:
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=Path, default=Path(DEFAULTS[name]), metavar="DIR",
                            help=f"{LAYOUT_HELP[name]} (default {DEFAULTS[name]})")  # fmt: skip


def layout_of(args: argparse.Namespace) -> Layout:
    def given(name: str) -> Path:
        return Path(getattr(args, name, None) or DEFAULTS[name]).absolute()

    return Layout(given("data_dir"), given("run_dir"), given("log_dir"), given("config_dir"))


# -- the lock that says an `up` runs -----------------------------------------------------


@contextmanager
def holding(lock_file: Path) -> Iterator[bool]:
    """Try to hold the `up` lock; yields whether we got it (False: an `up` runs)."""
    lock_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(lock_file, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def running_pid(layout: Layout) -> int:
    """The pid of the `up` that holds the lock, 0 when none does."""
    if not layout.lock_file.exists():
        return 0
    with holding(layout.lock_file) as free:
        if free:
            return 0
    try:
        return int(layout.pid_file.read_text().strip())
    except (OSError, ValueError):
        return -1  # locked, but the pid file is being written


# -- up --------------------------------------------------------------------------------


def up_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubeling up", description="start a single-node kubeling cluster (as root)"
    )
    add_layout_arguments(parser, "data_dir", "run_dir", "log_dir", "config_dir")
    parser.add_argument("--detach", action="store_true",
                        help="run in the background; return once the node is Ready")  # fmt: skip
    parser.add_argument("--listen", default="127.0.0.1:6443", help="the API server's host:port")
    parser.add_argument("--kubelet-port", type=int, default=10250)
    parser.add_argument("--node-name", default="")
    parser.add_argument("--node-ip", default="", help="default: the default route's address")
    parser.add_argument("--pod-cidr", default="10.85.0.0/16")
    parser.add_argument("--bridge", default="kubeling0")
    parser.add_argument("--chain-prefix", default="KUBELING")
    parser.add_argument("--veth-prefix", default="veth")
    parser.add_argument("--cgroup-root", default="/", help="pod cgroups go below <root>/kubepods")
    parser.add_argument(
        "--kubelet-arg", action="append", default=[], metavar="FLAG=VALUE",
        help="one more kubelet flag, as k3s takes it (file-check-frequency=5s); repeatable",
    )  # fmt: skip
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds to wait for the node to be Ready")  # fmt: skip
    return parser


class Up:
    """One `up`: prepare, start, wait for Ready, supervise, stop."""

    def __init__(self, args: argparse.Namespace, out: TextIO) -> None:
        self.args = args
        self.out = out
        self.layout = layout_of(args)
        self.stop = threading.Event()
        self.children = Children(self.layout.pids_dir, self.say)
        self.node_name = (args.node_name or os.uname().nodename).lower()
        self.node_ip = args.node_ip or default_node_ip()
        host, port = parse_listen(args.listen)
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        self.server = f"https://[{shown}]:{port}" if ":" in shown else f"https://{shown}:{port}"
        self.kubeling = kubeling_command()

    def say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def wait(self, probe: Callable[[], Any], what: str, timeout: float) -> Any:
        """Poll `probe` (supervising the children meanwhile) until it is truthy."""
        deadline = time.monotonic() + timeout
        while not self.stop.is_set():
            self.children.check()
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                raise UpError(f"timed out after {timeout:.0f}s waiting for {what}")
            self.stop.wait(0.25)
        raise UpError(f"stopped while waiting for {what}")

    def run(self) -> int:
        layout = self.layout
        # SIGHUP too: a closed terminal stops the cluster in order, not `up` alone.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda *_: self.stop.set())
        started = time.monotonic()
        try:
            self.start_all()
            self.wait_ready()
        except UpError as e:
            self.say(f"kubeling up: {e}")
            self.shutdown()
            return 1
        except Exception as e:  # one line of what stopped it; the children stop too
            self.say(f"kubeling up: {type(e).__name__}: {e}")
            self.shutdown()
            return 1
        self.say(f"node {self.node_name} is Ready, {time.monotonic() - started:.1f}s after start")
        self.print_usage()
        layout.ready_file.write_text(f"{os.getpid()}\n")
        while not self.stop.wait(0.5):
            self.children.check()
        self.say("stopping kubeling")
        self.shutdown()
        return 0

    def start_all(self) -> None:
        layout = self.layout
        args = self.args
        stop_leftovers(layout.pids_dir, self.say)
        credentials = issue_credentials(
            layout, server=self.server, node_name=self.node_name, node_addresses=(self.node_ip,)
        )
        imported = import_node_images(layout.images_dir, layout.registries)
        if imported:
            self.say(f"imported the node images: {', '.join(imported)}")
        self.start("apiserver", [
            "apiserver", "--data-dir", str(layout.control_dir), "--listen", args.listen,
            "--policy-file", str(layout.policy_file),
            # The kubelet's serving certificate is issued by the cluster CA: check it.
            "--kubelet-certificate-authority", str(credentials.ca),
        ])  # fmt: skip
        admin = layout.control_dir / "admin.kubeconfig"
        self.wait(lambda: api_answers(admin), "the API server to answer", 60)
        shutil.copyfile(admin, layout.admin_kubeconfig)
        os.chmod(layout.admin_kubeconfig, 0o600)
        self.say(f"API server ready at {self.server}")
        socket_path = layout.cri_socket
        self.start("cri", [
            "cri", "--socket", str(socket_path), "--images-root", str(layout.images_dir),
            "--registries", str(layout.registries), "--state-dir", str(layout.cri_dir),
            "--pod-cidr", args.pod_cidr, "--bridge", args.bridge,
            "--chain-prefix", args.chain_prefix, "--veth-prefix", args.veth_prefix,
            "--netns-dir", str(layout.netns_dir),
        ])  # fmt: skip
        self.wait(lambda: cri_answers(socket_path), "the CRI server to answer", 60)
        self.say(f"CRI server ready on unix://{socket_path}")
        self.start("scheduler", ["scheduler", "--kubeconfig", str(credentials.scheduler)])
        self.start("controller-manager", [
            "controller-manager", "--kubeconfig", str(credentials.controller_manager),
        ])  # fmt: skip
        manifests = layout.config_dir / "manifests"
        manifests.mkdir(exist_ok=True)
        loopback = ipaddress.ip_address(self.node_ip).is_loopback
        self.start("kubelet", [
            "kubelet", "--kubeconfig", str(credentials.kubelet), "--node-name", self.node_name,
            "--container-runtime-endpoint", f"unix://{socket_path}",
            "--root-dir", str(layout.kubelet_dir), "--pod-manifest-path", str(manifests),
            "--address", self.node_ip if loopback else "0.0.0.0",
            "--port", str(args.kubelet_port),
            "--tls-cert-file", str(credentials.kubelet_serving.certificate),
            "--tls-private-key-file", str(credentials.kubelet_serving.key),
            "--client-ca-file", str(credentials.ca), "--node-ip", self.node_ip,
            "--pod-cidr", args.pod_cidr, "--cgroup-root", args.cgroup_root,
            *(f"--{extra.removeprefix('--')}" for extra in args.kubelet_arg),
        ])  # fmt: skip

    def start(self, name: str, argv: list[str]) -> None:
        child = self.children.start(name, [*self.kubeling, *argv], self.layout.log(name))
        self.say(f"started {name} (pid {child.pid}, log {child.log})")

    def wait_ready(self) -> float:
        client = Client.from_kubeconfig(self.layout.admin_kubeconfig, timeout=10)
        said: list[str] = []
        started = time.monotonic()
        since = time.time() - 1  # heartbeats have whole seconds

        def ready() -> bool:
            try:
                node = client.get(f"/api/v1/nodes/{self.node_name}")
            except ApiError as e:
                line = f"waiting for node {self.node_name} to register" if e.code == 404 else str(e)
                self._once(said, line)
                return False
            except OSError as e:
                self._once(said, f"waiting for the API server: {e}")
                return False
            condition: dict[str, Any] = next(
                (c for c in (node.get("status") or {}).get("conditions") or []
                 if c.get("type") == "Ready"), {},
            )  # fmt: skip
            # A Ready condition from before this `up` (the store keeps the last status
            # the previous kubelet posted) does not count: wait for a fresh heartbeat.
            if condition.get("status") == "True":
                if heartbeat_after(condition, since):
                    return True
                self._once(said, f"waiting for the kubelet of node {self.node_name} to post")
                return False
            why = condition.get("message") or "no Ready condition yet"
            self._once(said, f"node {self.node_name} registered, not Ready yet: {why}")
            return False

        try:
            self.wait(ready, f"node {self.node_name} to be Ready", self.args.timeout)
        finally:
            client.close()
        return time.monotonic() - started

    def _once(self, said: list[str], line: str) -> None:
        if not said or said[-1] != line:
            said.append(line)
            self.say(line)

    def print_usage(self) -> None:
        layout = self.layout
        self.say(
            f"kubeling is up: API {self.server}, node {self.node_name} ({self.node_ip})\n"
            f"  kubeconfig: {layout.admin_kubeconfig}   (`kubeling kubeconfig` prints it)\n"
            f"  logs:       {layout.log_dir}/<component>.log\n"
            f"  use it:     export KUBECONFIG={layout.admin_kubeconfig}\n"
            f"              kubectl get nodes\n"
            f"              kubectl apply -f examples/web.yaml\n"
            f"  stop it:    {'Ctrl-C here, or ' if self.out.isatty() else ''}`kubeling down"
            + (
                f" --run-dir {layout.run_dir}`"
                if str(layout.run_dir) != DEFAULTS["run_dir"]
                else "`"
            )
        )

    # -- stopping ------------------------------------------------------------------------

    def shutdown(self) -> None:
        layout = self.layout
        purge = layout.purge_request.exists()
        layout.ready_file.unlink(missing_ok=True)
        self.children.stop(*STOP_ORDER_BEFORE_PODS)
        if self.children.children.get("cri") is not None and cri_answers(layout.cri_socket):
            self.stop_pods(remove=purge)
        self.children.stop("cri")
        self.stop_supervisor()
        if purge:
            self.remove_network()
            removed = remove_pod_cgroups(self.args.cgroup_root)
            if removed:
                self.say(f"removed {removed} pod cgroups")
        self.children.stop("apiserver")
        layout.purge_request.unlink(missing_ok=True)
        self.say("kubeling stopped" + (" and its pods removed" if purge else "; state kept"))

    def stop_pods(self, *, remove: bool) -> None:
        from cri.api import api_pb2
        from kubelet.cri_client import CriClient

        cri = CriClient(f"unix://{self.layout.cri_socket}", timeout=60)
        try:
            sandboxes = cri.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=30)
            done = 0
            for sandbox in sandboxes.items:
                if remove:
                    request = api_pb2.RemovePodSandboxRequest(pod_sandbox_id=sandbox.id)
                    cri.runtime.RemovePodSandbox(request, timeout=60)
                    done += 1
                elif sandbox.state == api_pb2.SANDBOX_READY:
                    request_stop = api_pb2.StopPodSandboxRequest(pod_sandbox_id=sandbox.id)
                    cri.runtime.StopPodSandbox(request_stop, timeout=60)
                    done += 1
            if done:
                self.say(f"{'removed' if remove else 'stopped'} {done} pod sandboxes")
        except Exception as e:  # grpc.RpcError and friends: keep stopping the rest
            self.say(f"could not stop the pods through CRI: {e}")
        finally:
            cri.close()

    def stop_supervisor(self) -> None:
        from cri.supervisor.client import running_supervisor

        pid = running_supervisor(self.layout.cri_dir / "supervisor")
        if pid > 0:
            self.say(f"stopping the CRI node supervisor (pid {pid})")
            terminate(pid)

    def remove_network(self) -> None:
        from cri.network import NetworkConfig, NetworkManager

        args = self.args
        config = NetworkConfig(
            bridge=args.bridge, pod_cidr=args.pod_cidr,
            state_dir=self.layout.cri_dir / "network", netns_dir=self.layout.netns_dir,
            chain_prefix=args.chain_prefix, veth_prefix=args.veth_prefix,
        )  # fmt: skip
        try:
            NetworkManager(config).destroy()
            self.say(
                f"removed the pod network (bridge {args.bridge}, chains {args.chain_prefix}-*)"
            )
        except Exception as e:  # whatever is left is reported, the stop goes on
            self.say(f"could not remove the pod network: {e}")


def heartbeat_after(condition: dict[str, Any], since: float) -> bool:
    stamp = str(condition.get("lastHeartbeatTime") or "")
    try:
        moment = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return False
    return moment.replace(tzinfo=datetime.UTC).timestamp() >= since


def api_answers(kubeconfig: Path) -> bool:
    if not kubeconfig.exists():
        return False
    try:
        client = Client.from_kubeconfig(kubeconfig, timeout=5)
    except (OSError, ValueError):
        return False
    try:
        client.get("/api/v1/namespaces/default")
        return True
    except (ApiError, OSError):
        return False
    finally:
        client.close()


def cri_answers(socket_path: Path) -> bool:
    if not socket_path.exists():
        return False
    import grpc

    from kubelet.cri_client import CriClient

    cri = CriClient(f"unix://{socket_path}", timeout=5)
    try:
        cri.wait_ready(2)
        return True
    except (grpc.RpcError, grpc.FutureTimeoutError):
        return False
    finally:
        cri.close()


def default_node_ip() -> str:
    from kubelet.node import Host

    return Host(Path("/")).default_route_address()


def remove_pod_cgroups(cgroup_root: str, *, mount: Path = Path("/sys/fs/cgroup")) -> int:
    """rmdir <cgroup_root>/kubepods and everything below it in every hierarchy (deepest
    first; a cgroup that still has processes stays); how many were removed."""
    root = Path(cgroup_root.strip("/"))
    hierarchies = [mount] + [entry for entry in mount.iterdir() if entry.is_dir()]
    removed = 0
    for hierarchy in hierarchies:
        top = hierarchy / root / "kubepods"
        if not top.is_dir():
            continue
        for directory, _, _ in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
            with suppress(OSError):
                os.rmdir(directory)
                removed += 1
        if root != Path("."):  # the cgroup root too, once empty (the kubelet made it)
            with suppress(OSError):
                os.rmdir(hierarchy / root)
                removed += 1
    return removed


def detach(args: argparse.Namespace, argv: list[str], out: TextIO) -> int:
    """Start `up` in the background (its output in <log-dir>/up.log), echo that output
    until the node is Ready (0) or `up` exits (1)."""
    import subprocess

    layout = layout_of(args)
    layout.make()
    layout.ready_file.unlink(missing_ok=True)
    log_path = layout.log("up")
    with open(log_path, "ab") as log:
        offset = log.tell()
        child = subprocess.Popen(
            [*kubeling_command(), "up", *[a for a in argv if a != "--detach"]],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    with open(log_path, "rb") as reader:
        reader.seek(offset)
        while True:
            chunk = reader.read()
            if chunk:
                out.write(chunk.decode(errors="replace"))
                out.flush()
            if layout.ready_file.exists():
                out.write(reader.read().decode(errors="replace"))
                out.write(f"kubeling up runs in the background (pid {child.pid}, log {log_path})\n")
                return 0
            if child.poll() is not None:
                out.write(reader.read().decode(errors="replace"))
                out.write(f"kubeling up: exited with status {child.returncode} (log {log_path})\n")
                return 1
            time.sleep(0.2)


def main_up(argv: list[str], out: TextIO = sys.stdout) -> int:
    args = up_parser().parse_args(argv)
    if os.geteuid() != 0:
        sys.stderr.write("kubeling up: needs root (namespaces, mounts, cgroups, the pod network)\n")
        return 1
    try:
        parse_listen(args.listen)
        if args.node_ip:
            ipaddress.ip_address(args.node_ip)
        ipaddress.ip_network(args.pod_cidr)
    except ValueError as e:
        sys.stderr.write(f"kubeling up: {e}\n")
        return 2
    layout = layout_of(args)
    pid = running_pid(layout)
    if pid:
        sys.stderr.write(f"kubeling up: already running (pid {pid}); `kubeling down` stops it\n")
        return 1
    if args.detach:
        return detach(args, argv, out)
    layout.make()
    with holding(layout.lock_file) as got:
        if not got:
            sys.stderr.write("kubeling up: another kubeling up is starting\n")
            return 1
        layout.pid_file.write_text(f"{os.getpid()}\n")
        try:
            return Up(args, out).run()
        finally:
            layout.pid_file.unlink(missing_ok=True)


# -- down ------------------------------------------------------------------------------


def main_down(argv: list[str], out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(
        prog="kubeling down", description="stop the cluster `kubeling up` runs"
    )
    add_layout_arguments(parser, "run_dir")
    parser.add_argument(
        "--purge", action="store_true",
        help="also remove the pods, the pod network and the pod cgroups",
    )  # fmt: skip
    parser.add_argument("--timeout", type=float, default=180.0)
    args = parser.parse_args(argv)
    layout = Layout(Path(DEFAULTS["data_dir"]), args.run_dir.absolute(),
                    Path(DEFAULTS["log_dir"]), Path(DEFAULTS["config_dir"]))  # fmt: skip
    pid = running_pid(layout)
    if pid <= 0:
        sys.stderr.write(f"kubeling down: kubeling up is not running (run dir {layout.run_dir})\n")
        return 1
    if args.purge:
        layout.purge_request.write_text("purge\n")
    try:
        os.kill(pid, signal.SIGTERM)
    except PermissionError:
        sys.stderr.write(f"kubeling down: may not signal kubeling up (pid {pid}): run as root\n")
        return 1
    except ProcessLookupError:
        return 0
    out.write(f"stopping kubeling up (pid {pid})\n")
    out.flush()
    deadline = time.monotonic() + args.timeout
    while alive(pid):
        if time.monotonic() > deadline:
            sys.stderr.write(f"kubeling down: kubeling up (pid {pid}) still runs after "
                             f"{args.timeout:.0f}s; its log says why\n")  # fmt: skip
            return 1
        time.sleep(0.1)
    out.write("stopped\n")
    return 0


# -- kubeconfig -------------------------------------------------------------------------


def main_kubeconfig(argv: list[str], out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(
        prog="kubeling kubeconfig", description="print the admin kubeconfig of `kubeling up`"
    )
    add_layout_arguments(parser, "config_dir")
    args = parser.parse_args(argv)
    path = args.config_dir / "admin.kubeconfig"
    try:
        out.write(path.read_text())
    except FileNotFoundError:
        sys.stderr.write(f"kubeling kubeconfig: no {path}: run `kubeling up` first\n")
        return 1
    except PermissionError:
        sys.stderr.write(f"kubeling kubeconfig: may not read {path}: run as root\n")
        return 1
    return 0
