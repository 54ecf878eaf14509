"""Apply one OCI/Docker image layer (a tar changeset, maybe gzip or zstd) to a directory.

What it owns: decompressing and reading the tar stream, applying whiteouts and opaque
directories, and refusing every entry that would write outside the destination. What
it doesn't: which directory a layer goes to (images/snapshots/), fetching or verifying
blobs (images/content.py), mounting (runtime/).

Two whiteout modes (OCI image-spec layer.md, "Whiteouts"):

- ``Whiteouts.OVERLAY``: the layer becomes an overlayfs upper directory on its own
  (``dest`` absent or empty). ``.wh.<name>`` becomes a 0/0 character device (mode 0,
  owned as the marker entry), ``.wh..wh..opq`` becomes ``trusted.overlay.opaque=y`` on
  its directory (needs CAP_SYS_ADMIN), and a directory that replaces a whiteout of the
  same layer is made opaque too. The tree is built in a temporary directory next to
  ``dest`` and renamed onto it on success, removed on failure.
- ``Whiteouts.DELETE``: ``dest`` already holds the merged tree of the lower layers (the
  copy snapshotter); whiteouts delete from it, an opaque marker deletes every child
  this layer did not write. The layer is applied in place: on failure the caller
  discards the (active) snapshot. A lower non-directory where this layer needs a
  directory is replaced by one, so the merged tree is what overlayfs would show.

Whiteouts only hide what lower layers wrote: an entry of the same layer wins over a
whiteout of the same path whatever their order in the tar.

Safety rules, each failing with UnsafeLayer naming the entry: absolute names and any
``..`` component; a parent component that is a symlink or another non-directory written
by this layer (the layer starts from an empty tree in OVERLAY mode, so every symlink in
it was planted by the layer itself); a hard link whose target is absolute, has ``..``,
runs through such a symlink, is missing or is a directory; whiteout names that name
``.`` or ``..``. Symlinks themselves may point anywhere: they are created, never
followed (final components are made with O_EXCL/O_NOFOLLOW, mkdir, mknod, symlink and
link without AT_SYMLINK_FOLLOW). ``trusted.overlay.*``/``user.overlay.*`` xattrs in a
layer are dropped: they would steer overlayfs. Character/block devices are created only
with ``allow_devices`` (else counted in ``LayerStats.skipped_devices``); FIFOs always.
Ownership is applied only when running as root (as GNU tar), as are trusted.* xattrs.

Performance: the tar format is parsed here rather than with :mod:`tarfile`, whose
per-member cost (~100 us) dominated layers of small files. A regular file costs open,
write, futimens and close, plus fchown/fchmod only when the owner or mode differs from
what creation gave it (the umask is probed once per layer). Decompression and the
sha256 of the uncompressed stream (the diff id) run in a helper thread (zlib,
zstandard and hashlib release the GIL), overlapping with the file writes, so several
layers can be unpacked at once in threads (images/layers.py does, during pulls;
``copy_parent_attributes`` then finishes their implicit directories once the parents
exist). zstd uses the ``zstandard`` package (in-process, releases the GIL, no pipes or
child processes to reap) rather than the ``zstd`` binary. Compression is detected
from the blob's magic bytes, as containerd does; the media type must name a layer.

The module is long (streams, tar headers, applying: one section each) because the
reader and the applier share private types on the per-entry hot path; the stream and
header sections are the seam if it grows further.
"""

from __future__ import annotations

import enum
import errno
import hashlib
import logging
import os
import queue
import shutil
import stat
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from images.errors import DigestMismatch, ImageError, UnsafeLayer

log = logging.getLogger(__name__)

