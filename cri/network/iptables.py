"""The pod network's iptables rules: rendered by pure functions, applied by a thin
wrapper around the `iptables` command.

What is installed (every name carries the configured chain prefix, KUBELING by
default, so a second manager or a test never touches another one's rules):

    nat PREROUTING, OUTPUT:  -m addrtype --dst-type LOCAL -j <P>-HOSTPORTS
    nat POSTROUTING:         -j <P>-POSTROUTING
    filter FORWARD:          -j <P>-FORWARD
    raw PREROUTING:          -i <bridge> -d 127.0.0.0/8 -j DROP  (with localhost host ports)

    <P>-HOSTPORTS    per sandbox: one DNAT rule per host port
    <P>-HAIRPIN      per sandbox with host ports: masquerade the pod reaching itself
                     through its own host port (its answer would otherwise never
                     leave it); jumped to from <P>-POSTROUTING
    <P>-POSTROUTING  -j <P>-HAIRPIN; masquerade 127.0.0.1:<host port> from the host
                     leaving through the bridge; masquerade traffic from the pod CIDR
                     leaving it (not multicast)
    <P>-FORWARD      accept traffic from and to the bridge (a host whose FORWARD
                     policy is DROP, as Docker leaves it, would cut pods off)

Per-sandbox rules carry the comment "kubeling sandbox <id>", so that teardown
deletes exactly that sandbox's rules. As with the CNI portmap plugin, only hairpin
and localhost connections are masqueraded: another pod reaching a host port keeps its
source address (its answer is un-NATed on the bridge, through br_netfilter and the
bridge's nf_call_iptables option), and so does pod-to-pod traffic DNATed by a
service proxy.

Ordering rules: jumps are inserted first in their built-in chains; the static chains
(<P>-POSTROUTING, <P>-FORWARD) are flushed and rewritten on every start, since their
content follows from the config alone; the per-sandbox chains are never flushed on
start: they hold the rules of running sandboxes, which must survive a restart.

The raw-table DROP closes what route_localnet on the bridge would open (a pod
sending to 127.0.0.1 through the bridge would reach host services bound to
loopback; CVE-2020-8558). raw runs before conntrack, so the replies of a DNATed
localhost connection, addressed to the bridge, are not affected.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from cri.network.config import NetworkConfig
from cri.network.errors import IptablesError
from cri.network.model import PortMapping

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.0/8"
MULTICAST = "224.0.0.0/4"


@dataclass(frozen=True, slots=True)
class Chain:
    table: str
    name: str


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: its table, chain, and the match/target arguments."""

    table: str
    chain: str
    spec: tuple[str, ...]

    def args(self, verb: str) -> list[str]:
        """The iptables arguments to -A(ppend), -C(heck) or -D(elete) this rule."""
        return ["-t", self.table, verb, self.chain, *self.spec]

    def insert_args(self) -> list[str]:
        return ["-t", self.table, "-I", self.chain, "1", *self.spec]


# -- rendering (pure) -----------------------------------------------------------


def comment(text: str) -> tuple[str, ...]:
    return ("-m", "comment", "--comment", text)


def sandbox_comment(sandbox_id: str) -> str:
    """The comment that marks a sandbox's host-port rules."""
    return f"kubeling sandbox {sandbox_id}"


def own_chains(config: NetworkConfig) -> list[Chain]:
    return [
        Chain("nat", config.hostports_chain),
        Chain("nat", config.hairpin_chain),
        Chain("nat", config.postrouting_chain),
        Chain("filter", config.forward_chain),
    ]


def static_chains(config: NetworkConfig) -> list[Chain]:
    """The chains whose content follows from the config: rewritten on every start."""
    return [Chain("nat", config.postrouting_chain), Chain("filter", config.forward_chain)]


def sandbox_chains(config: NetworkConfig) -> list[Chain]:
    """The chains that hold per-sandbox rules (tagged with sandbox_comment)."""
    return [Chain("nat", config.hostports_chain), Chain("nat", config.hairpin_chain)]


