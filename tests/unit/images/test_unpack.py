"""images/unpack.py: layers built here with tarfile, normal and evil ones.

Every evil layer must fail with UnsafeLayer naming the entry, and leave nothing
outside the destination (an ``outside`` directory with a ``secret`` file stands for
the host) and, in OVERLAY mode, no destination and no temporary directory either."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import zstandard

from images.errors import DigestMismatch, ImageError, UnsafeLayer
from images.unpack import Whiteouts, copy_parent_attributes, unpack_layer

TAR = "application/vnd.oci.image.layer.v1.tar"
GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MTIME = 1_700_000_000
ROOT = os.geteuid() == 0
root_only = pytest.mark.root


@dataclass
class E:
    """One tar entry to write: kind is file, dir, symlink, link, char, block, fifo."""

    name: str
    kind: str = "file"
    data: bytes = b""
    mode: int | None = None
    link: str = ""
    uid: int = 0
    gid: int = 0
    mtime: float = MTIME
    dev: tuple[int, int] = (0, 0)
    xattrs: dict[str, str] = field(default_factory=dict)


_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "link": tarfile.LNKTYPE,
    "char": tarfile.CHRTYPE,
    "block": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


def tar_bytes(entries: Iterable[E], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for e in entries:
            ti = tarfile.TarInfo(e.name)
            ti.type = _TYPES[e.kind]
            ti.mode = e.mode if e.mode is not None else (0o755 if e.kind == "dir" else 0o644)
            ti.uid, ti.gid = e.uid, e.gid
            ti.mtime = e.mtime
            ti.linkname = e.link
            ti.devmajor, ti.devminor = e.dev
            if e.xattrs:
                ti.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in e.xattrs.items()}
            if e.kind == "file":
                ti.size = len(e.data)
                tf.addfile(ti, io.BytesIO(e.data))
            else:
                tf.addfile(ti)
    return buf.getvalue()


def write_layer(
    path: Path, entries: Iterable[E], *, compression: str = "gzip", fmt: int = tarfile.PAX_FORMAT
) -> tuple[Path, str, str]:
    """Write the layer blob; returns (path, media type, diff id)."""
    raw = tar_bytes(entries, fmt)
    if compression == "gzip":
        blob, media_type = gzip.compress(raw, mtime=0), GZIP
    elif compression == "zstd":
        blob, media_type = zstandard.ZstdCompressor().compress(raw), ZSTD
    else:
        blob, media_type = raw, TAR
    path.write_bytes(blob)
    return path, media_type, "sha256:" + hashlib.sha256(raw).hexdigest()


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A stand-in for the host outside the layer's root."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host secret\n")
    return outside


def assert_host_intact(host: Path) -> None:
    assert sorted(p.name for p in host.iterdir()) == ["secret"]
    secret = host / "secret"
    assert secret.read_text() == "host secret\n"
    st = secret.lstat()
    assert st.st_nlink == 1
    assert stat.S_IMODE(st.st_mode) == 0o644


def unpack(
    tmp_path: Path,
    entries: Iterable[E],
    *,
    dest: Path | None = None,
    compression: str = "gzip",
    allow_devices: bool = False,
    whiteouts: Whiteouts = Whiteouts.OVERLAY,
    fmt: int = tarfile.PAX_FORMAT,
) -> tuple[Path, object]:
    blob, media_type, diff_id = write_layer(
        tmp_path / "layer.blob", entries, compression=compression, fmt=fmt
    )
    dest = dest or tmp_path / "rootfs"
    stats = unpack_layer(
        blob,
        dest,
        media_type=media_type,
        allow_devices=allow_devices,
        whiteouts=whiteouts,
        expected_diff_id=diff_id,
    )
    return dest, stats


def leftovers(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if ".unpack-" in p.name)


# ------------------------------------------------------------------------ normal layers


def normal_entries() -> list[E]:
    big = os.urandom(3 << 20)  # spans several decompressed chunks
    return [
        E("./", "dir", mode=0o755),
        E("etc/", "dir", mode=0o755),
        E("etc/hostname", data=b"box\n", mode=0o644, mtime=MTIME + 5),
        E("etc/shadow", data=b"root:*:\n", mode=0o640, gid=42),
        E("bin/", "dir", mode=0o755, uid=1, gid=2),
        E("bin/tool", data=b"#!/bin/sh\n", mode=0o4755),
        E("empty", data=b""),
        E("big.bin", data=big, mode=0o600),
        E("secret-dir/", "dir", mode=0o500),
        E("secret-dir/inside", data=b"x", mode=0o400),
        E("tmp/", "dir", mode=0o1777),
    ]


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_regular_files_directories_modes_and_times(tmp_path: Path, compression: str) -> None:
    entries = normal_entries()
    dest, stats = unpack(tmp_path, entries, compression=compression)
    assert (dest / "etc/hostname").read_bytes() == b"box\n"
    assert (dest / "big.bin").read_bytes() == entries[7].data
    assert (dest / "empty").read_bytes() == b""
    modes = {
        "etc": 0o755,
        "etc/hostname": 0o644,
        "etc/shadow": 0o640,
        "bin/tool": 0o4755,
        "big.bin": 0o600,
        "secret-dir": 0o500,
        "secret-dir/inside": 0o400,
        "tmp": 0o1777,
    }
    for rel, mode in modes.items():
        assert stat.S_IMODE((dest / rel).lstat().st_mode) == mode, rel
    assert stat.S_IMODE(dest.lstat().st_mode) == 0o755
    assert (dest / "etc/hostname").lstat().st_mtime == MTIME + 5
    assert (dest / "etc").lstat().st_mtime == MTIME  # set after its children
    assert dest.lstat().st_mtime == MTIME
    if ROOT:
        assert (dest / "etc/shadow").lstat().st_gid == 42
        bin_st = (dest / "bin").lstat()
        assert (bin_st.st_uid, bin_st.st_gid) == (1, 2)
    assert stats.files == 10  # type: ignore[attr-defined]
    assert stats.bytes == len(entries[7].data) + 4 + 8 + 10 + 1  # type: ignore[attr-defined]
    assert leftovers(tmp_path) == []


def test_media_types_and_magic_sniffing(tmp_path: Path) -> None:
    raw = tar_bytes([E("f", data=b"1")])
    blob = tmp_path / "blob"
    blob.write_bytes(gzip.compress(raw))
    # docker media type; and a "tar" media type whose blob is really gzip
    for i, media_type in enumerate([DOCKER_GZIP, TAR]):
        unpack_layer(blob, tmp_path / f"r{i}", media_type=media_type, allow_devices=False)
        assert (tmp_path / f"r{i}/f").read_bytes() == b"1"
    with pytest.raises(ImageError, match="not a layer media type"):
        unpack_layer(blob, tmp_path / "r9", media_type="application/json", allow_devices=False)


def test_concatenated_gzip_members_and_zstd_frames(tmp_path: Path) -> None:
    raw = tar_bytes([E("a", data=b"A" * 5000), E("b", data=b"B" * 7000)])
    half = len(raw) // 2
    expected = "sha256:" + hashlib.sha256(raw).hexdigest()
    gz = tmp_path / "multi.gz"
    gz.write_bytes(gzip.compress(raw[:half]) + gzip.compress(raw[half:]))
    zs = tmp_path / "multi.zst"
    c = zstandard.ZstdCompressor()
    zs.write_bytes(c.compress(raw[:half]) + c.compress(raw[half:]))
    for blob, mt in [(gz, GZIP), (zs, ZSTD)]:
        dest = tmp_path / f"out-{blob.suffix}"
        stats = unpack_layer(blob, dest, media_type=mt, allow_devices=False)
        assert stats.diff_id == expected
        assert (dest / "b").read_bytes() == b"B" * 7000


def test_symlinks_are_created_not_followed(tmp_path: Path, host: Path) -> None:
    dest, _ = unpack(
        tmp_path,
        [
            E("abs", "symlink", link=str(host / "secret")),
            E("rel", "symlink", link="../../outside/secret"),
            E("dir", "dir"),
            E("dir/up", "symlink", link=".."),
        ],
    )
    assert os.readlink(dest / "abs") == str(host / "secret")
    assert os.readlink(dest / "rel") == "../../outside/secret"
    assert os.readlink(dest / "dir/up") == ".."
    assert (dest / "abs").lstat().st_mtime == MTIME
    assert_host_intact(host)


def test_hardlinks_share_the_inode(tmp_path: Path, host: Path) -> None:
    dest, _ = unpack(
        tmp_path,
        [
            E("a/", "dir"),
            E("a/file", data=b"shared", mode=0o640),
            E("b/", "dir"),
            E("b/link", "link", link="a/file"),
            E("./c", "link", link="./a/file"),
            E("sym", "symlink", link=str(host / "secret")),
            E("sym-link", "link", link="sym"),  # a hard link to the symlink itself
        ],
    )
    a, b, c = ((dest / p).lstat() for p in ("a/file", "b/link", "c"))
    assert a.st_ino == b.st_ino == c.st_ino
    assert a.st_nlink == 3
    assert stat.S_ISLNK((dest / "sym-link").lstat().st_mode)
    assert os.readlink(dest / "sym-link") == str(host / "secret")
    assert_host_intact(host)


def test_xattrs_are_applied_and_overlay_ones_dropped(tmp_path: Path) -> None:
    dest, _ = unpack(
        tmp_path,
        [
            E("d/", "dir", xattrs={"user.dir": "dv"}),
            E("d/f", data=b"x", xattrs={"user.k": "v\u00e9", "trusted.overlay.opaque": "y"}),
        ],
    )
    assert os.getxattr(dest / "d/f", "user.k") == "v\u00e9".encode()
    assert os.getxattr(dest / "d", "user.dir") == b"dv"
    if ROOT:
        assert "trusted.overlay.opaque" not in os.listxattr(dest / "d/f")


@root_only
def test_security_capability_xattr_survives_chown(tmp_path: Path) -> None:
    cap = "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    dest, _ = unpack(
        tmp_path,
        [E("ping", data=b"\x7fELF", mode=0o755, uid=5, xattrs={"security.capability": cap})],
    )
    assert os.getxattr(dest / "ping", "security.capability") == cap.encode(
        "utf-8", "surrogateescape"
    )
    assert (dest / "ping").lstat().st_uid == 5


def test_devices_are_skipped_without_allow_devices(tmp_path: Path) -> None:
    dest, stats = unpack(
        tmp_path,
        [
            E("dev/", "dir"),
            E("dev/null", "char", dev=(1, 3), mode=0o666),
            E("dev/sda", "block", dev=(8, 0), mode=0o660),
            E("dev/pipe", "fifo", mode=0o600),
        ],
        allow_devices=False,
    )
    assert not (dest / "dev/null").exists()
    assert not (dest / "dev/sda").exists()
    assert stat.S_ISFIFO((dest / "dev/pipe").lstat().st_mode)
    assert stats.skipped_devices == 2  # type: ignore[attr-defined]


@root_only
def test_devices_are_created_with_allow_devices(tmp_path: Path) -> None:
    dest, stats = unpack(
        tmp_path,
        [E("null", "char", dev=(1, 3), mode=0o666), E("sda", "block", dev=(8, 0), mode=0o660)],
        allow_devices=True,
    )
    null, sda = (dest / "null").lstat(), (dest / "sda").lstat()
    assert (
        stat.S_ISCHR(null.st_mode) and os.major(null.st_rdev) == 1 and os.minor(null.st_rdev) == 3
    )
    assert stat.S_ISBLK(sda.st_mode) and os.major(sda.st_rdev) == 8
    assert stat.S_IMODE(null.st_mode) == 0o666
    assert stats.skipped_devices == 0  # type: ignore[attr-defined]


def test_long_names_gnu_and_pax_and_ustar_prefix(tmp_path: Path) -> None:
    deep = "/".join(["d" * 40] * 5)  # 204 characters
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT):
        name = f"{deep}/file" if fmt != tarfile.USTAR_FORMAT else "p" * 120 + "/file"
        dest, _ = unpack(
            tmp_path,
            [
                E(name, data=b"deep"),
                E("l", "symlink", link="x" * 150 if fmt != tarfile.USTAR_FORMAT else "x"),
            ],
            dest=tmp_path / f"r{fmt}",
            fmt=fmt,
        )
        assert (dest / name).read_bytes() == b"deep"


def test_large_ids_base256_and_pax(tmp_path: Path) -> None:
    if not ROOT:
        pytest.skip("ownership is applied only as root")
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        dest, _ = unpack(
            tmp_path,
            [E("f", data=b"1", uid=10_000_000, gid=3_000_000)],
            dest=tmp_path / f"r{fmt}",
            fmt=fmt,
        )
        st = (dest / "f").lstat()
        assert (st.st_uid, st.st_gid) == (10_000_000, 3_000_000)


def test_fractional_pax_mtime(tmp_path: Path) -> None:
    dest, _ = unpack(tmp_path, [E("f", data=b"1", mtime=MTIME + 0.25)])
    assert (dest / "f").lstat().st_mtime_ns == (MTIME * 1_000_000_000) + 250_000_000


def test_implicit_parent_directories(tmp_path: Path) -> None:
    dest, stats = unpack(tmp_path, [E("a/b/c/file", data=b"1")])
    assert (dest / "a/b/c/file").read_bytes() == b"1"
    assert stats.implicit_dirs == ("a", "a/b", "a/b/c")  # type: ignore[attr-defined]
    assert stat.S_IMODE((dest / "a/b").lstat().st_mode) == 0o755
    lower = tmp_path / "lower"
    (lower / "a/b").mkdir(parents=True)
    os.chmod(lower / "a/b", 0o1777)
    copy_parent_attributes(dest, stats.implicit_dirs, [lower])  # type: ignore[attr-defined]
    assert stat.S_IMODE((dest / "a/b").lstat().st_mode) == 0o1777
    assert stat.S_IMODE((dest / "a/b/c").lstat().st_mode) == 0o755


def test_duplicate_entries_last_one_wins(tmp_path: Path) -> None:
    dest, _ = unpack(
        tmp_path,
        [
            E("x", data=b"first"),
            E("x", data=b"second"),
            E("d", data=b"file"),
            E("d/", "dir"),
            E("d/f", data=b"in dir"),
            E("s", "symlink", link="x"),
            E("s", data=b"now a file"),
        ],
    )
    assert (dest / "x").read_bytes() == b"second"
    assert (dest / "d/f").read_bytes() == b"in dir"
    assert (dest / "s").read_bytes() == b"now a file"


def test_readonly_directory_is_filled_before_its_mode_is_set(tmp_path: Path) -> None:
    dest, _ = unpack(tmp_path, [E("ro/", "dir", mode=0o555), E("ro/f", data=b"1")])
    assert (dest / "ro/f").read_bytes() == b"1"
    assert stat.S_IMODE((dest / "ro").lstat().st_mode) == 0o555


# ------------------------------------------------------------------------ failures


def test_diff_id_mismatch_leaves_nothing(tmp_path: Path) -> None:
    blob, media_type, _ = write_layer(tmp_path / "blob", [E("f", data=b"1")])
    with pytest.raises(DigestMismatch, match="sha256:"):
        unpack_layer(
            blob,
            tmp_path / "rootfs",
            media_type=media_type,
            allow_devices=False,
            expected_diff_id="sha256:" + "0" * 64,
        )
    assert not (tmp_path / "rootfs").exists()
    assert leftovers(tmp_path) == []


def test_destination_must_be_empty_or_absent(tmp_path: Path) -> None:
    blob, media_type, _ = write_layer(tmp_path / "blob", [E("f", data=b"1")])
    empty = tmp_path / "empty"
    empty.mkdir()
    unpack_layer(blob, empty, media_type=media_type, allow_devices=False)
    assert (empty / "f").exists()
    with pytest.raises(ImageError, match="not empty"):
        unpack_layer(blob, empty, media_type=media_type, allow_devices=False)


@pytest.mark.parametrize("damage", ["truncate", "checksum", "gzip"])
def test_corrupt_layers_fail_cleanly(tmp_path: Path, damage: str) -> None:
    raw = bytearray(tar_bytes([E("f", data=os.urandom(20000)), E("g", data=b"2")]))
    if damage == "truncate":
        data = gzip.compress(bytes(raw[:5000]))
    elif damage == "checksum":
        raw[0] ^= 0x01  # the first header's name
        data = gzip.compress(bytes(raw))
    else:
        data = gzip.compress(bytes(raw))
        data = data[: len(data) // 2] + bytes(64) + data[len(data) // 2 + 64 :]
    blob = tmp_path / "blob"
    blob.write_bytes(data)
    with pytest.raises(ImageError, match="unpack "):
        unpack_layer(blob, tmp_path / "rootfs", media_type=GZIP, allow_devices=False)
    assert not (tmp_path / "rootfs").exists()
    assert leftovers(tmp_path) == []


def test_missing_blob(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="No such file"):
        unpack_layer(tmp_path / "nope", tmp_path / "r", media_type=GZIP, allow_devices=False)


# ------------------------------------------------------------------------ evil layers

EVIL: dict[str, list[E]] = {
    "dotdot": [E("../outside/evil", data=b"x")],
    "dotdot-inside": [E("a/", "dir"), E("a/../../outside/evil", data=b"x")],
    "absolute": [E("/etc/evil", data=b"x")],
    "symlink-then-write": [E("etc", "symlink", link="/etc"), E("etc/evil", data=b"x")],
    "symlink-to-host-then-write": [
        E("etc", "symlink", link="{host}"),
        E("etc/secret", data=b"pwned"),
    ],
    "symlink-dir-then-mkdir": [E("etc", "symlink", link="{host}"), E("etc/sub/", "dir")],
    "relative-symlink-out-then-write": [
        E("a/", "dir"),
        E("a/up", "symlink", link="../../outside"),
        E("a/up/secret", data=b"pwned"),
    ],
    "symlink-inside-then-write": [E("d/", "dir"), E("s", "symlink", link="d"), E("s/f", data=b"x")],
    "symlink-out-then-hardlink-through": [
        E("lnk", "symlink", link="{host}"),
        E("x", "link", link="lnk/secret"),
    ],
    "hardlink-dotdot": [E("x", "link", link="../outside/secret")],
    "hardlink-absolute": [E("x", "link", link="{host}/secret")],
    "hardlink-missing": [E("x", "link", link="nope")],
    "hardlink-to-dir": [E("d/", "dir"), E("x", "link", link="d")],
    "whiteout-dotdot": [E("a/", "dir"), E("a/.wh..", data=b"")],
    "whiteout-dot": [E(".wh..", data=b"")],
    "whiteout-through-symlink": [E("lnk", "symlink", link="{host}"), E("lnk/.wh.secret")],
    "opaque-through-symlink": [E("lnk", "symlink", link="{host}"), E("lnk/.wh..wh..opq")],
    "file-as-parent": [E("f", data=b"1"), E("f/g", data=b"2")],
}


def _evil(entries: list[E], host: Path) -> list[E]:
    out = []
    for e in entries:
        link = e.link.replace("{host}", str(host))
        out.append(E(e.name, e.kind, e.data, e.mode, link))
    return out


@pytest.mark.parametrize("mode", [Whiteouts.OVERLAY, Whiteouts.DELETE])
@pytest.mark.parametrize("case", sorted(EVIL))
def test_evil_layers_are_refused(tmp_path: Path, host: Path, case: str, mode: Whiteouts) -> None:
    entries = _evil(EVIL[case], host)
    dest = tmp_path / "rootfs"
    if mode is Whiteouts.DELETE:
        dest.mkdir()
        (dest / "keep").write_text("lower")
    with pytest.raises(UnsafeLayer, match="layer entry") as info:
        unpack(tmp_path, entries, dest=dest, whiteouts=mode)
    assert repr(entries[-1].name) in str(info.value)
    assert_host_intact(host)
    assert not Path("/etc/evil").exists()
    if mode is Whiteouts.OVERLAY:
        assert not dest.exists()
        assert leftovers(tmp_path) == []


@pytest.mark.parametrize("mode", [Whiteouts.OVERLAY, Whiteouts.DELETE])
def test_device_nodes_never_escape_and_are_refused_by_default(
    tmp_path: Path, host: Path, mode: Whiteouts
) -> None:
    dest = tmp_path / "rootfs"
    if mode is Whiteouts.DELETE:
        dest.mkdir()
    _, stats = unpack(
        tmp_path, [E("mem", "char", dev=(1, 1)), E("sda", "block", dev=(8, 0))], dest=dest,
        whiteouts=mode,
    )  # fmt: skip
    assert stats.skipped_devices == 2  # type: ignore[attr-defined]
    assert sorted(os.listdir(dest)) == []
    assert_host_intact(host)


# ------------------------------------------------------------------------ whiteouts


def test_delete_mode_whiteouts_and_opaque_directories(tmp_path: Path) -> None:
    lower = tmp_path / "rootfs"
    for rel in ("gone/sub/f", "keep/a", "opaque/old", "opaque/olddir/x", "file-to-dir"):
        (lower / rel).parent.mkdir(parents=True, exist_ok=True)
        (lower / rel).write_text("lower")
    (lower / "lnk").symlink_to("keep")
    _, stats = unpack(
        tmp_path,
        [
            E(".wh.gone"),
            E("keep/.wh.missing"),
            E("opaque/", "dir"),
            E("opaque/new", data=b"upper"),
            E("opaque/.wh..wh..opq"),  # after "new": order must not matter
            E("keep/b", data=b"upper"),
            E("file-to-dir/", "dir"),
            E("file-to-dir/x", data=b"upper"),
            E("lnk/f", data=b"upper"),  # lower symlink becomes a directory, as overlay shows
            E("keep/.wh.b"),  # whiteouts never hide the layer's own entries
            E(".wh..wh..plnk/123"),  # AUFS metadata: ignored
        ],
        dest=lower,
        whiteouts=Whiteouts.DELETE,
    )
    assert not (lower / "gone").exists()
    assert sorted(os.listdir(lower / "opaque")) == ["new"]
    assert (lower / "keep/a").read_text() == "lower"
    assert (lower / "keep/b").read_text() == "upper"
    assert (lower / "file-to-dir/x").read_text() == "upper"
    assert not (lower / "lnk").is_symlink()
    assert (lower / "lnk/f").read_text() == "upper"
    assert not (lower / "keep/f").exists()
    assert stats.whiteouts == 4  # type: ignore[attr-defined]


@root_only
def test_overlay_mode_whiteouts_and_opaque_directories(tmp_path: Path) -> None:
    dest, stats = unpack(
        tmp_path,
        [
            E("etc/", "dir"),
            E("etc/.wh.passwd", uid=3),
            E("etc/.wh..wh..opq"),
            E("usr/.wh.lib"),  # a whiteout under an implicit directory
            E("var/.wh.cache"),
            E("var/cache/", "dir"),  # replaces the lower dir: opaque
            E("var/cache/new", data=b"n"),
            E("opt/mine", data=b"m"),
            E("opt/.wh.mine"),  # the layer's own entry wins
        ],
    )
    wh = (dest / "etc/passwd").lstat()
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0
    assert wh.st_uid == 3
    assert stat.S_ISCHR((dest / "usr/lib").lstat().st_mode)
    assert os.getxattr(dest / "etc", "trusted.overlay.opaque") == b"y"
    assert os.getxattr(dest / "var/cache", "trusted.overlay.opaque") == b"y"
    assert "trusted.overlay.opaque" not in os.listxattr(dest / "var")
    assert (dest / "opt/mine").read_bytes() == b"m"
    assert not any(p.name.startswith(".wh.") for p in dest.rglob("*"))
    assert stats.whiteouts == 5  # type: ignore[attr-defined]


@root_only
def test_overlay_mode_whiteout_then_same_layer_file(tmp_path: Path) -> None:
    dest, _ = unpack(tmp_path, [E(".wh.x"), E("x", data=b"new")])
    assert (dest / "x").read_bytes() == b"new"


@pytest.mark.parametrize("mode", [Whiteouts.OVERLAY, Whiteouts.DELETE])
def test_directory_replaced_by_symlink_keeps_its_mode_off_the_host(
    tmp_path: Path, host: Path, mode: Whiteouts
) -> None:
    dest = tmp_path / "rootfs"
    if mode is Whiteouts.DELETE:
        dest.mkdir()
    os.chmod(host, 0o751)
    os.utime(host, ns=(123, 456))
    unpack(
        tmp_path,
        [
            E("a/", "dir", mode=0o700, mtime=1),
            E("a/b/c", data=b"1"),  # implicit a/b, also replaced below
            E("a", "symlink", link=str(host)),
            E("x/y/z", data=b"1"),
            E("x", "symlink", link=str(host)),
        ],
        dest=dest,
        whiteouts=mode,
    )
    assert os.readlink(dest / "a") == str(host)
    st = host.lstat()
    assert stat.S_IMODE(st.st_mode) == 0o751
    assert st.st_mtime_ns == 456
    assert_host_intact(host)


def test_delete_mode_opaque_then_recreated_subdirectories(tmp_path: Path) -> None:
    lower = tmp_path / "rootfs"
    (lower / "o/d/sub").mkdir(parents=True)
    (lower / "o/d/sub/old").write_text("lower")
    unpack(
        tmp_path,
        [E("o/d/sub/keep", data=b"k"), E("o/.wh..wh..opq"), E("o/d/sub/new", data=b"n")],
        dest=lower,
        whiteouts=Whiteouts.DELETE,
    )
    assert sorted(os.listdir(lower / "o/d/sub")) == ["keep", "new"]
    (lower / "p/q").mkdir(parents=True)
    (lower / "p/q/old").write_text("lower")
    unpack(
        tmp_path,
        [E("p/q/sub/", "dir"), E("p/.wh..wh..opq"), E("p/q/sub/f", data=b"n")],
        dest=lower,
        whiteouts=Whiteouts.DELETE,
    )
    assert sorted(os.listdir(lower / "p/q")) == ["sub"]


def test_copy_parent_attributes_follows_overlay_rules(tmp_path: Path, host: Path) -> None:
    dest = tmp_path / "up"
    (dest / "a/b").mkdir(parents=True)
    (dest / "s/t").mkdir(parents=True)
    (dest / "w").mkdir()
    near, far = tmp_path / "near", tmp_path / "far"
    near.mkdir()
    (far / "a/b").mkdir(parents=True)
    os.chmod(far / "a/b", 0o700)
    (near / "w").write_text("a file hides the deeper directory")
    (far / "w").mkdir(parents=True)
    os.chmod(far / "w", 0o700)
    (near / "s").symlink_to(host)  # never followed: host has no "t", but a symlink is a stop
    (host / "t").mkdir()
    try:
        copy_parent_attributes(dest, ["a", "a/b", "s", "s/t", "w", "gone"], [near, far])
    finally:
        (host / "t").rmdir()
    assert stat.S_IMODE((dest / "a/b").lstat().st_mode) == 0o700  # from far
    assert stat.S_IMODE((dest / "w").lstat().st_mode) == 0o755  # near hides far
    assert stat.S_IMODE((dest / "s/t").lstat().st_mode) == 0o755
