"""What an import source holds: ``oci-archive:F[:ref]``, ``docker-archive:F[:ref]``,
``oci:DIR[:ref]``, a plain archive file (its type detected from its members), an OCI
layout directory, or a directory of archives (the air-gap case, as k3s imports
``/var/lib/rancher/k3s/agent/images``). Pure reading of index.json/manifest.json: the
copying is done by skopeo (images/store.py).

Names: an OCI entry's ``io.containerd.image.name`` annotation if present (containerd
exports), else its ``org.opencontainers.image.ref.name``; a docker archive's first
RepoTag. Both are normalised like any reference (``busybox`` ->
``docker.io/library/busybox:latest``); an entry whose name does not parse is imported
without a name.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from images.errors import ImageError, InvalidReference, NotFound
from images.reference import parse

#: (skopeo source string, name to record or None)
ImportSource = tuple[str, str | None]


def import_sources(source: str | Path) -> list[ImportSource]:
    """(skopeo source string, name to record) for everything ``source`` holds."""
    text = str(source)
    for transport in ("oci-archive:", "docker-archive:", "oci:"):
        if text.startswith(transport):
            path, selector = split_selector(text[len(transport) :])
            return expand(transport.rstrip(":"), path, selector)
    path = Path(text)
    if path.is_dir():
        if (path / "oci-layout").exists():
            return expand("oci", path)
        out: list[ImportSource] = []
        for entry in sorted(path.iterdir()):
            if entry.is_file() and not entry.name.startswith("."):
                out += import_sources(entry)
        return out
    if not path.exists():
        raise NotFound(f"import {text}: no such file or directory")
    return expand(archive_kind(path), path)


def split_selector(text: str) -> tuple[Path, str | None]:
    """``path[:reference]`` as skopeo writes it: the longest existing path before a
    ``:`` is the path (paths may hold colons), the rest selects one image."""
    if Path(text).exists():
        return Path(text), None
    for i in range(len(text) - 1, 0, -1):
        if text[i] == ":" and Path(text[:i]).exists():
            return Path(text[:i]), text[i + 1 :]
    raise NotFound(f"import {text}: no such file or directory")


def archive_kind(path: Path) -> str:
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                name = member.name.lstrip("./")
                if name == "oci-layout":
                    return "oci-archive"
                if name == "manifest.json":
                    return "docker-archive"
    except (tarfile.TarError, OSError) as e:
        raise ImageError(f"import {path}: not an image archive ({e})") from None
    raise ImageError(f"import {path}: neither an OCI nor a docker archive")


def expand(kind: str, path: Path, selector: str | None = None) -> list[ImportSource]:
    """The images in an archive or layout (only ``selector``'s when given)."""
    if kind == "docker-archive":
        manifest = json.loads(read_member(path, "manifest.json"))
        out: list[ImportSource] = []
        for i, entry in enumerate(manifest):
            tags = entry.get("RepoTags") or []
            if selector is None or selector == f"@{i}":
                name = normal_name(tags[0]) if tags else None
                out.append((f"docker-archive:{path}:@{i}", name))
            elif selector in tags:
                out.append((f"docker-archive:{path}:{selector}", normal_name(selector)))
        if not out:
            raise NotFound(f"import docker-archive:{path}:{selector}: no such image")
        return out
    index_raw = (
        (path / "index.json").read_bytes() if kind == "oci" else read_member(path, "index.json")
    )
    index = json.loads(index_raw)
    entries = index.get("manifests", [])
    out = []
    for entry in entries:
        ref_name = (entry.get("annotations") or {}).get("org.opencontainers.image.ref.name")
        full = (entry.get("annotations") or {}).get("io.containerd.image.name")
        if ref_name and selector in (None, ref_name):
            out.append((f"{kind}:{path}:{ref_name}", normal_name(full or ref_name)))
    if selector is not None and not out:
        raise NotFound(f"import {kind}:{path}:{selector}: no such image")
    if not out and len(entries) == 1:
        out.append((f"{kind}:{path}", None))
    if not out:
        raise ImageError(f"import {path}: no named images in index.json")
    return out


def normal_name(text: str) -> str | None:
    try:
        ref = parse(text)
    except InvalidReference:
        return None
    return f"{ref.name}:{ref.tag}" if ref.tag else None


def read_member(path: Path, name: str) -> bytes:
    with tarfile.open(path, "r:*") as tar:
        for member in tar:
            if member.name.lstrip("./") == name and member.isfile():
                f = tar.extractfile(member)
                if f is not None:
                    with f:
                        return f.read()
    raise ImageError(f"import {path}: archive has no {name}")