def jump_rules(config: NetworkConfig) -> list[Rule]:
    """The rules in built-in chains that lead to ours (each inserted first)."""
    p = config.chain_prefix
    to_hostports = (
        *comment(f"{p}: host ports"),
        *("-m", "addrtype", "--dst-type", "LOCAL"),
        *("-j", config.hostports_chain),
    )
    rules = [
        Rule("nat", "PREROUTING", to_hostports),
        Rule("nat", "OUTPUT", to_hostports),
        Rule("nat", "POSTROUTING", (*comment(f"{p}: pod network"), "-j", config.postrouting_chain)),
        Rule("filter", "FORWARD", (*comment(f"{p}: pod network"), "-j", config.forward_chain)),
    ]
    if config.localhost_hostports:
        rules.append(
            Rule(
                "raw",
                "PREROUTING",
                (
                    *("-i", config.bridge, "-d", LOOPBACK),
                    *comment(f"{p}: no loopback destinations from pods"),
                    *("-j", "DROP"),
                ),
            )
        )
    return rules


def static_rules(config: NetworkConfig) -> list[Rule]:
    """The content of <P>-POSTROUTING and <P>-FORWARD, in order."""
    cidr, bridge, p = config.pod_cidr, config.bridge, config.chain_prefix
    post = config.postrouting_chain
    rules: list[Rule] = []
    if config.hairpin:
        rules.append(
            Rule("nat", post, (*comment(f"{p}: host port hairpin"), "-j", config.hairpin_chain))
        )
    if config.localhost_hostports:
        # 127.0.0.1:<host port> from the host, DNATed out of the bridge: the pod
        # could not answer a loopback source.
        rules.append(
            Rule(
                "nat",
                post,
                (
                    *("-o", bridge, "-s", LOOPBACK),
                    *comment(f"{p}: host port from localhost"),
                    *("-j", "MASQUERADE"),
                ),
            )
        )
    if config.masquerade:
        rules += [
            Rule(
                "nat",
                post,
                (*("-s", cidr, "-d", MULTICAST), *comment(f"{p}: no masquerade"), "-j", "RETURN"),
            ),
            Rule(
                "nat",
                post,
                (
                    *("-s", cidr, "!", "-d", cidr),
                    *comment(f"{p}: masquerade pod traffic leaving {cidr}"),
                    *("-j", "MASQUERADE"),
                ),
            ),
        ]
    fwd = config.forward_chain
    rules += [
        Rule("filter", fwd, ("-i", bridge, *comment(f"{p}: from pods"), "-j", "ACCEPT")),
        Rule("filter", fwd, ("-o", bridge, *comment(f"{p}: to pods"), "-j", "ACCEPT")),
    ]
    return rules


def sandbox_rules(
    config: NetworkConfig, sandbox_id: str, pod_ip: str, mappings: Iterable[PortMapping]
) -> list[Rule]:
    """A sandbox's rules: one DNAT rule per forwarded mapping (duplicates dropped,
    order kept) and, if there is any, the masquerade of its hairpin connections."""
    tag = comment(sandbox_comment(sandbox_id))
    rules: list[Rule] = []
    for mapping in mappings:
        if not mapping.forwarded:
            continue
        proto = mapping.protocol.value
        spec: tuple[str, ...] = ("-p", proto, "-m", proto, "--dport", str(mapping.host_port))
        if mapping.destination is not None:
            spec += ("-d", mapping.destination)
        spec += (*tag, "-j", "DNAT", "--to-destination", f"{pod_ip}:{mapping.container_port}")
        rule = Rule("nat", config.hostports_chain, spec)
        if rule not in rules:
            rules.append(rule)
    if rules and config.hairpin:
        rules.append(
            Rule(
                "nat",
                config.hairpin_chain,
                (
                    *("-s", f"{pod_ip}/32", "-d", f"{pod_ip}/32"),
                    *("-m", "conntrack", "--ctstate", "DNAT"),
                    *tag,
                    *("-j", "MASQUERADE"),
                ),
            )
        )
    return rules


