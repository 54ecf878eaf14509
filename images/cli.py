"""`kubeling images ...`: the image store's command line.

    kubeling images [--root DIR] [--registries FILE] [--snapshotter overlay|native] COMMAND
      pull [--username U --password-stdin] REF...   pull (progress bar on a terminal)
      import SOURCE...        oci-archive:F, docker-archive:F, an OCI layout dir, an
                              archive file, or a directory of archives (air-gap)
      list [-q] [--json]      (alias ls) the images, as `crictl images` shows them
      inspect REF|ID          the image record and config as JSON
      tag SOURCE NEW_REF      add a name
      rm REF|ID...            remove names / images (refused while in use)
      prune                   delete blobs and layer snapshots no image references
      build-busybox [--layout DIR] [--push HOST[:PORT][/NS]] [--name N]
                              build the test images from busybox-static (and push)

Errors are one line on stderr and exit status 1 (2 for usage). Secrets are read
from stdin, never from argv.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from images.errors import ImageError

if TYPE_CHECKING:
    from images.metadata import Image
    from images.pull import Progress
    from images.store import ImageStore

DEFAULT_ROOT = Path("/var/lib/kubeling/images")
DEFAULT_REGISTRIES = Path("/etc/kubeling/registries.toml")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kubeling images", description="kubeling's image store")
    p.add_argument(
        "--root",
        type=Path,
        default=Path(os.environ.get("KUBELING_IMAGES_ROOT", DEFAULT_ROOT)),
        help=f"store directory (default {DEFAULT_ROOT}, or $KUBELING_IMAGES_ROOT)",
    )
    p.add_argument(
        "--registries",
        type=Path,
        default=Path(os.environ.get("KUBELING_REGISTRIES", DEFAULT_REGISTRIES)),
        help=f"registries TOML (default {DEFAULT_REGISTRIES}; missing = none)",
    )
    p.add_argument("--snapshotter", choices=("auto", "overlay", "native"), default="auto")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    pull = sub.add_parser("pull", help="pull images from a registry")
    pull.add_argument("refs", nargs="+", metavar="REF")
    pull.add_argument("--username", "-u", help="registry user (password from stdin)")
    pull.add_argument("--password-stdin", action="store_true", help="read the password")
    pull.add_argument("--quiet", "-q", action="store_true", help="print only image ids")

    imp = sub.add_parser("import", help="import archives or OCI layouts")
    imp.add_argument("sources", nargs="+", metavar="SOURCE")

    for name in ("list", "ls"):
        ls = sub.add_parser(name, help="list images")
        ls.add_argument("-q", "--quiet", action="store_true", help="only image ids")
        ls.add_argument("--json", action="store_true", help="JSON records")

    inspect = sub.add_parser("inspect", help="show an image as JSON")
    inspect.add_argument("ref", metavar="REF|ID")

    tag = sub.add_parser("tag", help="add a name to an image")
    tag.add_argument("source", metavar="SOURCE")
    tag.add_argument("target", metavar="NEW_REF")

    rm = sub.add_parser("rm", aliases=["rmi"], help="remove images or names")
    rm.add_argument("refs", nargs="+", metavar="REF|ID")

    sub.add_parser("prune", help="delete unreferenced blobs and layers")

    build = sub.add_parser("build-busybox", help="build the test images from busybox-static")
    build.add_argument("--layout", type=Path, help="OCI layout dir (default: a temp dir)")
    build.add_argument("--push", metavar="HOST[:PORT][/NS]", help="push to this registry")
    build.add_argument("--name", action="append", help="only these images (repeatable)")
    build.add_argument("--tls-verify", action="store_true", help="push over verified TLS")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.command == "build-busybox":
            return _build(args)
        return _with_store(args)
    except ImageError as e:
        sys.stderr.write(f"kubeling images: {e}\n")
        return 1
    except OSError as e:  # e.g. a --root we may not write to
        sys.stderr.write(f"kubeling images: {args.command}: {e}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("kubeling images: interrupted\n")
        return 130


def _with_store(args: argparse.Namespace) -> int:
    from images.registries import RegistryConfig
    from images.store import ImageStore

    registries = RegistryConfig.load(args.registries)
    store = ImageStore(args.root, registries, snapshotter=args.snapshotter)
    try:
        command: str = args.command
        if command == "pull":
            return _pull(store, args)
        if command == "import":
            for source in args.sources:
                for image in store.import_archive(source):
                    names = ", ".join(image.repo_tags) or "<none>"
                    print(f"imported {names} {image.id}")
            return 0
        if command in ("list", "ls"):
            _list(store.list(), quiet=args.quiet, as_json=args.json, out=sys.stdout)
            return 0
        if command == "inspect":
            print(json.dumps(store.get(args.ref).to_json(), indent=2))
            return 0
        if command == "tag":
            image = store.tag(args.source, args.target)
            print(f"tagged {image.id} as {args.target}")
            return 0
        if command in ("rm", "rmi"):
            status = 0
            for ref in args.refs:
                try:
                    for line in store.remove(ref):
                        print(line)
                except ImageError as e:
                    sys.stderr.write(f"kubeling images: {e}\n")
                    status = 1
            return status
        if command == "prune":
            result = store.prune()
            print(
                f"removed {result.blobs} blobs ({_size(result.bytes)}) "
                f"and {result.snapshots} layer snapshots"
            )
            return 0
        raise AssertionError(command)
    finally:
        store.close()


def _pull(store: ImageStore, args: argparse.Namespace) -> int:
    from images.registries import Credentials

    credentials = None
    if args.username or args.password_stdin:
        if not (args.username and args.password_stdin):
            sys.stderr.write("kubeling images: pull: --username needs --password-stdin\n")
            return 2
        password = sys.stdin.readline().rstrip("\n")
        credentials = Credentials(username=args.username, password=password)
    bar = ProgressBar(sys.stderr) if sys.stderr.isatty() and not args.quiet else None
    for ref in args.refs:
        image = store.pull(ref, credentials=credentials, progress=bar)
        if bar is not None:
            bar.finish()
        print(image.id if args.quiet else f"pulled {ref} {image.id}")
    return 0


class ProgressBar:
    """One redrawn line: reference, a bar of bytes fetched, layers fetched/unpacked."""

    def __init__(self, out: TextIO, width: int = 30) -> None:
        self.out = out
        self.width = width
        self._drawn = False

    def __call__(self, event: Progress) -> None:
        total = max(event.bytes_total, 1)
        filled = min(self.width, self.width * event.bytes_done // total)
        bar = "#" * filled + "." * (self.width - filled)
        line = (
            f"\r{event.reference} [{bar}] {_size(event.bytes_done)}/{_size(event.bytes_total)}"
            f" {event.phase} {event.layers_done}/{event.layers_total} layers"
        )
        self.out.write(line.ljust(100)[:120])
        self.out.flush()
        self._drawn = True

    def finish(self) -> None:
        if self._drawn:
            self.out.write("\n")
            self.out.flush()
            self._drawn = False


def _list(images: list[Image], *, quiet: bool, as_json: bool, out: TextIO) -> None:
    if as_json:
        out.write(json.dumps([image.to_json() for image in images], indent=2) + "\n")
        return
    if quiet:
        for image in images:
            out.write(image.id + "\n")
        return
    rows = [("IMAGE", "TAG", "IMAGE ID", "SIZE")]
    for image in images:
        tags = image.repo_tags or ()
        if not tags:
            repo = image.repo_digests[0].partition("@")[0] if image.repo_digests else "<none>"
            rows.append((repo, "<none>", image.short_id, _size(image.size)))
        for tag in tags:
            repo, _, name = tag.rpartition(":")
            rows.append((repo, name, image.short_id, _size(image.size)))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(row[:3], widths, strict=True)))
        out.write(f"  {row[3]}\n")


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1000
    return f"{n}B"


def _build(args: argparse.Namespace) -> int:
    from images.build import IMAGES, build_image, push

    names = args.name or list(IMAGES)
    unknown = [n for n in names if n not in IMAGES]
    if unknown:
        sys.stderr.write(f"kubeling images: unknown image {unknown[0]!r} (have {IMAGES})\n")
        return 2
    layout_dir = args.layout or Path(tempfile.mkdtemp(prefix="kubeling-images-"))
    for name in names:
        digest = build_image(name, layout_dir, name)
        print(f"built {name} {digest} in oci:{layout_dir}:{name}")
    if args.push:
        dest = args.push.rstrip("/")
        if "/" not in dest:
            dest += "/kubeling"
        for name in names:
            try:
                push(layout_dir, name, f"{dest}/{name}:latest", insecure=not args.tls_verify)
            except RuntimeError as e:
                sys.stderr.write(f"kubeling images: {e}\n")
                return 1
            print(f"pushed {dest}/{name}:latest")
    return 0
