"""`kubeling apiserver`: the API server over HTTPS on the embedded SQLite store (or
etcd, or memory for tests).

    kubeling apiserver [--data-dir /var/lib/kubeling/control] [--store URL]
                       [--listen 127.0.0.1:6443] [--token-file FILE] [--policy-file FILE]

On first start it makes, under the data directory: `pki/` (a CA and the server's
certificate), `tokens.csv` (an `admin` token in group system:masters, unless
--token-file names another file) and `admin.kubeconfig` (the CA, the server's URL
and the admin token: `kubectl --kubeconfig <data-dir>/admin.kubeconfig get pods`).
Later starts reuse them. The namespaces default, kube-system, kube-public and
kube-node-lease are created when missing. SIGINT/SIGTERM stop it.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import secrets
import signal
import socket
import ssl
import sys
import threading
import time
from pathlib import Path

from control.apiserver import certs
from control.apiserver.auth import ADMIN_GROUP, Authenticator
from control.apiserver.errors import ApiError
from control.apiserver.objects import Registry
from control.apiserver.resources import lookup
from control.apiserver.server import ApiServer
from control.storage import Backend, open_backend

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = "/var/lib/kubeling/control"
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def _write_private(path: Path, text: str) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


def ensure_admin_token(path: Path) -> str:
    """The admin token in the token file, added (with a new file) when missing."""
    if path.exists():
        for line in path.read_text().splitlines():
            parts = [p.strip() for p in line.split(",")]
            if len(parts) >= 2 and parts[1] == "admin":
                return parts[0]
    token = secrets.token_urlsafe(32)
    existing = path.read_text() if path.exists() else ""
    _write_private(path, existing + f'{token},admin,admin,"{ADMIN_GROUP}"\n')
    return token


def kubeconfig(server_url: str, ca_certificate: Path, token: str, *, user: str = "admin") -> str:
    """A kubeconfig (as JSON, which kubectl reads as YAML) for `user` with `token`."""
    ca_data = base64.b64encode(ca_certificate.read_bytes()).decode()
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "kubeling",
        "clusters": [{"name": "kubeling", "cluster": {
            "server": server_url, "certificate-authority-data": ca_data}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "kubeling", "context": {
            "cluster": "kubeling", "user": user, "namespace": "default"}}],
    }  # fmt: skip
    return json.dumps(config, indent=2) + "\n"


def bootstrap(registry: Registry) -> None:
    """The namespaces every cluster has."""
    namespaces = lookup("", "v1", "namespaces")
    assert namespaces is not None
    for name in SYSTEM_NAMESPACES:
        try:
            registry.create(namespaces, "", {"metadata": {"name": name}})
        except ApiError as e:
            if e.reason != "AlreadyExists":
                raise


def tls_context(ca: certs.KeyPair, serving: certs.KeyPair) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(serving.certificate, serving.key)
    context.load_verify_locations(ca.certificate)
    context.verify_mode = ssl.CERT_OPTIONAL  # a client certificate, or a token
    return context


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--listen {text!r}: expected host:port")
    return host.strip("[]") or "127.0.0.1", int(port)


def start(
    data_dir: Path,
    backend: Backend,
    *,
    host: str = "127.0.0.1",
    port: int = 6443,
    token_file: Path | None = None,
    policy_file: Path | None = None,
) -> tuple[ApiServer, Path]:
    """A started API server and the path of its admin kubeconfig."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    pki = data_dir / "pki"
    ca = certs.ensure_ca(pki)
    names = ("localhost", socket.gethostname())
    addresses = ("127.0.0.1", "::1") if host in ("0.0.0.0", "::") else ("127.0.0.1", "::1", host)
    serving = certs.issue(
        ca, certs.KeyPair(pki / "apiserver.crt", pki / "apiserver.key"),
        common_name="kube-apiserver", dns_names=names,
        ip_addresses=tuple(dict.fromkeys(addresses)), server=True,
    )  # fmt: skip
    tokens = token_file or data_dir / "tokens.csv"
    token = ensure_admin_token(tokens)
    registry = Registry(backend, clock=time.time)
    bootstrap(registry)
    server = ApiServer(
        registry, Authenticator.from_files(tokens, policy_file), host=host, port=port,
        tls=tls_context(ca, serving),
    )  # fmt: skip
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"https://[{shown}]:{server.port}" if ":" in shown else f"https://{shown}:{server.port}"
    config = data_dir / "admin.kubeconfig"
    _write_private(config, kubeconfig(url, ca.certificate, token))
    server.start()
    return server, config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kubeling apiserver", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument(
        "--store",
        default="",
        help="sqlite:///FILE (default: <data-dir>/state.db), etcd://HOST:PORT, memory://",
    )
    parser.add_argument("--listen", default="127.0.0.1:6443")
    parser.add_argument("--token-file", type=Path)
    parser.add_argument("--policy-file", type=Path)
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    data_dir = Path(args.data_dir)
    try:
        host, port = parse_listen(args.listen)
        store = args.store or f"sqlite:///{data_dir.resolve() / 'state.db'}"
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        backend = open_backend(store)
    except (ValueError, OSError) as e:
        sys.stderr.write(f"kubeling apiserver: {e}\n")
        return 1
    try:
        server, config = start(
            data_dir, backend, host=host, port=port, token_file=args.token_file,
            policy_file=args.policy_file,
        )  # fmt: skip
    except (ValueError, OSError, ApiError) as e:
        sys.stderr.write(f"kubeling apiserver: {e}\n")
        backend.close()
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    sys.stdout.write(f"serving the API on {server.url}; kubeconfig: {config}\n")
    sys.stdout.flush()
    stop.wait()
    server.stop()
    backend.close()
    return 0
