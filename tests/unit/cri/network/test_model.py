"""Port mappings and sandbox ids: what is accepted, and what a mapping means."""

from __future__ import annotations

import pytest

from cri.network import ConfigError, PortMapping, Protocol
from cri.network.model import check_sandbox_id


def test_defaults() -> None:
    mapping = PortMapping(80)
    assert (mapping.host_port, mapping.protocol, mapping.host_ip) == (0, Protocol.TCP, "")
    assert not mapping.forwarded  # host port 0: nothing to forward


@pytest.mark.parametrize(
    ("mapping", "forwarded", "destination"),
    [
        (PortMapping(80, 8080), True, None),
        (PortMapping(80, 8080, host_ip="0.0.0.0"), True, None),
        (PortMapping(80, 8080, host_ip="127.0.0.1"), True, "127.0.0.1"),
        (PortMapping(53, 5353, Protocol.UDP, "192.0.2.7"), True, "192.0.2.7"),
        (PortMapping(80, 8080, host_ip="::1"), False, "::1"),  # IPv6: not ours
        (PortMapping(80, 0, host_ip="127.0.0.1"), False, "127.0.0.1"),
    ],
)
def test_forwarding(mapping: PortMapping, forwarded: bool, destination: str | None) -> None:
    assert mapping.forwarded is forwarded
    assert mapping.destination == destination


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"container_port": 0}, "container port 0"),
        ({"container_port": 65536}, "container port 65536"),
        ({"container_port": 80, "host_port": -1}, "host port -1"),
        ({"container_port": 80, "host_port": 70000}, "host port 70000"),
        ({"container_port": 80, "protocol": "tcp"}, "unknown protocol"),
        ({"container_port": 80, "host_ip": "localhost"}, "host ip 'localhost'"),
    ],
)
def test_bad_mappings(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PortMapping(**kwargs)  # type: ignore[arg-type]


def test_protocol_values_are_iptables_names() -> None:
    assert [p.value for p in Protocol] == ["tcp", "udp", "sctp"]


@pytest.mark.parametrize("good", ["a", "0" * 64, "p-1_2.3", "X" * 128])
def test_good_sandbox_ids(good: str) -> None:
    assert check_sandbox_id(good) == good


@pytest.mark.parametrize("bad", ["", "-a", ".x", "a/b", "a b", 'a"b', "a\nb", "x" * 129, 5])
def test_bad_sandbox_ids(bad: object) -> None:
    with pytest.raises(ConfigError, match="sandbox id"):
        check_sandbox_id(bad)  # type: ignore[arg-type]
