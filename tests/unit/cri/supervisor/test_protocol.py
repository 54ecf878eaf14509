"""The supervisor's JSON-lines protocol: framing, requests, typed arguments, responses
carrying typed errors, and the values (container info, exec results, events)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cri.supervisor import protocol
from cri.supervisor.errors import (
    AlreadyExists,
    InvalidArgument,
    InvalidState,
    NotFound,
    SupervisorError,
    Unavailable,
    error_from_wire,
)
from cri.supervisor.protocol import (
    Args,
    ContainerInfo,
    Event,
    EventKind,
    ExecResult,
    Status,
)


def test_a_message_is_one_ascii_line():
    line = protocol.encode({"text": "two\nlines ünïcode \u2028", "n": 1})
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert line.isascii()
    assert json.loads(line) == {"text": "two\nlines ünïcode \u2028", "n": 1}


def test_request_round_trip():
    line = protocol.request(7, "start", {"id": "c1"})
    request = protocol.parse_request(line)
    assert (request.id, request.op, request.args.values) == (7, "start", {"id": "c1"})
    assert request.args.op == "start"


def test_request_args_default_to_empty():
    assert protocol.parse_request(b'{"id": 1, "op": "list"}').args.values == {}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"not json", "malformed message"),
        (b"[1, 2]", "not a JSON object"),
        (b"\xff\xfe", "malformed message"),
        (b'{"op": "list"}', "id must be an integer"),
        (b'{"id": true, "op": "list"}', "id must be an integer"),
        (b'{"id": "1", "op": "list"}', "id must be an integer"),
        (b'{"id": 1, "op": "explode"}', "unknown op 'explode'"),
        (b'{"id": 1}', "unknown op None"),
        (b'{"id": 1, "op": "list", "args": []}', "args must be an object"),
    ],
)
def test_malformed_requests(line: bytes, message: str):
    with pytest.raises(InvalidArgument, match=message):
        protocol.parse_request(line)


def args(**values: Any) -> Args:
    return Args("create", values)


def test_args_read_each_type():
    a = args(s="x", i=3, f=1, b=True, l=["a", "b"], d=protocol.b64(b"\x00\xff"))
    assert a.text("s") == "x"
    assert a.integer("i") == 3
    assert a.number("f") == 1.0
    assert isinstance(a.number("f"), float)
    assert a.flag("b") is True
    assert a.strings("l") == ["a", "b"]
    assert a.data("d") == b"\x00\xff"


def test_args_defaults_apply_to_missing_fields_only():
    a = args(timeout=None)
    assert a.text("log_path", "") == ""
    assert a.flag("stdin", False) is False
    assert a.strings("env", []) == []
    assert a.data("data", b"") == b""
    assert a.number("timeout", None) is None  # null means "not given" when allowed
    with pytest.raises(InvalidArgument):
        a.number("timeout", 5.0)


def test_missing_required_field_names_op_and_field():
    with pytest.raises(InvalidArgument, match="create: field 'bundle' is required"):
        args().text("bundle")


@pytest.mark.parametrize(
    ("read", "value"),
    [
        ("text", 1),
        ("integer", "1"),
        ("integer", True),  # a bool is not an integer here
        ("integer", 1.5),
        ("number", "1"),
        ("number", False),
        ("flag", 1),
        ("strings", "a"),
        ("strings", ["a", 1]),
        ("data", "not base64!"),
        ("data", 5),
    ],
)
def test_mistyped_fields(read: str, value: Any):
    with pytest.raises(InvalidArgument, match="create: field 'f'"):
        getattr(args(f=value), read)("f")


def test_ok_response_round_trip():
    message = json.loads(protocol.encode(protocol.response_ok(4, {"a": 1})))
    assert protocol.parse_response(message) == (4, {"a": 1})


@pytest.mark.parametrize(
    "error",
    [
        NotFound("state c1: no such container"),
        AlreadyExists("create c1: container exists already"),
        InvalidState("start c1: container is stopped"),
        InvalidArgument("create: field 'id' is required"),
        SupervisorError("exec_sync c1: something broke"),
    ],
)
def test_error_response_raises_the_same_type_and_message(error: SupervisorError):
    message = json.loads(protocol.encode(protocol.response_error(9, error)))
    assert message["error"]["kind"] == error.kind
    with pytest.raises(type(error)) as raised:
        protocol.parse_response(message)
    assert type(raised.value) is type(error)
    assert str(raised.value) == str(error)


def test_unknown_error_kind_is_the_base_class():
    error = error_from_wire("from_the_future", "what")
    assert type(error) is SupervisorError
    assert str(error) == "what"


def test_every_error_kind_is_distinct():
    kinds = [c.kind for c in (SupervisorError, NotFound, AlreadyExists, InvalidState,
                              InvalidArgument, Unavailable)]  # fmt: skip
    assert len(set(kinds)) == len(kinds)
    assert all(issubclass(c, SupervisorError) for c in (NotFound, Unavailable))


@pytest.mark.parametrize(
    "message",
    [
        {"ok": True, "result": {}},
        {"id": 1, "ok": True, "result": []},
        {"id": 1, "ok": False},
    ],
)
def test_malformed_responses(message: dict[str, Any]):
    with pytest.raises(SupervisorError, match="malformed response"):
        protocol.parse_response(message)


def test_container_info_round_trip():
    info = ContainerInfo(
        id="c1", status=Status.STOPPED, pid=42, bundle="/b", log_path="/l/0.log",
        stdin=True, created_at=1, started_at=2, finished_at=3, exit_code=137, adopted=True,
    )  # fmt: skip
    wire = json.loads(protocol.encode(info.to_wire()))
    assert wire["status"] == "stopped"
    assert ContainerInfo.from_wire(wire) == info


def test_container_info_defaults_and_errors():
    info = ContainerInfo.from_wire(
        {
            "id": "c",
            "status": "created",
            "pid": 1,
            "bundle": "/b",
            "log_path": "",
            "stdin": False,
            "created_at": 5,
        }
    )
    assert (info.exit_code, info.started_at, info.adopted) == (None, 0, False)
    with pytest.raises(SupervisorError, match="malformed container info"):
        ContainerInfo.from_wire({"id": "c", "status": "sleeping"})


def test_exec_result_round_trip_keeps_bytes():
    result = ExecResult(exit_code=3, stdout=b"\x00out\xff", stderr="é".encode(), timed_out=True)
    wire = json.loads(protocol.encode(result.to_wire()))
    assert ExecResult.from_wire(wire) == result
    with pytest.raises(SupervisorError, match="malformed exec result"):
        ExecResult.from_wire({"exit_code": 0, "stdout": "!!", "stderr": ""})


def test_event_round_trip():
    exited = Event(EventKind.EXITED, "c1", 10, 123, exit_code=0)
    started = Event(EventKind.STARTED, "c1", 10, 122)
    for event in (exited, started):
        assert Event.from_wire(json.loads(protocol.encode(event.to_wire()))) == event
    assert "exit_code" not in started.to_wire()
    with pytest.raises(SupervisorError, match="malformed event"):
        Event.from_wire({"event": "exploded", "id": "c1", "pid": 1, "timestamp": 1})


def test_status_values_are_the_documented_strings():
    assert [s.value for s in Status] == ["creating", "created", "running", "stopped"]
    assert [k.value for k in EventKind] == ["created", "started", "exited", "deleted"]
