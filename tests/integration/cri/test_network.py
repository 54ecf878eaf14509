"""The pod network against the real kernel (root): two pods on a bridge of their
own, reaching each other, the gateway and a host port; teardown, restart and a
failed setup leaving nothing behind.

Isolation: every run uses its own bridge (ktn<hex>), veth prefix, iptables chain
prefix (KT-<hex>), state and netns directories under tmp_path, and a /24 from
10.213.0.0/16 that overlaps no route or address on the host. The managers run with
ip_forward and load_br_netfilter off, so no host-wide setting changes (unit tests
cover those with a fake /proc/sys). Traffic goes only to namespaces made here, to
the test bridge's address and to 127.0.0.1.

Host ports are tested from the other pod to the bridge address (nat PREROUTING,
forwarded back into the bridge; needs br_netfilter already loaded), from the pod
itself (hairpin), and from the host to 127.0.0.1 (nat OUTPUT; needs route_localnet,
which the manager sets on the test bridge only, not host-wide) and to the bridge
address.
"""

from __future__ import annotations

import contextlib
import ipaddress
import shutil
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cri.network import NetnsError, NetworkConfig, NetworkManager, PortMapping, Protocol
from cri.network.iptables import own_chains, sandbox_comment
from cri.network.manager import veth_name
from cri.network.netns import is_netns, socket_in
from runtime.syscalls import LinuxSyscalls
from tests.integration.cri.support import free_cidr, in_netns, ip_json, run

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in ("ip", "iptables", "nsenter", "busybox")),
        reason="needs ip, iptables, nsenter and busybox",
    ),
]


# br_netfilter loaded (the tests never load it): bridged answers pass iptables.
BR_NETFILTER = Path("/proc/sys/net/bridge").is_dir()


def link_names(netns: str | None = None) -> set[str]:
    return {str(link["ifname"]) for link in ip_json("link", "show", netns=netns)}


def pings(netns: str, address: str) -> bool:
    return (
        in_netns(netns, "busybox", "ping", "-c", "1", "-W", "3", address, check=False).returncode
        == 0
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Net:
    config: NetworkConfig
    manager: NetworkManager
    syscalls: LinuxSyscalls

    def new_manager(self) -> NetworkManager:
        return NetworkManager(self.config, syscalls=self.syscalls)

    def pod(self, sandbox_id: str) -> str:
        return self.manager.create_netns(sandbox_id)

    def hostport_rules(self) -> str:
        """The per-sandbox rules: host-port DNAT and hairpin masquerade."""
        return "".join(
            run("iptables", "-w", "5", "-t", "nat", "-S", chain).stdout
            for chain in (self.config.hostports_chain, self.config.hairpin_chain)
        )

    def leftovers(self) -> list[str]:
        """Whatever of this network is still on the host."""
        found = []
        names = link_names()
        if self.config.bridge in names:
            found.append(f"bridge {self.config.bridge}")
        found += [f"link {n}" for n in names if n.startswith(self.config.veth_prefix)]
        for table in ("nat", "filter", "raw"):
            rules = run("iptables", "-w", "5", "-t", table, "-S").stdout
            found += [
                f"{table}: {line}"
                for line in rules.splitlines()
                if self.config.chain_prefix in line
            ]
        with open("/proc/self/mountinfo") as mountinfo:
            found += [
                f"mount {line.split()[4]}"
                for line in mountinfo
                if line.split()[4].startswith(str(self.config.netns_dir))
            ]
        return found


def force_cleanup(config: NetworkConfig) -> None:
    """Belt and braces after destroy(): delete by name whatever is left."""
    for name in link_names():
        if name == config.bridge or name.startswith(config.veth_prefix):
            run("ip", "link", "del", name, check=False)
    for chain in own_chains(config):
        run("iptables", "-w", "5", "-t", chain.table, "-F", chain.name, check=False)
    for table in ("nat", "filter", "raw"):
        for line in run("iptables", "-w", "5", "-t", table, "-S").stdout.splitlines():
            if config.chain_prefix in line and line.startswith("-A "):
                delete = line.replace("-A ", "-D ", 1)
                run("sh", "-c", f"iptables -w 5 -t {table} {delete}", check=False)
    for chain in own_chains(config):
        run("iptables", "-w", "5", "-t", chain.table, "-X", chain.name, check=False)
    if config.netns_dir.is_dir():
        for entry in config.netns_dir.iterdir():
            run("umount", "-l", str(entry), check=False)
        run("umount", "-l", str(config.netns_dir), check=False)


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    suffix = uuid.uuid4().hex[:6]
    config = NetworkConfig(
        bridge=f"ktn{suffix}",
        pod_cidr=free_cidr(213),
        state_dir=tmp_path / "state",
        netns_dir=tmp_path / "netns",
        veth_prefix=f"k{suffix[:5]}",
        chain_prefix=f"KT-{suffix}",
        ip_forward=False,
        load_br_netfilter=False,
    )
    syscalls = LinuxSyscalls()
    network = Net(config, NetworkManager(config, syscalls=syscalls), syscalls)
    try:
        yield network
    finally:
        try:
            network.manager.destroy()
            assert network.leftovers() == []
        finally:
            force_cleanup(config)


class EchoServer:
    """A TCP server inside a pod's namespace answering "hello <peer address>"."""

    def __init__(self, netns: str, address: str, port: int) -> None:
        self.sock = socket_in(Path(netns), syscalls=LinuxSyscalls())
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, port))
        self.sock.listen(16)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.sendall(f"hello {peer[0]}".encode())

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(timeout=5)


