"""A throwaway local registry for tests and benchmarks: the Debian ``docker-registry``
(distribution 2.x) on 127.0.0.1 on a free port, storing into a given directory,
optionally behind htpasswd basic auth.

What it owns: writing the registry's config YAML (and htpasswd file), starting the
process, waiting until ``/v2/`` answers, and stopping exactly that process by PID.
It never listens beyond 127.0.0.1. Used by tests/integration/images and bench/.

The htpasswd file needs bcrypt (the registry accepts nothing else): Python's ``bcrypt``
package (a test extra) or, failing that, ``htpasswd`` from apache2-utils.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

REGISTRY_BINARY = "docker-registry"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def htpasswd_line(username: str, password: str) -> str:
    """``user:$2b$...`` for a registry htpasswd file."""
    try:
        import bcrypt
    except ImportError:
        binary = shutil.which("htpasswd")
        if binary is None:
            raise RuntimeError(
                "htpasswd needs bcrypt: pip install bcrypt, or install apache2-utils"
            ) from None
        out = subprocess.run(
            [binary, "-niB", username],
            input=password,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return out.strip()
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    return f"{username}:{hashed}"


class LocalRegistry:
    """``docker-registry serve`` on 127.0.0.1:<free port>; use as a context manager or
    call :meth:`start` / :meth:`stop`."""

    def __init__(
        self,
        workdir: Path,
        *,
        users: dict[str, str] | None = None,
        port: int | None = None,
        binary: str = REGISTRY_BINARY,
    ) -> None:
        self.workdir = Path(workdir)
        self.users = dict(users or {})
        self.port = port or free_port()
        self.binary = binary
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def storage(self) -> Path:
        return self.workdir / "storage"

    def _write_config(self) -> Path:
        self.storage.mkdir(parents=True, exist_ok=True)
        config: dict[str, object] = {
            "version": 0.1,
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage)},
                "delete": {"enabled": True},
            },
            "http": {"addr": self.host},
        }
        if self.users:
            htpasswd = self.workdir / "htpasswd"
            lines = [htpasswd_line(u, p) for u, p in sorted(self.users.items())]
            htpasswd.write_text("\n".join(lines) + "\n")
            htpasswd.chmod(0o600)
            config["auth"] = {"htpasswd": {"realm": "kubeling-test", "path": str(htpasswd)}}
        path = self.workdir / "config.yml"
        # JSON is YAML: no YAML library needed.
        path.write_text(json.dumps(config, indent=2))
        return path

    def start(self, timeout: float = 20.0) -> LocalRegistry:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        with (self.workdir / "registry.log").open("ab") as log:
            self._process = subprocess.Popen(
                [self.binary, "serve", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://{self.host}/v2/"
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                log = (self.workdir / "registry.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"docker-registry on {self.host} exited: {log}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    response.read()
                    return
            except urllib.error.HTTPError as e:
                e.close()
                if e.code == 401:  # auth enabled: it answers
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"docker-registry on {self.host} did not answer in {timeout}s")
            time.sleep(0.05)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> LocalRegistry:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with contextlib.suppress(Exception):
            self.stop()
