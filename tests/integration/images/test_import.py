"""Importing images without a registry (air-gap, as k3s does): oci-archive,
docker-archive, an OCI layout directory and a directory of archives."""

from __future__ import annotations

import json
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from images.errors import ImageError, NotFound
from images.store import ImageStore
from tests.integration.images.conftest import Built

pytestmark = pytest.mark.root

Factory = Callable[..., ImageStore]


def _skopeo_copy(source: str, dest: str) -> None:
    subprocess.run(
        ["skopeo", "copy", "--quiet", source, dest],
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )


def test_import_oci_archive(built: Built, store_factory: Factory, tmp_path: Path) -> None:
    archive = tmp_path / "busybox.oci.tar"
    _skopeo_copy(f"oci:{built.layout}:busybox", f"oci-archive:{archive}:kubeling.test/bb:1")
    store = store_factory()
    (image,) = store.import_archive(f"oci-archive:{archive}")
    assert image.repo_tags == ("kubeling.test/bb:1",)
    assert image.manifest_digest == built.digests["busybox"]
    assert image.config.cmd == ("sh",)
    assert store.get("kubeling.test/bb:1").id == image.id
    # the same file without its transport prefix: the type is detected
    (again,) = store.import_archive(archive)
    assert again.id == image.id
    assert len(store.list()) == 1


def test_import_docker_archive(built: Built, store_factory: Factory, tmp_path: Path) -> None:
    archive = tmp_path / "nonroot.docker.tar"
    _skopeo_copy(f"oci:{built.layout}:nonroot", f"docker-archive:{archive}:kubeling.test/nr:2")
    store = store_factory()
    (image,) = store.import_archive(f"docker-archive:{archive}")
    assert image.repo_tags == ("kubeling.test/nr:2",)
    assert image.config.user == "1000:1000"
    assert len(image.layers) == 2
    for layer in image.layers:
        assert store.content.verify(layer.digest)
    # unconverted: the image id is the config digest docker wrote into the archive
    with tarfile.open(archive) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        with member:
            (entry,) = json.load(member)
    assert image.id == "sha256:" + entry["Config"].removesuffix(".json")
    # its layers are the uncompressed tars, so their digests are the diff ids
    assert [layer.digest for layer in image.layers] == list(image.diff_ids)


def test_import_oci_layout_dir(built: Built, store_factory: Factory) -> None:
    store = store_factory()
    images = store.import_archive(built.layout)
    names = sorted(tag for image in images for tag in image.repo_tags)
    # tags in the layout are bare names, normalised as docker does
    assert names == sorted(
        f"docker.io/library/{n}:latest"
        for n in ("busybox", "httpd", "multiarch", "multilayer", "nonroot", "pause")
    )
    multiarch = store.get("docker.io/library/multiarch:latest")
    assert multiarch.platform == "linux/amd64"
    assert multiarch.manifest_digest == built.arch_digests["amd64"]
    # all share one base layer snapshot
    assert len({image.layers[0].chain_id for image in images}) == 1


def test_import_chooses_the_store_platform(built: Built, store_factory: Factory) -> None:
    from images.pull import Platform

    store = store_factory(platform=Platform("linux", "arm64", "v8"))
    (image,) = store.import_archive(f"oci:{built.layout}:multiarch")
    assert image.platform == "linux/arm64/v8"
    assert image.manifest_digest == built.arch_digests["arm64"]


def test_import_directory_of_archives(built: Built, store_factory: Factory, tmp_path: Path) -> None:
    airgap = tmp_path / "airgap"
    airgap.mkdir()
    _skopeo_copy(f"oci:{built.layout}:pause", f"oci-archive:{airgap / 'a.tar'}:kubeling.test/p:1")
    _skopeo_copy(
        f"oci:{built.layout}:httpd", f"docker-archive:{airgap / 'b.tar'}:kubeling.test/h:1"
    )
    (airgap / ".hidden").write_text("ignored")
    store = store_factory()
    images = store.import_archive(airgap)
    assert [i.repo_tags for i in images] == [("kubeling.test/p:1",), ("kubeling.test/h:1",)]


def test_import_errors_name_the_source(store_factory: Factory, tmp_path: Path) -> None:
    store = store_factory()
    with pytest.raises(NotFound, match="no such file"):
        store.import_archive(tmp_path / "missing.tar")
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(ImageError, match=rf"import {junk}: not an image archive"):
        store.import_archive(junk)
    assert store.list() == []
