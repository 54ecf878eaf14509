"""Build small, real OCI images from the busybox-static binary into an OCI image
layout directory (``oci-layout``, ``index.json``, ``blobs/sha256``).

What it owns: writing reproducible gzip layers (sorted entries, fixed mtimes, fixed
owners, gzip header without name or time), image configs with correct ``diff_ids``,
manifests, and ``index.json`` entries tagged with ``org.opencontainers.image.ref.name``.
What it doesn't: pushing (skopeo does that; :func:`push` only runs it) and pulling.

The same inputs always give the same digests, so the busybox base layer is byte-identical
in every image built here: images that share it share one blob and one snapshot after a
pull, which is what the dedup tests rely on.

Images (:data:`IMAGES`): ``busybox`` (Cmd ``sh``), ``httpd`` (``busybox httpd -f -p 80 -h
/www``), ``nonroot`` (USER 1000:1000 with /etc/passwd and /etc/group entries),
``multilayer`` (four layers with whiteouts and an opaque dir; :data:`MULTILAYER_TREE`
is the merged tree a correct unpack gives) and ``pause`` (``/pause``, a small static
binary compiled here, waits for SIGTERM or SIGINT and reaps zombies).
:func:`build_index` writes an image index with linux/amd64 and linux/arm64 entries for
manifest-list tests.

The layer writer (:class:`Entry`, :meth:`Layout.add_layer`) is generic so tests and the
benchmark can build their own layers (random data, thousands of files, evil entries).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
REF_NAME = "org.opencontainers.image.ref.name"

# Fixed timestamps make layers and configs reproducible.
MTIME = 1_700_000_000
CREATED = "2023-11-14T22:13:20Z"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUSYBOX_CANDIDATES = (Path("/bin/busybox"), Path("/usr/bin/busybox"))

EntryKind = Literal["file", "dir", "symlink", "hardlink", "char", "fifo"]


@dataclass(frozen=True, slots=True)
class Entry:
    """One tar entry. ``data`` or ``source`` (a host file streamed in) for files;
    ``link`` for symlinks and hard links; ``devmajor``/``devminor`` for char devices."""

    path: str
    kind: EntryKind = "file"
    data: bytes = b""
    source: Path | None = None
    mode: int | None = None
    uid: int = 0
    gid: int = 0
    link: str = ""
    devmajor: int = 0
    devminor: int = 0
    xattrs: tuple[tuple[str, str], ...] = ()


def file(path: str, data: bytes | str, *, mode: int = 0o644, uid: int = 0, gid: int = 0) -> Entry:
    raw = data.encode() if isinstance(data, str) else data
    return Entry(path, "file", data=raw, mode=mode, uid=uid, gid=gid)


def directory(path: str, *, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(path, "dir", mode=mode, uid=uid, gid=gid)


def symlink(path: str, target: str) -> Entry:
    return Entry(path, "symlink", link=target, mode=0o777)


def hardlink(path: str, target: str) -> Entry:
    return Entry(path, "hardlink", link=target)


def whiteout(path: str) -> Entry:
    """A ``.wh.<name>`` entry deleting ``path`` from the layers below."""
    parent, _, name = path.strip("/").rpartition("/")
    return file(f"{parent}/.wh.{name}" if parent else f".wh.{name}", b"")


def opaque(directory_path: str) -> Entry:
    """A ``.wh..wh..opq`` entry hiding everything below ``directory_path`` in lower layers."""
    return file(f"{directory_path.strip('/')}/.wh..wh..opq", b"")


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    platform: dict[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform:
            out["platform"] = dict(self.platform)
        return out


@dataclass(frozen=True, slots=True)
class Layer:
    descriptor: Descriptor
    diff_id: str


class _Writable(Protocol):
    def write(self, data: bytes, /) -> Any: ...


class _HashingSink(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through to ``target``."""

    def __init__(self, target: _Writable) -> None:
        super().__init__()
        self._target = target
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.sha.update(view)
        self._target.write(bytes(view) if not isinstance(data, bytes) else data)
        self.size += len(view)
        return len(view)


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


