"""NetworkManager: the node's pod network, CNI-bridge style, in-process.

What it owns: the bridge (<config.bridge>, holding the gateway, .1 of the pod CIDR),
one veth pair per pod (host end `<veth_prefix><hash of the sandbox id>` on the
bridge, pod end <config.interface> inside the pod's namespace), the pod addresses
(ipam.Allocator, persisted), the iptables chains (iptables.py), a few host settings
(host.py), and the sandboxes' namespace files (netns.py). What it does not own: the
processes in the pods, and which sandboxes exist (the CRI's store decides; `teardown`
and `remove_netns` are idempotent, so the CRI may call them on every stop/remove).

setup, in order (each acquisition registers its undo; a failure undoes them all):
  1. check the sandbox id and that the path is a namespace file
  2. start(): host settings, bridge, chains (once per manager; idempotent)
  3. allocate the address (idempotent per sandbox: a retried setup keeps it)
  4. create the veth pair, the pod end directly inside the namespace
     (a host end left over from a crashed setup is deleted first)
  5. inside the pod: lo up, address, <interface> up, default route via the gateway
  6. host end: onto the bridge, hairpin mode, up (last: no traffic before the pod
     side is ready)
  7. host-port DNAT rules and the pod's hairpin masquerade, commented with the
     sandbox id (the sandbox's old rules, from a crashed setup, are deleted first)

teardown, in order: host-port rules, the veth pair (deleting the host end deletes
both), then the address, last, so that it is never handed out while still in use.

Concurrency: setups and teardowns run side by side (each touches only its own pod's
links and rules; IPAM locks, across processes too), start and destroy (the bridge
and chains every pod uses) alone: a shared/exclusive lock. A node starting 100 pods
at once used to queue every pod's setup behind the others'. Every method blocks (netlink, iptables
processes): call them from worker threads (asyncio.to_thread), never on a thread
running an asyncio loop, where pyroute2's synchronous API cannot run.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import logging
import os
import socket
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from cri.network import iptables as rules
from cri.network import netns
from cri.network.config import NetworkConfig
from cri.network.errors import ConfigError, NetnsError, NetworkError
from cri.network.host import HostSettings
from cri.network.ipam import Allocator
from cri.network.iptables import Iptables
from cri.network.model import (
    InterfaceStats,
    PodNetworkStatus,
    PortMapping,
    Readiness,
    check_sandbox_id,
)
from runtime.syscalls import MNT_DETACH

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cri.network.links import Netlink
    from runtime.syscalls import Syscalls

log = logging.getLogger(__name__)

NETLINK_ROUTE = 0


def veth_name(config: NetworkConfig, sandbox_id: str) -> str:
    """The host end of a sandbox's veth pair: the prefix and hex digits of a hash of
    the id, 15 characters in all (stable, so teardown finds it after a restart)."""
    digest = hashlib.sha256(sandbox_id.encode()).hexdigest()
    return config.veth_prefix + digest[: 15 - len(config.veth_prefix)]


class NetworkManager:
    """The pod network of one node, configured by `config`."""

    def __init__(
        self,
        config: NetworkConfig,
        *,
        syscalls: Syscalls | None = None,
        iptables: Iptables | None = None,
        host: HostSettings | None = None,
        net_dev: Path = Path("/proc/thread-self/net/dev"),
    ) -> None:
        if syscalls is None:
            from runtime.syscalls import LinuxSyscalls

            syscalls = LinuxSyscalls()
        self.config = config
        self.syscalls = syscalls
        self.iptables = iptables or Iptables(config.iptables)
        self.host = host or HostSettings(config.host_journal)
        self.net_dev = net_dev  # the host's links' counters (pod_interface_stats)
        self.allocator = Allocator(config.ipam_dir, config.network)
        self._lock = _SharedLock()
        self._started = False
        self._start_error: str | None = None

    # -- node ------------------------------------------------------------------------

    def start(self) -> None:
        """Set up what all pods share: host settings, the bridge, the chains.
        Idempotent; setup calls it, the CRI server should call it at start-up so
        that Status reports the network ready (or why not)."""
        _refuse_event_loop_thread()
        if self._started:
            return
        with self._lock.exclusive():
            if self._started:
                return
            try:
                self._start()
            except NetworkError as e:
                self._start_error = str(e)
                raise
            self._started = True
            self._start_error = None

    def readiness(self) -> Readiness:
        """The CRI's NetworkReady condition."""
        if self._started:
            return Readiness(True)
        message = self._start_error or "pod network not set up yet"
        return Readiness(False, "NetworkPluginNotReady", message)

    def host_changes(self) -> dict[str, Any]:
        """The host-wide settings this network changed (see host.py)."""
        return self.host.changes()

    def allocations(self) -> dict[str, str]:
        """Sandbox id -> pod IP, for every address reserved (the CRI can compare it
        with its sandboxes and tear down the ones it no longer knows)."""
        return {owner: str(ip) for ip, owner in self.allocator.allocations().items() if owner}

    def destroy(self) -> None:
        """Undo everything this network installed on the host: every pod's network,
        every namespace file under netns_dir, the chains and jumps, the bridge, the
        netns_dir mount, and the journalled host settings. For uninstalling and tests;
        running pods lose their network."""
        _refuse_event_loop_thread()
        with self._lock.exclusive():
            for owner in self.allocations():
                self._teardown(owner, None)
            if self.config.netns_dir.is_dir():
                for entry in sorted(self.config.netns_dir.iterdir()):
                    if netns.is_netns(entry):
                        netns.remove_netns(entry, self.syscalls)
            for rule in rules.jump_rules(self.config):
                self.iptables.delete(rule)
            self.iptables.delete_chains(rules.own_chains(self.config))
            with self._netlink() as nl:
                nl.delete(self.config.bridge)
            self.host.restore()
            with contextlib.suppress(OSError):  # not a mount point (EINVAL): fine
                self.syscalls.umount(str(self.config.netns_dir), MNT_DETACH)
            self._started = False

    # -- namespaces --------------------------------------------------------------------

    def create_netns(self, sandbox_id: str) -> str:
        """A new network namespace for the sandbox, held by <netns_dir>/<sandbox id>."""
        check_sandbox_id(sandbox_id)
        return str(netns.create_netns(self.config.netns_dir, sandbox_id, self.syscalls))

    def remove_netns(self, path: str) -> None:
        """Unmount and delete a namespace file; a missing one is fine."""
        netns.remove_netns(Path(path), self.syscalls)

    # -- pods --------------------------------------------------------------------------

    def setup(
        self, sandbox_id: str, netns_path: str, port_mappings: Sequence[PortMapping] = ()
    ) -> PodNetworkStatus:
        """Connect the namespace at `netns_path` to the pod network (steps in the
        module docstring) and return its address."""
        _refuse_event_loop_thread()
        check_sandbox_id(sandbox_id)
        path = Path(netns_path)
        if not netns.is_netns(path):
            raise NetnsError(f"set up network of {sandbox_id}: {path} is no network namespace")
        for mapping in port_mappings:
            if not isinstance(mapping, PortMapping):
                raise ConfigError(f"set up network of {sandbox_id}: bad port mapping {mapping!r}")
        self.start()
        config = self.config
        host_end = veth_name(config, sandbox_id)
        with self._lock.shared(), contextlib.ExitStack() as undo:
            # Rules are installed after the address and removed before it is freed:
            # a sandbox without an address has no rules left to clean up.
            ip, retried = self.allocator.reserve(sandbox_id)
            undo.callback(self.allocator.release, sandbox_id)
            address = ipaddress.IPv4Interface(f"{ip}/{config.network.prefixlen}")
            try:
                with self._netlink() as host:
                    index = self._create_veth(host, host_end, path, leftover_possible=retried)
                    undo.callback(self._delete_link, host_end)
                    with self._netlink(path) as pod:
                        pod.configure_pod(config.interface, address=address, gateway=config.gateway)
                    bridge = host.index(config.bridge)
                    if bridge is None:
                        raise NetworkError(f"bridge {config.bridge} is gone")
                    host.attach(index, bridge=bridge, hairpin=config.hairpin)
                undo.callback(self._remove_hostports, sandbox_id)
                if retried:
                    self._remove_hostports(sandbox_id)
                for rule in rules.sandbox_rules(config, sandbox_id, str(ip), port_mappings):
                    self.iptables.append(rule)
            except (NetworkError, OSError) as e:
                raise NetworkError(f"set up network of {sandbox_id}: {e}") from None
            undo.pop_all()
        log.info("pod network up", extra={"sandbox": sandbox_id, "ip": str(ip)})
        return self._status(ip)

    def teardown(self, sandbox_id: str, netns_path: str | None = None) -> None:
        """Disconnect a sandbox and free its address; idempotent (unknown ids and
        repeats are fine, and so is a namespace already removed)."""
        _refuse_event_loop_thread()
        check_sandbox_id(sandbox_id)
        with self._lock.shared():
            self._teardown(sandbox_id, netns_path)

    def _teardown(self, sandbox_id: str, netns_path: str | None) -> None:
        self._remove_hostports(sandbox_id)
        removed = self._delete_link(veth_name(self.config, sandbox_id))
        if not removed and netns_path and netns.is_netns(Path(netns_path)):
            # No host end (a setup that died half-way): drop the pod end instead.
            with self._netlink(Path(netns_path)) as pod:
                pod.delete(self.config.interface)
        released = self.allocator.release(sandbox_id)
        log.info("pod network down", extra={"sandbox": sandbox_id, "ip": str(released)})

    def status(self, sandbox_id: str) -> PodNetworkStatus | None:
        """The sandbox's address, from the persisted allocation; None if it has none."""
        ip = self.allocator.lookup(check_sandbox_id(sandbox_id))
        return None if ip is None else self._status(ip)

    def interface_stats(self, netns_path: str) -> list[InterfaceStats]:
        """rx/tx counters of every interface but lo inside the namespace."""
        _refuse_event_loop_thread()
        with self._netlink(Path(netns_path)) as pod:
            return pod.stats()

    def pod_interface_stats(self, sandbox_ids: Iterable[str]) -> dict[str, InterfaceStats]:
        """Sandbox id -> the counters of the pod's <config.interface>, for each of
        `sandbox_ids` whose veth pair has a host end: that end's counters, received
        and sent swapped (what one end sends the other receives), all from one read
        of this thread's net/dev. Entering every pod's namespace for them instead (a
        thread and a netlink socket each) was most of the CRI server's CPU at rest."""
        wanted = {veth_name(self.config, check_sandbox_id(i)): i for i in sandbox_ids}
        try:
            lines = self.net_dev.read_text().splitlines()[2:]
        except OSError as e:
            raise NetworkError(f"interface counters: {self.net_dev}: {e.strerror}") from None
        found = {}
        for line in lines:
            name, _, rest = line.partition(":")
            sandbox_id = wanted.get(name.strip())
            fields = rest.split()
            if sandbox_id is None or len(fields) < 11:
                continue
            # net/dev: rx bytes packets errs drop fifo frame compressed multicast,
            # then tx bytes packets errs ...
            found[sandbox_id] = InterfaceStats(
                name=self.config.interface,
                rx_bytes=int(fields[8]),
                rx_errors=int(fields[10]),
                tx_bytes=int(fields[0]),
                tx_errors=int(fields[2]),
            )
        return found

    # -- steps -------------------------------------------------------------------------

    def _start(self) -> None:
        config, host = self.config, self.host
        if config.load_br_netfilter:
            try:
                host.ensure_module("br_netfilter", host.proc_sys / "net" / "bridge")
            except NetworkError as e:  # pods still work; bridged traffic skips iptables
                log.warning("br_netfilter unavailable: %s", e)
        if config.ip_forward:
            host.ensure("net/ipv4/ip_forward", "1")
        gateway = ipaddress.IPv4Interface(f"{config.gateway}/{config.network.prefixlen}")
        with self._netlink() as nl:
            nl.ensure_bridge(config.bridge, gateway, config.mtu)
        # The bridge's own settings (they go away with it, so nothing to journal):
        # forwarding, so that host ports reached through the gateway address can be
        # DNATed back into the bridge even with ip_forward off; route_localnet, so
        # that 127.0.0.1:<host port> can be DNATed out of it (portmap does the same).
        host.write(f"net/ipv4/conf/{config.bridge}/forwarding", "1")
        if config.localhost_hostports:
            host.write(f"net/ipv4/conf/{config.bridge}/route_localnet", "1")
        self._install_chains()
        log.info("pod network started", extra={"bridge": config.bridge, "cidr": config.pod_cidr})

    def _install_chains(self) -> None:
        for chain in rules.own_chains(self.config):
            self.iptables.ensure_chain(chain)
        for chain in rules.static_chains(self.config):
            self.iptables.flush_chain(chain)
        for rule in rules.static_rules(self.config):
            self.iptables.append(rule)
        for rule in rules.jump_rules(self.config):
            self.iptables.ensure_first(rule)

    def _create_veth(self, host: Netlink, name: str, path: Path, *, leftover_possible: bool) -> int:
        """Create the pair, replacing a host end left by an earlier attempt: looked
        for first when the sandbox had an address already, else only if the kernel
        says the name is taken (state lost, say), to spare a lookup per pod."""
        if leftover_possible and host.delete(name):
            log.info("deleted leftover veth %s", name)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            mtu, peer = self.config.mtu, self.config.interface
            try:
                return host.add_veth(name, peer=peer, peer_netns_fd=fd, mtu=mtu)
            except NetworkError:
                if not host.delete(name):
                    raise  # not our name that is taken (the pod's interface, say)
                log.info("deleted leftover veth %s", name)
                return host.add_veth(name, peer=peer, peer_netns_fd=fd, mtu=mtu)
        finally:
            os.close(fd)

    def _delete_link(self, name: str) -> bool:
        with self._netlink() as host:
            return host.delete(name)

    def _remove_hostports(self, sandbox_id: str) -> None:
        for chain in rules.sandbox_chains(self.config):
            self.iptables.delete_commented(chain, rules.sandbox_comment(sandbox_id))

    def _netlink(self, path: Path | None = None) -> Netlink:
        from cri.network.links import Netlink

        if path is None:
            return Netlink()
        sock = netns.socket_in(
            path, socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE, syscalls=self.syscalls
        )
        return Netlink(fileno=sock.detach())

    def _status(self, ip: ipaddress.IPv4Address) -> PodNetworkStatus:
        return PodNetworkStatus(
            ip=str(ip),
            interface=self.config.interface,
            gateway=str(self.config.gateway),
            prefix_length=self.config.network.prefixlen,
        )


class _SharedLock:
    """Any number of holders of the shared side, or one of the exclusive side."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._shared = 0
        self._exclusive = False

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._condition:
            while self._exclusive:
                self._condition.wait()
            self._shared += 1
        try:
            yield
        finally:
            with self._condition:
                self._shared -= 1
                if not self._shared:
                    self._condition.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._condition:
            while self._exclusive or self._shared:
                self._condition.wait()
            self._exclusive = True
        try:
            yield
        finally:
            with self._condition:
                self._exclusive = False
                self._condition.notify_all()


def _refuse_event_loop_thread() -> None:
    """pyroute2's synchronous API runs an event loop of its own: it cannot run on a
    thread that already runs one. Say so plainly instead of failing deep inside it."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError("NetworkManager blocks: call it from a worker thread (asyncio.to_thread)")
