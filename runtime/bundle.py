"""Making OCI bundles: the default config.json (what `kubeling-runtime spec`
writes, close to `runc spec`) and a rootfs from the busybox-static binary, which
the demo and the tests run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_CAPABILITIES = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
DEFAULT_MASKED_PATHS = [
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
    "/proc/scsi",
]  # fmt: skip
DEFAULT_READONLY_PATHS = [
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
]  # fmt: skip
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")


def default_spec(args: list[str] | None = None, *, terminal: bool = False) -> dict[str, Any]:
    """A config.json for a rootfs at ./rootfs with every namespace but user and
    cgroup new, runc's default mounts, masked and read-only paths."""
    caps = list(DEFAULT_CAPABILITIES)
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": terminal,
            "user": {"uid": 0, "gid": 0},
            "args": args or ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm",
            ],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "kubeling",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": [
                    "nosuid",
                    "noexec",
                    "newinstance",
                    "ptmxmode=0666",
                    "mode=0620",
                    "gid=5",
                ],
            },
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            },
            {
                "destination": "/dev/mqueue",
                "type": "mqueue",
                "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"],
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            },
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": list(DEFAULT_MASKED_PATHS),
            "readonlyPaths": list(DEFAULT_READONLY_PATHS),
        },
    }


def find_busybox() -> str:
    for path in BUSYBOX_CANDIDATES:
        if os.path.isfile(path):
            return path
    raise FileNotFoundError("busybox not found: install the busybox-static package")


def busybox_rootfs(target: str, *, busybox: str = "") -> str:
    """Populate `target` with a static busybox and a symlink per applet, plus the
    files a shell expects (/etc/passwd, /etc/group, /tmp)."""
    busybox = busybox or find_busybox()
    for directory in ("bin", "etc", "tmp", "proc", "sys", "dev", "root", "var", "usr"):
        os.makedirs(os.path.join(target, directory), exist_ok=True)
    os.chmod(os.path.join(target, "tmp"), 0o1777)
    shutil.copy2(busybox, os.path.join(target, "bin", "busybox"))
    applets = subprocess.run(
        [busybox, "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        link = os.path.join(target, "bin", applet)
        if applet != "busybox" and not os.path.lexists(link):
            os.symlink("busybox", link)
    with open(os.path.join(target, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    with open(os.path.join(target, "etc", "group"), "w") as f:
        f.write("root:x:0:\ntty:x:5:\nnobody:x:65534:\n")
    return target


def write_bundle(bundle: str, config: dict[str, Any], *, rootfs: str = "") -> str:
    """Write config.json into `bundle`, with a busybox rootfs unless one is given."""
    os.makedirs(bundle, exist_ok=True)
    if not rootfs:
        busybox_rootfs(os.path.join(bundle, "rootfs"))
    else:
        config = dict(config, root=dict(config["root"], path=rootfs))
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    return bundle
