"""hostPath volumes: the path on the node itself, checked against the volume's `type`
as the kubelet's hostPath plugin checks it (stat follows symlinks; the *OrCreate
types create a missing directory with mode 0755, or an empty file with mode 0644 in
an existing directory)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

TYPES = ("", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket",
         "CharDevice", "BlockDevice")  # fmt: skip


class HostPathError(ValueError):
    """The path is not what the volume's type asks for."""


def _mode(path: Path) -> int | None:
    try:
        return os.stat(path).st_mode
    except FileNotFoundError:
        return None


def check_type(path: Path, path_type: str) -> None:
    """Creates or checks `path` for the hostPath `path_type`; HostPathError (with the
    kubelet's message) when it does not match, OSError when creating it fails."""
    if not path.is_absolute():
        raise HostPathError(f"hostPath {path} is not an absolute path")
    if path_type not in TYPES:
        raise HostPathError(f"{path_type} is an invalid volume type")
    mode = _mode(path)
    if path_type == "":
        return
    if path_type == "DirectoryOrCreate" and mode is None:
        os.makedirs(path, mode=0o755, exist_ok=True)
        return
    if path_type == "FileOrCreate" and mode is None:
        os.close(os.open(path, os.O_CREAT | os.O_RDONLY, 0o644))
        return
    checks = {
        "DirectoryOrCreate": (stat.S_ISDIR, "a directory"),
        "Directory": (stat.S_ISDIR, "a directory"),
        "FileOrCreate": (stat.S_ISREG, "a file"),
        "File": (stat.S_ISREG, "a file"),
        "Socket": (stat.S_ISSOCK, "a socket file"),
        "CharDevice": (stat.S_ISCHR, "a character device"),
        "BlockDevice": (stat.S_ISBLK, "a block device"),
    }
    test, what = checks[path_type]
    if mode is None or not test(mode):
        raise HostPathError(f"hostPath type check failed: {path} is not {what}")