class Layout:
    """An OCI image layout directory, created if missing. Writes are atomic: blobs go
    to a temporary file in ``blobs/sha256`` and are renamed to their digest;
    ``index.json`` is replaced by rename."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs" / "sha256"
        self.blobs.mkdir(parents=True, exist_ok=True)
        marker = self.root / "oci-layout"
        if not marker.exists():
            self._atomic_write(marker, canonical_json({"imageLayoutVersion": "1.0.0"}))
        if not (self.root / "index.json").exists():
            self._write_index({"schemaVersion": 2, "manifests": []})

    def blob_path(self, digest: str) -> Path:
        return self.blobs / digest.removeprefix("sha256:")

    def add_blob(self, data: bytes, media_type: str) -> Descriptor:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self.blob_path(digest)
        if not path.exists():
            self._atomic_write(path, data)
        return Descriptor(media_type, digest, len(data))

    def add_layer(
        self, entries: Iterable[Entry], *, compress: bool = True, level: int = 6
    ) -> Layer:
        """Write a tar layer (gzip unless ``compress`` is false) of ``entries``, sorted
        by path (hard links last, so their targets come first), and return its
        descriptor and diff id."""
        ordered = sorted(entries, key=lambda e: (e.kind == "hardlink", e.path.strip("/")))
        fd, tmp_name = tempfile.mkstemp(dir=self.blobs, prefix=".layer-")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as raw:
                compressed = _HashingSink(raw)
                if compress:
                    with gzip.GzipFile(
                        filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=level
                    ) as gz:
                        diff = _HashingSink(gz)
                        _write_tar(diff, ordered)
                else:
                    diff = _HashingSink(compressed)
                    _write_tar(diff, ordered)
                raw.flush()
                os.fsync(raw.fileno())
            os.chmod(tmp, 0o644)
            digest = "sha256:" + compressed.sha.hexdigest()
            final = self.blob_path(digest)
            if final.exists():
                tmp.unlink()
            else:
                tmp.replace(final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        media = MEDIA_LAYER_GZIP if compress else MEDIA_LAYER_TAR
        return Layer(Descriptor(media, digest, compressed.size), "sha256:" + diff.sha.hexdigest())

    def add_image(
        self,
        layers: Sequence[Layer],
        config: dict[str, Any],
        *,
        architecture: str = "amd64",
        variant: str | None = None,
        history: Sequence[str] = (),
    ) -> Descriptor:
        """Write the image config and manifest; return the manifest descriptor (with its
        platform set, ready to go into an index)."""
        image_config: dict[str, Any] = {
            "created": CREATED,
            "architecture": architecture,
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
            "history": [
                {"created": CREATED, "created_by": step, "comment": "kubeling images build"}
                for step in (history or [f"layer {i}" for i in range(len(layers))])
            ],
        }
        if variant:
            image_config["variant"] = variant
        config_desc = self.add_blob(canonical_json(image_config), MEDIA_CONFIG)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": config_desc.to_json(),
            "layers": [layer.descriptor.to_json() for layer in layers],
        }
        desc = self.add_blob(canonical_json(manifest), MEDIA_MANIFEST)
        platform = {"architecture": architecture, "os": "linux"}
        if variant:
            platform["variant"] = variant
        return Descriptor(desc.media_type, desc.digest, desc.size, platform=platform)

    def add_index(self, manifests: Sequence[Descriptor]) -> Descriptor:
        index = {
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [m.to_json() for m in manifests],
        }
        return self.add_blob(canonical_json(index), MEDIA_INDEX)

    def tag(self, descriptor: Descriptor, tag: str) -> None:
        """Point ``tag`` in index.json at ``descriptor`` (replacing an older entry)."""
        index = json.loads((self.root / "index.json").read_bytes())
        kept = [
            m for m in index.get("manifests", []) if m.get("annotations", {}).get(REF_NAME) != tag
        ]
        entry = Descriptor(descriptor.media_type, descriptor.digest, descriptor.size)
        kept.append({**entry.to_json(), "annotations": {REF_NAME: tag}})
        kept.sort(key=lambda m: m["annotations"][REF_NAME] if "annotations" in m else "")
        index["manifests"] = kept
        self._write_index(index)

    def tags(self) -> dict[str, str]:
        index = json.loads((self.root / "index.json").read_bytes())
        return {
            m["annotations"][REF_NAME]: m["digest"]
            for m in index.get("manifests", [])
            if REF_NAME in m.get("annotations", {})
        }

    def _write_index(self, index: dict[str, Any]) -> None:
        self._atomic_write(self.root / "index.json", json.dumps(index, indent=2).encode())

    @staticmethod
    def _atomic_write(path: Path, data: bytes) -> None:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp_name, 0o644)
            os.replace(tmp_name, path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise


def _write_tar(sink: _HashingSink, entries: Sequence[Entry]) -> None:
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.path.strip("/") + ("/" if entry.kind == "dir" else ""))
            info.mtime = MTIME
            info.uid, info.gid = entry.uid, entry.gid
            info.uname = info.gname = ""
            if entry.xattrs:
                info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in entry.xattrs}
            if entry.kind == "file":
                info.type = tarfile.REGTYPE
                info.mode = 0o644 if entry.mode is None else entry.mode
                if entry.source is not None:
                    info.size = entry.source.stat().st_size
                    with entry.source.open("rb") as src:
                        tar.addfile(info, src)
                else:
                    info.size = len(entry.data)
                    tar.addfile(info, io.BytesIO(entry.data))
                continue
            info.mode = {"dir": 0o755, "symlink": 0o777}.get(entry.kind, 0o644)
            if entry.mode is not None:
                info.mode = entry.mode
            if entry.kind == "dir":
                info.type = tarfile.DIRTYPE
            elif entry.kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, entry.link
            elif entry.kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, entry.link.strip("/")
            elif entry.kind == "char":
                info.type = tarfile.CHRTYPE
                info.devmajor, info.devminor = entry.devmajor, entry.devminor
            elif entry.kind == "fifo":
                info.type = tarfile.FIFOTYPE
            tar.addfile(info)


# ---- the images --------------------------------------------------------------------------


def find_busybox() -> Path:
    for candidate in BUSYBOX_CANDIDATES:
        if candidate.is_file():
            return candidate
    found = shutil.which("busybox")
    if found:
        return Path(found)
    raise FileNotFoundError("busybox-static not found (install the Debian package busybox-static)")


def busybox_applets(busybox: Path) -> list[str]:
    """Applet paths (``bin/sh``, ``usr/bin/env``, ...) as ``busybox --list-full`` gives."""
    out = subprocess.run(
        [str(busybox), "--list-full"], check=True, capture_output=True, text=True
    ).stdout
    return sorted({line.strip().strip("/") for line in out.splitlines() if line.strip()})


PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnobody:x:65534:\n"


def base_entries(busybox: Path | None = None) -> list[Entry]:
    """The busybox root filesystem shared by every image built here."""
    binary = busybox or find_busybox()
    dirs = [
        "bin",
        "dev",
        "etc",
        "home",
        "proc",
        "sbin",
        "sys",
        "usr",
        "usr/bin",
        "usr/sbin",
        "var",
        "var/run",
    ]
    entries = [directory(d) for d in dirs]
    entries += [directory("root", mode=0o700), directory("tmp", mode=0o1777)]
    entries.append(Entry("bin/busybox", "file", source=binary, mode=0o755))
    for applet in busybox_applets(binary):
        if applet == "bin/busybox":
            continue
        depth = applet.count("/")
        entries.append(symlink(applet, "../" * depth + "bin/busybox" if depth > 1 else "busybox"))
    entries += [
        file("etc/passwd", PASSWD),
        file("etc/group", GROUP),
        file("etc/hostname", "kubeling\n"),
        file("etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n"),
    ]
    return entries


def _config(cmd: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"Env": [DEFAULT_PATH], "WorkingDir": "/"}
    if cmd is not None:
        config["Cmd"] = cmd
    config.update(extra)
    return config


# kubeling's pause: the first process of a pod, holding its namespaces. It must be a
# single process (containers that share the pod's pid namespace see it, and a shell
# script's `sleep` child would show up in their `ps`), reap the zombies re-parented
# to it, and exit 0 on SIGTERM or SIGINT.
PAUSE_SOURCE = r"""
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void quit(int signum) { (void)signum; _exit(0); }

