"""images/cli.py without root or network: build-busybox into a layout, listing,
progress bar, sizes, usage errors."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from images import cli
from images.metadata import Image, ImageConfig
from images.pull import Progress


def test_build_busybox_into_a_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    layout = tmp_path / "layout"
    assert cli.main(["build-busybox", "--layout", str(layout), "--name", "pause"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("built pause sha256:")
    index = json.loads((layout / "index.json").read_text())
    assert [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]] == [
        "pause"
    ]


def test_build_busybox_unknown_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["build-busybox", "--layout", str(tmp_path), "--name", "nope"]) == 2
    assert "unknown image 'nope'" in capsys.readouterr().err


def _image(tags: tuple[str, ...], digests: tuple[str, ...] = ()) -> Image:
    return Image(
        id="sha256:" + "ab" * 32,
        repo_tags=tags,
        repo_digests=digests,
        size=1_234_567,
        config=ImageConfig(),
        layers=(),
        platform="linux/amd64",
        manifest_digest="sha256:" + "cd" * 32,
    )


def test_list_table() -> None:
    out = io.StringIO()
    images = [
        _image(("127.0.0.1:5000/kubeling/busybox:latest",)),
        _image((), ("docker.io/library/x@sha256:" + "ef" * 32,)),
    ]
    cli._list(images, quiet=False, as_json=False, out=out)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["IMAGE", "TAG", "IMAGE", "ID", "SIZE"]
    assert lines[1].split() == [
        "127.0.0.1:5000/kubeling/busybox",
        "latest",
        "abababababab",
        "1.2MB",
    ]
    assert lines[2].split() == ["docker.io/library/x", "<none>", "abababababab", "1.2MB"]
    quiet = io.StringIO()
    cli._list(images[:1], quiet=True, as_json=False, out=quiet)
    assert quiet.getvalue() == "sha256:" + "ab" * 32 + "\n"


def test_progress_bar_draws_one_line() -> None:
    out = io.StringIO()
    bar = cli.ProgressBar(out, width=10)
    bar(Progress("r:1", "fetching", 50, 100, 1, 2))
    bar(Progress("r:1", "done", 100, 100, 2, 2))
    bar.finish()
    text = out.getvalue()
    assert "[#####.....]" in text and "[##########]" in text
    assert text.endswith("\n") and text.count("\n") == 1


@pytest.mark.parametrize(
    ("n", "text"), [(0, "0B"), (999, "999B"), (1000, "1.0kB"), (72_100_000, "72.1MB")]
)
def test_size(n: int, text: str) -> None:
    assert cli._size(n) == text


def test_pull_username_needs_password_stdin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--root", str(tmp_path / "s"), "--snapshotter", "native", "pull", "-u", "x", "a/b"]
    assert cli.main(argv) == 2
    assert "--username needs --password-stdin" in capsys.readouterr().err


def test_unusable_root_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    argv = ["--root", str(blocker / "store"), "--snapshotter", "native", "list"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("kubeling images: list: ") and err.count("\n") == 1
