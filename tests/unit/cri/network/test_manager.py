"""NetworkManager's orchestration without root: the kernel (netlink), iptables and
sysctls are fakes, so the order of the steps, the undo on failure, idempotence and
the lazy import of pyroute2 are checked here; tests/integration/cri/test_network.py
runs the same against the real kernel."""

from __future__ import annotations

import asyncio
import ipaddress
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cri.network import (
    ConfigError,
    NetnsError,
    NetworkConfig,
    NetworkError,
    NetworkManager,
    PodNetworkStatus,
    PortMapping,
)
from cri.network import manager as manager_module
from cri.network.host import HostSettings
from cri.network.iptables import Iptables
from cri.network.manager import veth_name
from runtime.testing import RecordingSyscalls


@dataclass
class Kernel:
    """What the fake netlink changed, and where to fail."""

    events: list[str] = field(default_factory=list)
    links: set[str] = field(default_factory=set)
    fail: str | None = None


class FakeNetlink:
    def __init__(self, kernel: Kernel, where: str) -> None:
        self.kernel = kernel
        self.where = where

    def __enter__(self) -> FakeNetlink:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def _event(self, what: str) -> None:
        if self.kernel.fail == what:
            raise NetworkError(f"{what}: EPERM")
        self.kernel.events.append(f"{self.where}: {what}")

    def index(self, name: str) -> int | None:
        return 7 if name in self.kernel.links or name.startswith("kt") else None

    def ensure_bridge(self, name: str, address: ipaddress.IPv4Interface, mtu: int | None) -> int:
        self._event(f"bridge {name} {address}")
        return 1

    def add_veth(self, name: str, *, peer: str, peer_netns_fd: int, mtu: int | None) -> int:
        if name in self.kernel.links or peer in self.kernel.links:
            raise NetworkError(f"add veth {name}: EEXIST")
        self._event(f"veth {name} peer {peer}")
        self.kernel.links.add(name)
        return 7

    def configure_pod(
        self, name: str, *, address: ipaddress.IPv4Interface, gateway: ipaddress.IPv4Address
    ) -> None:
        self._event(f"configure {name} {address} via {gateway}")

    def attach(self, index: int, *, bridge: int, hairpin: bool) -> None:
        self._event(f"attach hairpin={hairpin}")

    def delete(self, name: str) -> bool:
        if name not in self.kernel.links:
            return False
        self._event(f"delete {name}")
        self.kernel.links.discard(name)
        return True

    def stats(self) -> list[Any]:
        return []


