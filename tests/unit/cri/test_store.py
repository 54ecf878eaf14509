"""The CRI server's store: name reservation, CRI List filters, id prefixes, persistence
across instances, atomic writes, thread safety, idempotent removal, gRPC codes."""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path

import grpc
import pytest

from cri import errors
from cri.api import api_pb2
from cri.store import (
    AmbiguousId,
    ContainerRecord,
    ContainerState,
    CriStore,
    Kind,
    NameTaken,
    NotFound,
    SandboxRecord,
    SandboxState,
    container_name_key,
    sandbox_name_key,
    to_container,
    to_pod_sandbox,
)

SB1 = "a1" + "0" * 62
SB2 = "a2" + "0" * 62
C1 = "c1" + "f" * 62
C2 = "c2" + "f" * 62
C3 = "d3" + "f" * 62


def sandbox(id: str = SB1, **changes: object) -> SandboxRecord:
    config = api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name="web", uid="u1", namespace="ns", attempt=0)
    )
    fields: dict[str, object] = {
        "id": id,
        "name": "web",
        "uid": "u1",
        "namespace": "ns",
        "attempt": 0,
        "state": SandboxState.READY,
        "created_at": 1_000,
        "labels": {"app": "web"},
        "annotations": {"note": "x"},
        "netns_path": f"/run/kubeling/netns/{id}",
        "ip": "10.85.0.2",
        "cgroup_parent": "/kubepods",
        "log_directory": "/var/log/pods/ns_web_u1",
        "runtime_handler": "",
        "config": config.SerializeToString(),
    }
    fields.update(changes)
    return SandboxRecord(**fields)  # type: ignore[arg-type]


def container(id: str = C1, sandbox_id: str = SB1, **changes: object) -> ContainerRecord:
    config = api_pb2.ContainerConfig(
        metadata=api_pb2.ContainerMetadata(name="app", attempt=0),
        image=api_pb2.ImageSpec(image="busybox:latest", user_specified_image="busybox"),
    )
    fields: dict[str, object] = {
        "id": id,
        "sandbox_id": sandbox_id,
        "name": "app",
        "attempt": 0,
        "state": ContainerState.CREATED,
        "created_at": 2_000,
        "labels": {"tier": "front"},
        "annotations": {},
        "image": "busybox:latest",
        "image_ref": "docker.io/library/busybox@sha256:" + "1" * 64,
        "image_id": "sha256:" + "2" * 64,
        "log_path": "app/0.log",
        "config": config.SerializeToString(),
    }
    fields.update(changes)
    return ContainerRecord(**fields)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> CriStore:
    return CriStore(tmp_path / "state")


def ids(records: list[SandboxRecord] | list[ContainerRecord]) -> list[str]:
    return [r.id for r in records]


# -- names ---------------------------------------------------------------------------


def test_name_keys_are_containerds() -> None:
    sb = api_pb2.PodSandboxMetadata(name="web", uid="u1", namespace="ns", attempt=2)
    assert sandbox_name_key(sb) == "web_ns_u1_2"
    c = api_pb2.ContainerMetadata(name="app", attempt=3)
    assert container_name_key(c, sb) == "app_web_ns_u1_3"


def test_reserve_conflict_names_the_holder(store: CriStore) -> None:
    store.reserve_name(Kind.SANDBOX, "web_ns_u1_0", SB1)
    store.reserve_name(Kind.SANDBOX, "web_ns_u1_0", SB1)  # same id again: no-op
    with pytest.raises(NameTaken, match=f"'web_ns_u1_0' is reserved for {SB1}"):
        store.reserve_name(Kind.SANDBOX, "web_ns_u1_0", SB2)


def test_an_id_holds_one_name(store: CriStore) -> None:
    store.reserve_name(Kind.SANDBOX, "web_ns_u1_0", SB1)
    with pytest.raises(NameTaken, match="already holds name 'web_ns_u1_0'"):
        store.reserve_name(Kind.SANDBOX, "web_ns_u1_1", SB1)


def test_kinds_have_separate_names(store: CriStore) -> None:
    store.reserve_name(Kind.SANDBOX, "same", SB1)
    store.reserve_name(Kind.CONTAINER, "same", C1)


