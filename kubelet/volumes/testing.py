"""A recording Mounter for tests without root: it remembers what would be mounted
and reports those targets as mount points, so the manager's mount bookkeeping and
teardown are tested without touching the kernel."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class MountCall:
    kind: str  # "tmpfs" or "bind"
    target: Path
    size_bytes: int | None = None
    source: str = ""  # a bind's source path (what the descriptor named)


@dataclass
class RecordingMounter:
    calls: list[MountCall] = field(default_factory=list)
    unmounted: list[Path] = field(default_factory=list)
    mounted: list[Path] = field(default_factory=list)

    def mount_tmpfs(self, target: Path, *, size_bytes: int | None) -> None:
        self.calls.append(MountCall("tmpfs", target, size_bytes))
        self.mounted.append(target)

    def bind_fd(self, fd: int, target: Path) -> None:
        source = os.readlink(f"/proc/self/fd/{fd}")
        self.calls.append(MountCall("bind", target, source=source))
        self.mounted.append(target)

    def unmount(self, target: Path) -> None:
        self.unmounted.append(target)
        self.mounted.remove(target)

    def mount_points(self, under: Path) -> list[Path]:
        inside = [p for p in self.mounted if p == under or under in p.parents]
        return sorted(inside, key=lambda p: len(p.parts), reverse=True)

    def is_mount_point(self, path: Path) -> bool:
        return path in self.mounted