def rules_with_comment(listing: str, chain: str, text: str) -> list[tuple[str, ...]]:
    """From `iptables -S <chain>` output, the specs of the rules of `chain` whose
    comment is exactly `text` (ready for `-D <chain> *spec`)."""
    found: list[tuple[str, ...]] = []
    for line in listing.splitlines():
        try:
            words = shlex.split(line)
        except ValueError:
            continue
        if words[:2] != ["-A", chain]:
            continue
        spec = tuple(words[2:])
        for i, word in enumerate(spec[:-1]):
            if word == "--comment" and spec[i + 1] == text:
                found.append(spec)
                break
    return found


# -- applying (thin) ------------------------------------------------------------

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


class Iptables:
    """Runs the iptables command, waiting for the xtables lock (-w)."""

    def __init__(self, command: str = "iptables", *, runner: Runner = subprocess.run) -> None:
        self.command = command
        self._runner = runner

    def run(self, args: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [self.command, "-w", "5", *args]
        log.debug("iptables", extra={"argv": argv[1:]})
        try:
            result = self._runner(argv, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise IptablesError(f"{' '.join(argv)}: {e}") from None
        if check and result.returncode != 0:
            raise IptablesError(f"{' '.join(argv)}: {_stderr(result)}")
        return result

    def chain_exists(self, chain: Chain) -> bool:
        return self.run(["-t", chain.table, "-S", chain.name], check=False).returncode == 0

    def ensure_chain(self, chain: Chain) -> None:
        if not self.chain_exists(chain):
            result = self.run(["-t", chain.table, "-N", chain.name], check=False)
            if result.returncode != 0 and not self.chain_exists(chain):  # lost a race: fine
                raise IptablesError(f"create chain {chain.table}/{chain.name}: {_stderr(result)}")

    def flush_chain(self, chain: Chain) -> None:
        self.run(["-t", chain.table, "-F", chain.name])

    def delete_chains(self, chains: Sequence[Chain]) -> None:
        """Flush all of `chains`, then delete them (one may jump to another, which
        cannot be deleted while referenced); missing chains are fine."""
        present = [chain for chain in chains if self.chain_exists(chain)]
        for chain in present:
            self.run(["-t", chain.table, "-F", chain.name])
        for chain in present:
            self.run(["-t", chain.table, "-X", chain.name])

    def exists(self, rule: Rule) -> bool:
        return self.run(rule.args("-C"), check=False).returncode == 0

    def append(self, rule: Rule) -> None:
        self.run(rule.args("-A"))

    def ensure_first(self, rule: Rule) -> None:
        """Insert `rule` at the top of its chain unless it is there already."""
        if not self.exists(rule):
            self.run(rule.insert_args())

    def delete(self, rule: Rule) -> None:
        """Delete every copy of `rule`; a missing rule or chain is fine."""
        for _ in range(100):  # bounded: a copy per earlier crash at most
            if self.run(rule.args("-D"), check=False).returncode != 0:
                return

    def list_rules(self, chain: Chain) -> str:
        """`iptables -S <chain>`; empty if the chain does not exist."""
        result = self.run(["-t", chain.table, "-S", chain.name], check=False)
        return result.stdout if result.returncode == 0 else ""

    def delete_commented(self, chain: Chain, text: str) -> int:
        """Delete the rules of `chain` whose comment is `text`; return how many."""
        specs = rules_with_comment(self.list_rules(chain), chain.name, text)
        for spec in specs:
            self.run(["-t", chain.table, "-D", chain.name, *spec], check=False)
        return len(specs)


def _stderr(result: subprocess.CompletedProcess[str]) -> str:
    lines = [
        line
        for line in (result.stderr or "").splitlines()
        if line.strip() and not line.startswith("# Warning:")
    ]
    return "; ".join(lines) or f"exit status {result.returncode}"
