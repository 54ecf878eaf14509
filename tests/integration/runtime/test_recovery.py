"""A caller killed in the middle of `create` leaves a half-made container; `delete
--force` removes everything it had made: processes, cgroup, state."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.root


def force_delete_clears(runtime_cli: Any, cid: str) -> None:
    """`delete --force` leaves neither state nor a cgroup of the container."""
    runtime_cli("delete", "--force", cid)
    assert not (runtime_cli.root / cid).exists()
    cgroup_path = f"{runtime_cli.cgroup_parent}/{cid}"
    leftovers = [c for c in os.listdir("/sys/fs/cgroup") if os.path.isdir(
        f"/sys/fs/cgroup/{c}{cgroup_path}")]  # fmt: skip
    assert leftovers == []


def test_force_delete_of_interrupted_create(
    tmp_path: Path, make_bundle: Any, runtime_cli: Any
) -> None:
    started = tmp_path / "hook-started"
    hook = {"path": "/bin/sh", "args": ["sh", "-c", f"echo $$ > {started}; exec sleep 30"]}
    bundle, cid = make_bundle(
        ["true"], edit=lambda config: config.update(hooks={"createRuntime": [hook]})
    )
    create = runtime_cli.popen("create", "--bundle", str(bundle), cid)
    deadline = time.monotonic() + 10
    while not started.exists() or not started.read_text().strip():
        assert time.monotonic() < deadline, "the createRuntime hook never ran"
        time.sleep(0.01)
    state_dir = runtime_cli.root / cid
    record = (state_dir / "creating.json").read_text()
    create.send_signal(signal.SIGKILL)
    create.communicate(timeout=10)
    # The caller is gone; the container is neither created nor cleaned up.
    result = runtime_cli("state", cid, check=False)
    assert result.returncode == 1
    assert "still being created" in result.stderr
    force_delete_clears(runtime_cli, cid)
    import json

    for pid, start_time in json.loads(record)["pids"]:
        stat = Path(f"/proc/{pid}/stat")
        deadline = time.monotonic() + 5
        while stat.exists() and time.monotonic() < deadline:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[0] in ("Z", "X") or int(fields[19]) != start_time:
                break
            time.sleep(0.01)
        else:
            assert not stat.exists(), f"process {pid} of the half-made container survived"
    # The hook (our grandchild, orphaned with the caller) is the test's to stop.
    os.kill(int(started.read_text()), signal.SIGKILL)


def test_force_delete_of_a_container_whose_state_was_lost(
    tmp_path: Path, make_bundle: Any, runtime_cli: Any
) -> None:
    """state.json is not fsynced: one a machine crash left empty reads as a
    container in an unknown state, which `delete --force` clears."""
    bundle, cid = make_bundle(["sleep", "30"])
    runtime_cli.create(bundle, cid)
    state_dir = runtime_cli.root / cid
    init = int(runtime_cli.state(cid)["pid"])
    (state_dir / "state.json").write_text("")
    result = runtime_cli("state", cid, check=False)
    assert result.returncode == 1
    assert "state.json is unreadable" in result.stderr
    force_delete_clears(runtime_cli, cid)
    stat = Path(f"/proc/{init}/stat")
    deadline = time.monotonic() + 5
    while stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
        assert time.monotonic() < deadline, f"init {init} survived the delete"
        time.sleep(0.01)
