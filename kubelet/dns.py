"""A pod's DNS settings (the sandbox's resolv.conf) and hostname, as the kubelet's
dns.Configurer and GeneratePodHostNameAndDomain compute them.

dnsPolicy:
- ClusterFirst (the default): the cluster's nameservers (config.cluster_dns),
  searches `<ns>.svc.<domain> svc.<domain> <domain>` then the host's, `ndots:5`.
  A hostNetwork pod with ClusterFirst gets Default instead.
- ClusterFirstWithHostNet: ClusterFirst, for hostNetwork pods too.
- Default: the node's resolv.conf (config.resolv_conf); an empty path means "no
  resolver file": nameserver 127.0.0.1 (::1 for an IPv6 node) and search ".",
  which is what the resolver does without a nameserver line.
- None: only what spec.dnsConfig says.
Without config.cluster_dns a ClusterFirst pod falls back to Default, and
`on_warning("MissingClusterDNS", ...)` is called (the kubelet's event).

spec.dnsConfig is then merged in: nameservers and searches appended without
duplicates, options overriding the same name. At most 3 nameservers and 32 search
domains of at most 253 characters each, 2048 characters in all, are kept; anything
cut is reported through `on_warning("DNSConfigForming", ...)`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from cri.api import api_pb2
from kubelet.config import KubeletConfig

Object = dict[str, Any]
Warn = Callable[[str, str], None]  # (event reason, message)

MAX_NAMESERVERS = 3
MAX_SEARCH_PATHS = 32
MAX_SEARCH_LIST_CHARS = 2048
MAX_SEARCH_DOMAIN_CHARS = 253  # a DNS-1123 subdomain
MAX_HOSTNAME_CHARS = 63
DEFAULT_OPTIONS = ("ndots:5",)
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class DNSError(ValueError):
    """The pod's DNS settings or hostname cannot be formed (bad policy or name)."""


def parse_resolv_conf(text: str) -> tuple[list[str], list[str], list[str]]:
    """(nameservers, searches, options) of a resolv.conf: the last search line wins,
    options accumulate (a later one replaces an earlier of the same name)."""
    servers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    for raw in text.splitlines():
        line = re.split(r"[#;]", raw, maxsplit=1)[0]
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "nameserver" and len(fields) > 1:
            servers.append(fields[1])
        elif fields[0] == "search":
            searches = [s.rstrip(".") for s in fields[1:] if s != "."]
        elif fields[0] == "options":
            options = _merge_options(options, [_option(o) for o in fields[1:]])
    return servers, searches, options


def _option(text: str) -> tuple[str, str | None]:
    name, sep, option_value = text.partition(":")
    return name, option_value if sep else None


def _merge_options(existing: Iterable[str], more: Iterable[tuple[str, str | None]]) -> list[str]:
    merged: dict[str, str | None] = dict(_option(o) for o in existing)
    for name, option_value in more:
        merged[name] = option_value
    return [name if v in (None, "") else f"{name}:{v}" for name, v in merged.items()]


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _host_config(config: KubeletConfig) -> tuple[list[str], list[str], list[str]]:
    path = str(config.resolv_conf)
    if path in ("", "."):
        return [], [], []
    try:
        return parse_resolv_conf(Path(path).read_text())
    except FileNotFoundError:
        raise DNSError(f"resolv.conf {path}: not found") from None


def _policy(pod: Object) -> str:
    """ "cluster", "host" or "none" (getPodDNSType)."""
    spec = pod.get("spec") or {}
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    if policy == "None":
        return "none"
    if policy == "ClusterFirstWithHostNet":
        return "cluster"
    if policy == "ClusterFirst":
        return "host" if spec.get("hostNetwork") else "cluster"
    if policy == "Default":
        return "host"
    raise DNSError(f'pod: unsupported dnsPolicy "{policy}"')


def _pod_name(pod: Object) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('name')}_{meta.get('namespace') or 'default'}({meta.get('uid', '')})"


