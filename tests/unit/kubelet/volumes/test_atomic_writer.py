"""The atomic writer's layout (timestamped version, ..data, visible symlinks), its
updates (one rename, stale names and versions removed, no rewrite when nothing
changed) and its path validation."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from kubelet.volumes.atomic_writer import FileProjection, PayloadError, write_payload

VERSION = re.compile(r"^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.\d{9}$")


def versions(target: Path) -> list[str]:
    return sorted(p.name for p in target.iterdir() if VERSION.match(p.name))


def test_layout(tmp_path: Path) -> None:
    target = tmp_path / "vol"
    wrote = write_payload(target, {
        "app.conf": FileProjection(b"port=80\n", 0o644),
        "keys/id": FileProjection(b"secret", 0o400),
    })  # fmt: skip
    assert wrote
    [version] = versions(target)
    assert os.readlink(target / "..data") == version
    assert os.readlink(target / "app.conf") == "..data/app.conf"
    assert os.readlink(target / "keys") == "..data/keys"
    assert (target / "app.conf").read_bytes() == b"port=80\n"
    assert (target / "keys" / "id").read_bytes() == b"secret"
    assert (target / version / "keys" / "id").stat().st_mode & 0o7777 == 0o400
    assert (target / "app.conf").stat().st_mode & 0o7777 == 0o644
    assert (target / version).stat().st_mode & 0o7777 == 0o755
    assert sorted(p.name for p in target.iterdir()) == sorted(
        ["..data", version, "app.conf", "keys"]
    )


def test_update_swaps_version_and_removes_stale_names(tmp_path: Path) -> None:
    target = tmp_path / "vol"
    write_payload(target, {"a": FileProjection(b"1"), "b": FileProjection(b"2")})
    [first] = versions(target)
    with open(target / "a", "rb") as held:  # a reader of the old version keeps reading it
        assert write_payload(target, {"a": FileProjection(b"one"), "c": FileProjection(b"3")})
        [second] = versions(target)
        assert second != first
        assert os.readlink(target / "..data") == second
        assert (target / "a").read_bytes() == b"one"
        assert (target / "c").read_bytes() == b"3"
        assert not os.path.lexists(target / "b")
        assert held.read() == b"1"


def test_unchanged_payload_is_not_rewritten_but_a_mode_change_is(tmp_path: Path) -> None:
    target = tmp_path / "vol"
    write_payload(target, {"a": FileProjection(b"1", 0o644)})
    [first] = versions(target)
    assert not write_payload(target, {"a": FileProjection(b"1", 0o644)})
    assert versions(target) == [first]
    assert write_payload(target, {"a": FileProjection(b"1", 0o600)})
    assert versions(target) != [first]
    assert (target / "a").stat().st_mode & 0o7777 == 0o600


def test_empty_payload_and_leftovers_of_an_interrupted_write(tmp_path: Path) -> None:
    target = tmp_path / "vol"
    write_payload(target, {"a": FileProjection(b"1")})
    (target / "..2020_01_01_00_00_00.000000001").mkdir()  # a crash before the rename
    write_payload(target, {})
    assert len(versions(target)) == 1
    assert sorted(p.name for p in target.iterdir() if not VERSION.match(p.name)) == ["..data"]


def test_fs_group_owns_and_may_read(tmp_path: Path) -> None:
    target = tmp_path / "vol"
    group = os.getgid()
    write_payload(target, {"k": FileProjection(b"v", 0o600)}, fs_group=group)
    status = (target / "k").stat()
    assert status.st_gid == group
    assert status.st_mode & 0o7777 == 0o640
    assert (target / "..data").stat().st_mode & 0o2000  # setgid directory
    assert not write_payload(target, {"k": FileProjection(b"v", 0o600)}, fs_group=group)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("", "must not be empty"),
        ("/etc/passwd", "must be relative path"),
        ("../escape", "must not contain '..'"),
        ("a/../../b", "must not contain '..'"),
        ("..data", "must not start with '..'"),
        ("..2020_x/k", "must not start with '..'"),
        ("a" * 256, "filenames must be less than or equal to 255"),
        ("a/" * 2100, "must be less than or equal to 4096"),
    ],
)
def test_invalid_paths(tmp_path: Path, path: str, message: str) -> None:
    with pytest.raises(PayloadError, match=re.escape(message)):
        write_payload(tmp_path / "vol", {path: FileProjection(b"x")})
    assert not (tmp_path / "vol" / "..data").exists()
