"""HostSettings against a sysctl tree in a temporary directory: changes only when
needed, journalled before they are made, restored unless someone changed them since."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cri.network import NetworkError
from cri.network.host import HostSettings

FORWARD = "net/ipv4/ip_forward"


@pytest.fixture
def proc_sys(tmp_path: Path) -> Path:
    root = tmp_path / "sys"
    (root / "net/ipv4").mkdir(parents=True)
    (root / FORWARD).write_text("0\n")
    return root


@pytest.fixture
def host(tmp_path: Path, proc_sys: Path) -> HostSettings:
    return HostSettings(tmp_path / "state/host.json", proc_sys=proc_sys)


def test_ensure_changes_and_journals(host: HostSettings, proc_sys: Path) -> None:
    assert host.ensure(FORWARD, "1") is True
    assert (proc_sys / FORWARD).read_text() == "1\n"
    assert json.loads(host.journal.read_text()) == {
        "sysctls": {FORWARD: {"original": "0", "value": "1"}}
    }
    assert host.changes() == {"sysctls": {FORWARD: {"original": "0", "value": "1"}}}


def test_ensure_leaves_a_right_value_alone(host: HostSettings, proc_sys: Path) -> None:
    (proc_sys / FORWARD).write_text("1\n")
    assert host.ensure(FORWARD, "1") is False
    assert not host.journal.exists()
    assert host.changes() == {}


def test_the_first_value_found_survives_restarts(tmp_path: Path, proc_sys: Path) -> None:
    HostSettings(tmp_path / "j.json", proc_sys=proc_sys).ensure(FORWARD, "1")
    # Someone (or a crash) puts it back; a new manager sets it again.
    (proc_sys / FORWARD).write_text("0\n")
    again = HostSettings(tmp_path / "j.json", proc_sys=proc_sys)
    assert again.ensure(FORWARD, "1") is True
    assert again.changes()["sysctls"][FORWARD]["original"] == "0"


def test_restore(host: HostSettings, proc_sys: Path) -> None:
    host.ensure(FORWARD, "1")
    assert host.restore() == [FORWARD]
    assert (proc_sys / FORWARD).read_text() == "0\n"
    assert not host.journal.exists()
    assert host.restore() == []  # nothing left


def test_restore_leaves_a_value_someone_else_changed(host: HostSettings, proc_sys: Path) -> None:
    (proc_sys / "net/ipv4/other").write_text("5\n")
    host.ensure(FORWARD, "1")
    host.ensure("net/ipv4/other", "6")
    (proc_sys / "net/ipv4/other").write_text("7\n")
    assert host.restore() == [FORWARD]
    assert (proc_sys / "net/ipv4/other").read_text() == "7\n"
    assert host.changes() == {}


def test_missing_sysctl(host: HostSettings) -> None:
    with pytest.raises(NetworkError, match="read sysctl net/nope"):
        host.ensure("net/nope", "1")
    with pytest.raises(NetworkError, match="write sysctl net/nope/x=1"):
        host.write("net/nope/x", "1")


def test_per_interface_writes_are_not_journalled(host: HostSettings, proc_sys: Path) -> None:
    (proc_sys / "net/ipv4/conf/kt0").mkdir(parents=True)
    host.write("net/ipv4/conf/kt0/forwarding", "1")
    assert (proc_sys / "net/ipv4/conf/kt0/forwarding").read_text() == "1\n"
    assert host.changes() == {}


def test_corrupt_journal(host: HostSettings) -> None:
    host.journal.parent.mkdir(parents=True)
    host.journal.write_text("{not json")
    with pytest.raises(NetworkError, match="host.json"):
        host.changes()


class Modprobe:
    def __init__(self, code: int = 0) -> None:
        self.code = code
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append(argv)
        return subprocess.CompletedProcess(argv, self.code, "", "modprobe: FATAL: not found\n")


def test_module_already_there(tmp_path: Path, proc_sys: Path) -> None:
    (proc_sys / "net/bridge").mkdir()
    modprobe = Modprobe()
    host = HostSettings(tmp_path / "j.json", proc_sys=proc_sys, runner=modprobe)
    assert host.ensure_module("br_netfilter", proc_sys / "net/bridge") is False
    assert modprobe.calls == []


def test_module_loaded_and_journalled(tmp_path: Path, proc_sys: Path) -> None:
    modprobe = Modprobe()
    host = HostSettings(tmp_path / "j.json", proc_sys=proc_sys, runner=modprobe)
    assert host.ensure_module("br_netfilter", proc_sys / "net/bridge") is True
    assert modprobe.calls == [["modprobe", "br_netfilter"]]
    assert host.changes() == {"modules": ["br_netfilter"]}
    host.restore()  # modules are not unloaded, and stay recorded
    assert host.changes() == {"modules": ["br_netfilter"]}


def test_module_that_cannot_load(tmp_path: Path, proc_sys: Path) -> None:
    host = HostSettings(tmp_path / "j.json", proc_sys=proc_sys, runner=Modprobe(1))
    with pytest.raises(NetworkError, match="load module br_netfilter: modprobe: FATAL"):
        host.ensure_module("br_netfilter", proc_sys / "net/bridge")
