from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime import cli


def test_parse_flags_before_and_after_id() -> None:
    values, positionals = cli.parse_flags(
        ["--bundle", "/b", "ctr", "--pid-file=/p", "-d"], cli._FLAGS["run"]
    )
    assert values == {"bundle": "/b", "pid-file": "/p", "detach": True}
    assert positionals == ["ctr"]


def test_exec_command_keeps_its_own_flags() -> None:
    values, positionals = cli.parse_flags(
        ["-e", "A=1", "--env", "B=2", "ctr", "ls", "-l", "--all"],
        cli._FLAGS["exec"],
        stop_after_positionals=1,
    )
    assert values == {"env": ["A=1", "B=2"]}
    assert positionals == ["ctr", "ls", "-l", "--all"]


def test_unknown_flag_and_missing_value() -> None:
    with pytest.raises(cli.UsageError, match="unknown flag --bogus"):
        cli.parse_flags(["--bogus"], cli._FLAGS["create"])
    with pytest.raises(cli.UsageError, match="needs a value"):
        cli.parse_flags(["ctr", "--bundle"], cli._FLAGS["create"])


@pytest.mark.parametrize(("text", "number"), [("KILL", 9), ("SIGTERM", 15), ("9", 9), ("usr1", 10)])
def test_parse_signal(text: str, number: int) -> None:
    assert cli.parse_signal(text) == number


@pytest.mark.parametrize("text", ["SIGBOGUS", "0", "99", "SIG_DFL"])
def test_parse_signal_rejects(text: str) -> None:
    with pytest.raises(cli.UsageError):
        cli.parse_signal(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [("512", 512), ("4k", 4096), ("64m", 64 << 20), ("1g", 1 << 30), ("2MB", 2 << 20), ("-1", -1)],
)
def test_parse_size(text: str, size: int) -> None:
    assert cli.parse_size(text) == size


def test_errors_are_one_line_and_nonzero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = str(tmp_path / "state")
    assert cli.main(["--root", root, "state", "nope"]) == 1
    assert cli.main(["--root", root, "bogus"]) == 2
    assert cli.main(["--root", root, "create", "x", "--bundle", str(tmp_path)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3
    assert "container nope does not exist" in lines[0]
    assert "unknown command 'bogus'" in lines[1]
    assert "no config.json" in lines[2]
    # A failed create leaves no state behind.
    assert not (tmp_path / "state" / "x").exists()


def test_json_log_format(tmp_path: Path) -> None:
    log = tmp_path / "log.json"
    root = str(tmp_path / "state")
    assert (
        cli.main(["--root", root, "--log", str(log), "--log-format", "json", "kill", "nope"]) == 1
    )
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "error"
    assert entry["msg"] == "container nope does not exist"
    assert entry["time"].endswith("Z")


def test_list_empty_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--root", str(tmp_path), "list", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