LAYER_MEDIA_TYPES = frozenset(
    {
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.diff.tar",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    }
)

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
OPAQUE_MARKER = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"

_READ_SIZE = 1 << 20  # compressed bytes read at a time
_CHUNK = 1 << 20  # most decompressed bytes handed over at a time
_QUEUE_DEPTH = 8
_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
_NUL_TO_SPACE = bytes.maketrans(b"\0", b" ")
_META_TYPES = frozenset((b"x", b"g", b"L", b"K"))
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_DROPPED_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class Whiteouts(enum.Enum):
    """How whiteout entries are applied; see the module docstring."""

    OVERLAY = "overlay"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class LayerStats:
    """What applying one layer did. ``files`` counts entries created (any type, the
    root entry and whiteouts excluded); ``bytes`` is the regular-file content written;
    ``diff_id`` is the sha256 of the uncompressed tar; ``implicit_dirs`` lists the
    directories created without an entry of their own (see copy_parent_attributes)."""

    files: int
    bytes: int
    diff_id: str = ""
    whiteouts: int = 0
    skipped_devices: int = 0
    implicit_dirs: tuple[str, ...] = ()


# ---------------------------------------------------------------------------- streams


def _open_compressed_chunks(f: BinaryIO) -> Iterator[bytes]:
    """Decompressed bytes of ``f`` (plain tar, gzip or zstd, by magic), in chunks."""
    head = f.read(4)
    f.seek(0)
    if head.startswith(_GZIP_MAGIC):
        return _gunzip(f)
    if head == _ZSTD_MAGIC:
        return _unzstd(f)
    return _plain(f)


def _plain(f: BinaryIO) -> Iterator[bytes]:
    while chunk := f.read(_CHUNK):
        yield chunk


def _gunzip(f: BinaryIO) -> Iterator[bytes]:
    # zlib directly, not gzip.GzipFile: no Python-level buffering. Members may be
    # concatenated (RFC 1952): start a new decompressor on what follows one.
    d = zlib.decompressobj(zlib.MAX_WBITS | 16)
    data = b""
    while True:
        if not data:
            data = f.read(_READ_SIZE)
            if not data:
                break
        out = d.decompress(data, _CHUNK)
        if out:
            yield out
        data = d.unconsumed_tail
        if d.eof:
            data = d.unused_data + data
            if not data:
                data = f.read(_READ_SIZE)
                if not data:
                    return
            if not data.startswith(_GZIP_MAGIC[:1]):
                return  # trailing zero padding after the last member, as gzip(1) allows
            d = zlib.decompressobj(zlib.MAX_WBITS | 16)
    if not d.eof:
        raise ImageError("truncated gzip stream")


def _unzstd(f: BinaryIO) -> Iterator[bytes]:
    import zstandard  # only zstd layers pay for the import

    try:
        reader = zstandard.ZstdDecompressor().stream_reader(
            f, read_size=_READ_SIZE, read_across_frames=True, closefd=False
        )
        with reader:
            while chunk := reader.read(_CHUNK):
                yield chunk
    except zstandard.ZstdError as e:
        raise ImageError(f"corrupt zstd stream: {e}") from e


class _Pump:
    """Runs decompression and hashing in a helper thread; the caller takes chunks.

    The thread stops when the stream ends, fails (the error is re-raised in the caller)
    or the caller calls close() (on success or failure, always)."""

    def __init__(self, blob: Path) -> None:
        self._blob = blob
        self._q: queue.Queue[bytes | BaseException | None] = queue.Queue(_QUEUE_DEPTH)
        self._stop = threading.Event()
        self._hash = hashlib.sha256()
        self._thread = threading.Thread(target=self._run, name="unpack-pump", daemon=True)
        self._thread.start()

    def _put(self, item: bytes | BaseException | None) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            with open(self._blob, "rb") as f:
                for chunk in _open_compressed_chunks(f):
                    self._hash.update(chunk)
                    if not self._put(chunk):
                        return
            self._put(None)
        except zlib.error as e:
            self._put(ImageError(f"corrupt gzip stream: {e}"))
        except BaseException as e:  # handed to the consumer, which re-raises it
            self._put(e)

    def get(self) -> bytes:
        """The next chunk; b"" at the end; the producer's error, raised."""
        item = self._q.get()
        if item is None or isinstance(item, BaseException):
            self._q.put(item)  # the last item: later calls see it again
            if item is None:
                return b""
            raise item
        return item

    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class _Reader:
    """Blocks and file bodies of the uncompressed tar, over the pump's chunks."""

    __slots__ = ("_buf", "_pos", "_src")

    def __init__(self, src: _Pump) -> None:
        self._src = src
        self._buf = b""
        self._pos = 0

    def _fill(self, n: int) -> bool:
        """Make at least n bytes available from _pos; False at end of stream."""
        parts = [self._buf[self._pos :]]
        have = len(parts[0])
        while have < n:
            chunk = self._src.get()
            if not chunk:
                self._buf = b"".join(parts)
                self._pos = 0
                return False
            parts.append(chunk)
            have += len(chunk)
        self._buf = b"".join(parts)
        self._pos = 0
        return True

    def read(self, n: int) -> bytes:
        pos = self._pos
        if len(self._buf) - pos < n and not self._fill(n):
            raise ImageError("truncated tar stream")
        pos = self._pos
        self._pos = pos + n
        return self._buf[pos : pos + n]

    def block(self) -> bytes | None:
        """The next 512-byte header block; None at end of stream."""
        pos = self._pos
        if len(self._buf) - pos < _BLOCK:
            if not self._fill(_BLOCK):
                if len(self._buf) - self._pos == 0:
                    return None
                raise ImageError("truncated tar stream")
            pos = self._pos
        self._pos = pos + _BLOCK
        return self._buf[pos : pos + _BLOCK]

    def copy(self, fd: int, size: int) -> None:
        """Write the next ``size`` bytes to fd and skip the block padding."""
        padded = (size + _BLOCK - 1) & ~(_BLOCK - 1)
        pos = self._pos
        if len(self._buf) - pos >= padded:  # all in the buffer: the common case
            written = os.write(fd, memoryview(self._buf)[pos : pos + size])
            if written == size:
                self._pos = pos + padded
                return
            self._pos = pos + written
            size -= written
            padded -= written
        while size:
            avail = len(self._buf) - self._pos
            if avail == 0:
                chunk = self._src.get()
                if not chunk:
                    raise ImageError("truncated tar stream")
                self._buf, self._pos = chunk, 0
                avail = len(chunk)
            n = min(avail, size)
            view = memoryview(self._buf)[self._pos : self._pos + n]
            while view:
                written = os.write(fd, view)
                view = view[written:]
            self._pos += n
            size -= n
            padded -= n
        self.skip(padded)

    def skip(self, n: int) -> None:
        while n:
            avail = len(self._buf) - self._pos
            if avail >= n:
                self._pos += n
                return
            n -= avail
            self._buf, self._pos = self._src.get(), 0
            if not self._buf:
                raise ImageError("truncated tar stream")

    def drain(self) -> None:
        """Consume the rest of the stream (so the diff id covers all of it)."""
        self._buf, self._pos = b"", 0
        while self._src.get():
            pass


# ---------------------------------------------------------------------------- headers


@dataclass(slots=True)
class _Entry:
    name: str
    type: bytes
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    linkname: str
    devmajor: int
    devminor: int
    xattrs: dict[str, bytes] = field(default_factory=dict)


def _num(field_: bytes) -> int:
    if field_ and field_[0] & 0x80:  # base-256 (GNU/star) for large values
        if field_[0] == 0xFF:  # negative: two's complement over the whole field
            return int.from_bytes(field_, "big", signed=True)
        return int.from_bytes(bytes([field_[0] & 0x7F]) + field_[1:], "big")
    field_ = field_.strip(b" \0")
    if not field_:
        return 0
    nul = field_.find(b"\0")
    if nul >= 0:
        field_ = field_[:nul].rstrip()
    try:
        return int(field_, 8)
    except ValueError:
        raise ImageError(f"bad numeric field {field_!r} in tar header") from None


def _str(field_: bytes) -> str:
    return field_.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _parse_pax(data: bytes) -> dict[str, bytes]:
    records: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            break
        try:
            length = int(data[pos:space])
        except ValueError:
            raise ImageError("bad pax extended header") from None
        if length <= 0 or pos + length > len(data):
            raise ImageError("bad pax extended header")
        record = data[space + 1 : pos + length - 1]  # without the trailing newline
        key, eq, value = record.partition(b"=")
        if not eq:
            raise ImageError("bad pax extended header")
        records[key.decode("utf-8", "surrogateescape")] = value
        pos += length
    return records


def _mtime_ns(value: bytes) -> int:
    whole, _, frac = value.partition(b".")
    ns = int(whole) * 1_000_000_000
    if frac:
        digits = (frac + b"000000000")[:9]
        ns += int(digits) if not whole.startswith(b"-") else -int(digits)
    return ns


def _read_entries(reader: _Reader) -> Iterator[_Entry]:
    """Entries of the tar stream with pax and GNU long-name records folded in."""
    global_pax: dict[str, bytes] = {}
    pax: dict[str, bytes] = {}
    long_name: str | None = None
    long_link: str | None = None
    while True:
        hdr = reader.block()
        if hdr is None:
            return
        if hdr == _ZERO_BLOCK:  # end-of-archive marker
            reader.drain()
            return
        nums = hdr[100:157].translate(_NUL_TO_SPACE)
        try:  # fast path: every numeric field in octal digits
            mode = int(nums[0:8], 8)
            uid = int(nums[8:16], 8)
            gid = int(nums[16:24], 8)
            size = int(nums[24:36], 8)
            mtime = int(nums[36:48], 8)
            chksum = int(nums[48:56], 8)
        except ValueError:  # base-256 or empty fields
            mode, uid, gid = _num(hdr[100:108]), _num(hdr[108:116]), _num(hdr[116:124])
            size, mtime, chksum = _num(hdr[124:136]), _num(hdr[136:148]), _num(hdr[148:156])
        if chksum != sum(hdr) - sum(hdr[148:156]) + 256:
            raise ImageError("bad tar header checksum")
        typ = hdr[156:157]
        if typ in _META_TYPES:
            if size > 64 << 20:
                raise ImageError("oversized tar extended header")
            data = reader.read((size + _BLOCK - 1) & ~(_BLOCK - 1))[:size]
            if typ == b"x":
                pax = _parse_pax(data)
            elif typ == b"g":
                global_pax.update(_parse_pax(data))
            elif typ == b"L":
                long_name = _str(data)
            else:
                long_link = _str(data)
            continue
        if typ in (b"S", b"M", b"V") or "GNU.sparse.major" in pax or "GNU.sparse.size" in pax:
            if typ == b"V":  # volume label: nothing to extract
                reader.skip((size + _BLOCK - 1) & ~(_BLOCK - 1))
                continue
            raise ImageError("sparse and multi-volume tar entries are not supported")
        records = {**global_pax, **pax} if global_pax else pax
        if long_name is not None:
            name = long_name
        elif "path" in records:
            name = records["path"].decode("utf-8", "surrogateescape")
        else:
            name = hdr[0:100].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            if hdr[345] and hdr[257:263] == b"ustar\0":
                name = _str(hdr[345:500]) + "/" + name
        if long_link is not None:
            linkname = long_link
        elif "linkpath" in records:
            linkname = records["linkpath"].decode("utf-8", "surrogateescape")
        elif hdr[157]:
            linkname = _str(hdr[157:257])
        else:
            linkname = ""
        entry = _Entry(
            name=name,
            type=b"0" if typ in (b"\0", b"7") else typ,
            mode=mode & 0o7777,
            uid=uid,
            gid=gid,
            size=size,
            mtime_ns=mtime * 1_000_000_000,
            linkname=linkname,
            devmajor=_num(hdr[329:337]) if typ in (b"3", b"4") else 0,
            devminor=_num(hdr[337:345]) if typ in (b"3", b"4") else 0,
        )
        if records:
            _apply_pax(entry, records)
        pax = {}
        long_name = long_link = None
        yield entry


def _apply_pax(entry: _Entry, records: dict[str, bytes]) -> None:
    try:
        if "size" in records:
            entry.size = int(records["size"])
        if "uid" in records:
            entry.uid = int(records["uid"])
        if "gid" in records:
            entry.gid = int(records["gid"])
        if "mtime" in records:
            entry.mtime_ns = _mtime_ns(records["mtime"])
    except ValueError:
        raise ImageError(f"bad pax record for {entry.name!r}") from None
    for key, value in records.items():
        if key.startswith("SCHILY.xattr."):
            entry.xattrs[key[len("SCHILY.xattr.") :]] = value


# ---------------------------------------------------------------------------- applying


def _clean(name: str) -> str | None:
    """The entry name relative to the layer root ("" for the root); None if unsafe."""
    if name.startswith("/"):
        return None
    if "/." not in "/" + name and "//" not in name:
        return name.rstrip("/")
    parts = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            return None
        parts.append(part)
    return "/".join(parts)


class _Applier:
    """State of one layer being applied: what this layer created, and where."""

    def __init__(self, root: str, *, mode: Whiteouts, allow_devices: bool, fresh: bool) -> None:
        self.root = root
        self.mode = mode
        self.allow_devices = allow_devices
        self.fresh = fresh  # root started empty: no lower content to consider
        self.as_root = os.geteuid() == 0
        self.euid, self.egid = os.geteuid(), os.getegid()
        self.umask = 0o777 if not fresh else _umask_of(root)
        self.dirs: set[str] = {""}  # verified real directories
        self.nondirs: dict[str, bytes] = {}  # non-directories this layer wrote: type
        self.written: set[str] = set()  # every path this layer wrote
        self.whited: set[str] = set()  # OVERLAY: whiteout devices this layer made
        self.dir_attrs: list[tuple[str, _Entry]] = []  # (rel, entry) of directory entries
        self.implicit: list[str] = []
        self.root_entry: _Entry | None = None
        self.files = 0
        self.bytes = 0
        self.whiteouts = 0
        self.skipped_devices = 0

    # -- paths

    def _unsafe(self, entry: _Entry, why: str) -> UnsafeLayer:
        return UnsafeLayer(f"layer entry {entry.name!r}: {why}")

    def _parent_dirs(self, entry: _Entry, rel: str, *, create: bool) -> bool:
        """Make sure every component of ``rel`` is a real directory.

        With create, missing components are made (implicit directories); without it,
        False is returned when one is missing. Non-directories this layer wrote in the
        way are refused; lower-layer ones (DELETE mode) are replaced by directories."""
        if rel in self.dirs:
            return True
        path = ""
        for part in rel.split("/"):
            path = f"{path}/{part}" if path else part
            if path in self.dirs:
                continue
            kind = self.nondirs.get(path)
            if kind is not None:
                if kind == b"2":
                    raise self._unsafe(entry, f"path goes through symlink {path!r}")
                raise self._unsafe(entry, f"path goes through non-directory {path!r}")
            full = f"{self.root}/{path}"
            if path in self.whited:  # a whiteout of this layer, now a directory
                if not create:
                    return False
                os.unlink(full)
                self.whited.discard(path)
                self._mkdir_implicit(path, full)
                self._set_opaque(full)
                continue
            if not self.fresh:
                try:
                    st = os.lstat(full)
                except FileNotFoundError:
                    pass
                else:
                    if stat.S_ISDIR(st.st_mode):
                        self.dirs.add(path)
                        continue
                    if not create:
                        return False
                    os.unlink(full)  # lower non-directory: overlayfs would hide it
            if not create:
                return False
            self._mkdir_implicit(path, full)
        return True

    def _mkdir_implicit(self, path: str, full: str) -> None:
        os.mkdir(full, 0o755)
        self.dirs.add(path)
        self.written.add(path)
        self.implicit.append(path)

    def _set_opaque(self, full: str) -> None:
        try:
            os.setxattr(full, OVERLAY_OPAQUE_XATTR, b"y", follow_symlinks=False)
        except OSError as e:
            raise ImageError(
                f"mark {full} opaque: {errno.errorcode.get(e.errno or 0, e)}"
                " (overlay whiteouts need CAP_SYS_ADMIN)"
            ) from e

    def _clear(self, full: str, rel: str, *, keep_dir: bool) -> bool:
        """Remove what is at ``full`` so an entry can take its place. Returns True
        when it is a directory that was kept (directory over directory: merge)."""
        st = os.lstat(full)
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            shutil.rmtree(full)
            self._forget(rel)
        else:
            os.unlink(full)
            self.nondirs.pop(rel, None)
        return False

    def _forget(self, rel: str) -> None:
        """A directory was removed: forget it and everything known below it."""
        prefix = rel + "/"
        self.dirs = {d for d in self.dirs if d != rel and not d.startswith(prefix)}
        self.nondirs = {k: v for k, v in self.nondirs.items() if not k.startswith(prefix)}
        self.nondirs.pop(rel, None)

    # -- entries

    def apply(self, entry: _Entry, reader: _Reader) -> None:
        rel = _clean(entry.name)
        if rel is None:
            raise self._unsafe(entry, "absolute path or '..' component")
        typ = entry.type
        if rel == "":
            if typ == b"5":
                self.root_entry = entry
            reader.skip((entry.size + _BLOCK - 1) & ~(_BLOCK - 1))
            return
        parent, _, base = rel.rpartition("/")
        if WHITEOUT_PREFIX in rel:
            if WHITEOUT_META_PREFIX in parent and any(
                p.startswith(WHITEOUT_META_PREFIX) for p in parent.split("/")
            ):
                log.debug("skip aufs metadata entry %s", entry.name)
                reader.skip((entry.size + _BLOCK - 1) & ~(_BLOCK - 1))
                return
            if base.startswith(WHITEOUT_PREFIX):
                reader.skip((entry.size + _BLOCK - 1) & ~(_BLOCK - 1))
                self._whiteout(entry, parent, base)
                return
        if parent not in self.dirs:
            self._parent_dirs(entry, parent, create=True)
        full = f"{self.root}/{rel}"
        if typ == b"0":
            self._regular(entry, rel, full, reader)
            return
        if entry.size:
            reader.skip((entry.size + _BLOCK - 1) & ~(_BLOCK - 1))
        if typ == b"5":
            self._directory(entry, rel, full)
        elif typ == b"2":
            self._create(entry, rel, full, lambda: os.symlink(entry.linkname, full))
            self._attrs_path(entry, full, symlink=True)
        elif typ == b"1":
            self._hardlink(entry, rel, full)
        elif typ in (b"3", b"4"):
            if not self.allow_devices:
                self.skipped_devices += 1
                log.debug("skip device %s", entry.name)
                return
            kind = stat.S_IFCHR if typ == b"3" else stat.S_IFBLK
            dev = os.makedev(entry.devmajor, entry.devminor)
            self._create(entry, rel, full, lambda: os.mknod(full, kind | 0o600, dev))
            self._attrs_path(entry, full, symlink=False)
        elif typ == b"6":
            self._create(entry, rel, full, lambda: os.mkfifo(full, 0o600))
            self._attrs_path(entry, full, symlink=False)
        else:
            raise ImageError(f"layer entry {entry.name!r}: unsupported tar type {typ!r}")

    def _create(self, entry: _Entry, rel: str, full: str, make: Callable[[], None]) -> None:
        try:
            make()
        except FileExistsError:
            self._replaced(rel, full)
            make()
        self.nondirs[rel] = entry.type
        self.written.add(rel)
        self.files += 1

    def _replaced(self, rel: str, full: str) -> None:
        self._clear(full, rel, keep_dir=False)
        self.whited.discard(rel)

    def _regular(self, entry: _Entry, rel: str, full: str, reader: _Reader) -> None:
        mode = entry.mode
        # Fresh trees have no setgid directories while being filled, so a new file
        # is owned by our euid/egid and open() applies mode & ~umask: fchown and
        # fchmod are needed only when that is not already right.
        chown = self.as_root and (
            not self.fresh or entry.uid != self.euid or entry.gid != self.egid
        )
        chmod = chown or not self.fresh or bool(mode & self.umask) or bool(mode & 0o7000)
        try:
            fd = os.open(full, _OPEN_FLAGS, 0o600 if chmod else mode)
        except FileExistsError:
            self._replaced(rel, full)
            fd = os.open(full, _OPEN_FLAGS, 0o600 if chmod else mode)
        try:
            if entry.size:
                reader.copy(fd, entry.size)
            if chown:
                os.fchown(fd, entry.uid, entry.gid)
            if entry.xattrs:
                self._xattrs(entry, fd)
            if chmod:
                os.fchmod(fd, mode)
            os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))
        finally:
            os.close(fd)
        self.nondirs[rel] = b"0"
        self.written.add(rel)
        self.files += 1
        self.bytes += entry.size

    def _directory(self, entry: _Entry, rel: str, full: str) -> None:
        try:
            os.mkdir(full, 0o700)
        except FileExistsError:
            was_whiteout = rel in self.whited
            if not self._clear(full, rel, keep_dir=True):
                os.mkdir(full, 0o700)
            if was_whiteout:  # replaces a lower directory: hide its content
                self.whited.discard(rel)
                self._set_opaque(full)
        self.dirs.add(rel)
        self.written.add(rel)
        self.files += 1
        if self.as_root:
            os.chown(full, entry.uid, entry.gid, follow_symlinks=False)
        if entry.xattrs:
            self._xattrs(entry, full)
        self.dir_attrs.append((rel, entry))  # mode and mtime once its children exist

    def _hardlink(self, entry: _Entry, rel: str, full: str) -> None:
        target = _clean(entry.linkname)
        if not target:
            raise self._unsafe(entry, f"hard link to {entry.linkname!r} outside the layer")
        tparent = target.rpartition("/")[0]
        if not self._parent_dirs(entry, tparent, create=False):
            raise self._unsafe(entry, f"hard link target {entry.linkname!r} does not exist")
        tfull = f"{self.root}/{target}"
        try:
            st = os.lstat(tfull)
        except FileNotFoundError:
            raise self._unsafe(
                entry, f"hard link target {entry.linkname!r} does not exist"
            ) from None
        if stat.S_ISDIR(st.st_mode):
            raise self._unsafe(entry, f"hard link target {entry.linkname!r} is a directory")
        if target in self.whited:
            raise self._unsafe(entry, f"hard link target {entry.linkname!r} is a whiteout")
        if target == rel:
            return
        # follow_symlinks=False: link the symlink itself, never what it points to
        self._create(entry, rel, full, lambda: os.link(tfull, full, follow_symlinks=False))
        self.nondirs[rel] = self.nondirs.get(target, b"0")

    def _whiteout(self, entry: _Entry, parent: str, base: str) -> None:
        if base == OPAQUE_MARKER:
            self.whiteouts += 1
            if self.mode is Whiteouts.OVERLAY:
                self._parent_dirs(entry, parent, create=True)
                self._set_opaque(f"{self.root}/{parent}" if parent else self.root)
            elif self._parent_dirs(entry, parent, create=False):
                self._delete_lower_children(parent)
            return
        if base.startswith(WHITEOUT_META_PREFIX):
            log.debug("ignore whiteout meta entry %s", entry.name)
            return
        victim = base[len(WHITEOUT_PREFIX) :]
        if victim in ("", ".", ".."):
            raise self._unsafe(entry, "whiteout of '.' or '..'")
        rel = f"{parent}/{victim}" if parent else victim
        self.whiteouts += 1
        if rel in self.written:
            return  # the layer's own entry wins: whiteouts only hide lower layers
        if self.mode is Whiteouts.OVERLAY:
            self._parent_dirs(entry, parent, create=True)
            full = f"{self.root}/{rel}"
            try:
                os.mknod(full, stat.S_IFCHR, 0)
            except FileExistsError:
                return
            self.whited.add(rel)
            if self.as_root:
                os.chown(full, entry.uid, entry.gid, follow_symlinks=False)
            return
        if not self._parent_dirs(entry, parent, create=False):
            return  # nothing below there
        full = f"{self.root}/{rel}"
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(full)
            self._forget(rel)
        else:
            os.unlink(full)

    def _delete_lower_children(self, parent: str) -> None:
        """DELETE-mode opaque directory: remove what this layer did not write."""
        top = f"{self.root}/{parent}" if parent else self.root
        stack = [(top, parent)]
        while stack:
            full, rel = stack.pop()
            with os.scandir(full) as it:
                children = list(it)
            for child in children:
                crel = f"{rel}/{child.name}" if rel else child.name
                # kept: what this layer wrote, and directories it went through (a
                # layer's "a/b/f" without "a/" entries still has "a" in overlayfs)
                if crel in self.written or crel in self.dirs:
                    if child.is_dir(follow_symlinks=False):
                        stack.append((child.path, crel))
                    continue
                if child.is_dir(follow_symlinks=False):
                    shutil.rmtree(child.path)
                    self._forget(crel)
                else:
                    os.unlink(child.path)

    # -- attributes

    def _xattrs(self, entry: _Entry, target: int | str) -> None:
        for key, value in entry.xattrs.items():
            if key.startswith(_DROPPED_XATTR_PREFIXES):
                log.debug("drop xattr %s of %s", key, entry.name)
                continue
            try:
                if isinstance(target, int):
                    os.setxattr(target, key, value)
                else:
                    os.setxattr(target, key, value, follow_symlinks=False)
            except OSError as e:
                if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP) or (
                    e.errno == errno.EPERM and not self.as_root
                ):
                    log.warning("ignore xattr %s of %s: %s", key, entry.name, e.strerror)
                    continue
                raise ImageError(f"set xattr {key} on layer entry {entry.name!r}: {e}") from e

    def _attrs_path(self, entry: _Entry, full: str, *, symlink: bool) -> None:
        if self.as_root:
            os.chown(full, entry.uid, entry.gid, follow_symlinks=False)
        if entry.xattrs:
            self._xattrs(entry, full)
        if not symlink:
            os.chmod(full, entry.mode, follow_symlinks=False)
        os.utime(full, ns=(entry.mtime_ns, entry.mtime_ns), follow_symlinks=False)

    def finish(self) -> None:
        # Only paths still known as real directories: one replaced later in the layer
        # (by a symlink to the host, say) must not get the directory's mode.
        for rel in self.implicit:
            if rel in self.dirs:
                os.chmod(f"{self.root}/{rel}", 0o755, follow_symlinks=False)
        done: set[str] = set()
        for rel, entry in reversed(self.dir_attrs):
            if rel in self.dirs and rel not in done:  # the last entry of a path wins
                done.add(rel)
                full = f"{self.root}/{rel}"
                os.chmod(full, entry.mode, follow_symlinks=False)
                os.utime(full, ns=(entry.mtime_ns, entry.mtime_ns), follow_symlinks=False)
        root = self.root_entry
        if root is not None:
            if self.as_root:
                os.chown(self.root, root.uid, root.gid)
            if root.xattrs:
                self._xattrs(root, self.root)
            os.chmod(self.root, root.mode)
            os.utime(self.root, ns=(root.mtime_ns, root.mtime_ns))
        elif self.fresh:
            os.chmod(self.root, 0o755)


