"""Fixtures for the image store against a real registry: images built by
images/build.py from busybox-static, a docker-registry on 127.0.0.1 (plain HTTP) with
them pushed by skopeo, a second registry behind htpasswd auth, and stores in a
private tmp dir whose mounts are undone at the end. Nothing leaves 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from images.build import IMAGES, build_all, build_index, push
from images.registries import Credentials, RegistryConfig, auth_file
from images.snapshots.base import Mount
from images.store import ImageStore
from images.testing import LocalRegistry

pytestmark = pytest.mark.root

NEEDS = ("skopeo", "docker-registry", "mount", "umount")


def _skip_without_tools() -> None:
    missing = [tool for tool in NEEDS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    if os.geteuid() != 0:
        pytest.skip("needs root")


@dataclass(frozen=True)
class Built:
    layout: Path
    digests: dict[str, str]  # image name -> manifest digest
    index_digest: str
    arch_digests: dict[str, str]  # architecture -> manifest digest in the index


@dataclass(frozen=True)
class Served:
    registry: LocalRegistry
    built: Built

    @property
    def host(self) -> str:
        return self.registry.host

    def ref(self, name: str, tag: str = "latest") -> str:
        return f"{self.host}/kubeling/{name}:{tag}"


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    _skip_without_tools()
    layout = tmp_path_factory.mktemp("layout")
    digests = build_all(layout)
    index_digest, arch_digests = build_index(layout, "multiarch")
    return Built(layout, digests, index_digest, arch_digests)


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory, built: Built) -> Iterator[Served]:
    """The plain-HTTP registry with every built image at kubeling/<name>:latest and
    the two-platform index at kubeling/multiarch:latest."""
    registry = LocalRegistry(tmp_path_factory.mktemp("registry")).start()
    try:
        for name in IMAGES:
            push(built.layout, name, f"{registry.host}/kubeling/{name}:latest")
        push(
            built.layout,
            "busybox",
            f"{registry.host}/kubeling/busybox-docker:latest",
            manifest_format="v2s2",
        )
        push(
            built.layout,
            "multiarch",
            f"{registry.host}/kubeling/multiarch:latest",
            all_platforms=True,
        )
        yield Served(registry, built)
    finally:
        registry.stop()


AUTH_USER = "alice"
AUTH_PASSWORD = "correct-horse-battery-staple"


@pytest.fixture(scope="session")
def auth_served(tmp_path_factory: pytest.TempPathFactory, built: Built) -> Iterator[Served]:
    """A registry that wants basic auth (alice / AUTH_PASSWORD), with busybox pushed."""
    workdir = tmp_path_factory.mktemp("auth-registry")
    registry = LocalRegistry(workdir, users={AUTH_USER: AUTH_PASSWORD}).start()
    try:
        creds = Credentials(username=AUTH_USER, password=AUTH_PASSWORD)
        with auth_file(workdir / "auth", registry.host, creds) as path:
            subprocess.run(
                [
                    "skopeo",
                    "copy",
                    "--quiet",
                    "--dest-tls-verify=false",
                    "--dest-authfile",
                    str(path),
                    f"oci:{built.layout}:busybox",
                    f"docker://{registry.host}/kubeling/busybox:latest",
                ],
                check=True,
                stdin=subprocess.DEVNULL,
                capture_output=True,
            )
        yield Served(registry, built)
    finally:
        registry.stop()


class Mounter:
    """Mounts a snapshot's mounts with util-linux mount; unmounts all at the end."""

    def __init__(self) -> None:
        self.targets: list[Path] = []

    def mount(self, mounts: list[Mount], target: Path) -> Path:
        target.mkdir(parents=True, exist_ok=True)
        for m in mounts:
            argv = ["mount", "-t", m.type, m.source, str(target)]
            if m.options:
                argv[1:1] = ["-o", ",".join(m.options)]
            if m.type == "bind":
                argv = ["mount", "--bind", "-o", ",".join(m.options), m.source, str(target)]
            subprocess.run(argv, check=True, capture_output=True, stdin=subprocess.DEVNULL)
            self.targets.append(target)
        return target

    def unmount_all(self) -> None:
        for target in reversed(self.targets):
            subprocess.run(["umount", str(target)], capture_output=True, check=False)
        self.targets.clear()