def test_release_frees_the_name(store: CriStore) -> None:
    store.reserve_name(Kind.CONTAINER, "app_web_ns_u1_0", C1)
    store.release_name(Kind.CONTAINER, "app_web_ns_u1_0")
    store.release_name(Kind.CONTAINER, "app_web_ns_u1_0")  # unknown: no-op
    store.reserve_name(Kind.CONTAINER, "app_web_ns_u1_0", C2)
    store.reserve_name(Kind.CONTAINER, "other", C1)  # C1 holds nothing anymore


def test_remove_releases_the_names_of_the_id(store: CriStore) -> None:
    store.reserve_name(Kind.SANDBOX, "web_ns_u1_0", SB1)
    store.add_sandbox(sandbox())
    store.reserve_name(Kind.CONTAINER, "app_web_ns_u1_0", C1)
    store.add_container(container())
    store.remove_container(C1)
    store.remove_sandbox(SB1)
    store.reserve_name(Kind.SANDBOX, "web_ns_u1_0", SB2)
    store.reserve_name(Kind.CONTAINER, "app_web_ns_u1_0", C2)


def test_concurrent_reservations_have_one_winner(store: CriStore) -> None:
    winners: list[str] = []
    barrier = threading.Barrier(8)

    def reserve(i: int) -> None:
        barrier.wait()
        try:
            store.reserve_name(Kind.SANDBOX, "web_ns_u1_0", f"id{i}")
        except NameTaken:
            return
        winners.append(f"id{i}")

    threads = [threading.Thread(target=reserve, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1


# -- add, get, update, remove --------------------------------------------------------


def test_add_get_roundtrip(store: CriStore) -> None:
    store.add_sandbox(sandbox())
    store.add_container(container())
    assert store.get_sandbox(SB1) == sandbox()
    assert store.get_container(C1) == container()


def test_records_are_immutable(store: CriStore) -> None:
    labels = {"app": "web"}
    record = sandbox(labels=labels)
    labels["app"] = "changed"
    assert record.labels == {"app": "web"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.ip = "1.2.3.4"  # type: ignore[misc]
    with pytest.raises(TypeError):
        record.labels["x"] = "y"  # type: ignore[index]


def test_duplicate_id_is_refused(store: CriStore) -> None:
    store.add_sandbox(sandbox())
    with pytest.raises(NameTaken, match=f"add sandbox {SB1}: exists already"):
        store.add_sandbox(sandbox())
    store.add_container(container())
    with pytest.raises(NameTaken, match=f"add container {C1}: exists already"):
        store.add_container(container())


def test_container_needs_its_sandbox(store: CriStore) -> None:
    with pytest.raises(NotFound, match=f"sandbox {SB1} not found"):
        store.add_container(container())


def test_invalid_id_is_refused(store: CriStore, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid id"):
        store.add_sandbox(sandbox(id="../escape"))
    assert not (tmp_path / "state" / "escape.json").exists()
    assert store.list_sandboxes() == []


def test_get_unknown_names_the_id(store: CriStore) -> None:
    with pytest.raises(NotFound, match="sandbox nope not found"):
        store.get_sandbox("nope")
    with pytest.raises(NotFound, match="container nope not found"):
        store.get_container("nope")


def test_update_applies_the_change(store: CriStore) -> None:
    store.add_sandbox(sandbox())
    store.add_container(container())
    new = store.update_sandbox(SB1, lambda r: dataclasses.replace(r, state=SandboxState.NOTREADY))
    assert new.state is SandboxState.NOTREADY
    assert store.get_sandbox(SB1) == new
    done = store.update_container(
        C1,
        lambda r: dataclasses.replace(
            r, state=ContainerState.EXITED, finished_at=5, exit_code=1, reason="Error"
        ),
    )
    assert store.get_container(C1) == done
    assert CriStore(store.state_dir).get_container(C1) == done


def test_update_unknown_or_changing_the_id(store: CriStore) -> None:
    with pytest.raises(NotFound, match="update sandbox x: not found"):
        store.update_sandbox("x", lambda r: r)
    with pytest.raises(NotFound, match="update container x: not found"):
        store.update_container("x", lambda r: r)
    store.add_sandbox(sandbox())
    store.add_container(container())
    with pytest.raises(ValueError, match="the id changed"):
        store.update_sandbox(SB1, lambda r: dataclasses.replace(r, id=SB2))
    with pytest.raises(ValueError, match="the id changed"):
        store.update_container(C1, lambda r: dataclasses.replace(r, id=C2))
    assert store.get_sandbox(SB1) == sandbox()


def test_removes_are_idempotent(store: CriStore) -> None:
    store.remove_sandbox(SB1)
    store.remove_container(C1)
    store.remove_container("../weird")
    store.add_sandbox(sandbox())
    store.add_container(container())
    for _ in range(2):
        store.remove_container(C1)
        store.remove_sandbox(SB1)
    assert store.list_sandboxes() == []
    assert store.list_containers() == []
    assert list((store.state_dir / "sandboxes").iterdir()) == []
    assert list((store.state_dir / "containers").iterdir()) == []


def test_concurrent_updates_lose_nothing(store: CriStore) -> None:
    store.add_sandbox(sandbox())
    store.add_container(container(exit_code=0))

    def bump() -> None:
        for _ in range(50):
            store.update_container(C1, lambda r: dataclasses.replace(r, exit_code=r.exit_code + 1))

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get_container(C1).exit_code == 200
    assert CriStore(store.state_dir).get_container(C1).exit_code == 200


# -- ids -----------------------------------------------------------------------------


def test_unique_prefixes_resolve(store: CriStore) -> None:
    store.add_sandbox(sandbox(SB1))
    store.add_sandbox(sandbox(SB2))
    store.add_container(container(C1))
    store.add_container(container(C3))
    assert store.resolve_id(Kind.SANDBOX, "a1") == SB1
    assert store.resolve_id(Kind.SANDBOX, SB2) == SB2
    assert store.resolve_id(Kind.CONTAINER, "d") == C3
    assert store.get_sandbox("a2").id == SB2
    assert store.get_container("c").id == C1


def test_an_exact_id_wins_over_longer_ones(store: CriStore) -> None:
    store.add_sandbox(sandbox("abc"))
    store.add_sandbox(sandbox("abcd"))
    assert store.resolve_id(Kind.SANDBOX, "abc") == "abc"


def test_ambiguous_and_missing_prefixes(store: CriStore) -> None:
    store.add_sandbox(sandbox(SB1))
    store.add_sandbox(sandbox(SB2))
    with pytest.raises(AmbiguousId, match=r"sandbox id prefix 'a' is ambiguous: it matches 2"):
        store.resolve_id(Kind.SANDBOX, "a")
    with pytest.raises(AmbiguousId, match=SB1):
        store.get_sandbox("a")
    with pytest.raises(NotFound, match="sandbox b not found"):
        store.resolve_id(Kind.SANDBOX, "b")
    with pytest.raises(NotFound, match="sandbox id is empty"):
        store.resolve_id(Kind.SANDBOX, "")
    with pytest.raises(NotFound, match="container a1 not found"):
        store.resolve_id(Kind.CONTAINER, "a1")  # ids of the other kind don't count


def test_long_ambiguity_lists_are_cut(store: CriStore) -> None:
    for i in range(7):
        store.add_sandbox(sandbox(f"x{i}"))
    with pytest.raises(AmbiguousId, match=r"matches 7 ids \(x0, x1, x2, x3, x4, \.\.\.\)"):
        store.resolve_id(Kind.SANDBOX, "x")


# -- filters -------------------------------------------------------------------------


@pytest.fixture
def populated(store: CriStore) -> CriStore:
    store.add_sandbox(sandbox(SB1, created_at=2, labels={"app": "web", "env": "prod"}))
    store.add_sandbox(sandbox(SB2, created_at=1, state=SandboxState.NOTREADY, labels={"app": "db"}))
    store.add_container(container(C1, SB1, created_at=3, labels={"tier": "front"}))
    store.add_container(
        container(C2, SB1, created_at=2, state=ContainerState.RUNNING, labels={"tier": "back"})
    )
    store.add_container(
        container(C3, SB2, created_at=1, state=ContainerState.EXITED, labels={"tier": "front"})
    )
    return store


def test_sandbox_filters(populated: CriStore) -> None:
    s = populated
    f = api_pb2.PodSandboxFilter
    ready = api_pb2.PodSandboxStateValue(state=api_pb2.SANDBOX_READY)
    notready = api_pb2.PodSandboxStateValue(state=api_pb2.SANDBOX_NOTREADY)
    assert ids(s.list_sandboxes()) == [SB2, SB1]  # oldest first
    assert ids(s.list_sandboxes(f())) == [SB2, SB1]
    assert ids(s.list_sandboxes(f(id=SB1))) == [SB1]
    assert ids(s.list_sandboxes(f(id="a2"))) == [SB2]
    assert ids(s.list_sandboxes(f(id="a"))) == []  # ambiguous: nothing
    assert ids(s.list_sandboxes(f(id="zz"))) == []
    assert ids(s.list_sandboxes(f(state=ready))) == [SB1]
    assert ids(s.list_sandboxes(f(state=notready))) == [SB2]
    assert ids(s.list_sandboxes(f(label_selector={"app": "web"}))) == [SB1]
    assert ids(s.list_sandboxes(f(label_selector={"app": "web", "env": "prod"}))) == [SB1]
    assert ids(s.list_sandboxes(f(label_selector={"app": "web", "env": "dev"}))) == []
    assert ids(s.list_sandboxes(f(label_selector={"env": "prod"}, state=notready))) == []
    assert ids(s.list_sandboxes(f(id="a1", state=ready, label_selector={"app": "web"}))) == [SB1]


def test_container_filters(populated: CriStore) -> None:
    s = populated
    f = api_pb2.ContainerFilter

    def state(value: api_pb2.ContainerState) -> api_pb2.ContainerStateValue:
        return api_pb2.ContainerStateValue(state=value)

    assert ids(s.list_containers()) == [C3, C2, C1]
    assert ids(s.list_containers(f(id=C2))) == [C2]
    assert ids(s.list_containers(f(id="d"))) == [C3]
    assert ids(s.list_containers(f(id="c"))) == []  # ambiguous
    assert ids(s.list_containers(f(state=state(api_pb2.CONTAINER_CREATED)))) == [C1]
    assert ids(s.list_containers(f(state=state(api_pb2.CONTAINER_RUNNING)))) == [C2]
    assert ids(s.list_containers(f(state=state(api_pb2.CONTAINER_EXITED)))) == [C3]
    assert ids(s.list_containers(f(state=state(api_pb2.CONTAINER_UNKNOWN)))) == []
    assert ids(s.list_containers(f(pod_sandbox_id=SB1))) == [C2, C1]
    assert ids(s.list_containers(f(pod_sandbox_id="a2"))) == [C3]
    assert ids(s.list_containers(f(pod_sandbox_id="a"))) == []  # ambiguous
    assert ids(s.list_containers(f(pod_sandbox_id="nope"))) == []
    assert ids(s.list_containers(f(label_selector={"tier": "front"}))) == [C3, C1]
    assert ids(s.list_containers(f(label_selector={"tier": "front", "x": "y"}))) == []
    assert ids(
        s.list_containers(
            f(pod_sandbox_id=SB1, label_selector={"tier": "front"}, id="c1", state=state(0))
        )
    ) == [C1]


def test_orphans_still_match_their_exact_sandbox_id(populated: CriStore) -> None:
    populated.remove_sandbox(SB2)
    f = api_pb2.ContainerFilter
    assert ids(populated.list_containers(f(pod_sandbox_id=SB2))) == [C3]


# -- persistence ---------------------------------------------------------------------


def test_a_new_store_readopts_records_and_names(populated: CriStore) -> None:
    again = CriStore(populated.state_dir)
    assert again.list_sandboxes() == populated.list_sandboxes()
    assert again.list_containers() == populated.list_containers()
    assert again.get_sandbox(SB1).config == sandbox().config
    with pytest.raises(NameTaken, match=f"reserved for {SB1}"):
        again.reserve_name(Kind.SANDBOX, "web_ns_u1_0", "other")
    with pytest.raises(NameTaken, match=f"reserved for {C1}"):
        again.reserve_name(Kind.CONTAINER, "app_web_ns_u1_0", "other")


def test_files_are_one_json_per_record(populated: CriStore) -> None:
    root = populated.state_dir
    assert sorted(p.name for p in (root / "sandboxes").iterdir()) == [
        f"{SB1}.json",
        f"{SB2}.json",
    ]
    assert sorted(p.name for p in (root / "containers").iterdir()) == [
        f"{C1}.json",
        f"{C2}.json",
        f"{C3}.json",
    ]
    assert ((root / "containers" / f"{C1}.json").stat().st_mode & 0o777) == 0o600


def test_atomic_writes_leave_no_temporary_files(populated: CriStore) -> None:
    for i in range(5):
        populated.update_container(C1, lambda r, i=i: dataclasses.replace(r, exit_code=i))
    leftovers = [p for p in populated.state_dir.rglob("*") if p.name.startswith(".")]
    assert leftovers == []


def test_load_removes_stale_tmp_and_skips_bad_records(
    populated: CriStore, caplog: pytest.LogCaptureFixture
) -> None:
    root = populated.state_dir
    stale = root / "sandboxes" / f".{SB1}.json.123.tmp"
    stale.write_bytes(b"{half")
    (root / "sandboxes" / "broken.json").write_bytes(b"not json")
    (root / "containers" / "misnamed.json").write_bytes(
        (root / "containers" / f"{C1}.json").read_bytes()
    )
    (root / "containers" / "README").write_text("ignored")
    with caplog.at_level(logging.WARNING, logger="cri.store"):
        again = CriStore(root)
    assert not stale.exists()
    assert ids(again.list_sandboxes()) == [SB2, SB1]
    assert ids(again.list_containers()) == [C3, C2, C1]
    assert "skip unreadable sandbox record" in caplog.text
    assert "it holds id" in caplog.text


def test_orphan_container_loads_without_a_name(store: CriStore) -> None:
    store.add_sandbox(sandbox())
    store.add_container(container())
    (store.state_dir / "sandboxes" / f"{SB1}.json").unlink()
    again = CriStore(store.state_dir)
    assert ids(again.list_containers()) == [C1]
    again.reserve_name(Kind.CONTAINER, "app_web_ns_u1_0", C2)


def test_concurrent_adds(store: CriStore) -> None:
    store.add_sandbox(sandbox())
    errors_seen: list[BaseException] = []

    def add(worker: int) -> None:
        try:
            for i in range(25):
                cid = f"w{worker}c{i}"
                store.reserve_name(Kind.CONTAINER, f"app{worker}-{i}_web_ns_u1_0", cid)
                store.add_container(container(cid, name=f"app{worker}-{i}", created_at=i))
        except BaseException as e:  # pragma: no cover - reported below
            errors_seen.append(e)

    threads = [threading.Thread(target=add, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors_seen == []
    assert len(store.list_containers()) == 200
    assert len(list((store.state_dir / "containers").iterdir())) == 200
    again = CriStore(store.state_dir)
    assert len(again.list_containers()) == 200
    with pytest.raises(NameTaken):
        again.reserve_name(Kind.CONTAINER, "app3-7_web_ns_u1_0", "other")


# -- messages and codes --------------------------------------------------------------


def test_to_pod_sandbox() -> None:
    message = to_pod_sandbox(sandbox(state=SandboxState.NOTREADY, runtime_handler="kata"))
    assert message == api_pb2.PodSandbox(
        id=SB1,
        metadata=api_pb2.PodSandboxMetadata(name="web", uid="u1", namespace="ns", attempt=0),
        state=api_pb2.SANDBOX_NOTREADY,
        created_at=1_000,
        labels={"app": "web"},
        annotations={"note": "x"},
        runtime_handler="kata",
    )


def test_to_container() -> None:
    record = container(state=ContainerState.RUNNING)
    assert to_container(record) == api_pb2.Container(
        id=C1,
        pod_sandbox_id=SB1,
        metadata=api_pb2.ContainerMetadata(name="app", attempt=0),
        image=api_pb2.ImageSpec(image="busybox:latest", user_specified_image="busybox"),
        image_ref=record.image_ref,
        state=api_pb2.CONTAINER_RUNNING,
        created_at=2_000,
        labels={"tier": "front"},
        annotations={},
        image_id=record.image_id,
    )
    bare = to_container(container(config=b"", state=ContainerState.UNKNOWN))
    assert bare.image == api_pb2.ImageSpec(image="busybox:latest")
    assert bare.state == api_pb2.CONTAINER_UNKNOWN


def test_errors_map_to_grpc_codes() -> None:
    assert errors.status_code(NameTaken("x")) is grpc.StatusCode.ALREADY_EXISTS
    assert errors.status_code(NotFound("x")) is grpc.StatusCode.NOT_FOUND
    assert errors.status_code(AmbiguousId("x")) is grpc.StatusCode.NOT_FOUND
