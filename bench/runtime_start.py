"""`run /bin/true` wall time: kubeling's runtime (CLI and library) vs runc and crun.

Usage (root): .venv/bin/python bench/runtime_start.py [--runs 30]

All runtimes run the same busybox bundle in the same run, alternating, and the
medians are printed as ratios against crun. The whole benchmark runs in a private
mount namespace with the hybrid layout's /sys/fs/cgroup/unified unmounted, because
crun refuses hybrid cgroups; every runtime then sees the same legacy v1 layout.

Library path: what the CRI server does, no new interpreter: Runtime.create +
start + wait + delete from this process.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from runtime.bundle import busybox_rootfs, default_spec
from runtime.container import Runtime

UNIFIED = "/sys/fs/cgroup/unified"


def enter_private_mount_namespace() -> None:
    """Re-exec under `unshare -m` once, then unmount the hybrid unified hierarchy."""
    if os.environ.get("KUBELING_BENCH_UNSHARED") != "1":
        env = dict(os.environ, KUBELING_BENCH_UNSHARED="1")
        os.execvpe("unshare", ["unshare", "-m", "--propagation", "private",
                               sys.executable, *sys.argv], env)  # fmt: skip
    if os.path.ismount(UNIFIED):
        subprocess.run(["umount", UNIFIED], check=True)


def make_bundle(work: str) -> str:
    bundle = os.path.join(work, "bundle")
    os.makedirs(bundle)
    busybox_rootfs(os.path.join(bundle, "rootfs"))
    config = default_spec(["/bin/true"])
    config["linux"]["cgroupsPath"] = "/kubeling-bench/true"
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f)
    return bundle


def timed(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return (time.perf_counter() - start) * 1000


def cli_runner(command: list[str], bundle: str) -> Callable[[], None]:
    def run() -> None:
        subprocess.run(command, cwd=bundle, check=True, stdout=subprocess.DEVNULL)

    return run


def library_runner(root: str, bundle: str) -> Callable[[], None]:
    runtime = Runtime(root)

    def run() -> None:
        container = runtime.create("lib", bundle, monitor=False)
        runtime.start("lib")
        runtime.wait_init(container, forward_signals=False)
        runtime.delete("lib", force=True)

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/runtime_start.py: needs root", file=sys.stderr)
        return 1
    enter_private_mount_namespace()
    work = tempfile.mkdtemp(prefix="kubeling-bench-")
    try:
        bundle = make_bundle(work)
        kubeling = os.path.join(os.path.dirname(sys.executable), "kubeling-runtime")
        runners: dict[str, Callable[[], None]] = {
            "crun": cli_runner(["crun", "--root", f"{work}/crun", "run", "c"], bundle),
            "runc": cli_runner(["runc", "--root", f"{work}/runc", "run", "r"], bundle),
            "kubeling CLI": cli_runner([kubeling, "--root", f"{work}/k", "run", "k"], bundle),
            "kubeling library": library_runner(f"{work}/lib", bundle),
        }
        available = {n: r for n, r in runners.items() if n.startswith("kubeling")
                     or shutil.which(n.split()[0])}  # fmt: skip
        samples: dict[str, list[float]] = {name: [] for name in available}
        for runner in available.values():  # warm caches once
            runner()
        for _ in range(args.runs):
            for name, runner in available.items():
                samples[name].append(timed(runner))
        reference = statistics.median(samples["crun"]) if "crun" in samples else None
        print(f"run /bin/true, median of {args.runs} runs (same bundle, same run)")
        print(f"{'runtime':<18}{'median ms':>10}{'p90 ms':>9}{'vs crun':>9}")
        for name, values in samples.items():
            median = statistics.median(values)
            p90 = sorted(values)[int(len(values) * 0.9) - 1]
            ratio = f"{median / reference:.2f}x" if reference else "-"
            print(f"{name:<18}{median:>10.1f}{p90:>9.1f}{ratio:>9}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for controller in os.listdir("/sys/fs/cgroup"):
            path = f"/sys/fs/cgroup/{controller}/kubeling-bench"
            for leaf in ("true", ""):
                try:
                    os.rmdir(os.path.join(path, leaf) if leaf else path)
                except OSError:
                    pass


if __name__ == "__main__":
    sys.exit(main())
