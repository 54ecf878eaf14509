from __future__ import annotations

import pytest

from runtime.cgroups import fs


class Writes(list[tuple[str, str, str]]):
    """(cgroup_dir, file name, value) of every fs.write_file call, in order."""

    def names(self) -> list[str]:
        return [name for _dir, name, _value in self]

    def of(self, name: str) -> list[str]:
        return [value for _dir, n, value in self if n == name]


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> Writes:
    """Record every cgroup file write (the write still happens)."""
    recorded = Writes()
    original = fs.write_file

    def recording(cgroup_dir: str, name: str, value: str) -> None:
        recorded.append((cgroup_dir, name, value))
        original(cgroup_dir, name, value)

    monkeypatch.setattr(fs, "write_file", recording)
    return recorded
