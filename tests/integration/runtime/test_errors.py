"""Bad input: each refused with a one-line error on stderr naming what is wrong, a
non-zero exit, and nothing left behind (no state directory, no cgroup, no
process), as a runc user expects."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration.runtime.support import leftovers

pytestmark = pytest.mark.root


def assert_refused(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


def assert_create_refused(cli: Any, bundle: Path, cid: str, *words: str) -> None:
    assert_refused(cli.create(bundle, cid, check=False), *words)
    assert leftovers(cli, cid) == []
    # `run` says the same and leaves nothing either.
    assert_refused(cli("run", "--bundle", str(bundle), cid, check=False), *words)
    assert leftovers(cli, cid) == []


def test_malformed_config_json(make_bundle: Any, runtime_cli: Any):
    bundle, cid = make_bundle(["true"])
    (bundle / "config.json").write_text('{"ociVersion": "1.0.2", "process": ')
    assert_create_refused(runtime_cli, bundle, cid, "config.json", "invalid JSON")


def test_config_json_not_an_object(make_bundle: Any, runtime_cli: Any):
    bundle, cid = make_bundle(["true"])
    (bundle / "config.json").write_text("[1, 2]")
    assert_create_refused(runtime_cli, bundle, cid, "config.json")


def test_missing_config_json(runtime_cli: Any, tmp_path: Path):
    bundle = tmp_path / "empty-bundle"
    bundle.mkdir()
    cid = runtime_cli.new_id()
    assert_create_refused(runtime_cli, bundle, cid, "config.json")


INVALID_CONFIGS = {
    "missing-args": (lambda c: c["process"].pop("args"), ["process.args"]),
    "empty-args": (lambda c: c["process"].update(args=[]), ["process.args"]),
    "relative-cwd": (lambda c: c["process"].update(cwd="relative/dir"), ["process.cwd"]),
    "bad-env": (lambda c: c["process"]["env"].append("NOEQUALS"), ["process.env"]),
    "oci-version": (lambda c: c.update(ociVersion="2.0.0"), ["ociVersion"]),
    "relative-mount-destination": (
        lambda c: c["mounts"].append({"destination": "relative", "type": "tmpfs"}),
        ["mounts[", "].destination"],
    ),
    "unknown-namespace": (
        lambda c: c["linux"]["namespaces"].append({"type": "bogus"}),
        ["namespaces"],
    ),
    "duplicate-namespace": (
        lambda c: c["linux"]["namespaces"].append({"type": "pid"}),
        ["duplicate"],
    ),
    "unknown-rlimit": (
        lambda c: c["process"]["rlimits"].append({"type": "RLIMIT_NOPE", "soft": 1, "hard": 1}),
        ["RLIMIT_NOPE"],
    ),
    "oom-score-range": (lambda c: c["process"].update(oomScoreAdj=5000), ["oomScoreAdj"]),
    "relative-hook-path": (
        lambda c: c.update(hooks={"prestart": [{"path": "relative"}]}),
        ["hooks.prestart"],
    ),
    "missing-namespace-path": (
        lambda c: c["linux"]["namespaces"].append({"type": "cgroup", "path": "/proc/0/ns/x"}),
        ["namespaces"],
    ),
}


@pytest.mark.parametrize(("change", "words"), INVALID_CONFIGS.values(), ids=INVALID_CONFIGS)
def test_invalid_config(make_bundle: Any, runtime_cli: Any, change: Any, words: list[str]):
    bundle, cid = make_bundle(["true"], edit=change)
    assert_create_refused(runtime_cli, bundle, cid, "config.json", *words)


def test_rootfs_does_not_exist(make_bundle: Any, runtime_cli: Any, tmp_path: Path):
    def missing_root(config: dict[str, Any]) -> None:
        config["root"]["path"] = str(tmp_path / "no-such-rootfs")

    bundle, cid = make_bundle(["true"], edit=missing_root)
    assert_create_refused(runtime_cli, bundle, cid, "root.path", "no-such-rootfs")


def test_executable_missing_from_rootfs(make_bundle: Any, runtime_cli: Any):
    bundle, cid = make_bundle(["/bin/no-such-binary", "arg"])
    assert_create_refused(runtime_cli, bundle, cid, "no-such-binary")


def test_executable_not_on_path(make_bundle: Any, runtime_cli: Any):
    bundle, cid = make_bundle(["no-such-command"])
    assert_create_refused(runtime_cli, bundle, cid, "no-such-command", "PATH")


def test_cwd_that_is_a_file(make_bundle: Any, runtime_cli: Any):
    def file_cwd(config: dict[str, Any]) -> None:
        config["process"]["cwd"] = "/etc/passwd"

    bundle, cid = make_bundle(["true"], edit=file_cwd)
    assert_refused(runtime_cli.create(bundle, cid, check=False), "/etc/passwd")
    assert leftovers(runtime_cli, cid) == []


def test_bind_mount_source_missing(make_bundle: Any, runtime_cli: Any, tmp_path: Path):
    def bad_bind(config: dict[str, Any]) -> None:
        config["mounts"].append(
            {"destination": "/mnt", "type": "bind", "source": str(tmp_path / "gone")}
        )

    bundle, cid = make_bundle(["true"], edit=bad_bind)
    assert_create_refused(runtime_cli, bundle, cid, "gone")


def test_invalid_cgroups_path(make_bundle: Any, runtime_cli: Any):
    def escape(config: dict[str, Any]) -> None:
        config["linux"]["cgroupsPath"] = "/../../escape"

    bundle, cid = make_bundle(["true"], edit=escape)
    result = runtime_cli.create(bundle, cid, check=False)
    assert_refused(result, "cgroupsPath")
    assert not os.path.exists(runtime_cli.root / cid)
    assert not any(
        os.path.exists(f"/sys/fs/cgroup/{c}/escape") for c in os.listdir("/sys/fs/cgroup")
    )


@pytest.mark.parametrize("command", ["state", "start", "kill", "delete", "pause", "resume", "ps"])
def test_unknown_container(runtime_cli: Any, command: str):
    result = runtime_cli(command, "no-such-container", check=False)
    assert_refused(result, "no-such-container", "does not exist")


@pytest.mark.parametrize("container_id", ["../escape", "a/b", ".."])
def test_invalid_container_id(make_bundle: Any, runtime_cli: Any, container_id: str):
    bundle, _ = make_bundle(["true"])
    assert_refused(runtime_cli.create(bundle, container_id, check=False), "container id")
    assert not os.path.exists(runtime_cli.root.parent / "escape")


def test_second_create_with_the_same_id(make_bundle: Any, runtime_cli: Any):
    bundle, cid = make_bundle(["sleep", "1000"])
    assert runtime_cli.create(bundle, cid, check=False).returncode == 0
    first = runtime_cli.state(cid)
    assert_refused(runtime_cli.create(bundle, cid, check=False), cid, "exists")
    # The first container is untouched.
    again = runtime_cli.state(cid)
    assert (again["status"], again["pid"]) == ("created", first["pid"])
    cgroup = f"/sys/fs/cgroup/pids{runtime_cli.cgroup_parent}/{cid}/cgroup.procs"
    with open(cgroup) as f:
        assert f.read().split() == [str(first["pid"])]


def test_start_twice(make_bundle: Any, runtime_cli: Any):
    bundle, cid = make_bundle(["sleep", "1000"])
    assert runtime_cli.create(bundle, cid, check=False).returncode == 0
    runtime_cli("start", cid)
    assert_refused(runtime_cli("start", cid, check=False), cid, "running")
    assert runtime_cli.state(cid)["status"] == "running"


def test_start_a_stopped_container(make_bundle: Any, runtime_cli: Any):
    bundle, cid = make_bundle(["true"])
    runtime_cli("run", "--keep", "--bundle", str(bundle), cid)
    assert_refused(runtime_cli("start", cid, check=False), "stopped")


def test_kill_a_stopped_container(make_bundle: Any, runtime_cli: Any):
    bundle, cid = make_bundle(["true"])
    runtime_cli("run", "--keep", "--bundle", str(bundle), cid)
    assert_refused(runtime_cli("kill", cid, "KILL", check=False), "stopped")


def test_unknown_command_and_flag(runtime_cli: Any):
    assert_refused(runtime_cli("frobnicate", check=False), "frobnicate")
    assert_refused(runtime_cli("state", "--bogus", "x", check=False), "--bogus")


def test_nothing_left_in_the_runtime_root(make_bundle: Any, runtime_cli: Any):
    """After a series of failures the root lists no container."""
    bundle, cid = make_bundle(["/no/such/binary"])
    runtime_cli.create(bundle, cid, check=False)
    (bundle / "config.json").write_text(json.dumps({"ociVersion": "1.0.2"}))
    runtime_cli.create(bundle, cid, check=False)
    assert json.loads(runtime_cli("list", "--format", "json").stdout) == []
    assert not runtime_cli.root.exists() or list(runtime_cli.root.iterdir()) == []
