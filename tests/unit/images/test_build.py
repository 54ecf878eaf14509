"""images/build.py: reproducible layers, correct diff ids, tagged layouts, indexes."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from images import build
from images.build import Layout, build_all, build_image, build_index, file, opaque, whiteout


def _blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()


def _manifest(layout: Path, digest: str) -> dict[str, object]:
    value: dict[str, object] = json.loads(_blob(layout, digest))
    return value


def test_images_are_reproducible(tmp_path: Path) -> None:
    first = build_all(tmp_path / "a")
    second = build_all(tmp_path / "b")
    assert first == second
    assert set(first) == set(build.IMAGES)


def test_diff_ids_match_uncompressed_layers(tmp_path: Path) -> None:
    digest = build_image("multilayer", tmp_path)
    manifest = json.loads(_blob(tmp_path, digest))
    config = json.loads(_blob(tmp_path, manifest["config"]["digest"]))
    assert config["os"] == "linux" and config["architecture"] == "amd64"
    diff_ids = config["rootfs"]["diff_ids"]
    assert len(manifest["layers"]) == len(diff_ids) >= 3
    for layer, diff_id in zip(manifest["layers"], diff_ids, strict=True):
        data = _blob(tmp_path, layer["digest"])
        assert layer["size"] == len(data)
        assert "sha256:" + hashlib.sha256(data).hexdigest() == layer["digest"]
        assert "sha256:" + hashlib.sha256(gzip.decompress(data)).hexdigest() == diff_id


def test_base_layer_is_shared(tmp_path: Path) -> None:
    busybox = json.loads(_blob(tmp_path, build_image("busybox", tmp_path)))
    httpd = json.loads(_blob(tmp_path, build_image("httpd", tmp_path)))
    assert busybox["layers"][0] == httpd["layers"][0]
    assert len(httpd["layers"]) == 2


def test_layers_have_sorted_entries_and_fixed_mtimes(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    layer = layout.add_layer([file("b", "2"), file("a/x", "1"), whiteout("c/d"), opaque("e")])
    data = gzip.decompress(_blob(tmp_path, layer.descriptor.digest))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["a/x", "b", "c/.wh.d", "e/.wh..wh..opq"]
    assert {m.mtime for m in members} == {build.MTIME}


def test_tag_replaces_and_lists(tmp_path: Path) -> None:
    build_image("busybox", tmp_path, "x")
    build_image("pause", tmp_path, "x")
    tags = Layout(tmp_path).tags()
    assert list(tags) == ["x"]
    config = json.loads(_blob(tmp_path, json.loads(_blob(tmp_path, tags["x"]))["config"]["digest"]))
    assert config["config"]["Entrypoint"] == ["/pause"]


def test_index_has_both_platforms(tmp_path: Path) -> None:
    index_digest, by_arch = build_index(tmp_path, "multi")
    index = json.loads(_blob(tmp_path, index_digest))
    assert index["mediaType"] == build.MEDIA_INDEX
    platforms = {(m["platform"]["architecture"], m["digest"]) for m in index["manifests"]}
    assert platforms == {("amd64", by_arch["amd64"]), ("arm64", by_arch["arm64"])}
    assert Layout(tmp_path).tags()["multi"] == index_digest


def test_nonroot_image_has_user(tmp_path: Path) -> None:
    manifest = json.loads(_blob(tmp_path, build_image("nonroot", tmp_path)))
    config = json.loads(_blob(tmp_path, manifest["config"]["digest"]))
    assert config["config"]["User"] == "1000:1000"
    top = gzip.decompress(_blob(tmp_path, manifest["layers"][-1]["digest"]))
    with tarfile.open(fileobj=io.BytesIO(top)) as tar:
        passwd = tar.extractfile("etc/passwd")
        assert passwd is not None
        with passwd:
            assert b"user:x:1000:1000:" in passwd.read()
        home = tar.getmember("home/user")
        assert (home.uid, home.gid) == (1000, 1000)


def test_unknown_image_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown image"):
        build_image("nope", tmp_path)


def test_push_reports_skopeo_error(tmp_path: Path) -> None:
    import subprocess

    def fake_run(argv: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        assert argv[:2] == ["skopeo", "copy"]
        assert "--dest-tls-verify=false" in argv
        return subprocess.CompletedProcess(argv, 1, "", "level=fatal msg=boom\n")

    with pytest.raises(RuntimeError, match="push busybox to 127.0.0.1:1/x:1"):
        build.push(tmp_path, "busybox", "127.0.0.1:1/x:1", run=fake_run)
