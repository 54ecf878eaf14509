"""images/content.py: blobs appear only complete and verified; writes resume by ref."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from pathlib import Path

import pytest

from images.content import ContentStore, digest_of, parse_digest
from images.errors import AlreadyExists, DigestMismatch, ImageError, InUse, NotFound

DATA = b"layer bytes " * 1000
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(tmp_path / "content")


def test_write_commit_read(store: ContentStore) -> None:
    with store.writer("ref-1", DIGEST, len(DATA)) as w:
        w.write(DATA[:100])
        w.write(DATA[100:])
        assert w.offset == len(DATA)
        assert not store.exists(DIGEST)  # not visible before commit
        assert w.commit() == DIGEST
    assert store.exists(DIGEST)
    assert store.read_bytes(DIGEST) == DATA
    assert store.size(DIGEST) == len(DATA)
    assert store.verify(DIGEST)
    assert list(store.digests()) == [DIGEST]
    path = store.path(DIGEST)
    assert path == store.root / "blobs/sha256" / DIGEST.removeprefix("sha256:")
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert store.ingests() == []
    assert os.listdir(store.root / "ingest") == []


def test_layout_doubles_as_skopeo_shared_blob_dir(store: ContentStore) -> None:
    assert store.blobs_dir == store.root / "blobs"
    # skopeo writes blobs/sha256/<hex> itself, via temporary files
    (store.blobs_dir / "sha256" / DIGEST.removeprefix("sha256:")).write_bytes(DATA)
    (store.blobs_dir / "sha256" / "oci-put-blob123456").write_bytes(b"partial")
    assert list(store.digests()) == [DIGEST]
    assert store.verify(DIGEST)


def test_digest_mismatch_discards_the_ingest(store: ContentStore) -> None:
    wrong = "sha256:" + "0" * 64
    with store.writer("ref", wrong, len(DATA)) as w:
        w.write(DATA)
        with pytest.raises(DigestMismatch, match=DIGEST):
            w.commit()
    assert not store.exists(wrong)
    assert store.ingests() == []


def test_oversized_write_is_refused(store: ContentStore) -> None:
    with store.writer("ref", DIGEST, 10) as w, pytest.raises(DigestMismatch, match="10 bytes"):
        w.write(DATA)
    assert store.ingests() == []


def test_short_write_is_kept_and_resumed(store: ContentStore) -> None:
    with store.writer("resume-me", DIGEST, len(DATA)) as w:
        w.write(DATA[:5000])
        with pytest.raises(DigestMismatch, match="5000 bytes"):
            w.commit()
    (status,) = store.ingests()
    assert (status.ref, status.offset, status.total) == ("resume-me", 5000, len(DATA))
    # a crashed writer: bytes written but never committed
    w2 = store.writer("resume-me", DIGEST, len(DATA))
    try:
        assert w2.offset == 5000
        w2.write(DATA[5000:])
        w2.commit()
    finally:
        w2.close()
    assert store.read_bytes(DIGEST) == DATA
    assert store.ingests() == []


def test_second_commit_of_the_same_blob(store: ContentStore) -> None:
    assert store.add(DATA) == DIGEST
    with store.writer("other-ref", DIGEST, len(DATA)) as w:
        w.write(DATA)
        with pytest.raises(AlreadyExists):
            w.commit()
    assert store.ingests() == []
    assert store.add(DATA, DIGEST) == DIGEST  # add treats it as success


def test_one_writer_per_ref(store: ContentStore) -> None:
    with store.writer("busy", DIGEST), pytest.raises(InUse, match="busy"):
        store.writer("busy", DIGEST)
    with pytest.raises(InUse):
        w2 = store.writer("busy2", DIGEST)
        try:
            store.abort("busy2")
        finally:
            w2.close()
    store.abort("busy2")
    with pytest.raises(NotFound):
        store.abort("busy2")


def test_writers_in_threads_race_for_one_digest(store: ContentStore) -> None:
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            store.add(DATA, DIGEST)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.verify(DIGEST)


def test_delete_and_missing_blobs(store: ContentStore) -> None:
    store.add(DATA)
    store.delete(DIGEST)
    assert not store.exists(DIGEST)
    with pytest.raises(NotFound, match=DIGEST):
        store.delete(DIGEST)
    with pytest.raises(NotFound):
        store.read_bytes(DIGEST)
    with pytest.raises(NotFound):
        store.size(DIGEST)
    assert not store.verify(DIGEST)


def test_verify_detects_corruption(store: ContentStore) -> None:
    store.add(DATA)
    path = store.path(DIGEST)
    os.chmod(path, 0o644)
    path.write_bytes(DATA[:-1] + b"!")
    assert not store.verify(DIGEST)


@pytest.mark.parametrize(
    "bad",
    ["", "sha256:", "sha256:../../etc/passwd", "sha512:" + "a" * 128, "sha256:" + "A" * 64],
)
def test_invalid_digests_are_refused(store: ContentStore, bad: str) -> None:
    with pytest.raises(ImageError, match="invalid digest"):
        store.path(bad)
    with pytest.raises(ImageError, match="invalid digest"):
        store.writer("r", bad)


def test_helpers() -> None:
    assert digest_of(DATA) == DIGEST
    assert parse_digest(DIGEST) == DIGEST.removeprefix("sha256:")


def test_store_reopens_with_its_blobs(tmp_path: Path) -> None:
    ContentStore(tmp_path / "c").add(DATA)
    again = ContentStore(tmp_path / "c")
    assert again.read_bytes(DIGEST) == DATA
    assert again.total_size() == len(DATA)
