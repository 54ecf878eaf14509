"""The pod manager's bookkeeping without a runtime: API events and relists, static pods
and their mirror pods, status targets, admission by max pods, orphans."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubeapi.client import ApiError
from kubelet.config import KubeletConfig
from kubelet.pods.cgroups import PodCgroups
from kubelet.pods.manager import PodManager
from kubelet.pods.static import CONFIG_MIRROR_ANNOTATION
from kubelet.volumes import VolumeManager
from kubelet.volumes.testing import RecordingMounter


class FakeWorker:
    def __init__(self, context: Any, uid: str, pod: dict[str, Any]) -> None:
        self.uid, self.pod = uid, pod
        self.started = self.removed = False
        self.updates = 0

    def start(self) -> None:
        self.started = True

    def update(self, pod: dict[str, Any]) -> None:
        self.pod, self.updates = pod, self.updates + 1

    def remove(self) -> None:
        self.removed = True

    def wake(self) -> None: ...

    @property
    def active(self) -> bool:
        return not self.removed

    @property
    def terminating(self) -> bool:
        return self.removed

    def api_view(self) -> dict[str, Any]:
        return self.pod


class FakeClient:
    def __init__(self) -> None:
        self.created: list[tuple[str, dict[str, Any]]] = []
        self.deleted: list[tuple[str, Any]] = []

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = json.loads(json.dumps(body))
        created["metadata"]["uid"] = f"api-{len(self.created)}"
        self.created.append((path, body))
        return created

    def delete(self, path: str, body: Any = None) -> dict[str, Any]:
        self.deleted.append((path, body))
        if path.endswith("/gone"):
            raise ApiError("DELETE", path, 404, {"reason": "NotFound"})
        return {}


class FakePleg:
    def __init__(self, uids: set[str] | None = None) -> None:
        self.uids = uids or set()

    def pods(self) -> set[str]:
        return set(self.uids)

    def relisted(self) -> bool:
        return True

    def identity(self, uid: str) -> tuple[str, str]:
        return ("ns", f"name-of-{uid}")


class FakeStatuses:
    def __init__(self) -> None:
        self.set_calls: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def set(self, target: dict[str, Any], status: dict[str, Any]) -> bool:
        self.set_calls.append((target, status))
        return True


class FakeEvents:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def record(self, obj: Any, event_type: str, reason: str, message: str, **_: Any) -> None:
        self.reasons.append(reason)


class FakeContext:
    def __init__(self) -> None:
        self.statuses = FakeStatuses()
        self.events = FakeEvents()
        self.status_target: Any = None
        self.on_exit: Any = None


class FakeGC:
    def __init__(self) -> None:
        self.runs = 0

    def collect(self) -> None:
        self.runs += 1


def manager(
    tmp_path: Path,
    *,
    pleg: FakePleg | None = None,
    max_pods: int = 110,
    manifests: Path | None = None,
    orphaned_volumes: Any = None,
) -> tuple[PodManager, FakeClient, FakeContext]:
    config = KubeletConfig(
        kubeconfig="k",
        node_name="n1",
        root_dir=tmp_path,
        max_pods=max_pods,
        pod_manifest_path=manifests,
    )
    client, context = FakeClient(), FakeContext()
    node = {"metadata": {"name": "n1", "uid": "node-uid"}}
    cgroups = PodCgroups(tmp_path / "cgroupfs")  # an empty mount: no hierarchies
    found = PodManager(
        config,
        client,  # type: ignore[arg-type]
        context,  # type: ignore[arg-type]
        pleg or FakePleg(),  # type: ignore[arg-type]
        FakeGC(),  # type: ignore[arg-type]
        cgroups,
        node=lambda: node,
        new_worker=FakeWorker,  # type: ignore[arg-type]
        orphaned_volumes=orphaned_volumes,
    )
    return found, client, context


def api_pod(name: str, uid: str, **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default", "uid": uid, **meta},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]},
        "status": {"phase": "Pending"},
    }


def workers(found: PodManager) -> dict[str, FakeWorker]:
    return dict(found._workers)  # type: ignore[arg-type]


def test_relist_and_events_drive_workers(tmp_path: Path) -> None:
    found, _, _ = manager(tmp_path)
    assert not found.synced()
    found.handle(
        {"type": "RELISTED", "object": {"items": [api_pod("a", "ua"), api_pod("b", "ub")]}}
    )
    assert found.synced() and set(workers(found)) == {"ua", "ub"}
    assert all(w.started for w in workers(found).values())
    found.handle({"type": "MODIFIED", "object": api_pod("a", "ua", labels={"x": "1"})})
    assert workers(found)["ua"].updates == 1
    found.handle({"type": "DELETED", "object": api_pod("b", "ub")})
    assert workers(found)["ub"].removed
    # A relist without "a": gone while the watch was down.
    found.handle({"type": "RELISTED", "object": {"items": []}})
    assert workers(found)["ua"].removed
    assert found.status_target(api_pod("a", "ua")) is None


def test_finished_pods_unknown_to_the_runtime_get_no_worker(tmp_path: Path) -> None:
    found, _, _ = manager(tmp_path, pleg=FakePleg({"known"}))
    done = api_pod("done", "u1")
    done["status"]["phase"] = "Succeeded"
    found.handle({"type": "ADDED", "object": done})
    assert workers(found) == {}
    known = api_pod("known", "known")
    known["status"]["phase"] = "Failed"
    found.handle({"type": "ADDED", "object": known})
    assert set(workers(found)) == {"known"}


def test_admission_rejects_pods_beyond_max_pods(tmp_path: Path) -> None:
    found, _, context = manager(tmp_path, max_pods=1)
    found.handle({"type": "ADDED", "object": api_pod("a", "ua")})
    found.handle({"type": "ADDED", "object": api_pod("b", "ub")})
    assert set(workers(found)) == {"ua"}
    ((target, status),) = context.statuses.set_calls
    assert target["metadata"]["uid"] == "ub"
    assert status["phase"] == "Failed" and status["reason"] == "OutOfpods"
    assert context.events.reasons == ["OutOfpods"]


def test_static_pods_get_mirror_pods(tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "web.yaml").write_text(
        "kind: Pod\nmetadata: {name: web}\nspec: {containers: [{name: c, image: i}]}\n"
    )
    found, client, _ = manager(tmp_path, manifests=manifests)
    found.read_static()
    (uid,) = workers(found)
    static = workers(found)[uid].pod
    assert static["metadata"]["name"] == "web-n1"
    assert not found.synced() and client.created == []  # the API's mirrors are not known yet
    assert found.status_target(static) is None
    found.handle({"type": "RELISTED", "object": {"items": []}})  # the mirror is made now
    ((path, body),) = client.created
    assert path == "/api/v1/namespaces/default/pods"
    assert body["metadata"]["annotations"][CONFIG_MIRROR_ANNOTATION] == uid
    assert found.status_target(static)["metadata"]["uid"] == "api-0"  # type: ignore[index]
    mirror = {**body, "metadata": {**body["metadata"], "uid": "api-0"}}
    found.handle({"type": "ADDED", "object": mirror})
    assert "api-0" not in workers(found)  # a mirror pod is not run
    found.housekeeping()
    assert len(client.created) == 1  # up to date: nothing to do
    # Deleted by someone: the kubelet finishes the deletion at once, then makes a new one.
    deleting = {**mirror, "metadata": {**mirror["metadata"], "deletionTimestamp": "t"}}
    found.handle({"type": "MODIFIED", "object": deleting})
    assert client.deleted[-1][0] == "/api/v1/namespaces/default/pods/web-n1"
    assert client.deleted[-1][1]["preconditions"] == {"uid": "api-0"}
    found.housekeeping()
    assert len(client.created) == 2
    # The manifest goes: the static pod is stopped, its mirror deleted.
    (manifests / "web.yaml").unlink()
    deletes = len(client.deleted)
    found.read_static()
    assert workers(found)[uid].removed
    assert len(client.deleted) == deletes + 1
    assert client.deleted[-1][0] == "/api/v1/namespaces/default/pods/web-n1"


def test_orphans_in_the_runtime_are_stopped(tmp_path: Path) -> None:
    found, _, _ = manager(tmp_path, pleg=FakePleg({"orphan", "ua"}))
    found.handle({"type": "RELISTED", "object": {"items": [api_pod("a", "ua")]}})
    found.housekeeping()
    orphan = workers(found)["orphan"]
    assert orphan.removed and orphan.started
    assert orphan.pod["metadata"] == {"uid": "orphan", "name": "name-of-orphan", "namespace": "ns"}
    assert not workers(found)["ua"].removed


def test_housekeeping_removes_the_directories_of_pods_nobody_knows(tmp_path: Path) -> None:
    config = KubeletConfig(kubeconfig="k", root_dir=tmp_path)
    volumes = VolumeManager(None, config, mounter=RecordingMounter())  # type: ignore[arg-type]
    for uid in ("ua", "in-runtime", "left-behind"):
        (config.pod_dir(uid) / "volumes").mkdir(parents=True)
    found, _, _ = manager(
        tmp_path, pleg=FakePleg({"in-runtime"}), orphaned_volumes=volumes.cleanup_orphans
    )
    found.housekeeping()  # the API pods are not known yet: nothing is removed
    assert config.pod_dir("left-behind").is_dir()
    found.handle({"type": "RELISTED", "object": {"items": [api_pod("a", "ua")]}})
    found.housekeeping()
    assert not config.pod_dir("left-behind").exists()
    assert config.pod_dir("ua").is_dir() and config.pod_dir("in-runtime").is_dir()
