"""The kubelet-managed /etc/hosts of a pod's containers (<pod dir>/etc-hosts):
localhost and the IPv6 names, the pod's IPs with its hostname (and its FQDN when
the pod has a subdomain), then spec.hostAliases. A hostNetwork pod gets the node's
hosts file with its aliases appended instead."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MANAGED_HEADER = "# Kubernetes-managed hosts file.\n"
HOST_NETWORK_HEADER = "# Kubernetes-managed hosts file (host network).\n"


def aliases_section(host_aliases: Sequence[dict[str, Any]]) -> str:
    if not host_aliases:
        return ""
    lines = ["", "# Entries added by HostAliases."]
    for alias in host_aliases:
        lines.append(f"{alias.get('ip', '')}\t" + "\t".join(alias.get("hostnames") or []))
    return "\n".join(lines) + "\n"


def managed_hosts(
    pod_ips: Sequence[str], hostname: str, domain: str, host_aliases: Sequence[dict[str, Any]]
) -> str:
    """The managed hosts file of a pod on the pod network."""
    text = (
        MANAGED_HEADER
        + "127.0.0.1\tlocalhost\n"
        + "::1\tlocalhost ip6-localhost ip6-loopback\n"
        + "fe00::0\tip6-localnet\n"
        + "fe00::0\tip6-mcastprefix\n"
        + "fe00::1\tip6-allnodes\n"
        + "fe00::2\tip6-allrouters\n"
    )
    for ip in pod_ips:
        text += f"{ip}\t{hostname}.{domain}\t{hostname}\n" if domain else f"{ip}\t{hostname}\n"
    return text + aliases_section(host_aliases)


def host_network_hosts(node_hosts: str, host_aliases: Sequence[dict[str, Any]]) -> str:
    """The hosts file of a hostNetwork pod: the node's, plus the pod's aliases."""
    return HOST_NETWORK_HEADER + node_hosts + aliases_section(host_aliases)
