"""Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection
does it, so that of several schedulers (or controller managers) only one acts at a
time. Shared by control.scheduler and control.controllers.

Every `retry_period` a candidate reads the Lease. It takes it when it is missing
(create: 409 means another candidate created it first) or when the holder has not
renewed it for `lease_duration` *as observed locally* (the time this candidate
first saw the current record, not the holder's clock); the holder renews it. Each
write is an update at the resourceVersion read (compare-and-swap): a 409 means
someone else wrote first, and the candidate is not leader. A leader that cannot
renew for `renew_deadline` stops leading.

`decide` is the pure part; `LeaderElector.run` performs it. Even if two leaders
overlapped, a pod could not be bound twice: the API refuses a Binding for a pod
that already has a node; the controllers write with compare-and-swap.
"""

from __future__ import annotations

import argparse
import datetime
import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubeapi.client import ApiError, Client

log = logging.getLogger(__name__)

Object = dict[str, Any]


class Action(enum.Enum):
    CREATE = "create"
    ACQUIRE = "acquire"
    RENEW = "renew"
    WAIT = "wait"


@dataclass(frozen=True, slots=True)
class Observed:
    """The Lease record last seen (holder, renewTime) and the local time it was seen."""

    record: tuple[str, str]
    at: float


def decide(
    lease: Object | None, *, identity: str, now: float, observed: Observed | None,
    lease_duration: float,
) -> Action:  # fmt: skip
    if lease is None:
        return Action.CREATE
    spec = lease.get("spec") or {}
    holder = str(spec.get("holderIdentity") or "")
    if holder == identity:
        return Action.RENEW
    if not holder:
        return Action.ACQUIRE
    duration = float(spec.get("leaseDurationSeconds") or lease_duration)
    record = (holder, str(spec.get("renewTime") or ""))
    if observed is None or observed.record != record:
        return Action.WAIT  # a new record: its clock starts now
    return Action.ACQUIRE if now - observed.at > duration else Action.WAIT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The leader-election flags the scheduler and the controller-manager share."""
    parser.add_argument("--leader-elect", action="store_true")
    parser.add_argument("--lease-duration", type=float, default=15.0, help="seconds")
    parser.add_argument("--renew-deadline", type=float, default=10.0, help="seconds")
    parser.add_argument("--retry-period", type=float, default=2.0, help="seconds")


def micro_time(at: float) -> str:
    moment = datetime.datetime.fromtimestamp(at, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self, client: Client, *, identity: str, namespace: str = "kube-system",
        name: str = "kube-scheduler", lease_duration: float = 15.0,
        renew_deadline: float = 10.0, retry_period: float = 2.0,
        clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.client = client
        self.identity = identity
        self.collection = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        self.name = name
        self.namespace = namespace
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.clock = clock
        self.wall = wall
        self.observed: Observed | None = None
        self.leading = threading.Event()
        self._renewed_at = 0.0

    def _spec(self, lease: Object | None, *, acquiring: bool) -> Object:
        spec = dict((lease or {}).get("spec") or {})
        now = micro_time(self.wall())
        if acquiring:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (
                1 if lease is not None else 0
            )
        spec.update(holderIdentity=self.identity, renewTime=now,
                    leaseDurationSeconds=int(self.lease_duration))  # fmt: skip
        return spec

    def try_once(self) -> bool:
        """One round: read, decide, write. True when this candidate leads after it."""
        try:
            lease: Object | None = self.client.get(f"{self.collection}/{self.name}")
        except ApiError as e:
            if e.code != 404:
                raise
            lease = None
        now = self.clock()
        if lease is not None:
            spec = lease.get("spec") or {}
            record = (str(spec.get("holderIdentity") or ""), str(spec.get("renewTime") or ""))
            if self.observed is None or self.observed.record != record:
                self.observed = Observed(record, now)
        action = decide(lease, identity=self.identity, now=now, observed=self.observed,
                        lease_duration=self.lease_duration)  # fmt: skip
        try:
            if action is Action.CREATE:
                self.client.create(self.collection, {
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": self._spec(None, acquiring=True),
                })  # fmt: skip
            elif action in (Action.ACQUIRE, Action.RENEW):
                assert lease is not None
                body = {**lease, "spec": self._spec(lease, acquiring=action is Action.ACQUIRE)}
                self.client.update(f"{self.collection}/{self.name}", body)
            else:
                return False
        except ApiError as e:
            if e.code == 409:
                return False  # another candidate wrote first
            raise
        if action is not Action.RENEW:
            log.info("acquired lease %s/%s", self.namespace, self.name,
                     extra={"identity": self.identity})  # fmt: skip
        self._renewed_at = now
        return True

    def run(self, stop: threading.Event) -> None:
        """Keep `leading` set while this candidate holds the lease, until `stop`."""
        while not stop.is_set():
            try:
                held = self.try_once()
            except (ApiError, OSError) as e:
                log.warning("lease %s/%s: %s", self.namespace, self.name, e)
                held = False
            if held:
                self.leading.set()
            elif self.leading.is_set() and (
                self.clock() - self._renewed_at > self.renew_deadline
                or self.observed is None
                or self.observed.record[0] != self.identity
            ):
                log.warning("lost lease %s/%s", self.namespace, self.name)
                self.leading.clear()
            stop.wait(self.retry_period)
        if self.leading.is_set():
            self.leading.clear()
            self._release()

    def _release(self) -> None:
        """Give the lease up on shutdown so another candidate takes it at once."""
        try:
            lease = self.client.get(f"{self.collection}/{self.name}")
            if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                spec = {**lease["spec"], "holderIdentity": "", "leaseDurationSeconds": 1}
                self.client.update(f"{self.collection}/{self.name}", {**lease, "spec": spec})
        except (ApiError, OSError) as e:
            log.debug("release lease: %s", e)
