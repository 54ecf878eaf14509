"""`kubeling demo`: kubeling's main job at this stage, end to end on this machine.

Builds an OCI bundle from the busybox-static binary, runs it through kubeling's
runtime (new pid, mount, uts, ipc and network namespaces, a cgroup with a memory
and pids limit, runc's default masked paths and capabilities) and prints what the
container sees. Needs root.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid

from runtime.bundle import busybox_rootfs, default_spec
from runtime.container import Runtime
from runtime.errors import RuntimeFailure

SCRIPT = r"""
echo "hello from a kubeling container"
echo "  hostname:      $(hostname)"
echo "  my pid:        $$"
echo "  processes:     $(ps -o pid= | wc -l)"
echo "  interfaces:    $(ls /sys/class/net | tr '\n' ' ')"
echo "  capabilities:  $(grep CapEff /proc/self/status | cut -f2)"
echo "  memory limit:  $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null \
    || cat /sys/fs/cgroup/memory.max)"
echo "  root is:       $(touch /x 2>/dev/null && echo writable || echo read-only)"
"""


def main(args: list[str]) -> int:
    if args:
        sys.stderr.write("usage: kubeling demo\n")
        return 2
    if os.geteuid() != 0:
        sys.stderr.write("kubeling demo: needs root (namespaces, mounts, cgroups)\n")
        return 1
    work = tempfile.mkdtemp(prefix="kubeling-demo-")
    container_id = f"demo-{uuid.uuid4().hex[:8]}"
    runtime = Runtime(os.path.join(work, "state"))
    try:
        bundle = os.path.join(work, "bundle")
        os.makedirs(bundle)
        busybox_rootfs(os.path.join(bundle, "rootfs"))
        config = default_spec(["sh", "-c", SCRIPT])
        config["hostname"] = "demo"
        config["mounts"].append(
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "ro"]}
        )  # fmt: skip
        config["linux"]["cgroupsPath"] = f"/kubeling/{container_id}"
        config["linux"]["resources"].update(
            {"memory": {"limit": 64 * 1024 * 1024}, "pids": {"limit": 32}}
        )
        from runtime import jsonio

        with open(os.path.join(bundle, "config.json"), "w") as f:
            f.write(jsonio.dumps(config))
        container = runtime.create(container_id, bundle, monitor=False)
        runtime.start(container_id)
        code = runtime.wait_init(container, forward_signals=False)
        print(f"container {container_id} exited with status {code}")
        return code
    except RuntimeFailure as e:
        sys.stderr.write(f"kubeling demo: {e}\n")
        return 1
    finally:
        try:
            runtime.delete(container_id, force=True)
        except RuntimeFailure:
            pass
        shutil.rmtree(work, ignore_errors=True)
