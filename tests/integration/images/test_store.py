"""The store after pulls: shared layers stored once, the merged tree of whiteouts and
opaque dirs under a real overlay mount, GC, removal while in use, concurrent pulls,
and a pull killed mid-transfer."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from images.build import (
    MULTILAYER_ABSENT,
    MULTILAYER_SYMLINKS,
    MULTILAYER_TREE,
    Entry,
    Layout,
    base_entries,
    file,
    hardlink,
    push,
    symlink,
)
from images.errors import InUse, NotFound, PullError, UnsafeLayer
from images.metadata import chain_ids
from images.snapshots.base import Kind
from images.store import ImageStore
from tests.integration.images.conftest import (
    Mounter,
    Served,
    SkopeoShim,
    ThrottledProxy,
    tree_of,
)

pytestmark = pytest.mark.root

Factory = Callable[..., ImageStore]


def _committed(store: ImageStore) -> list[str]:
    return [i.name for i in store.snapshots.walk() if i.kind is Kind.COMMITTED]


def test_shared_base_layer_is_stored_once(served: Served, store_factory: Factory) -> None:
    store = store_factory()
    busybox = store.pull(served.ref("busybox"))
    httpd = store.pull(served.ref("httpd"))
    assert busybox.layers[0].digest == httpd.layers[0].digest
    assert busybox.top_layer == httpd.chain_ids[0]
    blobs = sorted(store.content.digests())
    assert len(blobs) == len(set(blobs))
    # busybox: manifest, config, base; httpd adds manifest, config, www layer
    assert len(blobs) == 6
    committed = _committed(store)
    assert sorted(committed) == sorted({*busybox.chain_ids, *httpd.chain_ids})
    assert len(committed) == 2


@pytest.mark.parametrize("snapshotter", ["overlay", "native"])
def test_whiteouts_and_opaque_dirs_give_the_merged_tree(
    served: Served, store_factory: Factory, mounter: Mounter, tmp_path: Path, snapshotter: str
) -> None:
    if snapshotter == "native":
        pytest.importorskip("images.snapshots.native")
    store = store_factory(snapshotter=snapshotter)
    image = store.pull(served.ref("multilayer"))
    assert len(image.layers) == 4
    rootfs = mounter.mount(store.rootfs(image, "ctr-1"), tmp_path / "rootfs")
    tree = tree_of(rootfs / "data")
    expected = {k.removeprefix("data/"): v for k, v in MULTILAYER_TREE.items() if k != "data"}
    expected.update({k.removeprefix("data/"): f"-> {v}" for k, v in MULTILAYER_SYMLINKS.items()})
    assert tree == expected
    for path in MULTILAYER_ABSENT:
        assert not os.path.lexists(rootfs / path), path
    hard, link = rootfs / "data/hard.txt", rootfs / "data/hard-link.txt"
    assert hard.stat().st_ino == link.stat().st_ino
    assert (rootfs / "bin/busybox").stat().st_size > 100_000
    assert os.readlink(rootfs / "bin/sh") == "busybox"
    assert (rootfs / "tmp").stat().st_mode & 0o7777 == 0o1777
    # the container writes to its own upper layer only
    (rootfs / "data/new-in-container").write_text("x")
    mounter.unmount_all()
    store.remove_rootfs("ctr-1")
    again = mounter.mount(store.rootfs(image, "ctr-2"), tmp_path / "rootfs2")
    assert not (again / "data/new-in-container").exists()
    assert tree_of(again / "data") == expected


def test_readonly_rootfs(
    served: Served, store_factory: Factory, mounter: Mounter, tmp_path: Path
) -> None:
    store = store_factory()
    image = store.pull(served.ref("httpd"))
    rootfs = mounter.mount(store.rootfs(image, "ro-1", readonly=True), tmp_path / "ro")
    assert (rootfs / "www/index.html").read_text().startswith("<html>")
    with pytest.raises(OSError):
        (rootfs / "www/x").write_text("no")


def test_gc_removes_only_unreferenced_data(served: Served, store_factory: Factory) -> None:
    store = store_factory()
    busybox = store.pull(served.ref("busybox"))
    httpd = store.pull(served.ref("httpd"))
    # debris of a crashed pull: a stray blob and a half-made layer snapshot
    stray = store.content.add(b"stray blob")
    store.snapshots.prepare("extract-crashed-1", busybox.top_layer)

    assert store.prune().blobs == 1  # only the stray blob: both images are referenced
    assert not store.content.exists(stray)
    assert "extract-crashed-1" not in {i.name for i in store.snapshots.walk()}

    store.remove(served.ref("httpd"))
    result = store.prune()
    assert result.blobs == 3  # httpd's manifest, config and www layer
    assert result.snapshots == 1  # the www layer's snapshot
    assert result.bytes > 0
    for digest in [busybox.id, busybox.manifest_digest, busybox.layers[0].digest]:
        assert store.content.verify(digest)
    for digest in [httpd.id, httpd.manifest_digest, httpd.layers[1].digest]:
        assert not store.content.exists(digest)
    assert _committed(store) == list(busybox.chain_ids)
    assert store.prune().blobs == store.prune().snapshots == 0
    assert store.get(served.ref("busybox")).id == busybox.id


def test_gc_keeps_layers_under_a_container(served: Served, store_factory: Factory) -> None:
    store = store_factory()
    image = store.pull(served.ref("httpd"))
    store.rootfs(image, "ctr-1")
    store.remove(image.id)
    result = store.prune()
    assert result.snapshots == 0  # the container's snapshot still stands on them
    assert set(chain_ids(image.diff_ids)) <= set(_committed(store))
    store.remove_rootfs("ctr-1")
    assert store.prune().snapshots == 2


def test_remove_is_refused_while_in_use(served: Served, store_factory: Factory) -> None:
    store = store_factory()
    image = store.pull(served.ref("pause"))
    store.tag(image.id, "kubeling.test/pause:extra")
    store.add_user(image.id, "container-abc")
    # removing one of two tags only untags, even while in use
    assert store.remove("kubeling.test/pause:extra") == ["untagged kubeling.test/pause:extra"]
    with pytest.raises(InUse, match="container-abc"):
        store.remove(served.ref("pause"))
    with pytest.raises(InUse):
        store.remove(image.id)
    assert store.get(image.id).repo_tags == (served.ref("pause"),)
    store.remove_user(image.id, "container-abc")
    lines = store.remove(served.ref("pause"))
    assert lines[-1] == f"deleted {image.id}"
    with pytest.raises(NotFound):
        store.get(image.id)


def test_concurrent_pulls_of_one_reference_are_done_once(
    served: Served,
    store_factory: Factory,
    shim: SkopeoShim,
    proxy_factory: Callable[[str, int], ThrottledProxy],
) -> None:
    proxy = proxy_factory(served.host, 2_000_000)  # ~0.5 s for busybox: calls overlap
    ref = f"{proxy.host}/kubeling/busybox:latest"
    first = store_factory(skopeo=str(shim.path))
    # a second store object on the same root stands for a second process (file locks)
    second = store_factory(skopeo=str(shim.path))
    results: list[str] = []
    errors: list[BaseException] = []

    def pull(store: ImageStore) -> None:
        try:
            results.append(store.pull(ref).id)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=pull, args=(s,)) for s in (first, first, second, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert len(results) == 4 and len(set(results)) == 1
    assert len(shim.calls("copy")) == 1
    assert len(shim.calls("inspect")) == 1
    assert len(first.list()) == 1


def _big_image(layout_dir: Path) -> None:
    layout = Layout(layout_dir)
    layers = [
        layout.add_layer([file(f"blob-{i}", os.urandom(3_000_000))], level=1) for i in range(3)
    ]
    layout.tag(layout.add_image(layers, {"Cmd": ["sh"]}), "big")


def test_killed_pull_leaves_a_usable_store(
    served: Served,
    store_factory: Factory,
    shim: SkopeoShim,
    proxy_factory: Callable[[str, int], ThrottledProxy],
    tmp_path: Path,
) -> None:
    _big_image(tmp_path / "layout")
    push(tmp_path / "layout", "big", f"{served.host}/kubeling/big:crash")
    proxy = proxy_factory(served.host, 2_000_000)  # ~4.5 s for 9 MB
    ref = f"{proxy.host}/kubeling/big:crash"
    store = store_factory(skopeo=str(shim.path))
    errors: list[BaseException] = []

    def pull() -> None:
        try:
            store.pull(ref)
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=pull)
    thread.start()
    deadline = time.monotonic() + 60
    while proxy.downstream < 1_000_000 or not shim.calls("copy"):
        assert time.monotonic() < deadline, "the copy never got going"
        assert thread.is_alive(), errors
        time.sleep(0.02)
    pid = shim.calls("copy")[0][0]
    os.kill(pid, signal.SIGKILL)  # skopeo, which this test started through the store
    thread.join(timeout=60)
    assert len(errors) == 1 and isinstance(errors[0], PullError)
    assert str(errors[0]).startswith(f"pull {ref}: ")

    # no image, no blob that does not verify, no debris
    assert store.list() == []
    for digest in store.content.digests():
        assert store.content.verify(digest), digest
    assert list((store.root / "tmp").iterdir()) == []
    assert not any(i.name.startswith("extract-") for i in store.snapshots.walk())

    # the retry completes, through the same store
    image = store.pull(f"{served.host}/kubeling/big:crash")
    assert len(image.layers) == 3
    for layer in image.layers:
        assert store.content.verify(layer.digest)
    assert store.prune().blobs == 0


@pytest.mark.parametrize(
    ("entries", "culprit"),
    [
        ([file("../escape.txt", "x")], "../escape.txt"),
        (
            [symlink("link", "{outside}"), file("link/planted.txt", "x")],
            "link/planted.txt",
        ),
        ([hardlink("hard", "../../../etc/passwd")], "hard"),
    ],
    ids=["dotdot", "symlink-then-write", "hardlink-outside"],
)
def test_evil_layer_is_refused_end_to_end(
    served: Served,
    store_factory: Factory,
    tmp_path: Path,
    entries: list[Entry],
    culprit: str,
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    entries = [
        Entry(e.path, e.kind, e.data, e.source, e.mode, e.uid, e.gid,
              e.link.format(outside=outside))
        for e in entries
    ]  # fmt: skip
    layout = Layout(tmp_path / "layout")
    base = layout.add_layer(base_entries())
    evil = layout.add_layer(entries)
    layout.tag(layout.add_image([base, evil], {"Cmd": ["sh"]}), "evil")
    name = f"evil-{culprit.replace('/', '-').replace('.', '')}"
    push(layout.root, "evil", f"{served.host}/kubeling/{name}:1")
    store = store_factory()
    ref = f"{served.host}/kubeling/{name}:1"
    with pytest.raises(UnsafeLayer) as info:
        store.pull(ref)
    message = str(info.value)
    assert message.startswith(f"pull {ref}: ") and repr(culprit) in message
    assert list(outside.iterdir()) == []
    assert not (tmp_path / "escape.txt").exists()
    assert store.list() == []
    assert list((store.root / "tmp").iterdir()) == []
    # the good base layer was committed; nothing references it, so prune takes it
    assert store.prune().snapshots == 1
    assert list(store.content.digests()) == []
