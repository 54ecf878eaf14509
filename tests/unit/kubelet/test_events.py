"""The event recorder: Events as the API sees them, repeats folded into a count, and
once started, writes from a thread of their own under the kubelet's rate limit, so
that recording never waits for the API server."""

from __future__ import annotations

import threading
from typing import Any, cast

from kubeapi.client import Client
from kubelet.events import EventRecorder, TokenBucket

POD = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "web", "namespace": "shop", "uid": "u-1"},
}  # fmt: skip


class FakeClient:
    """Records creates and patches; `gate`, when set, holds every write until opened."""

    def __init__(self) -> None:
        self.created: list[tuple[str, dict[str, Any]]] = []
        self.patched: list[tuple[str, dict[str, Any]]] = []
        self.gate: threading.Event | None = None
        self.written = threading.Semaphore(0)

    def _wait(self) -> None:
        if self.gate is not None:
            assert self.gate.wait(10)

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self._wait()
        self.created.append((path, body))
        self.written.release()
        return body

    def patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self._wait()
        self.patched.append((path, body))
        self.written.release()
        return body


def recorder(client: FakeClient, **kwargs: Any) -> EventRecorder:
    return EventRecorder(cast(Client, client), "node-a", **kwargs)


def test_an_event_names_its_pod_and_container() -> None:
    client = FakeClient()
    recorder(client).record(POD, "Normal", "Started", "Started container app",
                            field_path="spec.containers{app}")  # fmt: skip
    [(path, event)] = client.created
    assert path == "/api/v1/namespaces/shop/events"
    assert event["involvedObject"] == {
        "apiVersion": "v1", "kind": "Pod", "name": "web", "uid": "u-1",
        "namespace": "shop", "fieldPath": "spec.containers{app}",
    }  # fmt: skip
    assert (event["reason"], event["type"], event["count"]) == ("Started", "Normal", 1)
    assert event["source"] == {"component": "kubelet", "host": "node-a"}


def test_repeats_are_folded_into_the_first_event() -> None:
    client = FakeClient()
    events = recorder(client)
    for _ in range(3):
        events.record(POD, "Warning", "BackOff", "Back-off restarting failed container")
    [(_, first)] = client.created
    assert [body["count"] for _, body in client.patched] == [2, 3]
    assert {path for path, _ in client.patched} == {
        f"/api/v1/namespaces/shop/events/{first['metadata']['name']}"
    }


def test_a_started_recorder_does_not_wait_for_the_api_server() -> None:
    client = FakeClient()
    client.gate = threading.Event()  # the API server takes nothing for now
    events = recorder(client)
    events.start()
    try:
        for reason in ("Pulled", "Created", "Started"):
            events.record(POD, "Normal", reason, f"{reason} it")  # returns at once
        assert client.created == []
        client.gate.set()
        for _ in range(3):
            assert client.written.acquire(timeout=10)
        assert [body["reason"] for _, body in client.created] == ["Pulled", "Created", "Started"]
    finally:
        events.stop()


def test_stop_writes_what_is_queued() -> None:
    client = FakeClient()
    events = recorder(client, qps=0)
    events.start()
    for index in range(20):
        events.record(POD, "Normal", "Started", f"container {index}")
    events.stop()
    assert len(client.created) == 20
    events.record(POD, "Normal", "Killing", "stopped: written at once")
    assert client.created[-1][1]["reason"] == "Killing"


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(50, 100, clock=lambda: now[0])
    assert [bucket.delay() for _ in range(100)] == [0.0] * 100
    assert bucket.delay() == 1 / 50  # the 101st waits for one token
    now[0] += 1.0  # a second later: 50 more, one of them already promised
    assert [bucket.delay() for _ in range(49)] == [0.0] * 49
    assert bucket.delay() > 0
    assert TokenBucket(0, 1).delay() == 0.0  # no limit
