"""The pod network's configuration: one frozen value, validated when it is made.

Defaults follow containerd's bridge conflist (a `kubeling0` bridge over 10.85.0.0/16,
the bridge holding .1 as every pod's gateway). Every host-visible name is
configurable (bridge, veth prefix, iptables chain prefix) so that a test, or a second
kubeling on the same host, never touches another one's interfaces or rules.

Paths: `state_dir` holds the IPAM records and the journal of host settings changed;
it defaults to /run/kubeling/network, on tmpfs, so allocations survive restarts of
the CRI server but not a reboot, which also ends every pod network namespace (the
host-local plugin keeps them under /var/lib and leaks them across reboots).
`netns_dir` holds the bind-mounted network namespace files of the sandboxes.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cri.network.errors import ConfigError

# iptables chain names are at most 28 characters; the longest suffix we add is
# "-POSTROUTING" (12), which leaves 16 for the prefix.
_CHAIN_PREFIX = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,15}")
_VETH_PREFIX = re.compile(r"[a-z][a-z0-9]{0,7}")
IFNAMSIZ = 16  # names are at most 15 bytes plus the NUL


def check_interface_name(name: str, what: str) -> None:
    """Raise ConfigError unless `name` is a valid Linux interface name."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{what}: empty interface name")
    if len(name.encode()) >= IFNAMSIZ:
        raise ConfigError(f"{what}: interface name {name!r} longer than 15 bytes")
    if name in (".", "..") or any(c in name for c in "/:") or any(c.isspace() for c in name):
        raise ConfigError(f"{what}: invalid interface name {name!r}")


@dataclass(frozen=True, slots=True)
class NetworkConfig:
    """How the node's pod network looks. Raises ConfigError when made with bad values."""

    bridge: str = "kubeling0"
    pod_cidr: str = "10.85.0.0/16"
    state_dir: Path = field(default=Path("/run/kubeling/network"))
    netns_dir: Path = field(default=Path("/run/kubeling/netns"))
    interface: str = "eth0"  # the pod's side of the veth pair
    veth_prefix: str = "veth"  # host side: prefix + hex digits of a hash of the sandbox id
    chain_prefix: str = "KUBELING"  # chains <prefix>-POSTROUTING, -HOSTPORTS, -HAIRPIN, -FORWARD
    mtu: int | None = None  # None: the kernel's default (1500)
    ip_forward: bool = True  # set net.ipv4.ip_forward=1 (host-wide) for pod egress
    load_br_netfilter: bool = True  # modprobe br_netfilter if missing (host-wide)
    masquerade: bool = True  # SNAT traffic from the pod CIDR leaving it
    hairpin: bool = True  # a pod may reach itself through its own host port
    localhost_hostports: bool = True  # host ports answer on 127.0.0.1 too, as portmap's do
    iptables: str = "iptables"  # the command; iptables-legacy or iptables-nft also work

    def __post_init__(self) -> None:
        check_interface_name(self.bridge, "bridge")
        check_interface_name(self.interface, "pod interface")
        network = _parse_cidr(self.pod_cidr)
        if str(network) != self.pod_cidr:  # normalise "10.85.0.0/16 " and the like
            object.__setattr__(self, "pod_cidr", str(network))
        for name in ("state_dir", "netns_dir"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = Path(value)
                object.__setattr__(self, name, value)
            if not isinstance(value, Path) or not value.is_absolute():
                raise ConfigError(f"{name}: {value!s} is not an absolute path")
        if not isinstance(self.veth_prefix, str) or not _VETH_PREFIX.fullmatch(self.veth_prefix):
            raise ConfigError(f"veth_prefix: {self.veth_prefix!r}: want 1-8 of [a-z0-9]")
        if not isinstance(self.chain_prefix, str) or not _CHAIN_PREFIX.fullmatch(self.chain_prefix):
            raise ConfigError(f"chain_prefix: {self.chain_prefix!r}: want 1-16 of [A-Za-z0-9_-]")
        if self.mtu is not None and (
            isinstance(self.mtu, bool)
            or not isinstance(self.mtu, int)
            or not 68 <= self.mtu <= 65535
        ):
            raise ConfigError(f"mtu: {self.mtu!r} not in 68-65535")
        for name in (
            "ip_forward",
            "load_br_netfilter",
            "masquerade",
            "hairpin",
            "localhost_hostports",
        ):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}: {getattr(self, name)!r} is not a boolean")
        if not isinstance(self.iptables, str) or not self.iptables.strip():
            raise ConfigError("iptables: empty command")

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> NetworkConfig:
        """A config from a parsed file or flags: keys are the field names; unknown
        keys are refused (a typo must not silently fall back to a default)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown network setting {', '.join(unknown)}")
        try:
            return cls(**data)  # type: ignore[arg-type]
        except TypeError as e:
            raise ConfigError(f"network settings: {e}") from None

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.pod_cidr)

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        """The bridge's address and every pod's default route: .1 of the pod CIDR."""
        return self.network.network_address + 1

    @property
    def postrouting_chain(self) -> str:
        return f"{self.chain_prefix}-POSTROUTING"

    @property
    def hostports_chain(self) -> str:
        return f"{self.chain_prefix}-HOSTPORTS"

    @property
    def hairpin_chain(self) -> str:
        return f"{self.chain_prefix}-HAIRPIN"

    @property
    def forward_chain(self) -> str:
        return f"{self.chain_prefix}-FORWARD"

    @property
    def ipam_dir(self) -> Path:
        return self.state_dir / "ipam" / self.pod_cidr.replace("/", "_")

    @property
    def host_journal(self) -> Path:
        return self.state_dir / "host.json"


def _parse_cidr(value: object) -> ipaddress.IPv4Network:
    if not isinstance(value, str):
        raise ConfigError(f"pod_cidr: {value!r} is not a string")
    try:
        network = ipaddress.ip_network(value.strip(), strict=True)
    except ValueError as e:
        raise ConfigError(f"pod_cidr: {value!r}: {e}") from None
    if not isinstance(network, ipaddress.IPv4Network):
        raise ConfigError(f"pod_cidr: {value!r}: only IPv4 pod networks are supported")
    if network.prefixlen > 30:
        raise ConfigError(f"pod_cidr: {value!r}: want a /30 or larger (gateway and a pod)")
    for bad, what in (
        (network.is_loopback, "loopback"),
        (network.is_multicast, "multicast"),
        (network.is_link_local, "link-local"),
        (network.is_unspecified, "unspecified"),
        (network.overlaps(ipaddress.IPv4Network("0.0.0.0/8")), "'this network' (0/8)"),
        (network.overlaps(ipaddress.IPv4Network("240.0.0.0/4")), "reserved (240/4)"),
    ):
        if bad:
            raise ConfigError(f"pod_cidr: {value!r} is {what}")
    return network
