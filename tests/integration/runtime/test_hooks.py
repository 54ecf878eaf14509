"""OCI hooks: every kind runs at its point of the lifecycle with the state on stdin,
a failing createRuntime hook fails `create` and leaves nothing behind, and a hook's
timeout is enforced.

The hook is one /bin/sh script that appends "<kind> <state JSON>" to a log. The
host's directory holding both is bound into the container at /hooks, because
startContainer hooks run inside the container (after pivot_root), where the
host's paths are gone.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.runtime.support import leftovers, wait_for

pytestmark = pytest.mark.root

HOOK_SCRIPT = """#!/bin/sh
read -r state
printf '%s %s\\n' "$1" "$state" >> "$2"
"""
IN_CONTAINER = "/hooks"


class HookLog:
    """A hook script and the log it appends to, in a directory bound at /hooks."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir()
        os.chmod(directory, 0o755)
        self.directory = directory
        self.script = directory / "hook.sh"
        self.script.write_text(HOOK_SCRIPT)
        self.script.chmod(0o755)
        self.log = directory / "log"
        self.log.touch()
        self.log.chmod(0o666)

    def hook(self, kind: str, *, inside: bool = False, **extra: Any) -> dict[str, Any]:
        base = IN_CONTAINER if inside else str(self.directory)
        return {"path": f"{base}/hook.sh", "args": ["hook.sh", kind, f"{base}/log"], **extra}

    def entries(self) -> list[tuple[str, dict[str, Any]]]:
        result = []
        for line in self.log.read_text().splitlines():
            kind, _, state = line.partition(" ")
            result.append((kind, json.loads(state)))
        return result

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.entries()]

    def edit(self, hooks: dict[str, list[dict[str, Any]]]) -> Callable[[dict[str, Any]], None]:
        def edit(config: dict[str, Any]) -> None:
            config["hooks"] = hooks
            config["mounts"].append(
                {"destination": IN_CONTAINER, "type": "bind", "source": str(self.directory),
                 "options": ["rbind", "rw"]}
            )  # fmt: skip

        return edit


@pytest.fixture
def hook_log(tmp_path: Path) -> HookLog:
    return HookLog(tmp_path / "hooks")


def test_every_hook_kind_runs_in_order(make_bundle: Any, runtime_cli: Any, hook_log: HookLog):
    hooks = {
        "prestart": [hook_log.hook("prestart")],
        "createRuntime": [hook_log.hook("createRuntime")],
        "createContainer": [hook_log.hook("createContainer")],
        "startContainer": [hook_log.hook("startContainer", inside=True)],
        "poststart": [hook_log.hook("poststart")],
        "poststop": [hook_log.hook("poststop")],
    }
    bundle, cid = make_bundle(["sleep", "1000"], edit=hook_log.edit(hooks))
    result = runtime_cli.create(bundle, cid, check=False)
    assert result.returncode == 0, result.stderr
    pid = runtime_cli.state(cid)["pid"]
    assert hook_log.kinds() == ["prestart", "createRuntime", "createContainer"]

    runtime_cli("start", cid)
    # startContainer runs in the container's init once `start` released it, and
    # poststart in the runtime after that release: the two may interleave (as
    # with runc).
    wait_for(lambda: len(hook_log.kinds()) == 5, "startContainer and poststart")
    assert sorted(hook_log.kinds()[3:]) == ["poststart", "startContainer"]

    runtime_cli("kill", cid, "KILL")
    wait_for(lambda: runtime_cli.state(cid)["status"] == "stopped", "the container to stop")
    runtime_cli("delete", cid)
    assert hook_log.kinds()[5:] == ["poststop"]
    assert leftovers(runtime_cli, cid) == []

    states = dict(hook_log.entries())
    for kind, state in states.items():
        assert state["id"] == cid, kind
        assert state["bundle"] == str(bundle), kind
        assert state["ociVersion"].startswith("1."), kind
    # Runtime-side hooks see the host pid; the container-side ones run in its pid
    # namespace and see the same process as pid 1.
    assert states["prestart"]["pid"] == pid
    assert states["createRuntime"]["pid"] == pid
    assert states["poststart"]["pid"] == pid
    assert states["createContainer"]["pid"] == 1
    assert states["startContainer"]["pid"] == 1
    # Statuses as the runtime-tools suite checks them (and crun gives): created
    # for every hook run during create and start, then running; stopped at the end.
    assert states["prestart"]["status"] == "created"
    assert states["createRuntime"]["status"] == "created"
    assert states["createContainer"]["status"] == "created"
    assert states["startContainer"]["status"] == "created"
    assert states["poststart"]["status"] == "running"
    assert states["poststop"]["status"] == "stopped"


