"""A throwaway etcd for tests and benchmarks: the Debian ``etcd-server`` (etcd 3.4) as
a one-member cluster on 127.0.0.1 on free ports, with its data in a given directory.

What it owns: starting exactly one ``etcd`` process, waiting until ``/health`` says
so, wiping its keys between tests, and stopping that process by PID. It never listens
beyond 127.0.0.1 (client and peer URLs are both loopback). Used by
tests/conformance/test_storage.py and bench/storage.py.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

ETCD_BINARY = "etcd"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def etcd_binary() -> str | None:
    """The etcd binary on PATH (or at /usr/bin/etcd, where Debian puts it), else None."""
    return shutil.which(ETCD_BINARY) or shutil.which(ETCD_BINARY, path="/usr/bin")


class LocalEtcd:
    """``etcd`` on 127.0.0.1:<free port>; a context manager, or :meth:`start` and
    :meth:`stop`."""

    def __init__(self, workdir: Path, *, binary: str | None = None) -> None:
        self.workdir = Path(workdir)
        self.binary = binary or etcd_binary() or ETCD_BINARY
        self.client_port = free_port()
        self.peer_port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def url(self) -> str:
        """The store URL for control.storage.open_backend."""
        return f"etcd://{self.endpoint}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, timeout: float = 30.0) -> LocalEtcd:
        self.workdir.mkdir(parents=True, exist_ok=True)
        client = f"http://127.0.0.1:{self.client_port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        argv = [
            self.binary,
            "--name=kubeling-test",
            f"--data-dir={self.workdir / 'data'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=kubeling-test={peer}",
            "--initial-cluster-state=new",
            "--logger=zap",
            "--log-level=error",
        ]
        with (self.workdir / "etcd.log").open("ab") as log:
            self._process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            self._wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                log = (self.workdir / "etcd.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"etcd on {self.endpoint} exited: {log}")
            try:
                with urllib.request.urlopen(f"http://{self.endpoint}/health", timeout=1) as r:
                    if json.loads(r.read()).get("health") == "true":
                        return
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"etcd on {self.endpoint} not healthy in {timeout}s")
            time.sleep(0.05)

    def wipe(self) -> None:
        """Delete every key (the revision counter and compaction stay, as in etcd)."""
        everything = base64.b64encode(b"\x00").decode()
        body = json.dumps({"key": everything, "range_end": everything}).encode()
        request = urllib.request.Request(
            f"http://{self.endpoint}/v3/kv/deleterange", data=body, method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            r.read()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)

    def __enter__(self) -> LocalEtcd:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