def ask(sock: socket.socket, address: str, port: int) -> str:
    """Connect, read the greeting, close."""
    with sock:
        sock.settimeout(5)
        sock.connect((address, port))
        return sock.recv(100).decode()


def from_pod(netns: str) -> socket.socket:
    return socket_in(Path(netns), syscalls=LinuxSyscalls())


# -- tests ---------------------------------------------------------------------------


def test_netns_lifecycle(net: Net) -> None:
    path = net.pod("sb-ns")
    assert path == str(net.config.netns_dir / "sb-ns")
    assert is_netns(Path(path))
    assert Path(path).stat().st_ino != Path("/proc/self/ns/net").stat().st_ino
    assert link_names(path) == {"lo"}
    with pytest.raises(NetnsError, match="exists"):
        net.manager.create_netns("sb-ns")
    net.manager.remove_netns(path)
    assert not Path(path).exists()
    net.manager.remove_netns(path)  # again: fine


def test_two_pods_reach_each_other_and_the_gateway(net: Net) -> None:
    a, b = net.pod("sb-a"), net.pod("sb-b")
    status_a = net.manager.setup("sb-a", a)
    status_b = net.manager.setup("sb-b", b)
    network = net.config.network
    gateway = str(net.config.gateway)
    for netns, status in ((a, status_a), (b, status_b)):
        assert ipaddress.IPv4Address(status.ip) in network
        assert (status.interface, status.gateway) == ("eth0", gateway)
        assert link_names(netns) == {"lo", "eth0"}
        [eth0] = ip_json("-4", "addr", "show", "dev", "eth0", netns=netns)
        assert [(a["local"], a["prefixlen"]) for a in eth0["addr_info"]] == [
            (status.ip, network.prefixlen)
        ]
        assert "UP" in eth0["flags"]
        [lo] = ip_json("link", "show", "dev", "lo", netns=netns)
        assert "UP" in lo["flags"]
        [default] = ip_json("-4", "route", "show", "default", netns=netns)
        assert (default["gateway"], default["dev"]) == (gateway, "eth0")
    assert status_a.ip != status_b.ip
    # The host ends are on the bridge, in hairpin mode.
    ports = {str(p["ifname"]) for p in ip_json("link", "show", "master", net.config.bridge)}
    assert ports == {veth_name(net.config, "sb-a"), veth_name(net.config, "sb-b")}
    hairpin = Path(f"/sys/class/net/{veth_name(net.config, 'sb-a')}/brport/hairpin_mode")
    assert hairpin.read_text().strip() == "1"

    assert pings(a, status_b.ip)
    assert pings(b, status_a.ip)
    assert pings(a, gateway)
    assert pings(b, gateway)

    [stats] = net.manager.interface_stats(a)
    assert stats.name == "eth0"
    assert stats.rx_bytes > 0 and stats.tx_bytes > 0
    assert stats.rx_errors == stats.tx_errors == 0
    # The same counters from the host end of the pair, swapped (a later read: a stray
    # neighbour or router packet may have gone by since).
    counters = net.manager.pod_interface_stats(["sb-a", "sb-b", "sb-none"])
    assert sorted(counters) == ["sb-a", "sb-b"]  # sb-none has no veth pair
    own = counters["sb-a"]
    assert own.name == "eth0"
    assert stats.rx_bytes <= own.rx_bytes < stats.rx_bytes + 4096
    assert stats.tx_bytes <= own.tx_bytes < stats.tx_bytes + 4096
    assert own.rx_errors == own.tx_errors == 0


