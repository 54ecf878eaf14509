"""images/metadata.py: image records, names, users and references in SQLite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from images.errors import NotFound
from images.metadata import ImageConfig, LayerRecord, MetadataDB, NewImage, chain_ids

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def _image(image_id: str, *names: tuple[str, str], diffs: tuple[str, ...] = (D1,)) -> NewImage:
    chains = chain_ids(diffs)
    layers = tuple(
        LayerRecord(f"sha256:{i:064x}", "application/vnd.oci.image.layer.v1.tar+gzip", 10, d, c)
        for i, (d, c) in enumerate(zip(diffs, chains, strict=True))
    )
    config = {"config": {"Env": ["A=1"], "Cmd": ["sh"], "ExposedPorts": {"80/tcp": {}}}}
    return NewImage(
        id=image_id,
        manifest_digest=D3,
        platform="linux/amd64",
        size=123,
        config_json=json.dumps(config).encode(),
        layers=layers,
        blobs=frozenset({D3, image_id, *(layer.digest for layer in layers)}),
        names=tuple((n, "tag" if k == "tag" else "digest") for n, k in names),
    )


def test_chain_ids_follow_the_spec() -> None:
    import hashlib

    chains = chain_ids([D1, D2])
    assert chains[0] == D1
    assert chains[1] == "sha256:" + hashlib.sha256(f"{D1} {D2}".encode()).hexdigest()


def test_put_get_and_names(tmp_path: Path) -> None:
    db = MetadataDB(tmp_path / "m.db")
    try:
        db.put(_image(D1, ("r/a:1", "tag"), ("r/a@" + D3, "digest")))
        image = db.get(D1)
        assert image.repo_tags == ("r/a:1",)
        assert image.repo_digests == ("r/a@" + D3,)
        assert image.config == ImageConfig(env=("A=1",), cmd=("sh",), exposed_ports=("80/tcp",))
        assert image.top_layer == D1
        assert db.resolve_name("r/a:1") == D1
        assert db.ids_with_prefix("111") == [D1]
        assert db.ids_with_prefix("sha256:1111") == [D1]
        # the tag moves to a new image; the old one keeps its digest name
        db.put(_image(D2, ("r/a:1", "tag")))
        assert db.get(D1).repo_tags == ()
        assert db.get(D2).repo_tags == ("r/a:1",)
        assert {i.id for i in db.all_images()} == {D1, D2}
    finally:
        db.close()


def test_users_and_references(tmp_path: Path) -> None:
    db = MetadataDB(tmp_path / "m.db")
    try:
        db.put(_image(D1, ("r/a:1", "tag"), diffs=(D1, D2)))
        db.add_user(D1, "ctr-1")
        db.add_user(D1, "ctr-1")
        assert db.users(D1) == ["ctr-1"]
        db.remove_user(D1, "ctr-1")
        assert db.users(D1) == []
        with pytest.raises(NotFound):
            db.add_user(D2, "x")
        assert D3 in db.referenced_blobs()
        assert db.referenced_chain_ids() == set(chain_ids([D1, D2]))
        db.delete(D1)
        assert db.referenced_blobs() == set()
        assert db.resolve_name("r/a:1") is None
        with pytest.raises(NotFound, match="image"):
            db.get(D1)
    finally:
        db.close()


def test_survives_reopen(tmp_path: Path) -> None:
    db = MetadataDB(tmp_path / "m.db")
    db.put(_image(D1, ("r/a:1", "tag")))
    db.close()
    again = MetadataDB(tmp_path / "m.db")
    try:
        assert again.get(D1).repo_tags == ("r/a:1",)
    finally:
        again.close()
