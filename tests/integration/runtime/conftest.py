"""Fixtures for real containers: a busybox rootfs built once per session, bundles
made from it, a private runtime root, and clean-up of every container a test made."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.bundle import busybox_rootfs, default_spec
from tests.integration.runtime.support import RUNTIME, Edit


@pytest.fixture(scope="session")
def busybox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(busybox_rootfs(str(tmp_path_factory.mktemp("busybox") / "rootfs")))


class Runner:
    """Drives the `kubeling-runtime` CLI with a private --root."""

    def __init__(self, root: Path, cgroup_parent: str) -> None:
        self.root = root
        self.cgroup_parent = cgroup_parent
        self.ids: list[str] = []

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 30, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [RUNTIME, "--root", str(self.root), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            **kwargs,
        )
        if check:
            self._check(args, result)
        return result

    def detached(
        self, *args: str, check: bool = True, stdout: Path | None = None, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """A command that leaves a process holding the CLI's stdio (create, run -d,
        exec -d). A pipe would stay open, and the test hang, as long as that process
        lives, so stdout goes to /dev/null (or to the file `stdout`, where the
        container's output stays readable) and stderr to a temporary file."""
        with open(stdout or os.devnull, "w") as out, tempfile.TemporaryFile("w+") as err:
            run = subprocess.run(
                [RUNTIME, "--root", str(self.root), *args],
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, timeout=timeout,
            )  # fmt: skip
            err.seek(0)
            result = subprocess.CompletedProcess(
                run.args, run.returncode, stdout.read_text() if stdout else "", err.read()
            )
        if check:
            self._check(args, result)
        return result

    def create(
        self, bundle: Path, container_id: str, *flags: str, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        """`create --bundle <bundle> [flags] <id>`, detached (see `detached`)."""
        return self.detached("create", "--bundle", str(bundle), *flags, container_id, **kwargs)

    @staticmethod
    def _check(args: tuple[str, ...], result: subprocess.CompletedProcess[str]) -> None:
        if result.returncode != 0:
            raise AssertionError(
                f"kubeling-runtime {' '.join(args)} exited {result.returncode}: "
                f"{result.stderr.strip()}"
            )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [RUNTIME, "--root", str(self.root), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def new_id(self) -> str:
        container_id = f"t-{uuid.uuid4().hex[:10]}"
        self.ids.append(container_id)
        return container_id

    def state(self, container_id: str) -> dict[str, Any]:
        return json.loads(self("state", container_id).stdout)

    def cleanup(self) -> None:
        for container_id in self.ids:
            self("delete", "--force", container_id, check=False)


@pytest.fixture
def runtime_cli(tmp_path: Path) -> Iterator[Runner]:
    parent = f"/kubeling-test-{uuid.uuid4().hex[:8]}"
    runner = Runner(tmp_path / "state", parent)
    yield runner
    runner.cleanup()
    for controller in os.listdir("/sys/fs/cgroup"):
        path = f"/sys/fs/cgroup/{controller}{parent}"
        if os.path.isdir(path):
            os.rmdir(path)


@pytest.fixture
def make_bundle(
    tmp_path: Path, busybox: Path, runtime_cli: Runner
) -> Callable[..., tuple[Path, str]]:
    """make_bundle(args, **overrides) -> (bundle dir, container id). The config is
    runc's default spec over the shared busybox rootfs, with a unique cgroup path;
    `edit` (a callable) may change the config further."""

    def make(args: list[str], *, edit: Edit | None = None) -> tuple[Path, str]:
        container_id = runtime_cli.new_id()
        bundle = tmp_path / container_id
        bundle.mkdir()
        config = copy.deepcopy(default_spec(args))
        config["root"]["path"] = str(busybox)
        config["linux"]["cgroupsPath"] = f"{runtime_cli.cgroup_parent}/{container_id}"
        if edit is not None:
            edit(config)
        (bundle / "config.json").write_text(json.dumps(config))
        return bundle, container_id

    return make


@pytest.fixture
def sh(
    make_bundle: Callable[..., tuple[Path, str]], runtime_cli: Runner
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """sh(script, edit=None, *, check=True): `run` `sh -c script` in the foreground
    and return the completed CLI; checks exit 0 unless check=False."""

    def run(
        script: str, edit: Edit | None = None, *, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        bundle, cid = make_bundle(["sh", "-c", script], edit=edit)
        result = runtime_cli("run", "--bundle", str(bundle), cid, check=False)
        if check:
            assert result.returncode == 0, result.stderr
        return result

    return run