@pytest.fixture
def mounter() -> Iterator[Mounter]:
    m = Mounter()
    try:
        yield m
    finally:
        m.unmount_all()


def loopback_config(*hosts: str) -> RegistryConfig:
    """A config that marks ``hosts`` insecure (they are HTTP-only test registries)."""
    return RegistryConfig.from_dict(
        {"registry": [{"location": host, "insecure": True} for host in hosts]}
    )


class SkopeoShim:
    """A ``skopeo`` wrapper that logs each call (its PID and arguments) and execs the
    real binary, so the PID logged is skopeo's own."""

    def __init__(self, directory: Path) -> None:
        real = shutil.which("skopeo")
        assert real is not None
        directory.mkdir(parents=True, exist_ok=True)
        self.log = directory / "calls.log"
        self.log.touch()
        self.path = directory / "skopeo"
        self.path.write_text(f'#!/bin/sh\necho "$$ $*" >> {self.log}\nexec {real} "$@"\n')
        self.path.chmod(0o755)

    def calls(self, verb: str | None = None) -> list[tuple[int, str]]:
        out = []
        for line in self.log.read_text().splitlines():
            pid, _, args = line.partition(" ")
            if verb is None or args.startswith(verb + " "):
                out.append((int(pid), args))
        return out


@pytest.fixture
def shim(tmp_path: Path) -> SkopeoShim:
    return SkopeoShim(tmp_path / "shim")


class ThrottledProxy:
    """A TCP proxy on 127.0.0.1 to ``upstream`` that sends the answers back at most
    ``rate`` bytes a second (so a test can act mid-transfer) and counts them."""

    def __init__(self, upstream: str, rate: int) -> None:
        host, _, port = upstream.rpartition(":")
        self.upstream = (host, int(port))
        self.rate = rate
        self.downstream = 0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)  # accept() wakes up to see _stop
        self.host = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, server]
            for src, dst, slow in ((client, server, False), (server, client, True)):
                t = threading.Thread(target=self._pump, args=(src, dst, slow), daemon=True)
                self._threads.append(t)
                t.start()

    def _pump(self, src: socket.socket, dst: socket.socket, slow: bool) -> None:
        chunk = 16384
        try:
            while not self._stop.is_set():
                data = src.recv(chunk)
                if not data:
                    break
                dst.sendall(data)
                if slow:
                    with self._lock:
                        self.downstream += len(data)
                    time.sleep(len(data) / self.rate)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._stop.set()
        self._accepter.join(timeout=5)
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        for t in self._threads:
            t.join(timeout=5)


@pytest.fixture
def proxy_factory() -> Iterator[Callable[[str, int], ThrottledProxy]]:
    proxies: list[ThrottledProxy] = []

    def make(upstream: str, rate: int) -> ThrottledProxy:
        proxy = ThrottledProxy(upstream, rate)
        proxies.append(proxy)
        return proxy

    try:
        yield make
    finally:
        for proxy in proxies:
            proxy.close()


@pytest.fixture
def store_factory(tmp_path: Path) -> Iterator[Callable[..., ImageStore]]:
    """Makes ImageStores under tmp_path (closed at the end); keyword arguments go to
    ImageStore, ``name`` picks the directory."""
    stores: list[ImageStore] = []

    def make(name: str = "store", **kwargs: object) -> ImageStore:
        store = ImageStore(tmp_path / name, **kwargs)  # type: ignore[arg-type]
        stores.append(store)
        return store

    try:
        yield make
    finally:
        for store in stores:
            store.close()


def tree_of(root: Path) -> dict[str, str | None]:
    """path -> content (None for a directory) below root, symlinks not followed."""
    out: dict[str, str | None] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_dir():
            out[rel] = None
        elif path.is_file():
            out[rel] = path.read_text(errors="replace")
    return out