static void reap(int signum) {
    (void)signum;
    while (waitpid(-1, 0, WNOHANG) > 0) {
    }
}

int main(void) {
    struct sigaction action = {0};
    action.sa_handler = quit;
    sigaction(SIGTERM, &action, 0);
    sigaction(SIGINT, &action, 0);
    action.sa_handler = reap;
    action.sa_flags = SA_NOCLDSTOP | SA_RESTART;
    sigaction(SIGCHLD, &action, 0);
    for (;;)
        pause();
}
"""


@functools.cache
def compile_pause() -> bytes:
    """The pause binary: PAUSE_SOURCE compiled static with the host's C compiler
    (scripts/install installs gcc and the static libc)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise FileNotFoundError("building the pause image needs a C compiler (install gcc)")
    with tempfile.TemporaryDirectory(prefix="kubeling-pause-") as work:
        source, binary = Path(work) / "pause.c", Path(work) / "pause"
        source.write_text(PAUSE_SOURCE)
        result = subprocess.run(
            [compiler, "-static", "-Os", "-s", "-o", str(binary), str(source)],
            capture_output=True, text=True,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"compile the pause binary: {result.stderr.strip()}")
        return binary.read_bytes()


HTTPD_INDEX = "<html><body>hello from kubeling httpd</body></html>\n"

