"""iptables rules rendered as pure functions, the parser that finds a sandbox's rules,
and the thin command wrapper driven by a fake runner."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from cri.network import IptablesError, NetworkConfig, PortMapping, Protocol
from cri.network.iptables import (
    Chain,
    Iptables,
    Rule,
    jump_rules,
    own_chains,
    rules_with_comment,
    sandbox_chains,
    sandbox_comment,
    sandbox_rules,
    static_chains,
    static_rules,
)

CONFIG = NetworkConfig(bridge="kt0", pod_cidr="10.201.0.0/24", chain_prefix="KT")


def test_chains() -> None:
    assert own_chains(CONFIG) == [
        Chain("nat", "KT-HOSTPORTS"),
        Chain("nat", "KT-HAIRPIN"),
        Chain("nat", "KT-POSTROUTING"),
        Chain("filter", "KT-FORWARD"),
    ]
    assert static_chains(CONFIG) == [Chain("nat", "KT-POSTROUTING"), Chain("filter", "KT-FORWARD")]
    assert sandbox_chains(CONFIG) == [Chain("nat", "KT-HOSTPORTS"), Chain("nat", "KT-HAIRPIN")]
    # every chain is either rewritten on start or holds sandboxes' rules, never both
    assert sorted(static_chains(CONFIG) + sandbox_chains(CONFIG), key=str) == sorted(
        own_chains(CONFIG), key=str
    )


def test_jump_rules() -> None:
    hostports = (
        "-m", "comment", "--comment", "KT: host ports",
        "-m", "addrtype", "--dst-type", "LOCAL", "-j", "KT-HOSTPORTS",
    )  # fmt: skip
    assert jump_rules(CONFIG) == [
        Rule("nat", "PREROUTING", hostports),
        Rule("nat", "OUTPUT", hostports),
        Rule("nat", "POSTROUTING", ("-m", "comment", "--comment", "KT: pod network",
                                    "-j", "KT-POSTROUTING")),
        Rule("filter", "FORWARD", ("-m", "comment", "--comment", "KT: pod network",
                                   "-j", "KT-FORWARD")),
        Rule("raw", "PREROUTING", ("-i", "kt0", "-d", "127.0.0.0/8",
                                   "-m", "comment", "--comment",
                                   "KT: no loopback destinations from pods", "-j", "DROP")),
    ]  # fmt: skip


def test_no_loopback_guard_without_localhost_hostports() -> None:
    config = NetworkConfig(bridge="kt0", chain_prefix="KT", localhost_hostports=False)
    assert [r.table for r in jump_rules(config)] == ["nat", "nat", "nat", "filter"]


def test_static_rules() -> None:
    def spec(rule: Rule) -> str:
        return " ".join(rule.spec)

    rules = static_rules(CONFIG)
    assert [(r.table, r.chain) for r in rules] == [("nat", "KT-POSTROUTING")] * 4 + [
        ("filter", "KT-FORWARD")
    ] * 2
    assert [spec(r) for r in rules] == [
        "-m comment --comment KT: host port hairpin -j KT-HAIRPIN",
        "-o kt0 -s 127.0.0.0/8 -m comment --comment KT: host port from localhost -j MASQUERADE",
        "-s 10.201.0.0/24 -d 224.0.0.0/4 -m comment --comment KT: no masquerade -j RETURN",
        "-s 10.201.0.0/24 ! -d 10.201.0.0/24"
        " -m comment --comment KT: masquerade pod traffic leaving 10.201.0.0/24 -j MASQUERADE",
        "-i kt0 -m comment --comment KT: from pods -j ACCEPT",
        "-o kt0 -m comment --comment KT: to pods -j ACCEPT",
    ]


@pytest.mark.parametrize(
    ("switch", "gone"),
    [
        ("hairpin", "host port hairpin"),
        ("localhost_hostports", "host port from localhost"),
        ("masquerade", "masquerade pod traffic"),
    ],
)
def test_static_rules_follow_the_switches(switch: str, gone: str) -> None:
    config = NetworkConfig(bridge="kt0", pod_cidr="10.201.0.0/24", **{switch: False})
    texts = [" ".join(r.spec) for r in static_rules(config)]
    assert not [t for t in texts if gone in t]
    assert len(texts) < len(static_rules(CONFIG))


def test_rule_arguments() -> None:
    rule = Rule("nat", "C", ("-j", "X"))
    assert rule.args("-A") == ["-t", "nat", "-A", "C", "-j", "X"]
    assert rule.args("-D") == ["-t", "nat", "-D", "C", "-j", "X"]
    assert rule.insert_args() == ["-t", "nat", "-I", "C", "1", "-j", "X"]


def test_sandbox_rules() -> None:
    mappings = [
        PortMapping(80, 8080),
        PortMapping(80, 0),  # no host port: nothing
        PortMapping(53, 5353, Protocol.UDP, "127.0.0.1"),
        PortMapping(9, 9999, Protocol.SCTP, "0.0.0.0"),
        PortMapping(80, 8081, host_ip="::1"),  # IPv6: not on this network
        PortMapping(80, 8080),  # duplicate
    ]
    rules = sandbox_rules(CONFIG, "abc", "10.201.0.5", mappings)
    assert [(r.table, r.chain) for r in rules] == [("nat", "KT-HOSTPORTS")] * 3 + [
        ("nat", "KT-HAIRPIN")
    ]
    assert [list(r.spec) for r in rules] == [
        ["-p", "tcp", "-m", "tcp", "--dport", "8080",
         "-m", "comment", "--comment", "kubeling sandbox abc",
         "-j", "DNAT", "--to-destination", "10.201.0.5:80"],
        ["-p", "udp", "-m", "udp", "--dport", "5353", "-d", "127.0.0.1",
         "-m", "comment", "--comment", "kubeling sandbox abc",
         "-j", "DNAT", "--to-destination", "10.201.0.5:53"],
        ["-p", "sctp", "-m", "sctp", "--dport", "9999",
         "-m", "comment", "--comment", "kubeling sandbox abc",
         "-j", "DNAT", "--to-destination", "10.201.0.5:9"],
        ["-s", "10.201.0.5/32", "-d", "10.201.0.5/32", "-m", "conntrack", "--ctstate", "DNAT",
         "-m", "comment", "--comment", "kubeling sandbox abc", "-j", "MASQUERADE"],
    ]  # fmt: skip


def test_no_forwarded_mappings_no_rules() -> None:
    assert sandbox_rules(CONFIG, "abc", "10.201.0.5", []) == []
    assert sandbox_rules(CONFIG, "abc", "10.201.0.5", [PortMapping(80)]) == []


def test_no_hairpin_rule_without_hairpin() -> None:
    config = NetworkConfig(pod_cidr="10.201.0.0/24", chain_prefix="KT", hairpin=False)
    rules = sandbox_rules(config, "abc", "10.201.0.5", [PortMapping(80, 8080)])
    assert [r.chain for r in rules] == ["KT-HOSTPORTS"]
    assert not [r for r in static_rules(config) if "KT-HAIRPIN" in r.spec]


# What `iptables -t nat -S KT-HOSTPORTS` prints (iptables-nft 1.8.9).
LISTING = """\
-N KT-HOSTPORTS
-A KT-HOSTPORTS -p tcp -m tcp --dport 8080 -m comment --comment "kubeling sandbox abc" -j DNAT --to-destination 10.201.0.5:80
-A KT-HOSTPORTS -d 127.0.0.1/32 -p udp -m udp --dport 5353 -m comment --comment "kubeling sandbox abc" -j DNAT --to-destination 10.201.0.5:53
-A KT-HOSTPORTS -p tcp -m tcp --dport 8081 -m comment --comment "kubeling sandbox abcd" -j DNAT --to-destination 10.201.0.6:80
-A KT-HOSTPORTS -p tcp -m tcp --dport 8082 -m comment --comment "kubeling sandbox ab" -j DNAT --to-destination 10.201.0.7:80
-A OTHER -m comment --comment "kubeling sandbox abc" -j ACCEPT
-A KT-HOSTPORTS -p tcp -m tcp --dport 8083 -m comment --comment kubeling -j RETURN
-A KT-HOSTPORTS -m comment --comment "unbalanced
"""  # noqa: E501


def test_rules_with_comment_finds_exactly_the_sandbox() -> None:
    found = rules_with_comment(LISTING, "KT-HOSTPORTS", sandbox_comment("abc"))
    assert found == [
        ("-p", "tcp", "-m", "tcp", "--dport", "8080", "-m", "comment",
         "--comment", "kubeling sandbox abc", "-j", "DNAT", "--to-destination", "10.201.0.5:80"),
        ("-d", "127.0.0.1/32", "-p", "udp", "-m", "udp", "--dport", "5353", "-m", "comment",
         "--comment", "kubeling sandbox abc", "-j", "DNAT", "--to-destination", "10.201.0.5:53"),
    ]  # fmt: skip


def test_rules_with_comment_on_empty_listing() -> None:
    assert rules_with_comment("", "KT-HOSTPORTS", "x") == []


def test_sandbox_comment() -> None:
    assert sandbox_comment("f00d") == "kubeling sandbox f00d"


# -- the command wrapper ----------------------------------------------------------


class FakeRunner:
    """Records argv; answers from `answers` (first matching prefix of the arguments
    after `iptables -w 5`), else exit 0."""

    def __init__(self, answers: dict[tuple[str, ...], list[tuple[int, str, str]]] | None = None):
        self.calls: list[list[str]] = []
        self.answers = answers or {}

    def __call__(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        assert kwargs["capture_output"] and kwargs["text"]
        self.calls.append(argv)
        args = tuple(argv[3:])
        for prefix, replies in self.answers.items():
            if args[: len(prefix)] == prefix and replies:
                code, out, err = replies.pop(0) if len(replies) > 1 else replies[0]
                return subprocess.CompletedProcess(argv, code, out, err)
        return subprocess.CompletedProcess(argv, 0, "", "")

    def args(self) -> list[list[str]]:
        return [call[3:] for call in self.calls]


def test_run_waits_for_the_lock() -> None:
    runner = FakeRunner()
    Iptables("iptables-nft", runner=runner).run(["-t", "nat", "-S"])
    assert runner.calls == [["iptables-nft", "-w", "5", "-t", "nat", "-S"]]


def test_errors_carry_arguments_and_stderr_without_warnings() -> None:
    runner = FakeRunner(
        {("-t",): [(1, "", "# Warning: iptables-legacy tables present\niptables: No chain.\n")]}
    )
    with pytest.raises(IptablesError, match=r"iptables -w 5 -t nat -F X: iptables: No chain\.$"):
        Iptables(runner=runner).run(["-t", "nat", "-F", "X"])


def test_missing_command() -> None:
    with pytest.raises(IptablesError, match="no-such-iptables"):
        Iptables("/nonexistent/no-such-iptables").run(["-S"])


def test_ensure_chain_creates_only_when_missing() -> None:
    runner = FakeRunner({("-t", "nat", "-S", "C"): [(1, "", "No chain"), (0, "-N C\n", "")]})
    iptables = Iptables(runner=runner)
    iptables.ensure_chain(Chain("nat", "C"))
    iptables.ensure_chain(Chain("nat", "C"))
    assert runner.args() == [
        ["-t", "nat", "-S", "C"],
        ["-t", "nat", "-N", "C"],
        ["-t", "nat", "-S", "C"],
    ]


def test_ensure_chain_fails_when_it_cannot_create() -> None:
    runner = FakeRunner(
        {("-t", "nat", "-S"): [(1, "", "")], ("-t", "nat", "-N"): [(4, "", "Permission denied")]}
    )
    with pytest.raises(IptablesError, match="create chain nat/C: Permission denied"):
        Iptables(runner=runner).ensure_chain(Chain("nat", "C"))


def test_ensure_first_checks_then_inserts() -> None:
    rule = Rule("nat", "OUTPUT", ("-j", "X"))
    runner = FakeRunner({("-t", "nat", "-C"): [(1, "", ""), (0, "", "")]})
    iptables = Iptables(runner=runner)
    iptables.ensure_first(rule)
    iptables.ensure_first(rule)  # present now: only checked
    assert runner.args() == [
        ["-t", "nat", "-C", "OUTPUT", "-j", "X"],
        ["-t", "nat", "-I", "OUTPUT", "1", "-j", "X"],
        ["-t", "nat", "-C", "OUTPUT", "-j", "X"],
    ]


def test_delete_removes_every_copy() -> None:
    runner = FakeRunner({("-t", "nat", "-D"): [(0, "", ""), (0, "", ""), (1, "", "")]})
    Iptables(runner=runner).delete(Rule("nat", "OUTPUT", ("-j", "X")))
    assert len(runner.calls) == 3


def test_delete_chains_flushes_all_then_deletes_and_tolerates_absence() -> None:
    runner = FakeRunner({("-t", "nat", "-S", "GONE"): [(1, "", "")]})
    Iptables(runner=runner).delete_chains(
        [Chain("nat", "A"), Chain("nat", "GONE"), Chain("filter", "B")]
    )
    assert runner.args() == [
        ["-t", "nat", "-S", "A"],
        ["-t", "nat", "-S", "GONE"],
        ["-t", "filter", "-S", "B"],
        ["-t", "nat", "-F", "A"],
        ["-t", "filter", "-F", "B"],
        ["-t", "nat", "-X", "A"],
        ["-t", "filter", "-X", "B"],
    ]


def test_delete_commented_deletes_the_listed_specs() -> None:
    runner = FakeRunner({("-t", "nat", "-S", "KT-HOSTPORTS"): [(0, LISTING, "")]})
    count = Iptables(runner=runner).delete_commented(
        Chain("nat", "KT-HOSTPORTS"), sandbox_comment("abc")
    )
    assert count == 2
    deletes = [a for a in runner.args() if a[2] == "-D"]
    assert [d[:4] for d in deletes] == [["-t", "nat", "-D", "KT-HOSTPORTS"]] * 2
    assert deletes[0][-1] == "10.201.0.5:80" and deletes[1][-1] == "10.201.0.5:53"


def test_delete_commented_without_the_chain() -> None:
    runner = FakeRunner({("-t", "nat", "-S"): [(1, "", "No chain/target/match by that name.")]})
    assert Iptables(runner=runner).delete_commented(Chain("nat", "KT-HOSTPORTS"), "x") == 0
    assert len(runner.calls) == 1