def test_hooks_of_one_kind_run_in_list_order_with_args_and_env(
    make_bundle: Any, runtime_cli: Any, hook_log: HookLog, tmp_path: Path
):
    env_log = tmp_path / "env"
    hooks = {
        "prestart": [
            hook_log.hook("first"),
            {"path": "/bin/sh", "args": ["sh", "-c", f'echo "$GREETING" > {env_log}'],
             "env": ["GREETING=hello hooks"]},
            hook_log.hook("third"),
        ],
    }  # fmt: skip
    bundle, cid = make_bundle(["true"], edit=hook_log.edit(hooks))
    runtime_cli("run", "--bundle", str(bundle), cid)
    assert hook_log.kinds() == ["first", "third"]
    assert env_log.read_text() == "hello hooks\n"


def test_run_runs_the_hooks_too(make_bundle: Any, runtime_cli: Any, hook_log: HookLog):
    hooks = {
        kind: [hook_log.hook(kind, inside=kind == "startContainer")]
        for kind in ("prestart", "createRuntime", "createContainer", "startContainer",
                     "poststart", "poststop")
    }  # fmt: skip
    bundle, cid = make_bundle(["true"], edit=hook_log.edit(hooks))
    runtime_cli("run", "--bundle", str(bundle), cid)
    kinds = hook_log.kinds()
    assert kinds[:3] == ["prestart", "createRuntime", "createContainer"]
    assert sorted(kinds[3:5]) == ["poststart", "startContainer"]
    assert kinds[5:] == ["poststop"]


def test_failing_create_runtime_hook_fails_create(
    make_bundle: Any, runtime_cli: Any, hook_log: HookLog
):
    hooks = {
        "createRuntime": [
            {"path": "/bin/sh", "args": ["sh", "-c", "echo hook says no >&2; exit 3"]}
        ],
        "createContainer": [hook_log.hook("createContainer")],
        "poststop": [hook_log.hook("poststop")],
    }
    bundle, cid = make_bundle(["true"], edit=hook_log.edit(hooks))
    result = runtime_cli.create(bundle, cid, check=False)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "createRuntime" in result.stderr
    assert "hook says no" in result.stderr
    assert leftovers(runtime_cli, cid) == []
    assert hook_log.kinds() == []  # nothing after the failing hook ran
    assert runtime_cli("state", cid, check=False).returncode != 0


def test_failing_prestart_hook_fails_run(make_bundle: Any, runtime_cli: Any, busybox: Path):
    hooks = {"prestart": [{"path": "/bin/false"}]}

    def edit(config: dict[str, Any]) -> None:
        config["hooks"] = hooks

    bundle, cid = make_bundle(["echo", "should not run"], edit=edit)
    result = runtime_cli("run", "--bundle", str(bundle), cid, check=False)
    assert result.returncode != 0
    assert "should not run" not in result.stdout
    assert "prestart" in result.stderr
    assert leftovers(runtime_cli, cid) == []


def test_missing_hook_binary_fails_create(make_bundle: Any, runtime_cli: Any, tmp_path: Path):
    def edit(config: dict[str, Any]) -> None:
        config["hooks"] = {"createRuntime": [{"path": str(tmp_path / "no-such-hook")}]}

    bundle, cid = make_bundle(["true"], edit=edit)
    result = runtime_cli.create(bundle, cid, check=False)
    assert result.returncode != 0
    assert "no-such-hook" in result.stderr
    assert leftovers(runtime_cli, cid) == []


def test_failing_poststart_and_poststop_hooks_only_warn(make_bundle: Any, runtime_cli: Any):
    def edit(config: dict[str, Any]) -> None:
        config["hooks"] = {
            "poststart": [{"path": "/bin/false"}],
            "poststop": [{"path": "/bin/false"}],
        }

    bundle, cid = make_bundle(["echo", "ran"], edit=edit)
    result = runtime_cli("run", "--bundle", str(bundle), cid, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ran\n"
    assert "poststart" in result.stderr and "poststop" in result.stderr
    assert leftovers(runtime_cli, cid) == []


def test_hook_timeout_is_enforced(make_bundle: Any, runtime_cli: Any):
    def edit(config: dict[str, Any]) -> None:
        config["hooks"] = {
            "createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]
        }

    bundle, cid = make_bundle(["true"], edit=edit)
    started = time.monotonic()
    result = runtime_cli.create(bundle, cid, check=False)
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    assert "timed out" in result.stderr
    assert elapsed < 5, f"create took {elapsed:.1f}s with a 1s hook timeout"
    assert leftovers(runtime_cli, cid) == []


def test_hook_within_its_timeout_succeeds(make_bundle: Any, runtime_cli: Any):
    def edit(config: dict[str, Any]) -> None:
        config["hooks"] = {
            "prestart": [{"path": "/bin/sleep", "args": ["sleep", "0.1"], "timeout": 5}]
        }

    bundle, cid = make_bundle(["true"], edit=edit)
    assert runtime_cli("run", "--bundle", str(bundle), cid).returncode == 0
