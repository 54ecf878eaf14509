"""Quantities, the cache's assume/forget, the queue's retries, the lease decision and
the client's kubeconfig reading: the small stateful pieces, without a server."""

from __future__ import annotations

import base64
import json
from fractions import Fraction
from pathlib import Path

import pytest

from control.leader import Action, Observed, decide
from control.scheduler.cache import Cache
from control.scheduler.queue import SchedulingQueue
from kubeapi.client import Client, load_kubeconfig
from kubeapi.quantity import QuantityError, milli_value, parse_quantity, value

from .test_filters import pod


@pytest.mark.parametrize(
    ("text", "expected"),
    [("100m", Fraction(1, 10)), ("1Gi", 2**30), ("1.5", Fraction(3, 2)), ("2k", 2000),
     ("1e3", 1000), ("5Mi", 5 * 2**20), (3, 3), ("+.5", Fraction(1, 2)),
     ("10n", Fraction(1, 10**8))],
)  # fmt: skip
def test_quantities(text: str, expected: Fraction) -> None:
    assert parse_quantity(text) == expected


def test_quantity_rounding_and_errors() -> None:
    assert milli_value("1.0001") == 1001
    assert value("1500m") == 2
    for bad in ("", "1x", "Gi", "1.2.3", "1 Gi"):
        with pytest.raises(QuantityError):
            parse_quantity(bad)


def _bound(name: str, node: str, cpu: str) -> dict[str, object]:
    p = pod(requests={"cpu": cpu})
    p["metadata"] = {"name": name, "namespace": "default", "uid": name}
    p["spec"]["nodeName"] = node
    return p


def test_cache_counts_bound_and_assumed_pods() -> None:
    cache = Cache()
    cache.set_node({"metadata": {"name": "n"}, "status": {"allocatable": {"cpu": "4"}}})
    cache.set_pod(_bound("a", "n", "1"))
    [info] = cache.nodes()
    assert info.requested.milli_cpu == 1000
    pending = _bound("b", "", "2")
    cache.assume(pending, "n")
    assert info.requested.milli_cpu == 3000
    cache.set_pod(pending)  # a stale unbound event keeps the assumption
    assert cache.placed_node(pending) == "n"
    cache.forget(pending)
    assert info.requested.milli_cpu == 1000 and cache.placed_node(pending) == ""
    cache.assume(pending, "n")
    cache.set_pod(_bound("b", "n", "2"))  # the watch confirms it: counted once
    assert info.requested.milli_cpu == 3000
    finished = _bound("a", "n", "1")
    finished["status"] = {"phase": "Succeeded"}
    cache.set_pod(finished)
    assert info.requested.milli_cpu == 2000
    # A node re-added (or relisted) counts the pods already placed on it.
    cache.replace_nodes([{"metadata": {"name": "n"}, "status": {"allocatable": {"cpu": "4"}}}])
    assert cache.nodes()[0].requested.milli_cpu == 2000
    cache.replace_pods([])
    assert cache.nodes()[0].requested.milli_cpu == 0


def test_queue_parks_and_wakes() -> None:
    now = [0.0]
    queue = SchedulingQueue(retry_interval=10, clock=lambda: now[0])
    a, b = _bound("a", "", "1"), _bound("b", "", "1")
    queue.add(a)
    queue.add(b)
    assert queue.pop(0) is a
    queue.park(a)
    queue.add(a)  # an update of a parked pod does not wake it
    assert queue.pop(0) is b
    assert queue.pop(0) is None
    now[0] = 11
    queue.flush()
    assert queue.pop(0) is a
    queue.park(a)
    queue.move_all_to_active()
    assert queue.pop(0) is a
    high = _bound("h", "", "1")
    high["spec"]["priority"] = 10
    queue.add(b)
    queue.add(high)
    assert queue.pop(0) is high
    queue.replace([])
    assert len(queue) == 0


def lease(holder: str, renew: str = "t1", duration: int = 15) -> dict[str, object]:
    return {"spec": {"holderIdentity": holder, "renewTime": renew,
                     "leaseDurationSeconds": duration}}  # fmt: skip


def test_lease_decisions() -> None:
    def run(lease_: dict[str, object] | None, observed: Observed | None, now: float) -> Action:
        return decide(lease_, identity="me", now=now, observed=observed, lease_duration=15)

    assert run(None, None, 0) is Action.CREATE
    assert run(lease("me"), None, 0) is Action.RENEW
    assert run(lease(""), None, 0) is Action.ACQUIRE
    seen = Observed(("other", "t1"), 100.0)
    assert run(lease("other"), seen, 110) is Action.WAIT
    assert run(lease("other"), seen, 116) is Action.ACQUIRE
    assert run(lease("other", renew="t2"), seen, 200) is Action.WAIT  # renewed since


def test_kubeconfig(tmp_path: Path) -> None:
    config = {
        "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:6443/",
                      "certificate-authority-data": base64.b64encode(b"PEM").decode()}}],
        "users": [{"name": "u", "user": {"token": "secret"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }  # fmt: skip
    path = tmp_path / "config"
    path.write_text(json.dumps(config))
    loaded = load_kubeconfig(path)
    assert (loaded.server, loaded.ca_data, loaded.token) == ("https://127.0.0.1:6443", b"PEM",
                                                             "secret")  # fmt: skip
    path.write_text("current-context: c\nclusters:\n- name: k\n  cluster: {server: 'http://h:1'}\n"
                    "contexts:\n- name: c\n  context: {cluster: k}\n")  # fmt: skip
    plain = Client(load_kubeconfig(path))
    assert plain.url("/api/v1/pods", {"watch": True, "x": None, "n": 1}) == (
        "/api/v1/pods?watch=true&n=1"
    )
    with pytest.raises(ValueError, match="no context 'nope'"):
        load_kubeconfig(path, context="nope")
