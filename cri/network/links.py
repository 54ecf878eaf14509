"""Bridges, veth pairs, addresses and routes through rtnetlink (pyroute2).

pyroute2 costs ~150 ms to import, so it is imported here, on first use, and
nothing outside cri/network imports this module: `kubeling cri --help` and the
servicers' imports stay fast.

A `Netlink` is one rtnetlink socket: the host's, or one opened inside a pod's
namespace (netns.socket_in) and handed over by file descriptor. Each is used by one
thread at a time (pyroute2's synchronous API runs its own event loop per call): make
one per operation, never share one between threads, and never call this from a
thread that runs an asyncio loop.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
from typing import Any

from cri.network.errors import NetworkError
from cri.network.model import InterfaceStats

log = logging.getLogger(__name__)

IFF_UP = 0x1


class Netlink:
    """An rtnetlink connection; `fileno` adopts a netlink socket made in a netns."""

    def __init__(self, fileno: int | None = None) -> None:
        from pyroute2 import IPRoute  # type: ignore[import-untyped]

        self._ipr: Any = IPRoute() if fileno is None else IPRoute(fileno=fileno)

    def close(self) -> None:
        self._ipr.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- queries -------------------------------------------------------------------

    def index(self, name: str) -> int | None:
        found = self._call(f"look up {name}", "link_lookup", ifname=name)
        return int(found[0]) if found else None

    def kind(self, index: int) -> str | None:
        link = self._call(f"get link {index}", "get_links", index)[0]
        info = link.get_attr("IFLA_LINKINFO")
        return None if info is None else str(info.get_attr("IFLA_INFO_KIND"))

    def ipv4_addresses(self, index: int) -> list[ipaddress.IPv4Interface]:
        found = self._call(f"list addresses of {index}", "get_addr", family=2, index=index)
        return [
            ipaddress.IPv4Interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}") for a in found
        ]

    def stats(self) -> list[InterfaceStats]:
        """Counters of every interface but loopback."""
        result = []
        for link in self._call("list links", "get_links"):
            name = str(link.get_attr("IFLA_IFNAME"))
            if name == "lo":
                continue
            counters = link.get_attr("IFLA_STATS64") or link.get_attr("IFLA_STATS") or {}
            result.append(
                InterfaceStats(
                    name=name,
                    rx_bytes=int(counters.get("rx_bytes", 0)),
                    rx_errors=int(counters.get("rx_errors", 0)),
                    tx_bytes=int(counters.get("tx_bytes", 0)),
                    tx_errors=int(counters.get("tx_errors", 0)),
                )
            )
        return result

    # -- host side -----------------------------------------------------------------

    def ensure_bridge(self, name: str, address: ipaddress.IPv4Interface, mtu: int | None) -> int:
        """Create the bridge `name` unless it exists, give it `address`, bring it up;
        return its index. An existing non-bridge, or a bridge with another IPv4
        address in the way, is an error (never reconfigure someone else's link)."""
        index = self.index(name)
        if index is None:
            options: dict[str, Any] = {"br_nf_call_iptables": 1}
            if mtu is not None:
                options["mtu"] = mtu
            self._call(f"add bridge {name}", "link", "add", ifname=name, kind="bridge", **options)
            index = self.index(name)
            if index is None:
                raise NetworkError(f"add bridge {name}: gone right after creation")
            # Pin the MAC address: else the bridge takes the lowest one of its ports,
            # and it changes as pods come and go (neighbours' ARP caches go stale).
            mac = self._call(f"get link {name}", "get_links", index)[0].get_attr("IFLA_ADDRESS")
            self._call(f"set address of {name}", "link", "set", index=index, address=mac)
            log.info("created bridge %s", name)
        elif self.kind(index) != "bridge":
            raise NetworkError(f"set up bridge {name}: a link of that name is no bridge")
        else:
            self._call(
                f"set nf_call_iptables on {name}",
                "link",
                "set",
                index=index,
                kind="bridge",
                br_nf_call_iptables=1,
            )
        for other in self.ipv4_addresses(index):
            if other != address and other.network.overlaps(address.network):
                raise NetworkError(f"set up bridge {name}: it has address {other}, want {address}")
        self._address_and_up(name, index, address)
        return index

    def add_veth(self, name: str, *, peer: str, peer_netns_fd: int, mtu: int | None) -> int:
        """Create the veth pair `name` (here) / `peer` (in the namespace of
        `peer_netns_fd`, created there directly, so its name never clashes with a
        host interface); return the host end's index."""
        peer_spec: dict[str, Any] = {"ifname": peer, "net_ns_fd": peer_netns_fd}
        options: dict[str, Any] = {}
        if mtu is not None:
            peer_spec["mtu"] = mtu
            options["mtu"] = mtu
        self._call(
            f"add veth {name}", "link", "add", ifname=name, kind="veth", peer=peer_spec, **options
        )
        index = self.index(name)
        if index is None:
            raise NetworkError(f"add veth {name}: gone right after creation")
        return index

    def attach(self, index: int, *, bridge: int, hairpin: bool) -> None:
        """Enslave link `index` to `bridge`, set hairpin mode, bring it up."""
        if hairpin:
            self._call(f"attach link {index} to bridge", "link", "set", index=index, master=bridge)
            self._call(f"set hairpin on link {index}", "brport", "set", index=index, mode=1)
            self._call(f"bring up link {index}", "link", "set", index=index, state="up")
        else:
            self._call(
                f"attach link {index} to bridge",
                "link", "set", index=index, master=bridge, state="up",
            )  # fmt: skip

    def delete(self, name: str) -> bool:
        """Delete the link `name`; False if there was none."""
        index = self.index(name)
        if index is None:
            return False
        self._call(f"delete link {name}", "link", "del", index=index, ignore=(errno.ENODEV,))
        return True

    # -- pod side ------------------------------------------------------------------

    def configure_pod(
        self, name: str, *, address: ipaddress.IPv4Interface, gateway: ipaddress.IPv4Address
    ) -> None:
        """Inside the pod: loopback up; `name` up with `address`; default route via
        `gateway`."""
        lo = self.index("lo")
        if lo is not None:
            self._call("bring up lo", "link", "set", index=lo, state="up")
        index = self.index(name)
        if index is None:
            raise NetworkError(f"configure {name}: no such interface in the pod")
        self._address_and_up(name, index, address)
        self._call(
            f"add default route via {gateway}",
            "route",
            "add",
            dst="0.0.0.0/0",
            gateway=str(gateway),
            oif=index,
            ignore=(errno.EEXIST,),
        )

    # -- internals -----------------------------------------------------------------

    def _address_and_up(self, name: str, index: int, address: ipaddress.IPv4Interface) -> None:
        """Give link `index` the address (already there is fine) and bring it up."""
        self._call(
            f"add address {address} to {name}",
            "addr",
            "add",
            index=index,
            address=str(address.ip),
            prefixlen=address.network.prefixlen,
            ignore=(errno.EEXIST,),
        )
        self._call(f"bring up {name}", "link", "set", index=index, state="up")

    def _call(
        self, what: str, method: str, *args: Any, ignore: tuple[int, ...] = (), **kwargs: Any
    ) -> Any:
        from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

        log.debug("netlink %s", what)
        try:
            return getattr(self._ipr, method)(*args, **kwargs)
        except NetlinkError as e:
            if e.code in ignore:
                return None
            name = errno.errorcode.get(e.code, str(e.code))
            raise NetworkError(f"{what}: {name}") from None
