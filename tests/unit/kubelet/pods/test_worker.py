"""A pod worker wakes for changes it must act on, not for status-only updates (its own
status writes coming back through the watch)."""

from __future__ import annotations

import copy
from typing import Any

from kubelet.pods.worker import PodWorker
from tests.unit.kubelet.pods.factories import make_pod


def _worker(pod: dict[str, Any]) -> PodWorker:
    return PodWorker(None, "uid-1", pod)  # type: ignore[arg-type]  # never started


def test_status_only_updates_do_not_wake_the_worker() -> None:
    pod = make_pod("a")
    worker = _worker(pod)
    newer = copy.deepcopy(pod)
    newer["status"] = {"phase": "Running"}
    newer["metadata"]["resourceVersion"] = "42"
    worker.update(newer)
    assert not worker._wake.is_set()
    assert worker.api_view()["status"] == {"phase": "Running"}  # kept, for the next pass


def test_spec_labels_and_deletion_wake_the_worker() -> None:
    pod = make_pod("a")
    for change in (
        lambda p: p["spec"]["containers"][0].update(image="busybox:2"),
        lambda p: p["metadata"].update(labels={"app": "web"}),
        lambda p: p["metadata"].update(deletionTimestamp="2024-01-01T00:00:00Z"),
    ):
        worker = _worker(pod)
        newer = copy.deepcopy(pod)
        change(newer)
        worker.update(newer)
        assert worker._wake.is_set()
        assert worker.terminating == ("deletionTimestamp" in newer["metadata"])