# The merged tree of the "multilayer" image below /data: path -> file content, or None
# for a directory; a path listed in MULTILAYER_ABSENT must not exist.
MULTILAYER_TREE: dict[str, str | None] = {
    "data": None,
    "data/keep.txt": "keep v2\n",
    "data/hard.txt": "hard\n",
    "data/hard-link.txt": "hard\n",
    "data/added.txt": "added in layer 2\n",
    "data/opaque": None,
    "data/opaque/new.txt": "new\n",
    "data/gone": None,
    "data/gone/again.txt": "recreated in layer 3\n",
    "data/sub": None,
    "data/sub/kept.txt": "kept\n",
}
MULTILAYER_SYMLINKS = {"data/link": "keep.txt"}
MULTILAYER_ABSENT = (
    "data/removed.txt",
    "data/opaque/old.txt",
    "data/opaque/olddir",
    "data/gone/file.txt",
    "data/sub/removed.txt",
)


def _multilayer_layers(layout: Layout, base: Layer) -> list[Layer]:
    layer1 = layout.add_layer(
        [
            directory("data"),
            file("data/keep.txt", "keep\n"),
            file("data/removed.txt", "removed\n"),
            file("data/hard.txt", "hard\n"),
            hardlink("data/hard-link.txt", "data/hard.txt"),
            symlink("data/link", "keep.txt"),
            directory("data/gone"),
            file("data/gone/file.txt", "gone\n"),
            directory("data/opaque"),
            file("data/opaque/old.txt", "old\n"),
            directory("data/opaque/olddir"),
            file("data/opaque/olddir/deep.txt", "deep\n"),
            directory("data/sub"),
            file("data/sub/kept.txt", "kept\n"),
            file("data/sub/removed.txt", "removed\n"),
        ]
    )
    layer2 = layout.add_layer(
        [
            directory("data"),
            whiteout("data/removed.txt"),
            whiteout("data/gone"),
            directory("data/opaque"),
            opaque("data/opaque"),
            file("data/opaque/new.txt", "new\n"),
            file("data/added.txt", "added in layer 2\n"),
            directory("data/sub"),
            whiteout("data/sub/removed.txt"),
        ]
    )
    layer3 = layout.add_layer(
        [
            directory("data"),
            file("data/keep.txt", "keep v2\n"),
            directory("data/gone"),
            file("data/gone/again.txt", "recreated in layer 3\n"),
        ]
    )
    return [base, layer1, layer2, layer3]


