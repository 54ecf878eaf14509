from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime import jsonio
from runtime import state as st
from runtime.errors import AlreadyExists, InvalidState, NotFound


def test_status_predicates() -> None:
    assert st.can_start(st.CREATED) and not st.can_start(st.RUNNING)
    assert st.can_delete(st.STOPPED) and not st.can_delete(st.CREATED)
    assert not st.can_delete(st.RUNNING)
    assert st.can_kill(st.PAUSED) and not st.can_kill(st.STOPPED)
    assert st.can_resume(st.PAUSED) and not st.can_pause(st.PAUSED)


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "x\0y"])
def test_invalid_ids(bad: str) -> None:
    with pytest.raises(InvalidState):
        st.validate_id(bad)


def test_store_reserve_save_load(tmp_path: Path) -> None:
    store = st.StateStore(str(tmp_path / "root"))
    directory = store.reserve("c1")
    with pytest.raises(AlreadyExists):
        store.reserve("c1")
    with pytest.raises(InvalidState, match="still being created"):
        store.load("c1")
    record = {"id": "c1", "pid": os.getpid(), "init_start_time": st.process_start_time(os.getpid()),
              "bundle": "/b", "rootfs": "/b/rootfs", "created": st.rfc3339_now(),
              "config": {"annotations": {"a": "b"}}}  # fmt: skip
    store.save(directory, record)
    container = store.load("c1")
    assert container.init_alive()
    assert container.status() == st.RUNNING
    state = container.oci_state(st.RUNNING)
    assert state["annotations"] == {"a": "b"} and state["pid"] == os.getpid()
    assert store.ids() == ["c1"]
    with pytest.raises(NotFound):
        store.load("c2")


def test_dead_or_recycled_pid_is_stopped(tmp_path: Path) -> None:
    store = st.StateStore(str(tmp_path))
    directory = store.reserve("c")
    record = {"id": "c", "pid": os.getpid(), "init_start_time": 1, "bundle": "/b",
              "rootfs": "/r", "created": "", "config": {}}  # fmt: skip
    store.save(directory, record)
    container = store.load("c")
    assert container.status() == st.STOPPED  # same pid, other start time
    (Path(directory) / "exit").write_text("137 9\n")
    assert container.oci_state(st.STOPPED)["exitCode"] == 137


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    st.atomic_write(str(path), b"one")
    st.atomic_write(str(path), b"two")
    assert path.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["f"]


def test_jsonio_matches_json() -> None:
    import json

    for text in ['{"a": [1, 2.5, true, null, "\\u00e9"]}', " [] ", '"s"', "{}"]:
        assert jsonio.loads(text) == json.loads(text)
        assert json.loads(jsonio.dumps(json.loads(text))) == json.loads(text)
    for bad in ["{", "[1] x", "", '{"a":}', "{nope", '{"a":1,}', "[1 2]"]:
        with pytest.raises(ValueError):
            jsonio.loads(bad)