def test_pods_set_up_at_once_get_their_own_addresses_and_links(net: Net) -> None:
    names = [f"sb-many-{i}" for i in range(8)]
    paths = {name: net.pod(name) for name in names}
    statuses: dict[str, Any] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(names))

    def set_up(name: str) -> None:
        try:
            start.wait()
            statuses[name] = net.manager.setup(name, paths[name])
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=set_up, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len({status.ip for status in statuses.values()}) == len(names)
    ports = {str(p["ifname"]) for p in ip_json("link", "show", "master", net.config.bridge)}
    assert ports == {veth_name(net.config, name) for name in names}
    for name in names:
        assert link_names(paths[name]) == {"lo", "eth0"}
    assert pings(paths[names[0]], statuses[names[-1]].ip)
    # and torn down at once, every address comes back
    threads = [threading.Thread(target=net.manager.teardown, args=(n, paths[n])) for n in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert net.manager.allocations() == {}
    assert {str(p["ifname"]) for p in ip_json("link", "show", "master", net.config.bridge)} == set()


def test_host_port_dnat(net: Net) -> None:
    a, b = net.pod("sb-web"), net.pod("sb-client")
    host_port = free_port()
    status = net.manager.setup(
        "sb-web", a, [PortMapping(8080, host_port), PortMapping(53, 0, Protocol.UDP)]
    )
    net.manager.setup("sb-client", b)
    gateway = str(net.config.gateway)
    assert net.hostport_rules().count(sandbox_comment("sb-web")) == 2  # DNAT, hairpin
    server = EchoServer(a, "0.0.0.0", 8080)
    try:
        client = net.manager.status("sb-client")
        assert client is not None
        if BR_NETFILTER:
            # From the other pod, to the node's address on the bridge: DNAT in
            # PREROUTING, back out of the bridge; the client's address is kept (the
            # answer, bridged, is un-NATed through br_netfilter).
            assert ask(from_pod(b), gateway, host_port) == f"hello {client.ip}"
        # From the pod itself through its own host port: hairpin, masqueraded.
        assert ask(from_pod(a), gateway, host_port) == f"hello {gateway}"
        # From the host, to loopback and to the bridge address (DNAT in OUTPUT).
        assert ask(socket.socket(), "127.0.0.1", host_port) == f"hello {gateway}"
        assert ask(socket.socket(), gateway, host_port) == f"hello {gateway}"
        # Pod to pod needs no NAT at all.
        assert ask(from_pod(b), status.ip, 8080) == f"hello {client.ip}"
    finally:
        server.close()
    net.manager.teardown("sb-web", a)
    assert sandbox_comment("sb-web") not in net.hostport_rules()
    with pytest.raises(OSError):
        ask(socket.socket(), "127.0.0.1", host_port)


def test_teardown_removes_veth_rules_and_address(net: Net) -> None:
    a, b = net.pod("sb-gone"), net.pod("sb-stays")
    net.manager.setup("sb-gone", a, [PortMapping(80, free_port())])
    kept = net.manager.setup("sb-stays", b, [PortMapping(80, free_port())])
    host_end = veth_name(net.config, "sb-gone")
    assert host_end in link_names()

    net.manager.teardown("sb-gone", a)
    assert host_end not in link_names()
    assert link_names(a) == {"lo"}  # the pod end went with the pair
    assert "sb-gone" not in net.hostport_rules()
    assert sandbox_comment("sb-stays") in net.hostport_rules()
    assert net.manager.status("sb-gone") is None
    assert net.manager.allocations() == {"sb-stays": kept.ip}
    net.manager.teardown("sb-gone", a)  # idempotent
    net.manager.teardown("sb-gone")
    net.manager.remove_netns(a)
    assert not Path(a).exists()
    assert pings(b, str(net.config.gateway))  # the other pod is unaffected


def test_restart_keeps_allocations_and_rules(net: Net) -> None:
    a, b = net.pod("sb-1"), net.pod("sb-2")
    port = free_port()
    first = net.manager.setup("sb-1", a, [PortMapping(8080, port)])
    second = net.manager.setup("sb-2", b)

    again = net.new_manager()  # a restarted CRI server: same config, same state dir
    assert again.status("sb-1") == first
    assert again.allocations() == {"sb-1": first.ip, "sb-2": second.ip}
    c = net.pod("sb-3")
    third = again.setup("sb-3", c)  # start() again: chains rewritten, host ports kept
    assert third.ip not in (first.ip, second.ip)
    assert sandbox_comment("sb-1") in net.hostport_rules()
    server = EchoServer(a, first.ip, 8080)
    try:
        assert ask(socket.socket(), "127.0.0.1", port).startswith("hello ")
    finally:
        server.close()
    assert pings(c, first.ip)

    again.teardown("sb-1", a)
    assert net.manager.status("sb-1") is None  # the first instance sees it too
    assert veth_name(net.config, "sb-1") not in link_names()
    fourth = again.setup("sb-4", net.pod("sb-4"))
    assert fourth.ip not in (second.ip, third.ip)


def test_failed_setup_leaves_nothing(net: Net) -> None:
    path = net.pod("sb-bad")
    in_netns(
        path, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1"
    )  # in the way
    with pytest.raises(Exception, match="set up network of sb-bad"):
        net.manager.setup("sb-bad", path, [PortMapping(80, free_port())])
    assert veth_name(net.config, "sb-bad") not in link_names()
    assert net.manager.allocations() == {}
    assert "sb-bad" not in net.hostport_rules()
    in_netns(path, "ip", "link", "del", "eth0")
    status = net.manager.setup("sb-bad", path)  # the same sandbox, retried, works
    assert pings(path, str(net.config.gateway))
    assert ipaddress.IPv4Address(status.ip) in net.config.network


def test_destroy_leaves_nothing(net: Net) -> None:
    for n in range(3):
        net.manager.setup(f"sb-{n}", net.pod(f"sb-{n}"), [PortMapping(80, free_port())])
    assert net.leftovers()
    net.manager.destroy()
    assert net.leftovers() == []
    assert net.manager.allocations() == {}
    assert list(net.config.netns_dir.iterdir()) == []
