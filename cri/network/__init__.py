"""The pod network: a bridge, a veth pair and an address per pod, masquerade and
host ports through iptables, and the sandboxes' network namespaces.

`NetworkManager` (manager.py) is the one entry point; its docstring lists the steps
of setup and teardown. Importing this package does not import pyroute2 (~150 ms):
links.py imports it on first use.
"""

from __future__ import annotations

from cri.network.config import NetworkConfig
from cri.network.errors import (
    AddressesExhausted,
    ConfigError,
    IptablesError,
    NetnsError,
    NetworkError,
)
from cri.network.manager import NetworkManager
from cri.network.model import InterfaceStats, PodNetworkStatus, PortMapping, Protocol, Readiness

__all__ = [
    "AddressesExhausted",
    "ConfigError",
    "InterfaceStats",
    "IptablesError",
    "NetnsError",
    "NetworkConfig",
    "NetworkError",
    "NetworkManager",
    "PodNetworkStatus",
    "PortMapping",
    "Protocol",
    "Readiness",
]