def sandbox_dns(
    pod: Object, config: KubeletConfig, *, on_warning: Warn | None = None
) -> api_pb2.DNSConfig:
    """The DNSConfig of the pod's sandbox (see the module docstring). DNSError on an
    unknown dnsPolicy or an unreadable resolv.conf."""
    warn: Warn = on_warning or (lambda _reason, _message: None)
    policy = _policy(pod)
    if policy == "cluster" and not config.cluster_dns:
        warn(
            "MissingClusterDNS",
            f'pod: "{_pod_name(pod)}". kubelet does not have ClusterDNS IP configured and '
            'cannot create Pod using "ClusterFirst" policy. Falling back to "Default" policy.',
        )
        policy = "host"
    namespace = (pod.get("metadata") or {}).get("namespace") or "default"
    servers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    if policy == "cluster":
        _, host_searches, _ = _host_config(config)
        servers = list(config.cluster_dns)
        domain = config.cluster_domain
        cluster = [f"{namespace}.svc.{domain}", f"svc.{domain}", domain] if domain else []
        searches = _unique([*cluster, *host_searches])
        options = list(DEFAULT_OPTIONS)
    elif policy == "host":
        servers, searches, options = _host_config(config)
        if str(config.resolv_conf) in ("", "."):
            servers = ["::1" if _is_ipv6(config.node_ip) else "127.0.0.1"]
            searches = ["."]
    dns_config = (pod.get("spec") or {}).get("dnsConfig") or {}
    if dns_config:
        servers = _unique([*servers, *(dns_config.get("nameservers") or [])])
        searches = _unique([*searches, *(dns_config.get("searches") or [])])
        pod_options = [(str(o["name"]), o.get("value")) for o in dns_config.get("options") or []]
        options = _merge_options(options, pod_options)
    if len(servers) > MAX_NAMESERVERS:
        servers = servers[:MAX_NAMESERVERS]
        warn(
            "DNSConfigForming",
            "Nameserver limits were exceeded, some nameservers have been omitted, the "
            f"applied nameserver line is: {' '.join(servers)}",
        )
    searches = fit_search_limits(searches, warn)
    return api_pb2.DNSConfig(servers=servers, searches=searches, options=options)


def _is_ipv6(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).version == 6
    except ValueError:
        return False


def fit_search_limits(searches: list[str], warn: Warn) -> list[str]:
    """The search list cut to the resolver's limits (formDNSSearchFitsLimits)."""
    exceeded = False
    if len(searches) > MAX_SEARCH_PATHS:
        searches = searches[:MAX_SEARCH_PATHS]
        exceeded = True
    kept = [s for s in searches if len(s) <= MAX_SEARCH_DOMAIN_CHARS]
    exceeded = exceeded or len(kept) != len(searches)
    while kept and len(" ".join(kept)) > MAX_SEARCH_LIST_CHARS:
        kept.pop()
        exceeded = True
    if exceeded:
        warn(
            "DNSConfigForming",
            "Search Line limits were exceeded, some search paths have been omitted, the "
            f"applied search line is: {' '.join(kept)}",
        )
    return kept


def _label(field: str, name: str) -> str:
    if len(name) > MAX_HOSTNAME_CHARS or not _DNS_LABEL.match(name):
        raise DNSError(f'pod {field} "{name}" is not a valid DNS label')
    return name


def host_name_and_domain(pod: Object, cluster_domain: str) -> tuple[str, str]:
    """(hostname, domain) of the pod (GeneratePodHostNameAndDomain): spec.hostname or
    the pod name cut to 63 characters, and `<subdomain>.<ns>.svc.<cluster domain>`
    when spec.subdomain is set (else "")."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    name = str(spec.get("hostname") or "")
    if name:
        _label("Hostname", name)
    else:
        name = str(meta.get("name") or "")
    if len(name) > MAX_HOSTNAME_CHARS:
        name = name[:MAX_HOSTNAME_CHARS].rstrip("-.")
        if not name:
            raise DNSError(f"hostname for pod {meta.get('name')!r} is empty once truncated")
    domain = ""
    subdomain = str(spec.get("subdomain") or "")
    if subdomain:
        _label("Subdomain", subdomain)
        domain = f"{subdomain}.{meta.get('namespace') or 'default'}.svc.{cluster_domain}"
    return name, domain


def hostname(pod: Object, *, cluster_domain: str = "cluster.local") -> str:
    """The hostname the pod's sandbox gets: the short name, or with
    spec.setHostnameAsFQDN and a subdomain its fully qualified name (at most 64
    characters, the kernel's limit). "" for a hostNetwork pod, which keeps the
    node's hostname (the kubelet leaves the sandbox's hostname unset then)."""
    spec = pod.get("spec") or {}
    if spec.get("hostNetwork"):
        return ""
    name, domain = host_name_and_domain(pod, cluster_domain)
    if spec.get("setHostnameAsFQDN") and domain:
        fqdn = f"{name}.{domain}"
        if len(fqdn) > 64:
            raise DNSError(
                f"failed to construct FQDN from pod hostname and cluster domain, FQDN {fqdn} "
                "is too long (64 characters is the max, "
                f"{len(fqdn)} characters requested)"
            )
        return fqdn
    return name
