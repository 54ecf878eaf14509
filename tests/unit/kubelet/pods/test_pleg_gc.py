"""The PLEG's relist diff and the garbage collector's plan."""

from __future__ import annotations

import threading

from cri.api import api_pb2
from kubelet.pods.gc import plan
from kubelet.pods.pleg import Pleg, changed_pods, snapshot

UID = "io.kubernetes.pod.uid"
NAME = "io.kubernetes.container.name"


def sb(id_: str, uid: str, *, ready: bool = True, created: int = 1) -> api_pb2.PodSandbox:
    state = api_pb2.SANDBOX_READY if ready else api_pb2.SANDBOX_NOTREADY
    return api_pb2.PodSandbox(id=id_, state=state, created_at=created, labels={UID: uid})


def ctr(
    id_: str,
    uid: str,
    name: str = "main",
    *,
    state: int = api_pb2.CONTAINER_RUNNING,
    created: int = 1,
    sandbox: str = "s1",
) -> api_pb2.Container:
    return api_pb2.Container(
        id=id_,
        pod_sandbox_id=sandbox,
        state=state,  # type: ignore[arg-type]
        created_at=created,
        labels={UID: uid, NAME: name},
    )


def test_snapshot_groups_by_pod_and_skips_foreign_objects() -> None:
    foreign = api_pb2.PodSandbox(id="x", labels={"other": "1"})
    found = snapshot([sb("s1", "u1"), foreign], [ctr("c1", "u1"), ctr("c2", "u2", sandbox="s9")])
    assert found == {
        "u1": {"sandbox:s1": api_pb2.SANDBOX_READY, "container:c1": api_pb2.CONTAINER_RUNNING},
        "u2": {"container:c2": api_pb2.CONTAINER_RUNNING},
    }


def test_changed_pods() -> None:
    old = {"u1": {"container:c1": 1}, "u2": {"container:c2": 1}, "u3": {"sandbox:s": 0}}
    new = {"u1": {"container:c1": 2}, "u2": {"container:c2": 1}, "u4": {"sandbox:t": 0}}
    assert changed_pods(old, new) == {"u1", "u3", "u4"}


class FakeRuntime:
    def __init__(self) -> None:
        self.sandboxes = [sb("s1", "u1")]
        self.containers = [ctr("c1", "u1")]

    def ListPodSandbox(self, request: object, timeout: float) -> api_pb2.ListPodSandboxResponse:
        return api_pb2.ListPodSandboxResponse(items=self.sandboxes)

    def ListContainers(self, request: object, timeout: float) -> api_pb2.ListContainersResponse:
        return api_pb2.ListContainersResponse(containers=self.containers)


class FakeCri:
    def __init__(self) -> None:
        self.runtime = FakeRuntime()


def test_relist_wakes_changed_pods_and_reports_health() -> None:
    now = [100.0]
    woken: list[str] = []
    cri = FakeCri()
    pleg = Pleg(cri, period=1, on_change=woken.append, clock=lambda: now[0], threshold=10)  # type: ignore[arg-type]
    assert not pleg.healthy() and not pleg.relisted()
    assert pleg.relist() == {"u1"}  # the first relist reports everything: adoption
    assert pleg.healthy() and pleg.pods() == {"u1"}
    assert pleg.relist() == set()
    cri.runtime.containers = [ctr("c1", "u1", state=api_pb2.CONTAINER_EXITED)]
    assert pleg.relist() == {"u1"}
    assert woken == ["u1", "u1"]
    now[0] += 11
    assert not pleg.healthy()
    stop = threading.Event()
    stop.set()
    pleg.run(stop)  # returns at once when stopped


def test_gc_keeps_the_newest_dead_containers_per_container() -> None:
    exited = api_pb2.CONTAINER_EXITED
    containers = [
        ctr("old", "u1", state=exited, created=1),
        ctr("mid", "u1", state=exited, created=2),
        ctr("new", "u1", state=exited, created=3),
        ctr("run", "u1", created=4),
        ctr("side", "u1", "sidecar", state=exited, created=1),
        ctr("gone", "u9", state=exited, created=1),  # not a live pod: its worker's job
    ]
    found = plan([], containers, keep=1, live=lambda uid: uid == "u1")
    assert sorted(found.containers) == ["mid", "old"]
    found = plan([], containers, keep=2, live=lambda uid: uid == "u1")
    assert found.containers == ("old",)


def test_gc_removes_old_empty_sandboxes_only() -> None:
    sandboxes = [
        sb("s-old", "u1", ready=False, created=1),
        sb("s-held", "u1", ready=False, created=2),
        sb("s-new", "u1", ready=False, created=3),
        sb("s-ready", "u2", created=1),
    ]
    containers = [ctr("c", "u1", state=api_pb2.CONTAINER_EXITED, sandbox="s-held")]
    found = plan(sandboxes, containers, keep=1, live=lambda uid: True)
    assert found.sandboxes == ("s-old",)
