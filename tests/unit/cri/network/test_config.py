"""NetworkConfig: defaults, derived names, and every refusal naming its field."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from cri.network import ConfigError, NetworkConfig


def test_defaults_follow_containerd_bridge_conflist() -> None:
    config = NetworkConfig()
    assert config.bridge == "kubeling0"
    assert config.network == ipaddress.IPv4Network("10.85.0.0/16")
    assert config.gateway == ipaddress.IPv4Address("10.85.0.1")
    assert config.netns_dir == Path("/run/kubeling/netns")
    assert config.interface == "eth0"


def test_derived_names() -> None:
    config = NetworkConfig(pod_cidr="10.200.0.0/24", state_dir=Path("/s"), chain_prefix="KT-1")
    assert config.postrouting_chain == "KT-1-POSTROUTING"
    assert config.hostports_chain == "KT-1-HOSTPORTS"
    assert config.forward_chain == "KT-1-FORWARD"
    assert config.ipam_dir == Path("/s/ipam/10.200.0.0_24")
    assert config.host_journal == Path("/s/host.json")


def test_longest_chain_name_fits_iptables() -> None:
    config = NetworkConfig(chain_prefix="A" * 16)
    assert max(len(c) for c in (config.postrouting_chain, config.hostports_chain)) <= 28


def test_string_paths_and_padded_cidr_are_normalised() -> None:
    config = NetworkConfig(pod_cidr=" 10.9.0.0/16", state_dir="/a", netns_dir="/b")  # type: ignore[arg-type]
    assert config.pod_cidr == "10.9.0.0/16"
    assert config.state_dir == Path("/a")
    assert config.netns_dir == Path("/b")


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"bridge": ""}, "bridge"),
        ({"bridge": "a-very-long-bridge"}, "bridge"),
        ({"bridge": "br/0"}, "bridge"),
        ({"bridge": "br 0"}, "bridge"),
        ({"bridge": ".."}, "bridge"),
        ({"interface": "eth:0"}, "pod interface"),
        ({"pod_cidr": "10.85.0.1/16"}, "pod_cidr"),  # host bits set
        ({"pod_cidr": "fd00::/64"}, "pod_cidr"),
        ({"pod_cidr": "10.85.0.0/31"}, "pod_cidr"),
        ({"pod_cidr": "127.0.0.0/8"}, "pod_cidr"),
        ({"pod_cidr": "224.0.0.0/24"}, "pod_cidr"),
        ({"pod_cidr": "169.254.0.0/16"}, "pod_cidr"),
        ({"pod_cidr": "0.0.0.0/0"}, "pod_cidr"),
        ({"pod_cidr": "240.0.0.0/24"}, "pod_cidr"),
        ({"pod_cidr": "banana"}, "pod_cidr"),
        ({"pod_cidr": 10}, "pod_cidr"),
        ({"state_dir": Path("relative")}, "state_dir"),
        ({"netns_dir": "run/netns"}, "netns_dir"),
        ({"veth_prefix": ""}, "veth_prefix"),
        ({"veth_prefix": "Veth"}, "veth_prefix"),
        ({"veth_prefix": "toolongpx"}, "veth_prefix"),
        ({"chain_prefix": "A" * 17}, "chain_prefix"),
        ({"chain_prefix": "KUBE LING"}, "chain_prefix"),
        ({"chain_prefix": "-X"}, "chain_prefix"),
        ({"mtu": 67}, "mtu"),
        ({"mtu": 65536}, "mtu"),
        ({"mtu": True}, "mtu"),
        ({"ip_forward": "yes"}, "ip_forward"),
        ({"masquerade": 1}, "masquerade"),
        ({"iptables": " "}, "iptables"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(settings: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=f"^{field}"):
        NetworkConfig(**settings)


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        NetworkConfig(mtu=1)


def test_small_networks_are_allowed() -> None:
    assert NetworkConfig(pod_cidr="10.1.2.0/30", mtu=9000).mtu == 9000


def test_from_mapping() -> None:
    config = NetworkConfig.from_mapping(
        {"bridge": "cni9", "pod_cidr": "10.7.0.0/16", "state_dir": "/var/x", "hairpin": False}
    )
    assert config == NetworkConfig(
        bridge="cni9", pod_cidr="10.7.0.0/16", state_dir=Path("/var/x"), hairpin=False
    )


def test_from_mapping_refuses_unknown_keys() -> None:
    with pytest.raises(ConfigError, match="unknown network setting brige, podCIDR"):
        NetworkConfig.from_mapping({"brige": "x", "podCIDR": "10.0.0.0/8"})


def test_from_mapping_checks_values() -> None:
    with pytest.raises(ConfigError, match="^mtu"):
        NetworkConfig.from_mapping({"mtu": "1500"})
