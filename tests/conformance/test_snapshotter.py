"""One suite for every snapshotter (containerd ``core/snapshots/testsuite``).

Mounting needs root: those tests mount with util-linux ``mount`` (as runtime/ would
with mount(2)) and always unmount in a finalizer. Layers are built with tarfile, put
in a content store and committed one by one with unpack_layer over prepare/commit (as
images/layers.py does for copy-style snapshotters); one test runs the image store's
own LayerUnpacker over each snapshotter."""

from __future__ import annotations

import dataclasses
import errno
import gzip
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from images.content import ContentStore
from images.errors import AlreadyExists, DigestMismatch, ImageError, InUse, NotFound
from images.layers import LayerUnpacker
from images.metadata import LayerRecord
from images.snapshots import (
    BaseSnapshotter,
    Kind,
    Mount,
    NativeSnapshotter,
    OverlaySnapshotter,
    SnapshotStateError,
    open_snapshotter,
)
from images.unpack import LayerStats, unpack_layer

KINDS = ["overlay", "native"]
GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
TAR = "application/vnd.oci.image.layer.v1.tar"


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def snapshotter(kind: str, tmp_path: Path) -> Iterator[BaseSnapshotter]:
    with open_snapshotter(kind, tmp_path / "snap") as s:
        yield s


Mounter = Callable[[list[Mount]], Path]


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[Mounter]:
    """Mount a snapshot's mounts on a fresh directory; everything is unmounted after."""
    targets: list[Path] = []

    def do(mounts: list[Mount]) -> Path:
        target = Path(tempfile.mkdtemp(prefix="mnt-", dir=tmp_path))
        targets.append(target)
        for m in mounts:
            if m.type == "bind":
                cmd = ["mount", "-o", ",".join(m.options), m.source, str(target)]
            else:
                cmd = ["mount", "-t", m.type, "-o", ",".join(m.options), m.source, str(target)]
            subprocess.run(cmd, check=True, capture_output=True)
        return target

    yield do
    for target in reversed(targets):
        while is_mounted(target):  # os.path.ismount misses binds within one filesystem
            if subprocess.run(["umount", str(target)], check=False).returncode != 0:
                subprocess.run(["umount", "-l", str(target)], check=True)


def mount_points() -> list[str]:
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]


