"""hostPath type checks and the *OrCreate types, with the kubelet's messages."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from kubelet.volumes.host_path import HostPathError, check_type


def test_or_create_types_create(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "b"
    check_type(directory, "DirectoryOrCreate")
    assert directory.is_dir()
    assert directory.stat().st_mode & 0o777 == 0o755
    file = tmp_path / "f"
    check_type(file, "FileOrCreate")
    assert file.is_file()
    assert file.stat().st_mode & 0o777 == 0o644 & ~_umask()
    with pytest.raises(FileNotFoundError):
        check_type(tmp_path / "missing" / "f", "FileOrCreate")  # parents are not made


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_matching_types_pass(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "file")
    check_type(tmp_path, "Directory")
    check_type(tmp_path, "DirectoryOrCreate")
    check_type(tmp_path / "file", "File")
    check_type(tmp_path / "link", "FileOrCreate")  # stat follows the symlink
    check_type(tmp_path / "nothing", "")  # no type: no check
    check_type(Path("/dev/null"), "CharDevice")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "sock"))
        check_type(tmp_path / "sock", "Socket")


@pytest.mark.parametrize(
    ("name", "path_type", "what"),
    [
        ("file", "Directory", "a directory"),
        ("file", "DirectoryOrCreate", "a directory"),
        ("dir", "File", "a file"),
        ("dir", "FileOrCreate", "a file"),
        ("file", "Socket", "a socket file"),
        ("missing", "Directory", "a directory"),
        ("file", "CharDevice", "a character device"),
        ("file", "BlockDevice", "a block device"),
    ],
)
def test_mismatches(tmp_path: Path, name: str, path_type: str, what: str) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    with pytest.raises(HostPathError) as error:
        check_type(tmp_path / name, path_type)
    assert str(error.value) == f"hostPath type check failed: {tmp_path / name} is not {what}"


def test_bad_type_and_relative_path(tmp_path: Path) -> None:
    with pytest.raises(HostPathError, match="^Folder is an invalid volume type$"):
        check_type(tmp_path, "Folder")
    with pytest.raises(HostPathError, match="not an absolute path"):
        check_type(Path("relative"), "")
