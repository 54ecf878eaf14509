"""Lifecycle hooks without root: exec through a fake CRI, httpGet against a local
server, sleep, and the preStop grace-period budget."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from cri.api import api_pb2
from kubelet.lifecycle import (
    MINIMUM_GRACE_PERIOD,
    pod_description,
    run_handler,
    run_post_start,
    run_pre_stop,
    termination_grace_period,
)
from kubelet.probes import ProbeType
from tests.unit.kubelet.probe_servers import (
    FakeRpcError,
    FakeRuntime,
    HttpServer,
    RecordingEvents,
    Route,
    closed_port,
    exited,
)

POD = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "web", "namespace": "shop", "uid": "u-1"},
    "spec": {"containers": [{"name": "c"}], "initContainers": [{"name": "side"}]},
}  # fmt: skip
SUBJECT = 'for Container "c" in Pod "web_shop(u-1)"'


def container(**lifecycle: Any) -> dict[str, Any]:
    return {"name": "c", "lifecycle": lifecycle}


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    with HttpServer() as server:
        yield server


def test_pod_description() -> None:
    assert pod_description(POD) == "web_shop(u-1)"


def test_exec_hook_success_and_the_request() -> None:
    runtime = FakeRuntime()
    handler = {"exec": {"command": ["sh", "-c", "echo hi > /tmp/started"]}}
    assert run_handler(runtime, handler, POD, container(), "c1", "", 4.2) is None
    _, request, deadline = runtime.requests[0]
    assert (request.container_id, list(request.cmd), request.timeout) == (
        "c1", ["sh", "-c", "echo hi > /tmp/started"], 5,
    )  # fmt: skip
    assert deadline is not None and deadline > 5


def test_exec_hook_failure_names_the_command_exit_code_and_output() -> None:
    runtime = FakeRuntime(lambda cmd: exited(3, b"partial\n", b"no such file\n"))
    handler = {"exec": {"command": ["sh", "-c", "exit 3"]}}
    message = run_handler(runtime, handler, POD, container(), "c1", "", 5)
    assert message == (
        f"Exec lifecycle hook ([sh -c exit 3]) {SUBJECT} failed - error: "
        "command 'sh -c exit 3' exited with 3: no such file\n, "
        'message: "partial\\nno such file\\n"'
    )


def test_exec_hook_timeout_and_runtime_errors() -> None:
    late = FakeRuntime(lambda cmd: FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline"))
    handler = {"exec": {"command": ["sleep", "60"]}}
    message = run_handler(late, handler, POD, container(), "c1", "", 1)
    timed_out = 'command "sleep 60" timed out'
    assert message == f"Exec lifecycle hook ([sleep 60]) {SUBJECT} failed - error: {timed_out}"
    gone = FakeRuntime(
        lambda cmd: FakeRpcError(grpc.StatusCode.NOT_FOUND, "container c1 not found")
    )
    message = run_handler(gone, handler, POD, container(), "c1", "", 1)
    assert message is not None and message.endswith("failed - error: container c1 not found")


def test_http_hook(http_server: HttpServer) -> None:
    http_server.routes["/start"] = Route(200)
    http_server.routes["/broken"] = Route(503)
    http_server.routes["/moved"] = Route(302, headers={"Location": "/start"})
    runtime = FakeRuntime()
    for path in ("/start", "/moved"):
        handler = {"httpGet": {"path": path, "port": http_server.port}}
        assert run_handler(runtime, handler, POD, container(), "c1", "127.0.0.1", 2) is None
    agent = {k.lower(): v for k, v in http_server.seen[0].headers.items()}["user-agent"]
    assert agent == "kube-lifecycle/1.32"

    handler = {"httpGet": {"path": "/broken", "port": http_server.port}}
    message = run_handler(runtime, handler, POD, container(), "c1", "127.0.0.1", 2)
    url = f"http://127.0.0.1:{http_server.port}/broken"
    assert (
        message
        == f'HTTP lifecycle hook (/broken) {SUBJECT} failed - error: Get "{url}": HTTP status 503'
    )
    assert runtime.requests == []  # no exec for an httpGet hook


def test_http_hook_connection_failure_and_named_port() -> None:
    with closed_port() as port:
        named = container()
        named["ports"] = [{"name": "admin", "containerPort": port}]
        handler = {"httpGet": {"path": "/stop", "port": "admin", "host": "127.0.0.1"}}
        message = run_handler(FakeRuntime(), handler, POD, named, "c1", "10.0.0.9", 2)
    assert message is not None
    assert message.startswith(f"HTTP lifecycle hook (/stop) {SUBJECT} failed - error: ")
    assert f"127.0.0.1:{port}: connect: connection refused" in message


def test_sleep_hook_is_capped_and_can_be_cut_short() -> None:
    started = time.monotonic()
    assert (
        run_handler(FakeRuntime(), {"sleep": {"seconds": 0.1}}, POD, container(), "c1", "", 5)
        is None
    )
    assert 0.1 <= time.monotonic() - started < 1
    started = time.monotonic()
    assert (
        run_handler(FakeRuntime(), {"sleep": {"seconds": 60}}, POD, container(), "c1", "", 0.2)
        is None
    )
    assert time.monotonic() - started < 1

    cancel = threading.Event()
    threading.Timer(0.1, cancel.set).start()
    message = run_handler(FakeRuntime(), {"sleep": {"seconds": 60}}, POD, container(), "c1", "", 30,
                          cancel=cancel)  # fmt: skip
    assert message == (
        f"Sleep lifecycle hook (60) {SUBJECT} failed - error: "
        "container terminated before sleep hook finished"
    )


@pytest.mark.parametrize(
    "handler",
    [{}, {"exec": {"command": ["true"]}, "sleep": {"seconds": 1}}, {"tcpSocket": {"port": 80}},
     {"exec": {"command": []}}, {"sleep": {"seconds": -1}}],
)  # fmt: skip
def test_invalid_handlers_are_reported(handler: dict[str, Any]) -> None:
    runtime = FakeRuntime()
    message = run_handler(runtime, handler, POD, container(), "c1", "", 1)
    assert message is not None and message.startswith("Cannot run handler: invalid handler:")
    assert runtime.requests == []


def test_a_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="timeout"):
        run_handler(FakeRuntime(), {"sleep": {"seconds": 1}}, POD, container(), "c1", "", 0)


def test_post_start_failure_is_an_event_and_the_message() -> None:
    events = RecordingEvents()
    failing = FakeRuntime(lambda cmd: exited(1, b"", b"nope"))
    hooked = container(postStart={"exec": {"command": ["false"]}})
    message = run_post_start(failing, events, POD, hooked, "c1", "", timeout=5)
    assert message is not None and message.startswith("Exec lifecycle hook ([false])")
    [event] = events.events
    assert (event.event_type, event.reason, event.message, event.field_path) == (
        "Warning", "FailedPostStartHook", message, "spec.containers{c}",
    )  # fmt: skip
    assert run_post_start(failing, events, POD, container(), "c1", "", timeout=5) is None
    assert len(failing.requests) == 1


def test_pre_stop_takes_its_time_out_of_the_grace_period() -> None:
    events = RecordingEvents()
    hooked = container(preStop={"sleep": {"seconds": 0.5}})
    started = time.monotonic()
    remaining = run_pre_stop(FakeRuntime(), events, POD, hooked, "c1", "", grace_period=10)
    assert 0.5 <= time.monotonic() - started < 1.5
    assert 8.5 < remaining <= 9.5
    assert events.events == []


def test_pre_stop_leaves_at_least_the_minimum_and_honours_the_deadline() -> None:
    release = threading.Event()

    def hangs(cmd: list[str]) -> api_pb2.ExecSyncResponse:
        release.wait(10)
        return exited(0)

    hooked = container(preStop={"exec": {"command": ["drain"]}})
    started = time.monotonic()
    remaining = run_pre_stop(FakeRuntime(hangs), None, POD, hooked, "c1", "", grace_period=0.3)
    release.set()
    assert time.monotonic() - started < 1  # abandoned at the deadline
    assert remaining == MINIMUM_GRACE_PERIOD
    # No hook: the grace period is all StopContainer's, with the same floor.
    assert run_pre_stop(FakeRuntime(), None, POD, container(), "c1", "", grace_period=30) == 30
    assert run_pre_stop(FakeRuntime(), None, POD, container(), "c1", "", grace_period=0) == 2


def test_pre_stop_failure_is_an_event_and_stopping_goes_on() -> None:
    events = RecordingEvents()
    sidecar = {"name": "side", "lifecycle": {"preStop": {"exec": {"command": ["false"]}}}}
    remaining = run_pre_stop(FakeRuntime(lambda cmd: exited(1)), events, POD, sidecar, "c2", "",
                             grace_period=5)  # fmt: skip
    assert 4 < remaining <= 5
    [event] = events.events
    assert (event.reason, event.field_path) == ("FailedPreStopHook", "spec.initContainers{side}")
    assert event.message.startswith('Exec lifecycle hook ([false]) for Container "side"')


def test_termination_grace_period_choice() -> None:
    probed = {"name": "c", "livenessProbe": {"exec": {"command": ["true"]},
                                             "terminationGracePeriodSeconds": 5}}  # fmt: skip
    pod = {"metadata": {"name": "p"}, "spec": {"terminationGracePeriodSeconds": 60}}
    assert termination_grace_period(pod, probed) == 60
    assert termination_grace_period(pod, probed, failed_probe=ProbeType.LIVENESS) == 5
    assert termination_grace_period(pod, probed, failed_probe=ProbeType.STARTUP) == 60
    assert termination_grace_period({"metadata": {}}, {"name": "c"}) == 30
    deleting = {"metadata": {"deletionGracePeriodSeconds": 3}, "spec": pod["spec"]}
    assert termination_grace_period(deleting, probed, failed_probe=ProbeType.LIVENESS) == 3
