"""`kubeling images ...` as a user runs it: build and push the test images, pull,
list, inspect, tag, rm, prune, import; errors are one line and a non-zero exit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.images.conftest import AUTH_PASSWORD, AUTH_USER, Served

pytestmark = pytest.mark.root

KUBELING = str(Path(sys.executable).parent / "kubeling")


def _run(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [KUBELING, "images", "--root", str(root), "--registries", str(root / "none.toml"), *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_build_push_pull_list_inspect_tag_rm_prune(served: Served, tmp_path: Path) -> None:
    root = tmp_path / "store"
    layout = tmp_path / "layout"
    out = _run(
        root,
        "build-busybox",
        "--layout",
        str(layout),
        "--name",
        "busybox",
        "--name",
        "httpd",
        "--push",
        f"{served.host}/cli",
    ).stdout
    assert f"pushed {served.host}/cli/httpd:latest" in out
    assert (layout / "index.json").exists()

    pulled = _run(root, "pull", f"{served.host}/cli/httpd:latest").stdout
    assert pulled.startswith(f"pulled {served.host}/cli/httpd:latest sha256:")
    image_id = pulled.split()[-1]

    listing = _run(root, "list").stdout.splitlines()
    assert listing[0].split() == ["IMAGE", "TAG", "IMAGE", "ID", "SIZE"]
    assert listing[1].split()[:3] == [f"{served.host}/cli/httpd", "latest", image_id[7:19]]
    assert _run(root, "ls", "-q").stdout.split() == [image_id]

    record = json.loads(_run(root, "inspect", f"{served.host}/cli/httpd").stdout)
    assert record["id"] == image_id
    assert record["config"]["config"]["ExposedPorts"] == {"80/tcp": {}}

    _run(root, "tag", image_id[7:19], "kubeling.test/web:v1")
    assert _run(root, "rm", "kubeling.test/web:v1").stdout.strip() == (
        "untagged kubeling.test/web:v1"
    )
    removed = _run(root, "rm", f"{served.host}/cli/httpd:latest").stdout
    assert f"deleted {image_id}" in removed
    assert "removed 4 blobs" in _run(root, "prune").stdout


def test_import_from_the_cli(served: Served, tmp_path: Path) -> None:
    root = tmp_path / "store"
    out = _run(root, "import", str(served.built.layout)).stdout
    assert out.count("imported ") == 6
    assert "docker.io/library/pause:latest" in _run(root, "list", "--json").stdout


def test_errors_are_one_line(served: Served, tmp_path: Path) -> None:
    root = tmp_path / "store"
    bad = _run(root, "pull", "UPPER/case", check=False)
    assert bad.returncode == 1
    assert bad.stderr.count("\n") == 1
    assert bad.stderr.startswith("kubeling images: invalid reference 'UPPER/case'")
    missing = _run(root, "inspect", "sha256:" + "0" * 64, check=False)
    assert missing.returncode == 1 and "not found" in missing.stderr
    gone = _run(root, "pull", f"{served.host}/cli/not-there:1", check=False)
    assert gone.returncode == 1
    assert gone.stderr.startswith(f"kubeling images: pull {served.host}/cli/not-there:1: ")
    assert gone.stderr.count("\n") == 1


def test_pull_with_password_on_stdin(auth_served: Served, tmp_path: Path) -> None:
    root = tmp_path / "store"
    ref = auth_served.ref("busybox")
    base = [KUBELING, "images", "--root", str(root), "--registries", str(root / "none.toml")]
    denied = _run(root, "pull", ref, check=False)
    assert denied.returncode == 1 and "unauthorized" in denied.stderr
    result = subprocess.run(
        [*base, "pull", "--username", AUTH_USER, "--password-stdin", ref],
        input=AUTH_PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"pulled {ref} sha256:")
    assert AUTH_PASSWORD not in result.stdout + result.stderr
