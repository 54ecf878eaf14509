"""`kubeling controller-manager`: run the workload controllers against the cluster
in a kubeconfig.

    kubeling controller-manager --kubeconfig FILE [--leader-elect] [--log-level info]
        [--node-monitor-period 5s] [--node-monitor-grace-period 40s]
        [--controllers '*,-nodelifecycle,...']

With --leader-elect, only the holder of the kube-system/kube-controller-manager Lease
reconciles (run several for availability); one that loses it exits with status 1.
SIGINT/SIGTERM stop it.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from control import leader
from control.controllers.manager import ControllerManager
from kubeapi.client import Client

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration(text: str) -> float:
    """Seconds in `40s`, `1m`, `500ms` or plain seconds (`2.5`)."""
    stripped = text.strip()
    for unit in sorted(_UNITS, key=len, reverse=True):
        if stripped.endswith(unit):
            number, scale = stripped[: -len(unit)], _UNITS[unit]
            break
    else:
        number, scale = stripped, 1.0
    try:
        value = float(number) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a duration like 40s or 1m") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a duration cannot be negative")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kubeling controller-manager", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--kubeconfig", required=True)
    leader.add_arguments(parser)
    parser.add_argument("--workers", type=int, default=2, help="per controller")
    parser.add_argument(
        "--controllers", default="*",
        help="which to run: '*' (all), names, '-name' to leave one out (comma-separated)",
    )  # fmt: skip
    parser.add_argument(
        "--node-monitor-period", type=duration, default=5.0,
        help="how often each node's heartbeat is checked",
    )  # fmt: skip
    parser.add_argument(
        "--node-monitor-grace-period", type=duration, default=40.0,
        help="how long a node may go without a heartbeat before it is Unknown",
    )  # fmt: skip
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        client = Client.from_kubeconfig(args.kubeconfig)
    except (ValueError, OSError, KeyError) as e:
        sys.stderr.write(f"kubeling controller-manager: kubeconfig {args.kubeconfig}: {e}\n")
        return 1
    try:
        manager = ControllerManager(
            client, leader_elect=args.leader_elect, lease_duration=args.lease_duration,
            renew_deadline=args.renew_deadline, retry_period=args.retry_period,
            workers=args.workers, node_monitor_period=args.node_monitor_period,
            node_monitor_grace_period=args.node_monitor_grace_period,
            controllers=tuple(c for c in args.controllers.split(",") if c.strip()),
        )  # fmt: skip
    except ValueError as e:
        sys.stderr.write(f"kubeling controller-manager: {e}\n")
        client.close()
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    sys.stdout.write(f"controller manager {manager.identity}\n")
    sys.stdout.flush()
    kept = manager.run(stop)
    client.close()
    return 0 if kept else 1
