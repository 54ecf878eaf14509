"""Pull + unpack of one multi-layer image from a local registry: kubeling vs containerd.

Usage (root): .venv/bin/python bench/image_pull.py [--runs 5] [--mb 75] [--keep]

The image is built locally (images/build.py): the busybox base, three layers of
random data (most of the bytes), a layer of thousands of small files and a layer
with whiteouts and an opaque directory, gzip-compressed. It is pushed to a
docker-registry on 127.0.0.1 that the bench starts, and pulled over plain HTTP by:

- kubeling (library): ImageStore.pull, as the CRI server calls it. "cold" starts from
  a new, empty store in a never-used directory each run; "warm" pulls again into a
  store that has the image (its blobs and layer snapshots are present: only the
  manifest is fetched).
- kubeling (CLI, cold): `kubeling images pull` in a new interpreter.
- containerd (Debian package), started by the bench on its own --root/--state/socket
  with a generated config: `ctr images pull --plain-http` (fetch + unpack into the
  overlayfs snapshotter). Cold = a new containerd on a new root each run (started
  before the clock starts), warm = pulling again into it.
- CRI PullImage through `crictl` when crictl is installed, against containerd's CRI
  plugin (given a hosts.toml that maps the registry to plain HTTP) and against
  kubeling's CRI server (in this process, a new store each run): the same client
  path for both; otherwise those columns are skipped and the bench says so.

Every tool runs the same image in the same run, alternating, and the medians are
printed with ratios against containerd. No tree is deleted before a measured run
(deleting one slows file creation on some disks for a while): every cold run gets a
fresh directory, and the whole work directory is removed at the end. Benchmarks never
gate anything on time.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from cri.server import build_server
from images.build import Layout, base_entries, directory, file, opaque, push, whiteout
from images.store import ImageStore
from images.testing import LocalRegistry

KUBELING = str(Path(sys.executable).parent / "kubeling")

#: Starts a containerd on a fresh directory ``work/<name>`` (cri: with the CRI plugin).
ContainerdFactory = Callable[..., "Containerd"]


def build_bench_image(layout_dir: Path, total_mb: int) -> int:
    """Write the bench image as tag "bench"; return its compressed size in bytes."""
    layout = Layout(layout_dir)
    random_mb = max(total_mb - 12, 10)
    sizes = [random_mb * 45 // 100, random_mb * 33 // 100]
    sizes.append(random_mb - sum(sizes))
    layers = [layout.add_layer(base_entries())]
    for n, mb in enumerate(sizes):
        chunk = mb * 1_000_000 // 2
        layers.append(
            layout.add_layer(
                [
                    directory(f"data{n}"),
                    file(f"data{n}/a.bin", os.urandom(chunk)),
                    file(f"data{n}/b.bin", os.urandom(chunk)),
                ],
                level=1,
            )
        )
    small = [directory("small")]
    for d in range(50):
        small.append(directory(f"small/d{d:02}"))
        small += [
            file(f"small/d{d:02}/f{i:03}.txt", os.urandom(700 + (i * 37) % 1300).hex())
            for i in range(100)
        ]
    layers.append(layout.add_layer(small, level=1))
    layers.append(
        layout.add_layer(
            [
                directory("data0"),
                whiteout("data0/b.bin"),
                directory("small"),
                whiteout("small/d07"),
                directory("small/d08"),
                opaque("small/d08"),
                file("small/d08/only.txt", "only file left\n"),
            ]
        )
    )
    layout.tag(layout.add_image(layers, {"Cmd": ["sh"]}), "bench")
    return sum(layer.descriptor.size for layer in layers)


def settle() -> None:
    """Let writeback and discards of the previous step finish (they slow file creation
    a lot on some disks), so each measurement starts from the same state."""
    os.sync()
    time.sleep(1.0)


def timed(action: Callable[..., object], *args: object) -> float:
    settle()
    start = time.perf_counter()
    action(*args)
    return time.perf_counter() - start


def run_quiet(argv: list[str]) -> None:
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)


# ---- containerd ----------------------------------------------------------------------------


class Containerd:
    """containerd on its own root, state and socket; stopped by PID."""

    def __init__(self, workdir: Path, registry_host: str, *, cri: bool) -> None:
        self.workdir = workdir
        self.socket = workdir / "containerd.sock"
        self.namespace = "kubeling-bench" if not cri else "k8s.io"
        hosts_dir = workdir / "certs.d"
        (hosts_dir / registry_host).mkdir(parents=True)
        (hosts_dir / registry_host / "hosts.toml").write_text(
            f'server = "http://{registry_host}"\n\n'
            f'[host."http://{registry_host}"]\n'
            '  capabilities = ["pull", "resolve"]\n'
            "  skip_verify = true\n"
        )
        disabled = [] if cri else ['"io.containerd.grpc.v1.cri"']
        config = workdir / "config.toml"
        config.write_text(
            "version = 2\n"
            f'root = "{workdir / "root"}"\n'
            f'state = "{workdir / "state"}"\n'
            f"disabled_plugins = [{', '.join(disabled)}]\n"
            "[grpc]\n"
            f'  address = "{self.socket}"\n'
            '[plugins."io.containerd.grpc.v1.cri".registry]\n'
            f'  config_path = "{hosts_dir}"\n'
        )
        self.log = (workdir / "containerd.log").open("ab")
        self.process = subprocess.Popen(
            ["containerd", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"containerd did not start; see {workdir}/containerd.log")
            time.sleep(0.1)

    def _answers(self) -> bool:
        if not self.socket.exists():
            return False
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(str(self.socket))
            except OSError:
                return False
        return self.ctr("version", check=False).returncode == 0

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ctr", "-a", str(self.socket), "-n", self.namespace, *args],
            capture_output=True,
            text=True,
            check=check,
            stdin=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        unmount_below(self.workdir)


def containerd_on(work: Path, registry_host: str, name: str, *, cri: bool) -> Containerd:
    return Containerd(work / name, registry_host, cri=cri)


def unmount_below(path: Path) -> None:
    with open("/proc/self/mounts") as f:
        targets = [line.split()[1] for line in f if line.split()[1].startswith(str(path))]
    for target in sorted(targets, key=len, reverse=True):
        subprocess.run(["umount", target], check=False, capture_output=True)


# ---- the run -------------------------------------------------------------------------------


@contextlib.contextmanager
def workspace(keep: bool) -> Iterator[Path]:
    work = Path(tempfile.mkdtemp(prefix="kb-"))  # short: overlay option strings
    try:
        yield work
    finally:
        unmount_below(work)
        if keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--mb", type=int, default=75, help="approximate image size")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/image_pull.py needs root (overlay mounts, containerd)", file=sys.stderr)
        return 2
    have_crictl = shutil.which("crictl") is not None
    have_containerd = all(shutil.which(tool) for tool in ("containerd", "ctr"))
    if not have_containerd:
        print("containerd/ctr not installed (apt-get install containerd): kubeling only")
    with workspace(args.keep) as work:
        size = build_bench_image(work / "layout", args.mb)
        with LocalRegistry(work / "registry") as registry:
            ref = f"{registry.host}/bench/image:1"
            push(work / "layout", "bench", ref)
            print(f"image {ref}: {size / 1e6:.1f} MB compressed, 7 layers")
            containerd: ContainerdFactory | None = None
            if have_containerd:
                containerd = functools.partial(containerd_on, work, registry.host)
            results = measure(work, ref, containerd, args.runs, have_crictl)
    report(results, args.runs, have_crictl and have_containerd)
    return 0


def measure(
    work: Path, ref: str, containerd: ContainerdFactory | None, runs: int, have_crictl: bool
) -> dict[str, list[float]]:
    """Alternate the tools, ``runs`` times. Every cold run writes into a fresh,
    never-used directory (a new store, or a new containerd root); nothing is deleted
    until the end of the bench, since deleting a tree just before a measured run slows
    file creation on some disks for a while (discards and journal work)."""
    results: dict[str, list[float]] = {}

    def add(name: str, seconds: float) -> None:
        results.setdefault(name, []).append(seconds)

    warm_store = ImageStore(work / "warm")
    warm_store.pull(ref)
    try:
        for run in range(runs):
            with ImageStore(work / f"cold-{run}") as store:
                add("kubeling cold", timed(store.pull, ref))
            add("kubeling warm", timed(warm_store.pull, ref))

            cli_root = work / f"cli-{run}"
            argv = [KUBELING, "images", "--root", str(cli_root), "pull", "-q", ref]
            add("kubeling CLI cold", timed(run_quiet, argv))

            if have_crictl:
                # The same path as containerd's CRI column: crictl -> gRPC -> PullImage.
                with ImageStore(work / f"kubeling-cri-{run}") as store:
                    socket_path = str(work / f"kubeling-cri-{run}.sock")
                    server, _ = build_server(socket_path, store, workers=4)
                    try:
                        crictl = ["crictl", "-r", f"unix://{socket_path}", "pull", ref]
                        add("kubeling CRI PullImage cold", timed(run_quiet, crictl))
                        add("kubeling CRI PullImage warm", timed(run_quiet, crictl))
                    finally:
                        server.stop(grace=None).wait()

            if containerd is None:
                continue
            pull = ("images", "pull", "--plain-http", ref)
            ctrd = containerd(f"ctrd-{run}", cri=False)
            try:
                add("ctr cold", timed(ctrd.ctr, *pull))
                add("ctr warm", timed(ctrd.ctr, *pull))
            finally:
                ctrd.stop()

            if have_crictl:
                ctrd = containerd(f"cri-{run}", cri=True)
                try:
                    crictl = ["crictl", "-r", f"unix://{ctrd.socket}", "pull", ref]
                    add("CRI PullImage cold", timed(run_quiet, crictl))
                    add("CRI PullImage warm", timed(run_quiet, crictl))
                finally:
                    ctrd.stop()
    finally:
        warm_store.close()
    return results


def report(results: dict[str, list[float]], runs: int, have_crictl: bool) -> None:
    medians = {name: statistics.median(values) for name, values in results.items()}
    print(f"\nmedian of {runs} runs (seconds); ratios < 1 mean kubeling is faster")
    width = max(len(n) for n in medians)
    for name, value in medians.items():
        print(f"  {name.ljust(width)}  {value:7.3f}")
    print()
    pairs = [
        ("kubeling cold", "ctr cold"),
        ("kubeling CLI cold", "ctr cold"),
        ("kubeling warm", "ctr warm"),
    ]
    if have_crictl:
        pairs += [
            ("kubeling cold", "CRI PullImage cold"),
            ("kubeling warm", "CRI PullImage warm"),
            ("kubeling CRI PullImage cold", "CRI PullImage cold"),
            ("kubeling CRI PullImage warm", "CRI PullImage warm"),
        ]
    for ours, theirs in pairs:
        if theirs not in medians:
            continue
        print(f"  {ours} / {theirs}: {medians[ours] / medians[theirs]:.2f}")
    if not have_crictl:
        print("\ncrictl is not installed: the CRI PullImage column was skipped")


if __name__ == "__main__":
    sys.exit(main())
