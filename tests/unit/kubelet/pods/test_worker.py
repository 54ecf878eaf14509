"""A pod worker wakes for changes it must act on, not for status-only updates (its own
status writes coming back through the watch), and resyncs every sync_frequency."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import pytest

from kubelet.config import KubeletConfig
from kubelet.pods.runtime import PodRuntime, RuntimeInfo
from kubelet.pods.sync import NodeFacts, SyncResult
from kubelet.pods.worker import PodWorker, WorkerContext
from tests.unit.kubelet.pods.factories import FakeProbes, make_pod


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
    changes: list[Callable[[dict[str, Any]], None]] = [
        lambda p: p["spec"]["containers"][0].update(image="busybox:2"),
        lambda p: p["metadata"].update(labels={"app": "web"}),
        lambda p: p["metadata"].update(deletionTimestamp="2024-01-01T00:00:00Z"),
    ]
    for change in changes:
        worker = _worker(pod)
        newer = copy.deepcopy(pod)
        change(newer)
        worker.update(newer)
        assert worker._wake.is_set()
        assert worker.terminating == ("deletionTimestamp" in newer["metadata"])


class _CountingSyncer:
    def __init__(self, *, acted: bool = True) -> None:
        self.syncs = 0
        self.acted = acted

    def sync_pod(self, pod: dict[str, Any], runtime: PodRuntime) -> SyncResult:
        self.syncs += 1
        return SyncResult(acted=self.acted)


@pytest.mark.parametrize("acted", [True, False])
def test_a_worker_resyncs_every_sync_frequency_without_a_wake(
    monkeypatch: pytest.MonkeyPatch, acted: bool
) -> None:
    """The periodic resync is what refreshes a running pod's ConfigMap and Secret
    volumes (sync_pod sets them up again on every pass)."""
    syncer = _CountingSyncer(acted=acted)
    context = WorkerContext(
        config=KubeletConfig(kubeconfig="k", sync_frequency=0.05),
        cri=None,  # type: ignore[arg-type]  # _fetch is replaced below
        client=None,  # type: ignore[arg-type]
        syncer=syncer,  # type: ignore[arg-type]
        statuses=None,  # type: ignore[arg-type]  # status_target gives None: nothing written
        probes=FakeProbes(),
        events=None,  # type: ignore[arg-type]
        runtime_info=RuntimeInfo(),
        node=lambda: NodeFacts("192.168.1.2", 1 << 30),
        status_target=lambda pod: None,
        on_exit=lambda uid, worker: None,
        forget_events=lambda uid: None,
    )
    worker = PodWorker(context, "uid-1", make_pod("a"))
    fetches: list[int] = []
    monkeypatch.setattr(worker, "_fetch", lambda: fetches.append(1) or PodRuntime("uid-1"))
    worker.start()
    try:
        deadline = time.monotonic() + 5
        while syncer.syncs < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        worker.stop()
        worker.join(5)
    assert syncer.syncs >= 4 and not worker.alive
    if acted:  # a sync that acted is followed by a relist for the status
        assert len(fetches) >= 2 * syncer.syncs - 1
    else:  # a settled pod's resync costs one relist, not two
        assert len(fetches) <= syncer.syncs + 1