def is_mounted(target: Path) -> bool:
    return str(target) in mount_points()


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def tree(root: Path) -> dict[str, str | None]:
    """path -> file content, or None for a directory (what a user sees)."""
    out: dict[str, str | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = None
        for f in filenames:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = Path(p).read_text()
    return out


def blobs(tmp: Path) -> ContentStore:
    """The test's content store, where layer blobs go."""
    return ContentStore(tmp / "content")


def layer_from(
    tmp: Path, entries: list[tuple[str, str | None]], parent_chain: str | None
) -> LayerRecord:
    """A gzip layer from (path, content) pairs; content None makes a directory."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for path, content in entries:
            ti = tarfile.TarInfo(path)
            ti.mtime = 1_700_000_000
            if content is None:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            else:
                data = content.encode()
                ti.size, ti.mode = len(data), 0o644
                tf.addfile(ti, io.BytesIO(data))
    return store_layer(tmp, buf.getvalue(), parent_chain)


def store_layer(
    tmp: Path, raw: bytes, parent_chain: str | None, *, media_type: str = GZIP
) -> LayerRecord:
    """The tar ``raw`` (gzipped if ``media_type`` says so) as a blob in blobs(tmp)."""
    blob = gzip.compress(raw) if media_type == GZIP else raw
    digest = blobs(tmp).add(blob)
    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    chain = (
        diff_id
        if parent_chain is None
        else "sha256:" + hashlib.sha256(f"{parent_chain} {diff_id}".encode()).hexdigest()
    )
    return LayerRecord(digest, media_type, len(blob), diff_id, chain)


def commit_layers(s: BaseSnapshotter, tmp: Path, layers: list[LayerRecord]) -> list[LayerStats]:
    """Each layer unpacked onto a snapshot prepared over the one below and committed
    under its chain id, bottom first; the unpack stats per layer."""
    stats: list[LayerStats] = []
    parent = None
    for layer in layers:
        key = f"extract {layer.chain_id}"
        s.prepare(key, parent)
        stats.append(
            unpack_layer(
                blobs(tmp).path(layer.digest),
                s.diff_dir(key),
                media_type=layer.media_type,
                allow_devices=False,
                whiteouts=s.whiteouts,
                expected_diff_id=layer.diff_id,
                parents=s.parent_dirs(key),
            )
        )
        s.commit(layer.chain_id, key)
        parent = layer.chain_id
    return stats


# ------------------------------------------------------------------------ lifecycle


def test_prepare_commit_chain(snapshotter: BaseSnapshotter) -> None:
    mounts = snapshotter.prepare("base-active")
    assert mounts == [Mount("bind", str(snapshotter.diff_dir("base-active")), ("rbind", "rw"))]
    write(snapshotter.diff_dir("base-active"), {"etc/os-release": "base", "bin/sh": "sh"})
    snapshotter.commit("base", "base-active")
    with pytest.raises(NotFound):
        snapshotter.stat("base-active")

    snapshotter.prepare("top-active", "base")
    write(snapshotter.diff_dir("top-active"), {"etc/os-release": "top"})
    snapshotter.commit("top", "top-active")

    snapshotter.prepare("container", "top")
    info = snapshotter.stat("container")
    assert (info.name, info.parent, info.kind) == ("container", "top", Kind.ACTIVE)
    assert snapshotter.stat("top").parent == "base"
    assert snapshotter.stat("base").parent is None
    assert [(i.name, i.parent, i.kind) for i in snapshotter.walk()] == [
        ("base", None, Kind.COMMITTED),
        ("top", "base", Kind.COMMITTED),
        ("container", "top", Kind.ACTIVE),
    ]
    below = snapshotter.parent_dirs("container")
    assert len(below) == 2 and below[1:] == snapshotter.parent_dirs("top")
    assert (below[0] / "etc/os-release").read_text() == "top"
    (mount,) = snapshotter.mounts("container")
    if isinstance(snapshotter, OverlaySnapshotter):
        lower, upper, work = mount.options
        assert mount.type == "overlay" and mount.source == "overlay"
        assert lower == "lowerdir=" + ":".join(map(str, snapshotter.parent_dirs("container")))
        assert upper == f"upperdir={snapshotter.diff_dir('container')}"
        assert work.startswith("workdir=")
    else:
        assert mount.type == "bind" and mount.options == ("rbind", "rw")
        assert tree(Path(mount.source)) == {
            "etc": None,
            "bin": None,
            "etc/os-release": "top",
            "bin/sh": "sh",
        }


def test_view_is_read_only(snapshotter: BaseSnapshotter) -> None:
    assert snapshotter.view("empty-view")[0].options == ("rbind", "ro")
    snapshotter.prepare("a", None)
    write(snapshotter.diff_dir("a"), {"f": "1"})
    snapshotter.commit("l1", "a")
    (m,) = snapshotter.view("v1", "l1")
    assert m.type == "bind" and m.options == ("rbind", "ro")
    snapshotter.prepare("b", "l1")
    snapshotter.commit("l2", "b")
    (m,) = snapshotter.view("v2", "l2")
    if isinstance(snapshotter, OverlaySnapshotter):
        assert m.type == "overlay"
        assert not any(o.startswith(("upperdir=", "workdir=")) for o in m.options)
    else:
        assert m.options == ("rbind", "ro")
    assert snapshotter.stat("v2").kind is Kind.VIEW
    with pytest.raises(SnapshotStateError, match="view"):
        snapshotter.commit("nope", "v2")
    with pytest.raises(SnapshotStateError):
        snapshotter.diff_dir("v2")


def test_kind_and_name_rules(snapshotter: BaseSnapshotter) -> None:
    snapshotter.prepare("k")
    with pytest.raises(AlreadyExists):
        snapshotter.prepare("k")
    with pytest.raises(NotFound, match="missing"):
        snapshotter.prepare("k2", "missing")
    with pytest.raises(SnapshotStateError, match="not committed"):
        snapshotter.prepare("k2", "k")
    snapshotter.prepare("other")
    snapshotter.commit("name", "other")
    with pytest.raises(AlreadyExists):
        snapshotter.commit("name", "k")
    with pytest.raises(SnapshotStateError, match="committed"):
        snapshotter.mounts("name")
    with pytest.raises(NotFound):
        snapshotter.stat("nothing")
    with pytest.raises(NotFound):
        snapshotter.remove("nothing")
    with pytest.raises(NotFound):
        snapshotter.usage("nothing")
    assert {i.name for i in snapshotter.walk()} == {"k", "name"}  # failures left nothing


def test_remove_leaves_parents(snapshotter: BaseSnapshotter) -> None:
    snapshotter.prepare("a")
    write(snapshotter.diff_dir("a"), {"base-file": "b"})
    snapshotter.commit("base", "a")
    snapshotter.prepare("c1", "base")
    (base_dir,) = snapshotter.parent_dirs("c1")
    snapshotter.prepare("c2", "base")
    with pytest.raises(InUse, match="parent"):
        snapshotter.remove("base")
    c1_dir = snapshotter.diff_dir("c1")
    snapshotter.remove("c1")
    assert not c1_dir.exists()
    assert (base_dir / "base-file").read_text() == "b"
    snapshotter.remove("c2")
    snapshotter.remove("base")
    assert snapshotter.walk() == []
    assert os.listdir(snapshotter.root / "snapshots") == []


def test_usage(snapshotter: BaseSnapshotter) -> None:
    snapshotter.prepare("a")
    d = snapshotter.diff_dir("a")
    (d / "data").write_bytes(os.urandom(1 << 20))
    (d / "dir").mkdir()
    os.link(d / "data", d / "dir/hardlink")  # counted once
    active = snapshotter.usage("a")
    assert active.inodes == 3  # root, data, dir
    assert 1 << 20 <= active.size < (1 << 20) + 64 * 1024
    snapshotter.commit("c", "a")
    assert snapshotter.usage("c") == active
    snapshotter.prepare("b", "c")
    below = snapshotter.usage("b")
    if isinstance(snapshotter, OverlaySnapshotter):
        assert below.inodes == 1  # an empty upper dir: the parent is not counted
    else:
        assert below.inodes == 3  # a full copy


def test_metadata_survives_reopen_and_cleanup_removes_orphans(kind: str, tmp_path: Path) -> None:
    root = tmp_path / "snap"
    with open_snapshotter(kind, root) as s:
        s.prepare("a")
        write(s.diff_dir("a"), {"f": "x"})
        s.commit("c", "a")
        s.prepare("live", "c")
    (root / "snapshots" / "new-crashed").mkdir()
    (root / "snapshots" / "999").mkdir()
    with open_snapshotter(kind, root) as s:
        assert [(i.name, i.kind) for i in s.walk()] == [
            ("c", Kind.COMMITTED),
            ("live", Kind.ACTIVE),
        ]
        assert sorted(os.listdir(root / "snapshots")) == ["1", "2"]
        assert (s.parent_dirs("live")[0] / "f").read_text() == "x"


def test_open_snapshotter_rejects_unknown_kinds_and_bad_roots(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="unknown snapshotter"):
        open_snapshotter("zfs", tmp_path)
    with pytest.raises(ImageError, match="mount options"):
        OverlaySnapshotter(tmp_path / "a:b")


def unpack_as_the_store_does(s: BaseSnapshotter, tmp: Path, layers: list[LayerRecord]) -> list[int]:
    """The layers committed by images/layers.py's LayerUnpacker, in a work directory
    of its own (removed after, as the image store does); the layer numbers it reported
    done."""
    work = Path(tempfile.mkdtemp(prefix="work-", dir=s.root.parent))
    descriptors = [{"digest": x.digest, "mediaType": x.media_type, "size": x.size} for x in layers]
    done: list[int] = []
    try:
        with LayerUnpacker(content=blobs(tmp), snapshots=s, work=work, layers=descriptors) as u:
            u.finish(layers, done.append)
    finally:
        shutil.rmtree(work)
    return done


def test_layer_unpacker_skips_committed_layers_and_cleans_up_failures(
    snapshotter: BaseSnapshotter, tmp_path: Path
) -> None:
    l1 = layer_from(tmp_path, [("a", "1")], None)
    l2 = layer_from(tmp_path, [("b", "2")], l1.chain_id)
    assert unpack_as_the_store_does(snapshotter, tmp_path, [l1]) == [1]
    snapshotter.prepare("probe", l1.chain_id)
    assert tree(snapshotter.parent_dirs("probe")[0]) == {"a": "1"}
    snapshotter.remove("probe")
    blobs(tmp_path).delete(l1.digest)  # a committed layer's blob is not even read
    assert unpack_as_the_store_does(snapshotter, tmp_path, [l1, l2]) == [1, 2]
    assert snapshotter.stat(l2.chain_id).parent == l1.chain_id
    bad = dataclasses.replace(l2, diff_id="sha256:" + "0" * 64, chain_id="sha256:" + "1" * 64)
    with pytest.raises(DigestMismatch, match="sha256:0{64}"):
        unpack_as_the_store_does(snapshotter, tmp_path, [l1, l2, bad])
    assert [i.name for i in snapshotter.walk()] == [l1.chain_id, l2.chain_id]
    assert len(os.listdir(snapshotter.root / "snapshots")) == 2  # no debris


# ------------------------------------------------------------------------ mounted


def three_layers(tmp_path: Path) -> list[LayerRecord]:
    l1 = layer_from(
        tmp_path,
        [
            ("etc/", None),
            ("etc/passwd", "root"),
            ("etc/group", "root"),
            ("data/", None),
            ("data/keep", "k"),
            ("data/old/", None),
            ("data/old/x", "x"),
            ("lib/", None),
            ("lib/a.so", "a"),
        ],
        None,
    )
    l2 = layer_from(
        tmp_path,
        [
            ("etc/", None),
            ("etc/.wh.group", ""),  # delete a file
            ("data/", None),
            ("data/.wh.old", ""),  # delete a directory
            ("lib/", None),
            ("lib/.wh..wh..opq", ""),  # hide all of lib from l1
            ("lib/b.so", "b"),
            ("etc/passwd", "root\nuser"),  # modify
        ],
        l1.chain_id,
    )
    l3 = layer_from(
        tmp_path,
        [
            ("data/", None),
            ("data/old/", None),  # recreate a deleted directory: empty of l1's files
            ("data/old/y", "y"),
            (".wh.etc", ""),  # delete a whole directory
            ("etc2", "moved"),
        ],
        l2.chain_id,
    )
    return [l1, l2, l3]


MERGED = {
    "data": None,
    "data/keep": "k",
    "data/old": None,
    "data/old/y": "y",
    "lib": None,
    "lib/b.so": "b",
    "etc2": "moved",
}


@pytest.mark.root
def test_three_layers_with_whiteouts_mount_as_the_merged_tree(
    snapshotter: BaseSnapshotter, tmp_path: Path, mount: Mounter
) -> None:
    layers = three_layers(tmp_path)
    stats = commit_layers(snapshotter, tmp_path, layers)
    assert [s.whiteouts for s in stats] == [0, 3, 1]
    rootfs = mount(snapshotter.prepare("container", layers[-1].chain_id))
    assert tree(rootfs) == MERGED
    (rootfs / "new").write_text("container write")
    assert (snapshotter.diff_dir("container") / "new").read_text() == "container write"
    ro = mount(snapshotter.view("ro-view", layers[-1].chain_id))
    assert tree(ro) == MERGED
    with pytest.raises(OSError) as info:
        (ro / "nope").write_text("x")
    assert info.value.errno == errno.EROFS
    # the middle of the chain, as a read-only view
    mid = mount(snapshotter.view("mid", layers[1].chain_id))
    assert tree(mid) == {
        "etc": None,
        "etc/passwd": "root\nuser",
        "data": None,
        "data/keep": "k",
        "lib": None,
        "lib/b.so": "b",
    }


def test_three_layers_native_tree_without_mounting(tmp_path: Path) -> None:
    with NativeSnapshotter(tmp_path / "native") as s:
        layers = three_layers(tmp_path)
        commit_layers(s, tmp_path, layers)
        s.prepare("c", layers[-1].chain_id)
        assert tree(s.diff_dir("c")) == MERGED


def _deep_chain(s: BaseSnapshotter, tmp_path: Path, depth: int) -> list[LayerRecord]:
    layers: list[LayerRecord] = []
    for i in range(depth):
        parent = layers[-1].chain_id if layers else None
        entries: list[tuple[str, str | None]] = [(f"layer{i:03}", str(i)), ("top", str(i))]
        if i:
            entries.append((f".wh.layer{i - 1:03}", ""))
        layers.append(layer_from(tmp_path, entries, parent))
    commit_layers(s, tmp_path, layers)
    return layers


@pytest.fixture
def short_root() -> Iterator[Path]:
    """A short snapshotter root: overlay option strings grow with it per layer."""
    root = Path(tempfile.mkdtemp(prefix="ks", dir="/tmp"))
    yield root
    for target in reversed(mount_points()):
        if target.startswith(f"{root}/"):
            subprocess.run(["umount", "-l", target], check=False)
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.root
def test_deep_chain_of_60_layers_mounts(
    kind: str, short_root: Path, tmp_path: Path, mount: Mounter
) -> None:
    with open_snapshotter(kind, short_root / "s") as s:
        layers = _deep_chain(s, tmp_path, 60)
        mounts = s.prepare("container", layers[-1].chain_id)
        if kind == "overlay":
            assert len(mounts[0].options[0].split(":")) == 60
        rootfs = mount(mounts)
        assert tree(rootfs) == {"layer059": "59", "top": "59"}


def test_too_deep_a_chain_fails_clearly(tmp_path: Path) -> None:
    """Past the mount option limit prepare fails (an image store's pull then stops
    with this message rather than committing layers no container could mount)."""
    root = tmp_path / ("long-root-" + "x" * 100)
    with OverlaySnapshotter(root) as s:
        parent = None
        with pytest.raises(ImageError, match=r"over the 4095-byte mount limit.*shorter") as info:
            for i in range(40):
                s.prepare(f"a{i}", parent)
                s.commit(f"l{i}", f"a{i}")
                parent = f"l{i}"
        assert f"snapshot 'a{len(s.walk())}'" in str(info.value)
        assert 15 <= len(s.walk()) <= 25  # a 173-byte root: ~190 bytes a layer
        assert {info.kind for info in s.walk()} == {Kind.COMMITTED}  # no debris
        assert s.view("shallow", "l5")[0].type == "overlay"  # shorter chains still work


def test_container_root_takes_the_image_root_mode(
    snapshotter: BaseSnapshotter, tmp_path: Path
) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("./")
        ti.type, ti.mode = tarfile.DIRTYPE, 0o750
        tf.addfile(ti)
    layer = store_layer(tmp_path, buf.getvalue(), None, media_type=TAR)
    commit_layers(snapshotter, tmp_path, [layer])
    snapshotter.prepare("c", layer.chain_id)
    assert snapshotter.diff_dir("c").stat().st_mode & 0o7777 == 0o750