class FakeIptables:
    """Keeps rules as lines, the way `iptables -S` would list them."""

    def __init__(self) -> None:
        self.rules: dict[str, list[list[str]]] = {}
        self.log: list[list[str]] = []

    def __call__(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        args = argv[3:]
        self.log.append(args)
        verb, name = args[2], args[3] if len(args) > 3 else ""
        chain = f"{args[1]}/{name}"
        rest = args[4:]
        ok = subprocess.CompletedProcess(argv, 0, "", "")
        bad = subprocess.CompletedProcess(argv, 1, "", "iptables: No chain/target/match.")
        rules = self.rules.get(chain)
        if verb == "-N":
            self.rules.setdefault(chain, [])
        elif rules is None:
            return bad
        elif verb == "-S":
            lines = [f"-N {name}"] + [
                f"-A {name} " + " ".join(f'"{w}"' if " " in w else w for w in r) for r in rules
            ]
            return subprocess.CompletedProcess(argv, 0, "\n".join(lines) + "\n", "")
        elif verb == "-A":
            rules.append(rest)
        elif verb == "-I":
            rules.insert(0, rest[1:])
        elif verb == "-C":
            return ok if rest in rules else bad
        elif verb == "-D":
            if rest not in rules:
                return bad
            rules.remove(rest)
        elif verb == "-F":
            rules.clear()
        elif verb == "-X":
            del self.rules[chain]
        return ok


BUILTIN = ("nat/PREROUTING", "nat/OUTPUT", "nat/POSTROUTING", "filter/FORWARD", "raw/PREROUTING")


@pytest.fixture
def proc_sys(tmp_path: Path) -> Path:
    root = tmp_path / "sys"
    for d in ("net/ipv4/conf/kt0", "net/bridge"):
        (root / d).mkdir(parents=True)
    (root / "net/ipv4/ip_forward").write_text("0\n")
    return root


class Rig:
    def __init__(self, tmp_path: Path, proc_sys: Path, **settings: Any) -> None:
        self.config = NetworkConfig(
            bridge="kt0",
            pod_cidr="10.202.0.0/29",
            state_dir=tmp_path / "state",
            netns_dir=tmp_path / "netns",
            veth_prefix="kt",
            chain_prefix="KT",
            **settings,
        )
        self.kernel = Kernel()
        self.iptables = FakeIptables()
        for builtin in BUILTIN:
            self.iptables.rules[builtin] = []
        self.syscalls = RecordingSyscalls()
        self.modprobes: list[list[str]] = []
        kernel = self.kernel

        class Manager(NetworkManager):
            def _netlink(self, path: Path | None = None) -> Any:
                return FakeNetlink(kernel, "host" if path is None else path.name)

        self.manager = Manager(
            self.config,
            syscalls=self.syscalls,
            iptables=Iptables(runner=self.iptables),
            host=HostSettings(self.config.host_journal, proc_sys=proc_sys, runner=self.modprobe),
        )
        self.netns = tmp_path / "pod-a"
        self.netns.write_text("")

    def modprobe(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.modprobes.append(argv)
        return subprocess.CompletedProcess(argv, 0, "", "")

    def hostport_rules(self) -> list[list[str]]:
        return self.iptables.rules.get("nat/KT-HOSTPORTS", [])

    def hairpin_rules(self) -> list[list[str]]:
        return self.iptables.rules.get("nat/KT-HAIRPIN", [])


@pytest.fixture
def rig(tmp_path: Path, proc_sys: Path, monkeypatch: pytest.MonkeyPatch) -> Rig:
    monkeypatch.setattr(manager_module.netns, "is_netns", lambda path: path.exists())
    return Rig(tmp_path, proc_sys)


def test_veth_name_is_stable_and_fits_ifnamsiz() -> None:
    config = NetworkConfig()
    name = veth_name(config, "a" * 64)
    assert name == veth_name(config, "a" * 64)
    assert name.startswith("veth") and len(name) == 15
    assert veth_name(config, "b" * 64) != name
    assert len(veth_name(NetworkConfig(veth_prefix="k"), "x")) == 15


def test_setup_steps_in_order(rig: Rig, proc_sys: Path) -> None:
    status = rig.manager.setup("pod-a", str(rig.netns), [PortMapping(80, 8080)])
    assert status == PodNetworkStatus(
        ip="10.202.0.2", interface="eth0", gateway="10.202.0.1", prefix_length=29
    )
    host_end = veth_name(rig.config, "pod-a")
    assert rig.kernel.events == [
        "host: bridge kt0 10.202.0.1/29",
        f"host: veth {host_end} peer eth0",
        "pod-a: configure eth0 10.202.0.2/29 via 10.202.0.1",
        "host: attach hairpin=True",
    ]
    assert rig.hostport_rules() == [
        ["-p", "tcp", "-m", "tcp", "--dport", "8080", "-m", "comment", "--comment",
         "kubeling sandbox pod-a", "-j", "DNAT", "--to-destination", "10.202.0.2:80"],
    ]  # fmt: skip
    assert rig.hairpin_rules() == [
        ["-s", "10.202.0.2/32", "-d", "10.202.0.2/32", "-m", "conntrack", "--ctstate", "DNAT",
         "-m", "comment", "--comment", "kubeling sandbox pod-a", "-j", "MASQUERADE"],
    ]  # fmt: skip
    assert (proc_sys / "net/ipv4/ip_forward").read_text() == "1\n"
    assert (proc_sys / "net/ipv4/conf/kt0/forwarding").read_text() == "1\n"
    assert (proc_sys / "net/ipv4/conf/kt0/route_localnet").read_text() == "1\n"
    assert rig.manager.host_changes() == {
        "sysctls": {"net/ipv4/ip_forward": {"original": "0", "value": "1"}}
    }
    assert rig.manager.readiness().ready


def test_start_installs_chains_and_jumps_once(rig: Rig) -> None:
    rig.manager.start()
    rig.manager.start()
    rules = rig.iptables.rules
    assert len(rules["nat/KT-POSTROUTING"]) == 4 and len(rules["filter/KT-FORWARD"]) == 2
    assert [r[-1] for r in rules["nat/PREROUTING"]] == ["KT-HOSTPORTS"]
    assert [r[-1] for r in rules["nat/OUTPUT"]] == ["KT-HOSTPORTS"]
    assert [r[-1] for r in rules["nat/POSTROUTING"]] == ["KT-POSTROUTING"]
    assert [r[-1] for r in rules["filter/FORWARD"]] == ["KT-FORWARD"]
    assert [r[-1] for r in rules["raw/PREROUTING"]] == ["DROP"]
    assert rig.kernel.events == ["host: bridge kt0 10.202.0.1/29"]


def test_no_ip_forward_change_when_not_asked(tmp_path: Path, proc_sys: Path) -> None:
    rig = Rig(tmp_path, proc_sys, ip_forward=False)
    rig.manager.start()
    assert (proc_sys / "net/ipv4/ip_forward").read_text() == "0\n"
    assert rig.manager.host_changes() == {}


@pytest.mark.parametrize("allowed", [True, False])
def test_br_netfilter_is_loaded_only_if_missing_and_allowed(
    tmp_path: Path, proc_sys: Path, allowed: bool
) -> None:
    (proc_sys / "net/bridge").rmdir()
    rig = Rig(tmp_path, proc_sys, load_br_netfilter=allowed)
    rig.manager.start()
    assert rig.modprobes == ([["modprobe", "br_netfilter"]] if allowed else [])
    assert ("modules" in rig.manager.host_changes()) is allowed


def test_failed_start_is_reported_by_readiness(rig: Rig) -> None:
    assert not rig.manager.readiness().ready
    assert rig.manager.readiness().message == "pod network not set up yet"
    rig.kernel.fail = "bridge kt0 10.202.0.1/29"
    with pytest.raises(NetworkError):
        rig.manager.start()
    readiness = rig.manager.readiness()
    assert (readiness.ready, readiness.reason) == (False, "NetworkPluginNotReady")
    assert "bridge kt0" in readiness.message


def test_failed_setup_undoes_everything(rig: Rig) -> None:
    rig.manager.start()
    rig.kernel.fail = "attach hairpin=True"
    with pytest.raises(NetworkError, match="set up network of pod-a: attach hairpin=True: EPERM"):
        rig.manager.setup("pod-a", str(rig.netns), [PortMapping(80, 8080)])
    assert rig.kernel.links == set()
    assert rig.kernel.events[-1] == f"host: delete {veth_name(rig.config, 'pod-a')}"
    assert rig.manager.allocations() == {}
    assert rig.hostport_rules() == rig.hairpin_rules() == []


def test_setup_again_reuses_the_address_and_replaces_leftovers(rig: Rig) -> None:
    first = rig.manager.setup("pod-a", str(rig.netns), [PortMapping(80, 8080)])
    second = rig.manager.setup("pod-a", str(rig.netns), [PortMapping(81, 8081)])
    assert first == second
    host_end = veth_name(rig.config, "pod-a")
    assert f"host: delete {host_end}" in rig.kernel.events  # the leftover host end
    assert [r[5] for r in rig.hostport_rules()] == ["8081"]


def test_leftover_host_end_without_an_address_is_replaced(rig: Rig) -> None:
    """State lost (say), but the kernel still has the host end: replaced on EEXIST."""
    host_end = veth_name(rig.config, "pod-a")
    rig.kernel.links.add(host_end)
    rig.manager.setup("pod-a", str(rig.netns))
    assert rig.kernel.events[1:3] == [
        f"host: delete {host_end}",
        f"host: veth {host_end} peer eth0",
    ]


def test_taken_pod_interface_fails_cleanly(rig: Rig) -> None:
    rig.kernel.links.add("eth0")  # stands for "the pod has an eth0 already"
    with pytest.raises(NetworkError, match="set up network of pod-a: add veth .*: EEXIST"):
        rig.manager.setup("pod-a", str(rig.netns))
    assert rig.manager.allocations() == {}


def test_teardown(rig: Rig) -> None:
    rig.manager.setup("pod-a", str(rig.netns), [PortMapping(80, 8080)])
    other = rig.manager.setup("pod-b", str(rig.netns), [PortMapping(80, 9090)])
    rig.manager.teardown("pod-a", str(rig.netns))
    assert rig.manager.status("pod-a") is None
    assert rig.manager.allocations() == {"pod-b": other.ip}
    assert [r[5] for r in rig.hostport_rules()] == ["9090"]
    assert [r[1] for r in rig.hairpin_rules()] == [f"{other.ip}/32"]
    assert veth_name(rig.config, "pod-a") not in rig.kernel.links
    rig.manager.teardown("pod-a", str(rig.netns))  # again: fine
    rig.manager.teardown("never-set-up")


def test_status_survives_a_new_manager(rig: Rig, tmp_path: Path, proc_sys: Path) -> None:
    status = rig.manager.setup("pod-a", str(rig.netns))
    again = Rig(tmp_path, proc_sys)
    assert again.manager.status("pod-a") == status
    assert again.manager.allocations() == {"pod-a": "10.202.0.2"}


def test_setup_refuses_bad_input_before_touching_anything(rig: Rig, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sandbox id"):
        rig.manager.setup("../x", str(rig.netns))
    with pytest.raises(NetnsError, match="no network namespace"):
        rig.manager.setup("pod-a", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="bad port mapping"):
        rig.manager.setup("pod-a", str(rig.netns), [(80, 8080)])  # type: ignore[list-item]
    assert rig.kernel.events == []
    assert rig.manager.allocations() == {}


def test_destroy(rig: Rig, proc_sys: Path) -> None:
    rig.manager.setup("pod-a", str(rig.netns), [PortMapping(80, 8080)])
    rig.manager.destroy()
    assert rig.manager.allocations() == {}
    assert set(rig.iptables.rules) == set(BUILTIN)
    assert all(rules == [] for rules in rig.iptables.rules.values())
    assert (proc_sys / "net/ipv4/ip_forward").read_text() == "0\n"
    assert not rig.manager.readiness().ready


def test_create_and_remove_netns(rig: Rig) -> None:
    path = rig.manager.create_netns("pod-a")
    assert path == str(rig.config.netns_dir / "pod-a")
    rig.manager.remove_netns(path)
    assert not Path(path).exists()
    with pytest.raises(ConfigError):
        rig.manager.create_netns("a/b")


def test_refuses_to_run_on_an_event_loop_thread(rig: Rig) -> None:
    async def main() -> None:
        rig.manager.teardown("pod-a")

    with pytest.raises(RuntimeError, match="asyncio.to_thread"):
        asyncio.run(main())

    async def threaded() -> None:
        await asyncio.to_thread(rig.manager.teardown, "pod-a")

    asyncio.run(threaded())


def test_importing_the_package_does_not_import_pyroute2() -> None:
    code = "import sys, cri.network; sys.exit('pyroute2' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
