"""`kubeling apiserver`: the API server over HTTPS on the embedded SQLite store (or
etcd, or memory for tests).

    kubeling apiserver [--data-dir /var/lib/kubeling/control] [--store URL]
                       [--listen 127.0.0.1:6443] [--token-file FILE] [--policy-file FILE]
                       [--default-not-ready-toleration-seconds 300]
                       [--default-unreachable-toleration-seconds 300]
                       [--kubelet-client-certificate F --kubelet-client-key F]
                       [--kubelet-certificate-authority F] [--kubelet-timeout 5s]
                       [--kubelet-preferred-address-types InternalIP,Hostname]
                       [--metric-resolution 15s]

On first start it makes, under the data directory: `pki/` (a CA and the server's
certificate), `tokens.csv` (an `admin` token in group system:masters, unless
--token-file names another file) and `admin.kubeconfig` (the CA, the server's URL
and the admin token: `kubectl --kubeconfig <data-dir>/admin.kubeconfig get pods`).
Later starts reuse them. The namespaces default, kube-system, kube-public and
kube-node-lease are created when missing, and the `kubernetes` Service in default
with Endpoints of this server's address (kept current at every start, as the
kube-apiserver's endpoint reconciler does). Pods being created tolerate the
not-ready/unreachable NoExecute taints for the --default-*-toleration-seconds
(the DefaultTolerationSeconds admission). SIGINT/SIGTERM stop it.

Kubelets are reached with `pki/apiserver-kubelet-client.{crt,key}` (CN
kube-apiserver-kubelet-client, O system:masters, issued by the CA; kubelets trust it
with `--client-ca-file <data-dir>/pki/ca.crt`) unless --kubelet-client-certificate
and --kubelet-client-key name another pair. Their serving certificates are checked
only against --kubelet-certificate-authority, as kube-apiserver does.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import logging
import os
import re
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
from control.apiserver.kubelet_proxy import (
    DEFAULT_ADDRESS_TYPES,
    KubeletClient,
    KubeletClientConfig,
    parse_address_types,
)
from control.apiserver.metrics import DEFAULT_RESOLUTION
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


def bootstrap(registry: Registry, *, address: str = "", port: int = 0) -> None:
    """The namespaces every cluster has; with `address`, the `kubernetes` Service and
    its Endpoints (this server)."""
    namespaces = lookup("", "v1", "namespaces")
    assert namespaces is not None
    for name in SYSTEM_NAMESPACES:
        try:
            registry.create(namespaces, "", {"metadata": {"name": name}})
        except ApiError as e:
            if e.reason != "AlreadyExists":
                raise
    if address:
        _kubernetes_service(registry, address, port)


def _kubernetes_service(registry: Registry, address: str, port: int) -> None:
    services, endpoints = lookup("", "v1", "services"), lookup("", "v1", "endpoints")
    assert services is not None and endpoints is not None
    labels = {"component": "apiserver", "provider": "kubernetes"}
    ports = [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]
    try:
        registry.create(services, "default", {"metadata": {"name": "kubernetes", "labels": labels},
                                              "spec": {"ports": ports}})  # fmt: skip
    except ApiError as e:
        if e.reason != "AlreadyExists":
            raise
        service = registry.get(services, "default", "kubernetes")
        if service["spec"].get("ports") != ports:  # started on another port this time
            registry.update(services, "default", "kubernetes",
                            {**service, "spec": {**service["spec"], "ports": ports}})  # fmt: skip
    subsets = [{"addresses": [{"ip": address}],
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]  # fmt: skip
    wanted = {"metadata": {"name": "kubernetes", "labels": dict(labels)}, "subsets": subsets}
    try:
        current = registry.get(endpoints, "default", "kubernetes")
    except ApiError as e:
        if e.code != 404:
            raise
        registry.create(endpoints, "default", wanted)
        return
    if current.get("subsets") != subsets:
        registry.update(endpoints, "default", "kubernetes", {**current, "subsets": subsets})


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
    not_ready_toleration_seconds: int = 300,
    unreachable_toleration_seconds: int = 300,
    kubelet: KubeletClientConfig | None = None,
    metric_resolution: float = DEFAULT_RESOLUTION,
) -> tuple[ApiServer, Path]:
    """A started API server and the path of its admin kubeconfig. `kubelet` without a
    certificate gets the kubelet-client certificate issued under `pki/`."""
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
    registry = Registry(
        backend, clock=time.time, not_ready_toleration_seconds=not_ready_toleration_seconds,
        unreachable_toleration_seconds=unreachable_toleration_seconds,
    )  # fmt: skip
    server = ApiServer(
        registry, Authenticator.from_files(tokens, policy_file), host=host, port=port,
        tls=tls_context(ca, serving),
        kubelet=KubeletClient(kubelet_client_config(pki, ca, kubelet or KubeletClientConfig())),
        metric_resolution=metric_resolution,
    )  # fmt: skip
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    bootstrap(registry, address=shown, port=server.port)
    url = f"https://[{shown}]:{server.port}" if ":" in shown else f"https://{shown}:{server.port}"
    config = data_dir / "admin.kubeconfig"
    _write_private(config, kubeconfig(url, ca.certificate, token))
    server.start()
    return server, config


KUBELET_CLIENT_NAME = "kube-apiserver-kubelet-client"
KUBELET_CLIENT_FILE = "apiserver-kubelet-client"  # .crt and .key under pki/


def kubelet_client_config(
    pki: Path, ca: certs.KeyPair, given: KubeletClientConfig
) -> KubeletClientConfig:
    """`given`, with the kubelet-client certificate issued under `pki` unless it
    names a certificate of its own."""
    if given.certificate is not None:
        return given
    pair = certs.issue(
        ca, certs.KeyPair(pki / f"{KUBELET_CLIENT_FILE}.crt", pki / f"{KUBELET_CLIENT_FILE}.key"),
        common_name=KUBELET_CLIENT_NAME, organizations=(ADMIN_GROUP,),
    )  # fmt: skip
    return dataclasses.replace(given, certificate=pair.certificate, key=pair.key)


def duration(text: str) -> float:
    """A duration flag: "5s", "1m", "1m30s", "500ms" or plain seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a duration such as 5s or 1m")
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in parts)


