"""Writes a volume's files so that a reader sees the old set or the new set, never a
mix: the layout of the kubelet's AtomicWriter, which configMap, secret, downwardAPI
and projected volumes share.

    <target>/..2026_12_04_18_50_01.123456789/<key>    one directory per version
    <target>/..data -> ..2026_12_04_18_50_01.123456789
    <target>/<key>  -> ..data/<key>                   what the container sees

Write order: validate the payload; compare it with the current version and stop if
equal; write the new version into a fresh timestamped directory; point a new
`..data_tmp` symlink at it and rename it over `..data` (the one atomic step); add
symlinks for new top-level names; remove the old version and the top-level symlinks
of names no longer in the payload. A crash leaves `..data` on the old or the new
version; a left-over timestamped directory is removed by the next write.
"""

from __future__ import annotations

import datetime
import logging
import os
import posixpath
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DATA_DIR = "..data"
NEW_DATA_DIR = "..data_tmp"
MAX_PATH_LENGTH = 4096
MAX_FILE_NAME_LENGTH = 255


@dataclass(frozen=True)
class FileProjection:
    data: bytes
    mode: int = 0o644


class PayloadError(ValueError):
    """A payload path that would leave the volume or is otherwise invalid."""


def validate_path(path: str) -> str:
    """The cleaned relative path; PayloadError for an empty, absolute, too long path,
    a `..` element or a first element starting with `..` (reserved for the layout)."""
    if not path:
        raise PayloadError(f'invalid path: must not be empty: "{path}"')
    if path.startswith("/"):
        raise PayloadError(f"invalid path: must be relative path: {path}")
    if len(path) > MAX_PATH_LENGTH:
        raise PayloadError(
            f"invalid path: must be less than or equal to {MAX_PATH_LENGTH} characters"
        )
    items = path.split("/")
    for item in items:
        if item == "..":
            raise PayloadError(f"invalid path: must not contain '..': {path}")
        if len(item) > MAX_FILE_NAME_LENGTH:
            raise PayloadError(
                f"invalid path: filenames must be less than or equal to {MAX_FILE_NAME_LENGTH} "
                "characters"
            )
    if items[0].startswith("..") and len(items[0]) > 2:
        raise PayloadError(f"invalid path: must not start with '..': {path}")
    cleaned = posixpath.normpath(path)
    if cleaned in (".", ""):
        raise PayloadError(f"invalid path: must name a file: {path}")
    return cleaned


def _version_name() -> str:
    now = datetime.datetime.now(datetime.UTC)
    return now.strftime("..%Y_%m_%d_%H_%M_%S.") + str(secrets.randbelow(10**9)).zfill(9)


def _current(target: Path) -> str:
    try:
        return os.readlink(target / DATA_DIR)
    except FileNotFoundError:
        return ""


def _mode(projection: FileProjection, fs_group: int | None) -> int:
    # SetVolumeOwnership of a read-only volume: the group may read what fsGroup owns.
    return projection.mode | (0o440 if fs_group is not None else 0)


def _unchanged(payload: Mapping[str, FileProjection], version: Path, fs_group: int | None) -> bool:
    present = set()
    for root, _dirs, files in os.walk(version):
        for name in files:
            present.add(os.path.relpath(os.path.join(root, name), version))
    if present != set(payload):
        return False
    for path, projection in payload.items():
        file = version / path
        status = file.stat()
        if (status.st_mode & 0o7777) != _mode(projection, fs_group):
            return False
        if fs_group is not None and status.st_gid != fs_group:
            return False
        if file.read_bytes() != projection.data:
            return False
    return True


def write_payload(
    target: Path, payload: Mapping[str, FileProjection], *, fs_group: int | None = None
) -> bool:
    """Makes `target` show exactly `payload` (see the module docstring); True when it
    wrote a new version, False when the current one already matched. With `fs_group`
    (the pod's securityContext.fsGroup) the files belong to that group, which may read
    them, and directories are setgid, before the version becomes visible."""
    cleaned = {validate_path(path): projection for path, projection in payload.items()}
    target.mkdir(parents=True, exist_ok=True)
    old = _current(target)
    if old and (target / old).is_dir() and _unchanged(cleaned, target / old, fs_group):
        _create_visible(target, cleaned)
        return False
    version = target / _version_name()
    version.mkdir(mode=0o755)
    os.chmod(version, 0o755)  # whatever the umask
    try:
        for path, projection in cleaned.items():
            file = version / path
            file.parent.mkdir(parents=True, exist_ok=True)
            with open(file, "wb") as out:
                out.write(projection.data)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(file, projection.mode)
        if fs_group is not None:
            _set_group(version, cleaned, fs_group)
        temporary = target / NEW_DATA_DIR
        if temporary.is_symlink():
            temporary.unlink()
        os.symlink(version.name, temporary)
        os.rename(temporary, target / DATA_DIR)
    except BaseException:
        shutil.rmtree(version, ignore_errors=True)
        raise
    _create_visible(target, cleaned)
    _remove_stale(target, keep={version.name}, visible={p.split("/")[0] for p in cleaned})
    log.debug("volume %s: version %s", target, version.name)
    return True


def _set_group(version: Path, payload: Mapping[str, FileProjection], fs_group: int) -> None:
    for root, dirs, _files in os.walk(version):
        for name in [".", *dirs]:
            directory = os.path.join(root, name)
            os.chown(directory, -1, fs_group)
            os.chmod(directory, 0o755 | 0o2000 | 0o110 | 0o440)
    for path, projection in payload.items():
        os.chown(version / path, -1, fs_group)
        os.chmod(version / path, _mode(projection, fs_group))


def _create_visible(target: Path, payload: Mapping[str, FileProjection]) -> None:
    for top in {path.split("/")[0] for path in payload}:
        visible = target / top
        if not visible.is_symlink():
            os.symlink(f"{DATA_DIR}/{top}", visible)


def _remove_stale(target: Path, *, keep: set[str], visible: set[str]) -> None:
    """Removes old versions (and left-overs of an interrupted write) and the
    top-level symlinks of names the new payload no longer has."""
    for entry in os.scandir(target):
        if entry.name in (DATA_DIR, NEW_DATA_DIR) or entry.name in keep:
            continue
        if entry.name.startswith("..") and entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        elif (
            entry.is_symlink()
            and entry.name not in visible
            and os.readlink(entry.path).startswith(DATA_DIR + "/")
        ):
            os.unlink(entry.path)
