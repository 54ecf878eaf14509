"""`kubeling scheduler`: schedule pending pods of the cluster in a kubeconfig.

    kubeling scheduler --kubeconfig FILE [--scheduler-name default-scheduler]
                       [--leader-elect] [--log-level info]

With --leader-elect, only the holder of the kube-system/kube-scheduler Lease binds
(run several for availability). SIGINT/SIGTERM stop it.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from control import leader
from control.scheduler.scheduler import DEFAULT_SCHEDULER, Scheduler
from kubeapi.client import Client


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kubeling scheduler", description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--scheduler-name", default=DEFAULT_SCHEDULER)
    leader.add_arguments(parser)
    parser.add_argument("--retry-interval", type=float, default=15.0,
                        help="seconds before an unschedulable pod is tried again")  # fmt: skip
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
        sys.stderr.write(f"kubeling scheduler: kubeconfig {args.kubeconfig}: {e}\n")
        return 1
    scheduler = Scheduler(
        client, name=args.scheduler_name, leader_elect=args.leader_elect,
        retry_interval=args.retry_interval, lease_duration=args.lease_duration,
        renew_deadline=args.renew_deadline, retry_period=args.retry_period,
    )  # fmt: skip
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    sys.stdout.write(f"scheduling as {args.scheduler_name} ({scheduler.identity})\n")
    sys.stdout.flush()
    scheduler.run(stop)
    client.close()
    return 0