def _positive_duration(text: str) -> float:
    seconds = duration(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be more than zero")
    return seconds


def _address_types(text: str) -> tuple[str, ...]:
    try:
        return parse_address_types(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _seconds(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of seconds (0 or more)")
    return int(text)


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
    for condition in ("not-ready", "unreachable"):
        parser.add_argument(
            f"--default-{condition}-toleration-seconds", type=_seconds, default=300,
            help=f"how long pods tolerate the node.kubernetes.io/{condition}:NoExecute taint "
            "unless they say otherwise",
        )  # fmt: skip
    kubelet = parser.add_argument_group("kubelets (logs, exec, attach, port-forward, metrics)")
    kubelet.add_argument(
        "--kubelet-client-certificate",
        type=Path,
        help="default: <data-dir>/pki/apiserver-kubelet-client.crt (issued)",
    )
    kubelet.add_argument("--kubelet-client-key", type=Path)
    kubelet.add_argument(
        "--kubelet-certificate-authority",
        type=Path,
        help="check the kubelets' serving certificates against this CA",
    )
    kubelet.add_argument(
        "--kubelet-preferred-address-types",
        type=_address_types,
        default=",".join(DEFAULT_ADDRESS_TYPES),
    )
    kubelet.add_argument("--kubelet-timeout", type=_positive_duration, default="5s")
    kubelet.add_argument("--metric-resolution", type=_positive_duration, default="15s",
                         help="how often the kubelets are scraped for metrics.k8s.io")  # fmt: skip
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    args = parser.parse_args(argv)
    if (args.kubelet_client_certificate is None) != (args.kubelet_client_key is None):
        parser.error("--kubelet-client-certificate and --kubelet-client-key go together")
    kubelet_config = KubeletClientConfig(
        certificate=args.kubelet_client_certificate, key=args.kubelet_client_key,
        certificate_authority=args.kubelet_certificate_authority,
        preferred_address_types=args.kubelet_preferred_address_types,
        timeout=args.kubelet_timeout,
    )  # fmt: skip
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
            not_ready_toleration_seconds=args.default_not_ready_toleration_seconds,
            unreachable_toleration_seconds=args.default_unreachable_toleration_seconds,
            kubelet=kubelet_config, metric_resolution=args.metric_resolution,
        )  # fmt: skip
    except (ValueError, OSError, ApiError, ssl.SSLError) as e:
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
