"""Values the pod network takes and returns: port mappings in, status and counters out.

Frozen, slotted dataclasses with no behaviour beyond validation; they import nothing
heavy, so the CRI servicers can build them without loading pyroute2.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass

from cri.network.errors import ConfigError


class Protocol(enum.Enum):
    """Transport of a port mapping, valued as iptables spells it (CRI: TCP=0, UDP=1,
    SCTP=2)."""

    TCP = "tcp"
    UDP = "udp"
    SCTP = "sctp"


@dataclass(frozen=True, slots=True)
class PortMapping:
    """A CRI PortMapping: traffic to host_ip:host_port goes to the pod's container_port.

    host_port 0 means "no host port" (the CRI sends such mappings for every declared
    container port): it is accepted and ignored. An empty host_ip or 0.0.0.0 means
    every local address; an IPv6 host_ip is ignored (the pod network is IPv4 only).
    """

    container_port: int
    host_port: int = 0
    protocol: Protocol = Protocol.TCP
    host_ip: str = ""

    def __post_init__(self) -> None:
        if not 1 <= self.container_port <= 65535:
            raise ConfigError(f"port mapping: container port {self.container_port} not in 1-65535")
        if not 0 <= self.host_port <= 65535:
            raise ConfigError(f"port mapping: host port {self.host_port} not in 0-65535")
        if not isinstance(self.protocol, Protocol):
            raise ConfigError(f"port mapping: unknown protocol {self.protocol!r}")
        if self.host_ip:
            try:
                ipaddress.ip_address(self.host_ip)
            except ValueError:
                raise ConfigError(f"port mapping: host ip {self.host_ip!r} is no address") from None

    @property
    def forwarded(self) -> bool:
        """Whether this mapping needs a DNAT rule (a host port, and an IPv4 or no host ip)."""
        if self.host_port == 0:
            return False
        return not self.host_ip or ipaddress.ip_address(self.host_ip).version == 4

    @property
    def destination(self) -> str | None:
        """The `-d` match of the DNAT rule: None for every local address."""
        if not self.host_ip or ipaddress.ip_address(self.host_ip).is_unspecified:
            return None
        return self.host_ip


@dataclass(frozen=True, slots=True)
class PodNetworkStatus:
    """The pod's side of the network: its address, interface name and gateway."""

    ip: str
    interface: str
    gateway: str
    prefix_length: int


@dataclass(frozen=True, slots=True)
class InterfaceStats:
    """Cumulative counters of one interface inside a pod's network namespace."""

    name: str
    rx_bytes: int
    rx_errors: int
    tx_bytes: int
    tx_errors: int


@dataclass(frozen=True, slots=True)
class Readiness:
    """The CRI's NetworkReady condition: reason and message are empty when ready."""

    ready: bool
    reason: str = ""
    message: str = ""


_SANDBOX_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def check_sandbox_id(sandbox_id: str) -> str:
    """Return `sandbox_id` if it can name files and iptables comments, else raise.

    It becomes a file name (the netns, IPAM records) and part of an iptables comment,
    so it is limited to letters, digits, '_', '.' and '-', starting with a letter or
    digit, at most 128 characters (CRI sandbox ids are 64 hex digits)."""
    if not isinstance(sandbox_id, str) or not _SANDBOX_ID.fullmatch(sandbox_id):
        raise ConfigError(f"sandbox id {sandbox_id!r}: want 1-128 of [A-Za-z0-9_.-]")
    return sandbox_id
