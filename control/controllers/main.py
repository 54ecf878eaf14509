"""`kubeling controller-manager`: run the workload controllers against the cluster
in a kubeconfig.

    kubeling controller-manager --kubeconfig FILE [--leader-elect] [--log-level info]

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kubeling controller-manager", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--kubeconfig", required=True)
    leader.add_arguments(parser)
    parser.add_argument("--workers", type=int, default=2, help="per controller")
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
    manager = ControllerManager(
        client, leader_elect=args.leader_elect, lease_duration=args.lease_duration,
        renew_deadline=args.renew_deadline, retry_period=args.retry_period,
        workers=args.workers,
    )  # fmt: skip
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    sys.stdout.write(f"controller manager {manager.identity}\n")
    sys.stdout.flush()
    kept = manager.run(stop)
    client.close()
    return 0 if kept else 1