def _build(name: str, layout: Layout, base: Layer) -> Descriptor:
    if name == "busybox":
        return layout.add_image([base], _config(["sh"]), history=["busybox"])
    if name == "httpd":
        www = layout.add_layer([directory("www"), file("www/index.html", HTTPD_INDEX)])
        config = _config(
            ["busybox", "httpd", "-f", "-p", "80", "-h", "/www"],
            ExposedPorts={"80/tcp": {}},
            Labels={"org.opencontainers.image.title": "kubeling-httpd"},
        )
        return layout.add_image([base, www], config, history=["busybox", "www"])
    if name == "nonroot":
        users = layout.add_layer(
            [
                file("etc/passwd", PASSWD + "user:x:1000:1000:user:/home/user:/bin/sh\n"),
                file("etc/group", GROUP + "user:x:1000:\n"),
                directory("home/user", mode=0o750, uid=1000, gid=1000),
                file("home/user/.profile", "export PS1='$ '\n", uid=1000, gid=1000),
            ]
        )
        config = _config(["sh"], User="1000:1000", WorkingDir="/home/user")
        return layout.add_image([base, users], config, history=["busybox", "user 1000"])
    if name == "multilayer":
        layers = _multilayer_layers(layout, base)
        config = _config(["sh"], Volumes={"/data": {}}, Labels={"kubeling.test": "multilayer"})
        return layout.add_image(layers, config, history=["busybox", "data", "whiteouts", "v2"])
    if name == "pause":
        pause = layout.add_layer([file("pause", compile_pause(), mode=0o755)])
        entrypoint = {"Env": [DEFAULT_PATH], "Entrypoint": ["/pause"], "WorkingDir": "/"}
        return layout.add_image([base, pause], entrypoint, history=["busybox", "pause"])
    raise ValueError(f"unknown image {name!r}: choose from {', '.join(IMAGES)}")


IMAGES = ("busybox", "httpd", "nonroot", "multilayer", "pause")


def build_image(
    name: str, layout_dir: Path, tag: str | None = None, *, busybox: Path | None = None
) -> str:
    """Build image ``name`` into the OCI layout at ``layout_dir`` under ``tag`` (default:
    ``name``) and return the manifest digest."""
    if name not in IMAGES:
        raise ValueError(f"unknown image {name!r}: choose from {', '.join(IMAGES)}")
    layout = Layout(layout_dir)
    base = layout.add_layer(base_entries(busybox))
    desc = _build(name, layout, base)
    layout.tag(desc, tag or name)
    return desc.digest


def build_all(layout_dir: Path, *, busybox: Path | None = None) -> dict[str, str]:
    """Build every image in :data:`IMAGES`, tagged by name; return tag -> manifest digest."""
    layout = Layout(layout_dir)
    base = layout.add_layer(base_entries(busybox))
    out: dict[str, str] = {}
    for name in IMAGES:
        desc = _build(name, layout, base)
        layout.tag(desc, name)
        out[name] = desc.digest
    return out


PLATFORMS: tuple[tuple[str, str | None], ...] = (("amd64", None), ("arm64", "v8"))


def build_index(
    layout_dir: Path,
    tag: str = "multiarch",
    *,
    platforms: Sequence[tuple[str, str | None]] = PLATFORMS,
    busybox: Path | None = None,
) -> tuple[str, dict[str, str]]:
    """Build a busybox image per platform (each with /etc/arch naming it) and an OCI
    index over them tagged ``tag``. Return (index digest, architecture -> manifest
    digest). The non-amd64 images carry the amd64 busybox: they are for selection
    tests, not for running."""
    layout = Layout(layout_dir)
    base = layout.add_layer(base_entries(busybox))
    manifests: list[Descriptor] = []
    by_arch: dict[str, str] = {}
    for arch, variant in platforms:
        marker = layout.add_layer([file("etc/arch", f"{arch}\n")])
        desc = layout.add_image(
            [base, marker],
            _config(["sh"], Labels={"kubeling.test/arch": arch}),
            architecture=arch,
            variant=variant,
            history=["busybox", f"arch {arch}"],
        )
        manifests.append(desc)
        by_arch[arch] = desc.digest
    index = layout.add_index(manifests)
    layout.tag(index, tag)
    return index.digest, by_arch


def push(
    layout_dir: Path,
    tag: str,
    destination: str,
    *,
    insecure: bool = True,
    all_platforms: bool = False,
    manifest_format: str | None = None,
    run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
) -> None:
    """``skopeo copy oci:<layout>:<tag> docker://<destination>`` (``host:port/repo:tag``);
    ``manifest_format`` "v2s2" pushes a Docker schema 2 manifest instead of OCI."""
    argv = ["skopeo", "copy", "--quiet"]
    if all_platforms:
        argv.append("--all")
    if manifest_format:
        argv += ["--format", manifest_format]
    if insecure:
        argv.append("--dest-tls-verify=false")
    argv += [f"oci:{layout_dir}:{tag}", f"docker://{destination}"]
    result = run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        last = detail[-1] if detail else f"exit status {result.returncode}"
        raise RuntimeError(f"push {tag} to {destination}: {last}")
