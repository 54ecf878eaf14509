"""The status manager writes only changes, nulls the fields it wrote that are gone, and
leaves others' fields alone."""

from __future__ import annotations

from typing import Any

from kubeapi.client import ApiError
from kubelet.pods.status_manager import StatusManager


class FakeClient:
    def __init__(self) -> None:
        self.patches: list[tuple[str, Any]] = []
        self.fail: ApiError | None = None

    def patch(self, path: str, body: Any) -> dict[str, Any]:
        if self.fail is not None:
            raise self.fail
        self.patches.append((path, body))
        return {}


POD = {"metadata": {"name": "web", "namespace": "prod", "uid": "u1"},
       "status": {"phase": "Pending", "nominatedNodeName": "n1"}}  # fmt: skip


def test_writes_changes_only() -> None:
    client = FakeClient()
    statuses = StatusManager(client)  # type: ignore[arg-type]
    running = {"phase": "Running", "podIP": "10.0.0.2"}
    assert statuses.set(POD, running)
    # Others' fields (nominatedNodeName) are not nulled on the first write.
    assert client.patches == [("/api/v1/namespaces/prod/pods/web/status", {"status": running})]
    assert not statuses.set(POD, dict(running))
    assert len(client.patches) == 1
    assert statuses.set(POD, {"phase": "Running"})
    assert client.patches[-1][1] == {"status": {"phase": "Running", "podIP": None}}
    assert statuses.last("u1") == {"phase": "Running"}


def test_unchanged_from_the_api_is_not_written() -> None:
    client = FakeClient()
    assert not StatusManager(client).set(POD, dict(POD["status"]))  # type: ignore[arg-type]
    assert client.patches == []


def test_failures_are_retried_and_a_gone_pod_forgotten() -> None:
    client = FakeClient()
    statuses = StatusManager(client)  # type: ignore[arg-type]
    client.fail = ApiError("PATCH", "/x", 500, {"reason": "InternalError"})
    assert not statuses.set(POD, {"phase": "Running"})
    client.fail = None
    assert statuses.set(POD, {"phase": "Running"})  # not recorded as written before
    client.fail = ApiError("PATCH", "/x", 404, {"reason": "NotFound"})
    assert not statuses.set(POD, {"phase": "Failed"})
    assert statuses.last("u1") is None