def _umask_of(fresh_root: str) -> int:
    """The process umask, read without changing it (os.umask would, for every
    thread): make a directory with mode 0777 in the fresh root and look."""
    probe = os.path.join(fresh_root, ".umask-probe")
    os.mkdir(probe, 0o777)
    try:
        return 0o777 & ~stat.S_IMODE(os.lstat(probe).st_mode)
    finally:
        os.rmdir(probe)


def _media_type_ok(media_type: str) -> bool:
    return media_type in LAYER_MEDIA_TYPES


def unpack_layer(
    blob: Path,
    dest: Path,
    *,
    media_type: str,
    allow_devices: bool,
    whiteouts: Whiteouts = Whiteouts.OVERLAY,
    expected_diff_id: str | None = None,
    parents: Sequence[Path] = (),
) -> LayerStats:
    """Apply the layer in ``blob`` to ``dest``; see the module docstring for the modes.

    ``expected_diff_id`` (the config's rootfs.diff_ids entry) is checked against the
    uncompressed stream before anything becomes visible at ``dest`` (OVERLAY mode);
    DigestMismatch otherwise. ``parents`` (lower layers' directories, nearest first)
    give implicit directories their attributes, as containerd's applier does."""
    if not _media_type_ok(media_type):
        raise ImageError(f"unpack {blob}: {media_type!r} is not a layer media type")
    dest = Path(dest)
    if whiteouts is Whiteouts.OVERLAY:
        return _unpack_fresh(
            blob,
            dest,
            allow_devices=allow_devices,
            expected_diff_id=expected_diff_id,
            parents=parents,
        )
    if not dest.is_dir():
        raise ImageError(f"unpack {blob}: {dest} is not a directory")
    stats = _apply(blob, str(dest), mode=whiteouts, allow_devices=allow_devices, fresh=False)
    _check_diff_id(blob, stats, expected_diff_id)
    if parents and stats.implicit_dirs:
        copy_parent_attributes(dest, stats.implicit_dirs, parents)
    return stats


