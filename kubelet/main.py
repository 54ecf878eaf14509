"""`kubeling kubelet`: the node agent. Parses the real kubelet's flag names into a
KubeletConfig, sets up logging, and runs the Kubelet until SIGINT or SIGTERM; then it
stops its loops and workers and leaves the containers running (the next kubelet
adopts them).

Durations take Go's form (`10s`, `1m30s`, `500ms`, `1h`) or plain seconds. A bad
value is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import re
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from kubelet.config import DEFAULT_PORT, DEFAULT_ROOT_DIR, KubeletConfig
from kubelet.cri_client import DEFAULT_ENDPOINT

PROG = "kubeling kubelet"
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds of a Go duration (`1m30s`) or a plain number of seconds."""
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        position, seconds = 0, 0.0
        for match in _DURATION_PART.finditer(value):
            if match.start() != position:
                break
            seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            position = match.end()
        if position != len(value) or not value:
            raise argparse.ArgumentTypeError(
                f"invalid duration {text!r} (expected e.g. 10s, 1m30s, 500ms or seconds)"
            ) from None
    if seconds < 0 or seconds != seconds:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: must not be negative")
    return seconds


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: not in 0..65535")
    return port


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}: must be positive")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"invalid number {text!r}: must be 0 or more")
    return value


def _ip(text: str) -> str:
    if not text:
        return ""  # the default: chosen at start-up
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid IP address {text!r}") from None


def _ips(text: str) -> list[str]:
    return [_ip(part.strip()) for part in text.split(",") if part.strip()]


def _cidr(text: str) -> str:
    if not text:
        return ""
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid CIDR {text!r}") from None


def _labels(text: str) -> dict[str, str]:
    labels = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(f"invalid label {part!r} (expected key=value)")
        labels[key.strip()] = value.strip()
    return labels


def _signal_map(separator: str, value_type: Callable[[str], Any] = str) -> Callable[[str], Any]:
    """The kubelet's eviction flag syntax: "memory.available<100Mi,nodefs.available<10%"
    (`<` for thresholds), "memory.available=1m30s" (`=` for grace periods, reclaims)."""

    def parse(text: str) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for part in text.split(","):
            if not part.strip():
                continue
            key, sep, value = part.partition(separator)
            if not sep or not key.strip() or not value.strip():
                raise argparse.ArgumentTypeError(
                    f"invalid eviction setting {part!r} (expected signal{separator}value)"
                )
            found[key.strip()] = value_type(value.strip())
        return found

    return parse


