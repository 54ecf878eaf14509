"""kubelet.dns: the sandbox DNSConfig per dnsPolicy, dnsConfig merging, the resolver
limits with their warnings, and the pod hostname."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubelet.config import KubeletConfig
from kubelet.dns import DNSError, host_name_and_domain, hostname, parse_resolv_conf, sandbox_dns

Object = dict[str, Any]

HOST_RESOLV = """# managed by the network
nameserver 192.0.2.53
nameserver 192.0.2.54 ; second
search corp.example. lab.example
options timeout:2 attempts:3
options timeout:1
"""


@pytest.fixture
def config(tmp_path: Path) -> KubeletConfig:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(HOST_RESOLV)
    return KubeletConfig(kubeconfig="k", cluster_dns=["10.96.0.10"], resolv_conf=resolv)


def make_pod(**spec: Any) -> Object:
    return {"metadata": {"name": "web-0", "namespace": "shop", "uid": "u"}, "spec": spec}


def dns(pod: Object, config: KubeletConfig) -> tuple[tuple[list[str], list[str], list[str]],
                                                       list[tuple[str, str]]]:  # fmt: skip
    warnings: list[tuple[str, str]] = []
    result = sandbox_dns(pod, config, on_warning=lambda r, m: warnings.append((r, m)))
    return (list(result.servers), list(result.searches), list(result.options)), warnings


def test_parse_resolv_conf() -> None:
    assert parse_resolv_conf(HOST_RESOLV) == (
        ["192.0.2.53", "192.0.2.54"], ["corp.example", "lab.example"],
        ["timeout:1", "attempts:3"],
    )  # fmt: skip


def test_cluster_first(config: KubeletConfig) -> None:
    (servers, searches, options), warnings = dns(make_pod(), config)
    assert servers == ["10.96.0.10"]
    assert searches == ["shop.svc.cluster.local", "svc.cluster.local", "cluster.local",
                        "corp.example", "lab.example"]  # fmt: skip
    assert options == ["ndots:5"]
    assert warnings == []


def test_cluster_first_on_host_network_is_default_unless_with_host_net(
    config: KubeletConfig,
) -> None:
    host = (["192.0.2.53", "192.0.2.54"], ["corp.example", "lab.example"],
            ["timeout:1", "attempts:3"])  # fmt: skip
    assert dns(make_pod(hostNetwork=True), config)[0] == host
    assert dns(make_pod(dnsPolicy="Default"), config)[0] == host
    with_host_net = make_pod(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet")
    assert dns(with_host_net, config)[0][0] == ["10.96.0.10"]


def test_without_cluster_dns_cluster_first_falls_back_to_default(config: KubeletConfig) -> None:
    config.cluster_dns = []
    (servers, _, _), warnings = dns(make_pod(), config)
    assert servers == ["192.0.2.53", "192.0.2.54"]
    assert [reason for reason, _ in warnings] == ["MissingClusterDNS"]
    assert 'Falling back to "Default" policy.' in warnings[0][1]


def test_none_uses_only_dns_config_and_merges(config: KubeletConfig) -> None:
    pod = make_pod(dnsPolicy="None", dnsConfig={
        "nameservers": ["1.1.1.1", "1.1.1.1"], "searches": ["a.example"],
        "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
    })  # fmt: skip
    assert dns(pod, config)[0] == (["1.1.1.1"], ["a.example"], ["ndots:2", "edns0"])
    merged = make_pod(dnsConfig={"nameservers": ["1.1.1.1"], "searches": ["svc.cluster.local"],
                                 "options": [{"name": "ndots", "value": "1"}]})  # fmt: skip
    servers, searches, options = dns(merged, config)[0]
    assert servers == ["10.96.0.10", "1.1.1.1"]
    assert searches.count("svc.cluster.local") == 1
    assert options == ["ndots:1"]


def test_empty_resolv_conf_path_means_localhost(config: KubeletConfig) -> None:
    config.resolv_conf = Path("")
    assert dns(make_pod(dnsPolicy="Default"), config)[0] == (["127.0.0.1"], ["."], [])
    config.node_ip = "fd00::1"
    assert dns(make_pod(dnsPolicy="Default"), config)[0][0] == ["::1"]


def test_limits_cut_with_warnings(config: KubeletConfig) -> None:
    many = [f"d{i}.example" for i in range(40)]
    pod = make_pod(
        dnsPolicy="None",
        dnsConfig={"nameservers": ["1.0.0.1", "1.0.0.2", "1.0.0.3", "1.0.0.4"], "searches": many},
    )
    (servers, searches, _), warnings = dns(pod, config)
    assert servers == ["1.0.0.1", "1.0.0.2", "1.0.0.3"]
    assert searches == many[:32]
    assert [reason for reason, _ in warnings] == ["DNSConfigForming", "DNSConfigForming"]
    assert warnings[0][1].endswith("the applied nameserver line is: 1.0.0.1 1.0.0.2 1.0.0.3")

    long = ["x" * 250 + f".{i}" for i in range(10)]  # 10 of 252 characters: over 2048
    (_, searches, _), warnings = dns(make_pod(dnsPolicy="None", dnsConfig={"searches": long}),
                                     config)  # fmt: skip
    assert searches == long[:8]
    assert len(" ".join(searches)) <= 2048
    too_long = ["y" * 254, "ok.example"]
    (_, searches, _), _ = dns(make_pod(dnsPolicy="None", dnsConfig={"searches": too_long}),
                              config)  # fmt: skip
    assert searches == ["ok.example"]


def test_unknown_policy(config: KubeletConfig) -> None:
    with pytest.raises(DNSError, match='unsupported dnsPolicy "Sometimes"'):
        sandbox_dns(make_pod(dnsPolicy="Sometimes"), config)


def test_hostname_and_domain() -> None:
    assert hostname(make_pod()) == "web-0"
    assert hostname(make_pod(hostname="db")) == "db"
    assert hostname(make_pod(hostNetwork=True)) == ""
    assert host_name_and_domain(make_pod(subdomain="peers"), "cluster.local") == (
        "web-0", "peers.shop.svc.cluster.local")  # fmt: skip
    fqdn = make_pod(hostname="db", subdomain="peers", setHostnameAsFQDN=True)
    assert hostname(fqdn, cluster_domain="k.local") == "db.peers.shop.svc.k.local"
    long_name = {"metadata": {"name": "a" * 62 + "-b-c", "namespace": "n"}, "spec": {}}
    assert hostname(long_name) == "a" * 62  # cut to 63, trailing '-' dropped
    with pytest.raises(DNSError, match='pod Hostname "Bad_Name" is not a valid DNS label'):
        hostname(make_pod(hostname="Bad_Name"))
    too_long = make_pod(hostname="h" * 40, subdomain="s" * 20, setHostnameAsFQDN=True)
    with pytest.raises(DNSError, match="is too long"):
        hostname(too_long)