def _check_diff_id(blob: Path, stats: LayerStats, expected: str | None) -> None:
    if expected is not None and stats.diff_id != expected:
        raise DigestMismatch(
            f"unpack {blob}: uncompressed layer is {stats.diff_id}, expected {expected}"
        )


def _unpack_fresh(
    blob: Path,
    dest: Path,
    *,
    allow_devices: bool,
    expected_diff_id: str | None,
    parents: Sequence[Path],
) -> LayerStats:
    try:
        if any(dest.iterdir()):
            raise ImageError(f"unpack {blob}: destination {dest} is not empty")
    except FileNotFoundError:
        pass
    except NotADirectoryError:
        raise ImageError(f"unpack {blob}: destination {dest} is not a directory") from None
    tmp = dest.parent / f".{dest.name}.unpack-{os.getpid()}-{os.urandom(4).hex()}"
    os.mkdir(tmp, 0o700)
    try:
        stats = _apply(
            blob, str(tmp), mode=Whiteouts.OVERLAY, allow_devices=allow_devices, fresh=True
        )
        _check_diff_id(blob, stats, expected_diff_id)
        if parents and stats.implicit_dirs:
            copy_parent_attributes(tmp, stats.implicit_dirs, parents)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return stats


def _apply(
    blob: Path, root: str, *, mode: Whiteouts, allow_devices: bool, fresh: bool
) -> LayerStats:
    applier = _Applier(root, mode=mode, allow_devices=allow_devices, fresh=fresh)
    pump = _Pump(blob)
    name = ""
    try:
        reader = _Reader(pump)
        for entry in _read_entries(reader):
            name = entry.name
            applier.apply(entry, reader)
        name = ""
        applier.finish()
    except ImageError as e:
        raise type(e)(f"unpack {blob}: {e}") from e
    except OSError as e:
        where = f"layer entry {name!r}: " if name else ""
        raise ImageError(f"unpack {blob}: {where}{e}") from e
    finally:
        pump.close()
    return LayerStats(
        files=applier.files,
        bytes=applier.bytes,
        diff_id=pump.digest(),
        whiteouts=applier.whiteouts,
        skipped_devices=applier.skipped_devices,
        implicit_dirs=tuple(applier.implicit),
    )


