"""Disk usage the Summary API reports per pod: each container's log files, the
pod's volumes (<root_dir>/pods/<uid>/volumes/<plugin>/<name>, the kubelet's layout)
and its ephemeral storage (writable layers, logs and emptyDir volumes), each with the
capacity of the filesystem holding it.

Volumes are walked at most every `VOLUME_PERIOD` seconds (a walk of a big volume is
slow; the kubelet's volume stats calculator also refreshes once a minute). Not
thread-safe: the collector reads under its lock.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from kubelet.stats import machine
from kubelet.stats.snapshot import ContainerUsage, Fs, VolumeUsage

VOLUME_PERIOD = 60.0


def filesystem(
    path: Path, now: float, used: int | None = None, inodes_used: int | None = None
) -> Fs | None:
    """The filesystem holding `path`, with `used`/`inodes_used` in place of the whole
    filesystem's when given (what one container or volume takes of it)."""
    usage = machine.fs_usage(path)
    if usage is None:
        return None if used is None else Fs(now, used_bytes=used, inodes_used=inodes_used)
    return Fs(
        time=now,
        used_bytes=usage.used_bytes if used is None else used,
        capacity_bytes=usage.capacity_bytes,
        available_bytes=usage.available_bytes,
        inodes=usage.inodes,
        inodes_free=usage.inodes_free,
        inodes_used=usage.inodes_used if inodes_used is None else inodes_used,
        device=str(path),
    )


def container_logs(log_path: str, container_name: str, now: float) -> Fs | None:
    """The container's log files: its directory under the pod's log directory
    (`<name>/<attempt>.log`, the kubelet's layout), else the one file."""
    path = Path(log_path)
    files = [path]
    if path.parent.name == container_name:
        with contextlib.suppress(OSError):
            files = list(path.parent.iterdir())
    used = inodes = 0
    for file in files:
        with contextlib.suppress(OSError):
            used += file.stat().st_size  # what the lines take, allocated yet or not
            inodes += 1
    return filesystem(path.parent, now, used, inodes)


class VolumeUsageCache:
    def __init__(self) -> None:
        self._walked: dict[str, tuple[float, int, int]] = {}  # path -> (when, bytes, inodes)

    def pod_volumes(self, root_dir: Path, uid: str, now: float) -> list[VolumeUsage]:
        top = root_dir / "pods" / uid / "volumes"
        volumes = []
        with contextlib.suppress(OSError):
            for plugin in sorted(top.iterdir()):
                for volume in sorted(plugin.iterdir()):
                    used, inodes = self._du(volume, now)
                    fs = filesystem(volume, now, used, inodes)
                    if fs is not None:
                        volumes.append(VolumeUsage(volume.name, fs))
        return volumes

    def retain(self, uids: set[str]) -> None:
        """Forget the volumes of pods that are gone."""
        for path in list(self._walked):
            if not any(f"/pods/{uid}/volumes/" in path for uid in uids):
                del self._walked[path]

    def _du(self, path: Path, now: float) -> tuple[int, int]:
        key = str(path)
        cached = self._walked.get(key)
        if cached is not None and now - cached[0] < VOLUME_PERIOD:
            return cached[1], cached[2]
        used = inodes = 0
        for directory, _dirs, files in os.walk(path):
            for entry in [directory, *(os.path.join(directory, f) for f in files)]:
                with contextlib.suppress(OSError):
                    used += os.lstat(entry).st_blocks * 512
                    inodes += 1
        self._walked[key] = (now, used, inodes)
        return used, inodes


def ephemeral_storage(
    node_fs_path: Path, containers: list[ContainerUsage], volumes: list[VolumeUsage], now: float
) -> Fs | None:
    """Writable layers, logs and emptyDir volumes, on the node's filesystem (the
    kubelet's ephemeral-storage)."""
    used = inodes = 0
    parts = [c.rootfs for c in containers] + [c.logs for c in containers]
    parts += [v.fs for v in volumes if "kubernetes.io~empty-dir" in v.fs.device]
    for part in parts:
        if part is not None:
            used += part.used_bytes or 0
            inodes += part.inodes_used or 0
    return filesystem(node_fs_path, now, used, inodes)