def _percent(text: str) -> int:
    try:
        value = int(text.strip().rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid percentage {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"invalid percentage {text!r}: not in 0..100")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="The node agent: registers the node and runs its pods "
                "through a CRI runtime.")  # fmt: skip
    p.add_argument("--kubeconfig", required=True, help="how to reach the API server")
    p.add_argument("--node-name", default="", help="default: the host name, lower case")
    p.add_argument("--container-runtime-endpoint", default=DEFAULT_ENDPOINT)
    p.add_argument("--root-dir", type=Path, default=Path(DEFAULT_ROOT_DIR))
    p.add_argument("--pod-logs-dir", type=Path, default=None,
                   help="container log directories; default: <root-dir>/pod-logs")  # fmt: skip
    p.add_argument("--pod-manifest-path", type=Path, default=None,
                   help="directory of static pod manifests")  # fmt: skip
    p.add_argument("--address", type=_ip, default="0.0.0.0")
    p.add_argument("--port", type=_port, default=DEFAULT_PORT)
    p.add_argument("--tls-cert-file", type=Path, default=None)
    p.add_argument("--tls-private-key-file", type=Path, default=None)
    p.add_argument("--client-ca-file", type=Path, default=None)
    p.add_argument("--node-ip", type=_ip, default="")
    p.add_argument("--pod-cidr", type=_cidr, default="")
    p.add_argument("--max-pods", type=_positive_int, default=110)
    p.add_argument("--cluster-dns", type=_ips, default=[])
    p.add_argument("--cluster-domain", default="cluster.local")
    p.add_argument("--resolv-conf", type=Path, default=Path("/etc/resolv.conf"))
    p.add_argument("--cgroup-root", default="/")
    p.add_argument("--node-labels", type=_labels, default={})
    p.add_argument("--node-status-update-frequency", type=parse_duration, default=10.0)
    p.add_argument("--sync-frequency", type=parse_duration, default=60.0)
    p.add_argument("--file-check-frequency", type=parse_duration, default=20.0)
    p.add_argument("--runtime-request-timeout", type=parse_duration, default=120.0)
    p.add_argument("--image-pull-progress-deadline", type=parse_duration, default=600.0)
    p.add_argument("--serialize-image-pulls", type=lambda s: s.lower() in ("true", "1", "yes"),
                   default=True)  # fmt: skip
    p.add_argument("--event-qps", type=_non_negative_float, default=50.0,
                   help="events written per second after a burst (0: no limit)")  # fmt: skip
    p.add_argument("--event-burst", type=_positive_int, default=100)
    p.add_argument("--max-dead-containers-per-container", type=_positive_int, default=1)
    p.add_argument("--eviction-hard", type=_signal_map("<"), default=None,
                   help='default "memory.available<100Mi,nodefs.available<10%%"')  # fmt: skip
    p.add_argument("--eviction-soft", type=_signal_map("<"), default={})
    p.add_argument("--eviction-soft-grace-period", type=_signal_map("=", parse_duration),
                   default={}, help='e.g. "memory.available=1m30s"')  # fmt: skip
    p.add_argument("--eviction-minimum-reclaim", type=_signal_map("="), default={},
                   help='e.g. "memory.available=0Mi,nodefs.available=500Mi"')  # fmt: skip
    p.add_argument("--eviction-max-pod-grace-period", type=int, default=0)
    p.add_argument("--eviction-pressure-transition-period", type=parse_duration, default=300.0)
    p.add_argument("--image-gc-high-threshold", type=_percent, default=85)
    p.add_argument("--image-gc-low-threshold", type=_percent, default=80)
    p.add_argument("--image-minimum-gc-age", type=parse_duration, default=120.0)
    p.add_argument("--pod-infra-container-image", default="kubeling.local/pause:latest",
                   help="the sandbox image, never garbage-collected")  # fmt: skip
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def config_from_args(args: argparse.Namespace) -> KubeletConfig:
    config = KubeletConfig(
        kubeconfig=args.kubeconfig,
        container_runtime_endpoint=args.container_runtime_endpoint,
        root_dir=args.root_dir,
        pod_logs_dir=args.pod_logs_dir,
        pod_manifest_path=args.pod_manifest_path,
        address=args.address,
        port=args.port,
        tls_cert_file=args.tls_cert_file,
        tls_private_key_file=args.tls_private_key_file,
        client_ca_file=args.client_ca_file,
        node_ip=args.node_ip,
        pod_cidr=args.pod_cidr,
        max_pods=args.max_pods,
        cluster_dns=args.cluster_dns,
        cluster_domain=args.cluster_domain,
        resolv_conf=args.resolv_conf,
        cgroup_root=args.cgroup_root,
        node_labels=args.node_labels,
        node_status_update_frequency=args.node_status_update_frequency,
        sync_frequency=args.sync_frequency,
        file_check_frequency=args.file_check_frequency,
        runtime_request_timeout=args.runtime_request_timeout,
        image_pull_progress_deadline=args.image_pull_progress_deadline,
        serialize_image_pulls=args.serialize_image_pulls,
        event_qps=args.event_qps,
        event_burst=args.event_burst,
        max_dead_containers_per_container=args.max_dead_containers_per_container,
        eviction_soft=args.eviction_soft,
        eviction_soft_grace_period=args.eviction_soft_grace_period,
        eviction_minimum_reclaim=args.eviction_minimum_reclaim,
        eviction_max_pod_grace_period=args.eviction_max_pod_grace_period,
        eviction_pressure_transition_period=args.eviction_pressure_transition_period,
        image_gc_high_threshold=args.image_gc_high_threshold,
        image_gc_low_threshold=args.image_gc_low_threshold,
        image_minimum_gc_age=args.image_minimum_gc_age,
        pod_infra_container_image=args.pod_infra_container_image,
    )
    if args.node_name:
        config.node_name = args.node_name.lower()
    if args.eviction_hard is not None:  # given: it replaces the defaults, as the kubelet's
        config.eviction_hard = args.eviction_hard
    return config


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.tls_cert_file) != bool(args.tls_private_key_file):
        parser.error("--tls-cert-file and --tls-private-key-file go together")
    if not Path(args.kubeconfig).is_file():
        parser.error(f"--kubeconfig {args.kubeconfig}: no such file")
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = config_from_args(args)
    from kubelet.eviction import parse_thresholds
    from kubelet.image_gc import check_thresholds

    try:
        parse_thresholds(
            config.eviction_hard,
            config.eviction_soft,
            config.eviction_soft_grace_period,
            config.eviction_minimum_reclaim,
        )
        check_thresholds(config.image_gc_high_threshold, config.image_gc_low_threshold)
    except ValueError as e:
        parser.error(str(e))
    from kubelet.kubelet import Kubelet  # after the flags: a usage error needs no grpc

    try:
        kubelet = Kubelet(config)
    except (ValueError, OSError, KeyError) as e:
        sys.stderr.write(f"{PROG}: {e}\n")
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    kubelet.run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