def copy_parent_attributes(dest: Path, rel_dirs: Sequence[str], parents: Sequence[Path]) -> None:
    """Give directories created without a tar entry the mode, owner and mtime the same
    directory has in the nearest lower layer (containerd's ``WithParents``); call it
    after a parallel unpack, once the parents exist."""
    for rel in rel_dirs:
        target = os.path.join(dest, rel)
        present, st = _lookup_dir(dest, rel)
        if st is None:
            continue  # replaced later in its layer
        for parent in parents:
            present, st = _lookup_dir(parent, rel)
            if not present:
                continue
            if st is None:
                break  # a non-directory (or whiteout) there hides the deeper layers
            if os.geteuid() == 0:
                os.chown(target, st.st_uid, st.st_gid, follow_symlinks=False)
            os.chmod(target, stat.S_IMODE(st.st_mode), follow_symlinks=False)
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
            break


def _lookup_dir(root: Path | str, rel: str) -> tuple[bool, os.stat_result | None]:
    """(whether something is at root/rel, its lstat if it is a real directory), never
    following a symlink on the way (one there counts as a non-directory)."""
    path = str(root)
    st = None
    for part in rel.split("/"):
        path = f"{path}/{part}"
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return False, None
        if not stat.S_ISDIR(st.st_mode):
            return True, None
    return True, st
