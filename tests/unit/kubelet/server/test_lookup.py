"""Which container instance /containerLogs reads, from the pod's status (the kubelet's
rules and error texts) or from the runtime's instances."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cri.api import api_pb2
from kubelet.server.lookup import RequestError, log_container
from tests.unit.kubelet.stats.fakes import CONTAINER, OLD_CONTAINER, FakeCri, pod

RUNNING = {"running": {"startedAt": "2023-11-14T22:15:00Z"}}


def with_status(**status: Any) -> dict[str, Any]:
    manifest = pod()
    manifest["status"]["containerStatuses"] = [{"name": "main", **status}]
    return manifest


@pytest.mark.parametrize(
    ("status", "previous", "expected"),
    [
        ({"state": RUNNING, "containerID": "kubeling://abc"}, False, "abc"),
        ({"state": RUNNING, "containerID": "kubeling://abc",
          "lastState": {"terminated": {"containerID": "kubeling://old"}}}, True, "old"),
        ({"state": {"terminated": {"containerID": "kubeling://done"}}}, False, "done"),
        ({"state": {"terminated": {}}, "lastState": {"terminated": {"containerID": "x://l"}}},
         False, "l"),
        ({"state": {"waiting": {"reason": "CrashLoopBackOff"}},
          "lastState": {"terminated": {"containerID": "x://crashed"}}}, False, "crashed"),
    ],
)  # fmt: skip
def test_from_the_pod_status(status: dict[str, Any], previous: bool, expected: str) -> None:
    cri = FakeCri(Path("/nonexistent"))
    assert log_container(cri, with_status(**status), "default", "web", "main",
                         previous=previous) == expected  # fmt: skip


@pytest.mark.parametrize(
    ("status", "previous", "message"),
    [
        ({"state": RUNNING, "containerID": "x://a"}, True,
         'previous terminated container "main" in pod "web" not found'),
        ({"state": {"terminated": {}}}, False, 'container "main" in pod "web" is terminated'),
        ({"state": {"waiting": {"reason": "ErrImagePull"}}}, False,
         'container "main" in pod "web" is waiting to start: image can\'t be pulled'),
        ({"state": {"waiting": {"reason": "ImagePullBackOff"}}}, False,
         'container "main" in pod "web" is waiting to start: trying and failing to pull image'),
        ({"state": {"waiting": {"reason": "PodInitializing"}}}, False,
         'container "main" in pod "web" is waiting to start: PodInitializing'),
        ({"state": {}}, False, 'container "main" in pod "web" is waiting to start - no logs yet'),
    ],
)  # fmt: skip
def test_errors_from_the_pod_status(status: dict[str, Any], previous: bool, message: str) -> None:
    cri = FakeCri(Path("/nonexistent"))
    with pytest.raises(RequestError) as raised:
        log_container(cri, with_status(**status), "default", "web", "main", previous=previous)
    assert (raised.value.code, raised.value.message) == (400, message)


def test_from_the_runtime_without_a_status() -> None:
    cri = FakeCri(Path("/nonexistent"))
    assert log_container(cri, pod(), "default", "web", "main", previous=False) == CONTAINER
    assert log_container(cri, pod(), "default", "web", "main", previous=True) == OLD_CONTAINER
    cri.runtime.state[CONTAINER] = api_pb2.CONTAINER_CREATED
    with pytest.raises(RequestError, match="is waiting to start: ContainerCreating"):
        log_container(cri, pod(), "default", "web", "main", previous=False)
    with pytest.raises(RequestError, match="previous terminated container"):
        log_container(cri, pod(), "other", "web", "main", previous=True)
