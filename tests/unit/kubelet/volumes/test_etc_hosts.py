"""The managed /etc/hosts content."""

from __future__ import annotations

from kubelet.volumes.etc_hosts import host_network_hosts, managed_hosts

BASE = (
    "# Kubernetes-managed hosts file.\n"
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "fe00::0\tip6-mcastprefix\n"
    "fe00::1\tip6-allnodes\n"
    "fe00::2\tip6-allrouters\n"
)


def test_pod_ips_and_hostname() -> None:
    assert managed_hosts(["10.1.0.5"], "web", "", []) == BASE + "10.1.0.5\tweb\n"


def test_subdomain_and_aliases() -> None:
    aliases = [{"ip": "192.0.2.9", "hostnames": ["foo.local", "bar.local"]},
               {"ip": "192.0.2.10", "hostnames": ["baz"]}]  # fmt: skip
    text = managed_hosts(["10.1.0.5", "fd00::5"], "db-0", "peers.shop.svc.cluster.local", aliases)
    assert text == BASE + (
        "10.1.0.5\tdb-0.peers.shop.svc.cluster.local\tdb-0\n"
        "fd00::5\tdb-0.peers.shop.svc.cluster.local\tdb-0\n"
        "\n# Entries added by HostAliases.\n"
        "192.0.2.9\tfoo.local\tbar.local\n"
        "192.0.2.10\tbaz\n"
    )


def test_host_network() -> None:
    node = "127.0.0.1 localhost\n192.0.2.1 node-a\n"
    assert (
        host_network_hosts(node, []) == "# Kubernetes-managed hosts file (host network).\n" + node
    )
    with_alias = host_network_hosts(node, [{"ip": "192.0.2.9", "hostnames": ["x"]}])
    assert with_alias.endswith("\n# Entries added by HostAliases.\n192.0.2.9\tx\n")
