"""images/store.py pieces that need no registry: import source detection and names,
and the store's queries on an empty root."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from images import archives
from images.errors import ImageError, NotFound
from images.store import ImageStore


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_archive_kind_is_detected(tmp_path: Path) -> None:
    index = json.dumps(
        {
            "manifests": [
                {"digest": "sha256:" + "1" * 64, "annotations": {
                    "org.opencontainers.image.ref.name": "kubeling.test/a:1"}},
            ]
        }
    ).encode()  # fmt: skip
    oci = _tar(tmp_path / "o.tar", {"oci-layout": b"{}", "index.json": index})
    manifest = json.dumps([{"RepoTags": ["b:2"], "Config": "c.json", "Layers": []}]).encode()
    docker = _tar(tmp_path / "d.tar", {"manifest.json": manifest})
    assert archives.import_sources(oci) == [
        (f"oci-archive:{oci}:kubeling.test/a:1", "kubeling.test/a:1")
    ]
    assert archives.import_sources(docker) == [
        (f"docker-archive:{docker}:@0", "docker.io/library/b:2")
    ]
    assert archives.import_sources(f"docker-archive:{docker}") == [
        (f"docker-archive:{docker}:@0", "docker.io/library/b:2")
    ]
    # a reference after the path selects one image; a colon may be in the path
    assert archives.import_sources(f"docker-archive:{docker}:b:2") == [
        (f"docker-archive:{docker}:b:2", "docker.io/library/b:2")
    ]
    odd = tmp_path / "with:colon"
    odd.mkdir()
    named = _tar(odd / "o.tar", {"oci-layout": b"{}", "index.json": index})
    assert archives.import_sources(f"oci-archive:{named}:kubeling.test/a:1") == [
        (f"oci-archive:{named}:kubeling.test/a:1", "kubeling.test/a:1")
    ]
    with pytest.raises(NotFound, match="no such image"):
        archives.import_sources(f"oci-archive:{named}:other")
    other = _tar(tmp_path / "x.tar", {"hello": b"x"})
    with pytest.raises(ImageError, match="neither an OCI nor a docker archive"):
        archives.import_sources(other)


def test_names_are_normalised() -> None:
    assert archives.normal_name("busybox") == "docker.io/library/busybox:latest"
    assert archives.normal_name("UPPER") is None
    assert archives.normal_name("a/b@sha256:" + "1" * 64) is None


def test_empty_store_queries(tmp_path: Path) -> None:
    with ImageStore(tmp_path / "s", snapshotter="native") as store:
        assert store.list() == []
        with pytest.raises(NotFound, match="image busybox: not found"):
            store.get("busybox")
        with pytest.raises(NotFound):
            store.remove("sha256:" + "0" * 64)
        with pytest.raises(NotFound, match="image Bad Ref: not found"):
            store.tag("Bad Ref", "x")
        result = store.prune()
        assert (result.blobs, result.snapshots) == (0, 0)
        # debris of a crashed pull is removed when the store opens
        (store.root / "tmp" / "pull-dead").mkdir()
    with ImageStore(tmp_path / "s", snapshotter="native") as store:
        assert list((store.root / "tmp").iterdir()) == []
