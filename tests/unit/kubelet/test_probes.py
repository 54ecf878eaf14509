"""The prober without root: probe specs, each handler against a fake CRI or a local
HTTP/TCP/gRPC server on 127.0.0.1, and the manager's timing and results (thresholds,
initial delay, startup gating, on_change, prompt removal). Periods are fractions of a
second so the timing tests take well under a second each."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from cri.api import api_pb2
from kubelet.probes import ProbeManager, ProbeSpecError, ProbeType, Result, parse_probe, run_probe
from kubelet.probes.httpget import MAX_BODY_BYTES, PROBE_USER_AGENT
from kubelet.probes.spec import expand_command, resolve_port
from tests.unit.kubelet.probe_servers import (
    Changes,
    FakeRpcError,
    FakeRuntime,
    HttpServer,
    RecordingEvents,
    Route,
    closed_port,
    exited,
    self_signed_tls,
    wait_until,
)

PERIOD = 0.05


def make_pod(*containers: dict[str, Any], uid: str = "uid-1") -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default", "uid": uid},
        "spec": {"containers": list(containers)},
    }  # fmt: skip


def exec_probe(command: list[str], **fields: Any) -> dict[str, Any]:
    return {"exec": {"command": command}, "periodSeconds": PERIOD, **fields}


def spec_of(probe: dict[str, Any], probe_type: ProbeType = ProbeType.READINESS) -> Any:
    return parse_probe(probe, probe_type, "main")


@pytest.fixture
def events() -> RecordingEvents:
    return RecordingEvents()


@pytest.fixture
def changes() -> Changes:
    return Changes()


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    with HttpServer() as server:
        yield server


class Health:
    """The state a fake exec probe reads: `cat /tmp/<name>` succeeds while it is set."""

    def __init__(self, **files: bool) -> None:
        self.files = dict(files)

    def __call__(self, cmd: list[str]) -> api_pb2.ExecSyncResponse:
        name = cmd[-1].rsplit("/", 1)[-1]
        if self.files.get(name):
            return exited(0, b"fine\n")
        return exited(1, b"", f"cat: can't open '/tmp/{name}': No such file\n".encode())


# ---- specs ---------------------------------------------------------------------------


def test_defaults_fill_missing_and_zero_fields() -> None:
    spec = parse_probe({"tcpSocket": {"port": 80}, "periodSeconds": 0}, ProbeType.LIVENESS, "c")
    assert (spec.kind, spec.period, spec.timeout, spec.initial_delay) == ("tcpSocket", 10, 1, 0)
    assert (spec.success_threshold, spec.failure_threshold) == (1, 3)


@pytest.mark.parametrize(
    ("probe", "probe_type", "field"),
    [
        ({"exec": {"command": ["true"]}, "successThreshold": 2}, ProbeType.LIVENESS,
         "livenessProbe.successThreshold"),
        ({"exec": {"command": ["true"]}, "successThreshold": 2}, ProbeType.STARTUP,
         "startupProbe.successThreshold"),
        ({"exec": {"command": ["true"]}, "tcpSocket": {"port": 1}}, ProbeType.READINESS,
         "exactly one handler"),
        ({"periodSeconds": 1}, ProbeType.READINESS, "exactly one handler"),
        ({"exec": {"command": []}}, ProbeType.READINESS, "exec.command"),
        ({"httpGet": {"path": "/"}}, ProbeType.READINESS, "httpGet.port"),
        ({"httpGet": {"port": 80, "scheme": "FTP"}}, ProbeType.READINESS, "httpGet.scheme"),
        ({"tcpSocket": {"port": 80}, "failureThreshold": -1}, ProbeType.READINESS,
         "failureThreshold"),
        ({"tcpSocket": {"port": 80}, "timeoutSeconds": "1s"}, ProbeType.READINESS,
         "timeoutSeconds"),
        ({"grpc": {"port": "grpc"}}, ProbeType.READINESS, "grpc.port"),
    ],
)  # fmt: skip
def test_specs_the_api_would_reject_name_the_field(
    probe: dict[str, Any], probe_type: ProbeType, field: str
) -> None:
    with pytest.raises(ProbeSpecError, match=field.replace(".", r"\.")):
        parse_probe(probe, probe_type, "main")


def test_readiness_may_need_several_successes() -> None:
    assert spec_of({"tcpSocket": {"port": 1}, "successThreshold": 3}).success_threshold == 3


def test_ports_resolve_by_number_or_container_port_name() -> None:
    container = {"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}
    assert resolve_port(81, container) == 81
    assert resolve_port("http", container) == 8080
    assert resolve_port("82", container) == 82
    with pytest.raises(ValueError, match="couldn't find port 'metrics'"):
        resolve_port("metrics", container)
    with pytest.raises(ValueError, match="invalid port number: 70000"):
        resolve_port(70000, container)
    with pytest.raises(ValueError, match="invalid port"):
        resolve_port("Not A Name", container)


def test_exec_commands_expand_literal_env_values_only() -> None:
    env: list[dict[str, Any]] = [
        {"name": "FILE", "value": "/tmp/ok"},
        {"name": "SECRET", "valueFrom": {}},
    ]
    command = ["cat", "$(FILE)", "$(SECRET)", "$$(FILE)", "$(UNSET", "a$b"]
    assert expand_command(command, env) == ["cat", "/tmp/ok", "$(SECRET)", "$(FILE)", "$(UNSET",
                                            "a$b"]  # fmt: skip


# ---- exec ----------------------------------------------------------------------------


def test_exec_success_failure_and_the_request() -> None:
    runtime = FakeRuntime(Health(ok=True))
    container = {"name": "main", "env": [{"name": "F", "value": "/tmp/ok"}]}
    spec = spec_of(exec_probe(["cat", "$(F)"], timeoutSeconds=2.5))
    outcome = run_probe(runtime, spec, container=container, container_id="c1", pod_ip="")
    assert (outcome.result, outcome.message) == (Result.SUCCESS, "fine\n")
    _, request, deadline = runtime.requests[0]
    assert (request.container_id, list(request.cmd), request.timeout) == (
        "c1",
        ["cat", "/tmp/ok"],
        3,
    )
    assert deadline is not None and deadline > 3  # the runtime gets the command's time and more

    missing = spec_of(exec_probe(["cat", "/tmp/gone"]))
    outcome = run_probe(runtime, missing, container=container, container_id="c1", pod_ip="")
    assert outcome.result is Result.FAILURE
    assert outcome.message == "cat: can't open '/tmp/gone': No such file\n"


def test_exec_output_is_stdout_then_stderr_cut_at_10_kib() -> None:
    runtime = FakeRuntime(lambda cmd: exited(2, b"o" * 6000, b"e" * 6000))
    outcome = run_probe(runtime, spec_of(exec_probe(["x"])), container={"name": "main"},
                        container_id="c", pod_ip="")  # fmt: skip
    assert outcome.result is Result.FAILURE
    assert outcome.message == "o" * 6000 + "e" * (MAX_BODY_BYTES - 6000)


def test_exec_timeout_is_a_failure_and_a_runtime_error_is_not_counted() -> None:
    timed_out = FakeRuntime(lambda cmd: FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "late"))
    spec = spec_of(exec_probe(["sleep", "10"]))
    outcome = run_probe(timed_out, spec, container={"name": "main"}, container_id="c", pod_ip="")
    assert (outcome.result, outcome.message) == (Result.FAILURE, 'command "sleep 10" timed out')

    refused = FakeRuntime(lambda cmd: FakeRpcError(grpc.StatusCode.NOT_FOUND, "no container c"))
    outcome = run_probe(refused, spec, container={"name": "main"}, container_id="c", pod_ip="")
    assert outcome.result is Result.ERROR
    assert "no container c" in outcome.message


def test_a_cri_client_is_used_through_its_runtime_and_timeout() -> None:
    class Client:
        def __init__(self) -> None:
            self.runtime = FakeRuntime()
            self.timeout = 7.0

    client = Client()
    run_probe(client, spec_of(exec_probe(["true"])), container={"name": "main"},
              container_id="c", pod_ip="")  # fmt: skip
    assert client.runtime.requests[0][2] == 8.0  # timeout 1 + the client's 7


def test_something_without_exec_sync_is_refused() -> None:
    with pytest.raises(TypeError, match="neither a CRI client nor a CRI runtime service"):
        run_probe(object(), spec_of(exec_probe(["true"])), container={"name": "main"},  # type: ignore[arg-type]
                  container_id="c", pod_ip="")  # fmt: skip


# ---- httpGet ---------------------------------------------------------------------------


def http_probe(server: HttpServer, path: str, **action: Any) -> Any:
    return spec_of(
        {"httpGet": {"port": server.port, "path": path, **action}, "periodSeconds": PERIOD}
    )


def probe_http(spec: Any, container: dict[str, Any] | None = None) -> Any:
    return run_probe(FakeRuntime(), spec, container=container or {"name": "main"},
                     container_id="c", pod_ip="127.0.0.1")  # fmt: skip


def test_http_status_decides_and_the_body_is_the_message(http_server: HttpServer) -> None:
    http_server.routes["/ok"] = Route(200, b"alive")
    http_server.routes["/created"] = Route(204, b"")
    http_server.routes["/broken"] = Route(500, b"boom")
    http_server.routes["/missing"] = Route(404)
    assert probe_http(http_probe(http_server, "/ok")).message == "alive"
    assert probe_http(http_probe(http_server, "/created")).result is Result.SUCCESS
    broken = probe_http(http_probe(http_server, "/broken"))
    assert (broken.result, broken.message) == (
        Result.FAILURE,
        "HTTP probe failed with statuscode: 500",
    )
    assert probe_http(http_probe(http_server, "/missing")).result is Result.FAILURE


def test_http_request_headers_and_host(http_server: HttpServer) -> None:
    http_server.routes["/h?x=1"] = Route(200)
    extra = [{"name": "X-Probe", "value": "yes"}, {"name": "Host", "value": "web.local"}]
    spec = http_probe(http_server, "/h?x=1", httpHeaders=extra)
    assert probe_http(spec).result is Result.SUCCESS
    headers = {k.lower(): v for k, v in http_server.seen[-1].headers.items()}
    assert headers["user-agent"] == PROBE_USER_AGENT == "kube-probe/1.32"
    assert headers["accept"] == "*/*"
    assert headers["x-probe"] == "yes"
    assert headers["host"] == "web.local"
    assert headers["connection"] == "close"
    assert "accept-encoding" not in headers

    custom = http_probe(http_server, "/h?x=1", httpHeaders=[{"name": "User-Agent", "value": "me"}])
    probe_http(custom)
    assert {k.lower(): v for k, v in http_server.seen[-1].headers.items()}["user-agent"] == "me"


def test_http_header_values_http_refuses_are_a_failure(http_server: HttpServer) -> None:
    spec = http_probe(http_server, "/", httpHeaders=[{"name": "X-Bad", "value": "a\r\nb"}])
    outcome = probe_http(spec)
    assert outcome.result is Result.FAILURE
    assert outcome.message.startswith(f'Get "http://127.0.0.1:{http_server.port}/": ')
    assert http_server.seen == []


def test_http_named_port_and_no_such_port(http_server: HttpServer) -> None:
    http_server.routes["/"] = Route(200)
    container = {"name": "main", "ports": [{"name": "web", "containerPort": http_server.port}]}
    spec = spec_of({"httpGet": {"port": "web"}})
    assert probe_http(spec, container).result is Result.SUCCESS
    undeclared = probe_http(spec_of({"httpGet": {"port": "admin"}}), container)
    assert undeclared.result is Result.ERROR
    assert "couldn't find port 'admin'" in undeclared.message


def test_http_follows_redirects_on_the_same_host_only(http_server: HttpServer) -> None:
    http_server.routes["/ok"] = Route(200, b"landed")
    http_server.routes["/here"] = Route(302, headers={"Location": "/ok"})
    http_server.routes["/absolute"] = Route(301, headers={"Location": "http://127.0.0.1:{port}/ok"})
    http_server.routes["/elsewhere"] = Route(
        302, b"moved", headers={"Location": "http://localhost:{port}/ok"}
    )
    http_server.routes["/loop"] = Route(307, headers={"Location": "/loop"})
    assert probe_http(http_probe(http_server, "/here")).message == "landed"
    assert probe_http(http_probe(http_server, "/absolute")).message == "landed"
    elsewhere = probe_http(http_probe(http_server, "/elsewhere"))
    assert elsewhere.result is Result.WARNING
    assert elsewhere.message == "Probe terminated redirects, Response body: moved"
    assert [seen.path for seen in http_server.seen[-1:]] == ["/elsewhere"]  # not followed
    loop = probe_http(http_probe(http_server, "/loop"))
    assert loop.result is Result.FAILURE
    assert loop.message.endswith("stopped after 10 redirects")


def test_http_body_read_is_limited_to_10_kib(http_server: HttpServer) -> None:
    http_server.routes["/big"] = Route(200, b"x" * (1024 * 1024))
    outcome = probe_http(http_probe(http_server, "/big"))
    assert outcome.result is Result.SUCCESS
    assert len(outcome.message) == MAX_BODY_BYTES


def test_http_timeout_and_refused_connections_fail(http_server: HttpServer) -> None:
    http_server.routes["/slow"] = Route(200, delay=1.0)
    started = time.monotonic()
    slow_spec = {"httpGet": {"port": http_server.port, "path": "/slow"}, "timeoutSeconds": 0.2}
    slow = probe_http(spec_of(slow_spec))
    assert time.monotonic() - started < 0.9
    assert slow.result is Result.FAILURE
    assert "timed out" in slow.message
    with closed_port() as port:
        refused = probe_http(spec_of({"httpGet": {"port": port, "path": "/x"}}))
    assert refused.result is Result.FAILURE
    address = f"127.0.0.1:{port}"
    assert (
        refused.message
        == f'Get "http://{address}/x": dial tcp {address}: connect: connection refused'
    )


def test_https_does_not_verify_the_certificate(tmp_path: Path) -> None:
    with HttpServer(tls=self_signed_tls(tmp_path)) as server:
        server.routes["/tls"] = Route(200, b"secure enough")
        outcome = probe_http(http_probe(server, "/tls", scheme="HTTPS"))
    assert (outcome.result, outcome.message) == (Result.SUCCESS, "secure enough")


# ---- tcpSocket and grpc --------------------------------------------------------------


def test_tcp_connects_or_fails(http_server: HttpServer) -> None:
    open_spec = spec_of({"tcpSocket": {"port": http_server.port}})
    assert probe_http(open_spec).result is Result.SUCCESS
    with closed_port() as port:
        refused = probe_http(spec_of({"tcpSocket": {"port": port, "host": "127.0.0.1"}}))
    assert refused.result is Result.FAILURE
    assert refused.message == f"dial tcp 127.0.0.1:{port}: connect: connection refused"


@pytest.fixture
def health_server() -> Iterator[tuple[int, dict[str, bytes]]]:
    """A gRPC server with grpc.health.v1.Health/Check answering `answers[service]`
    (serialized HealthCheckResponse bytes), and NOT_FOUND for other services."""
    answers: dict[str, bytes] = {}

    def check(request: bytes, context: grpc.ServicerContext) -> bytes:
        service = request[2:].decode() if request else ""
        if service not in answers:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {service!r}")
        return answers[service]

    handler = grpc.method_handlers_generic_handler(
        "grpc.health.v1.Health", {"Check": grpc.unary_unary_rpc_method_handler(check)}
    )
    with futures.ThreadPoolExecutor(2) as pool:
        server = grpc.server(pool, handlers=[handler])
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        try:
            yield port, answers
        finally:
            server.stop(None).wait()


def test_grpc_health_check(health_server: tuple[int, dict[str, bytes]]) -> None:
    port, answers = health_server
    answers[""] = b"\x08\x01"  # SERVING
    answers["db"] = b"\x08\x02"  # NOT_SERVING
    assert probe_http(spec_of({"grpc": {"port": port}})).result is Result.SUCCESS
    sick = probe_http(spec_of({"grpc": {"port": port, "service": "db"}}))
    assert (sick.result, sick.message) == (
        Result.FAILURE,
        'service unhealthy (responded with "NOT_SERVING")',
    )
    unknown = probe_http(spec_of({"grpc": {"port": port, "service": "cache"}}))
    assert unknown.result is Result.FAILURE
    assert "health rpc probe failed: NOT_FOUND" in unknown.message


def test_grpc_without_the_health_service(http_server: HttpServer) -> None:
    with futures.ThreadPoolExecutor(1) as pool:
        server = grpc.server(pool)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        try:
            outcome = probe_http(spec_of({"grpc": {"port": port}}))
        finally:
            server.stop(None).wait()
    assert outcome.result is Result.FAILURE
    assert "does not implement the grpc health protocol" in outcome.message


# ---- the manager -----------------------------------------------------------------------


@pytest.fixture
def manager_parts(
    events: RecordingEvents, changes: Changes
) -> Iterator[tuple[FakeRuntime, ProbeManager]]:
    runtime = FakeRuntime()
    manager = ProbeManager(runtime, events, changes)
    yield runtime, manager
    manager.stop()


def test_liveness_fails_after_threshold_consecutive_failures(
    manager_parts: tuple[FakeRuntime, ProbeManager], events: RecordingEvents, changes: Changes
) -> None:
    runtime, manager = manager_parts
    health = Health(live=True)
    runtime.script = health
    container = {
        "name": "main",
        "livenessProbe": exec_probe(["cat", "/tmp/live"], failureThreshold=3),
    }
    pod = make_pod(container)
    manager.add(pod, container, "c1", "10.0.0.5")
    wait_until(lambda: len(runtime.requests) >= 3, "three passing probes")
    assert manager.liveness_failed("c1") is None
    assert changes.count() == 0  # liveness starts passing: nothing changed

    health.files["live"] = False
    failed_at = len(runtime.requests)
    message = wait_until(lambda: manager.liveness_failed("c1"), "liveness to fail")
    assert message == "Container main failed liveness probe, will be restarted"
    assert manager.failed_probe("c1") is ProbeType.LIVENESS
    assert len(runtime.requests) - failed_at >= 3
    assert changes.calls == ["uid-1"]
    wait_until(lambda: not any(t.is_alive() for t in manager.workers("c1")), "the worker to stop")
    after = len(runtime.requests)
    health.files["live"] = True
    time.sleep(PERIOD * 4)
    assert len(runtime.requests) == after  # on hold until the container is replaced
    assert manager.liveness_failed("c1") == message
    unhealthy = [e for e in events.events if e.reason == "Unhealthy"]
    assert len(unhealthy) == 3
    assert (
        unhealthy[0].message == "Liveness probe failed: cat: can't open '/tmp/live': No such file\n"
    )
    assert (unhealthy[0].event_type, unhealthy[0].field_path) == (
        "Warning",
        "spec.containers{main}",
    )
    assert unhealthy[0].obj is pod


def test_failures_that_do_not_reach_the_threshold_are_forgotten(
    manager_parts: tuple[FakeRuntime, ProbeManager],
) -> None:
    runtime, manager = manager_parts
    answers = iter([1, 1, 0] * 5)  # two failures, a success, again: never three in a row
    runtime.script = lambda cmd: exited(next(answers, 0))
    container = {"name": "main", "livenessProbe": exec_probe(["check"], failureThreshold=3)}
    manager.add(make_pod(container), container, "c1", "")
    wait_until(lambda: len(runtime.requests) >= 15, "fifteen probes")
    assert manager.liveness_failed("c1") is None


def test_readiness_starts_false_and_follows_thresholds(
    manager_parts: tuple[FakeRuntime, ProbeManager], changes: Changes
) -> None:
    runtime, manager = manager_parts
    health = Health(ready=False)
    runtime.script = health
    probe = exec_probe(["cat", "/tmp/ready"], successThreshold=2, failureThreshold=2)
    container = {"name": "main", "readinessProbe": probe}
    manager.add(make_pod(container), container, "c1", "")
    assert manager.started("c1") and not manager.ready("c1")
    wait_until(lambda: len(runtime.requests) >= 3, "failing probes")
    assert not manager.ready("c1") and changes.count() == 0

    health.files["ready"] = True
    first_success = len(runtime.requests)
    wait_until(lambda: manager.ready("c1"), "ready")
    assert len(runtime.requests) - first_success >= 2  # successThreshold 2
    assert changes.calls == ["uid-1"]
    health.files["ready"] = False
    wait_until(lambda: not manager.ready("c1"), "unready again")
    assert changes.count() == 2
    assert manager.liveness_failed("c1") is None  # readiness never asks for a restart


def test_startup_gates_liveness_and_readiness(
    manager_parts: tuple[FakeRuntime, ProbeManager], changes: Changes
) -> None:
    runtime, manager = manager_parts
    health = Health(started=False, live=False, ready=True)
    runtime.script = health
    container = {
        "name": "main",
        "startupProbe": exec_probe(["cat", "/tmp/started"], failureThreshold=1000),
        "livenessProbe": exec_probe(["cat", "/tmp/live"], failureThreshold=1, periodSeconds=60),
        "readinessProbe": exec_probe(["cat", "/tmp/ready"], periodSeconds=60),
    }
    manager.add(make_pod(container), container, "c1", "")
    wait_until(lambda: len(runtime.requests) >= 4, "startup probes")
    assert {cmd[-1] for cmd in runtime.commands()} == {"/tmp/started"}
    assert not manager.started("c1") and not manager.ready("c1")
    assert manager.liveness_failed("c1") is None

    health.files["started"] = True
    wait_until(lambda: manager.ready("c1"), "ready right after startup passed")
    assert manager.started("c1")
    # The readiness probe ran at once (its period is a minute), the liveness probe
    # waits for its next tick, and the startup probe is done.
    assert "/tmp/ready" in {cmd[-1] for cmd in runtime.commands()}
    assert changes.count() == 2  # started, then ready
    startup_thread = next(t for t in manager.workers("c1") if "startup" in t.name)
    wait_until(lambda: not startup_thread.is_alive(), "the startup worker to end")


def test_startup_passing_early_does_not_skip_the_readiness_delay(
    manager_parts: tuple[FakeRuntime, ProbeManager],
) -> None:
    runtime, manager = manager_parts
    container = {"name": "main", "startupProbe": exec_probe(["started"]),
                 "readinessProbe": exec_probe(["ready"], initialDelaySeconds=0.4)}  # fmt: skip
    added = time.monotonic()
    manager.add(make_pod(container), container, "c1", "")
    wait_until(lambda: manager.started("c1"), "started")
    wait_until(lambda: manager.ready("c1"), "ready")
    first_ready = next(at for at, request, _ in runtime.requests if request.cmd == ["ready"])
    assert first_ready - added >= 0.4


def test_startup_failure_asks_for_a_restart(
    manager_parts: tuple[FakeRuntime, ProbeManager],
) -> None:
    runtime, manager = manager_parts
    runtime.script = Health(started=False)
    startup = exec_probe(["cat", "/tmp/started"], failureThreshold=2)
    container = {"name": "main", "startupProbe": startup,
                 "livenessProbe": exec_probe(["cat", "/tmp/live"])}  # fmt: skip
    manager.add(make_pod(container), container, "c1", "")
    message = wait_until(lambda: manager.liveness_failed("c1"), "startup to fail")
    assert message == "Container main failed startup probe, will be restarted"
    assert manager.failed_probe("c1") is ProbeType.STARTUP
    assert not manager.started("c1")
    assert {cmd[-1] for cmd in runtime.commands()} == {"/tmp/started"}


def test_initial_delay_counts_from_the_container_start(
    manager_parts: tuple[FakeRuntime, ProbeManager],
) -> None:
    runtime, manager = manager_parts
    delayed = {"name": "main", "readinessProbe": exec_probe(["true"], initialDelaySeconds=0.4)}
    added = time.monotonic()
    manager.add(make_pod(delayed), delayed, "c1", "")
    wait_until(lambda: runtime.requests, "the first probe")
    assert runtime.requests[0][0] - added >= 0.4

    # A container that started long ago is past its delay already.
    old = {"name": "other", "readinessProbe": exec_probe(["true"], initialDelaySeconds=30)}
    added = time.monotonic()
    manager.add(make_pod(old, uid="uid-2"), old, "c2", "", started_at=time.time() - 60)
    wait_until(lambda: manager.ready("c2"), "the old container's readiness")
    assert time.monotonic() - added < 5


def test_containers_older_than_the_manager_start_at_a_random_point_of_the_period(
    manager_parts: tuple[FakeRuntime, ProbeManager], monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, manager = manager_parts
    spreads: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        spreads.append((low, high))
        return 0.3

    monkeypatch.setattr("kubelet.probes.manager.random.uniform", uniform)
    container = {"name": "main", "readinessProbe": exec_probe(["true"], periodSeconds=0.5)}
    added = time.monotonic()
    manager.add(make_pod(container), container, "c1", "", started_at=time.time() - 3600)
    wait_until(lambda: runtime.requests, "the first probe")
    assert runtime.requests[0][0] - added >= 0.3
    assert spreads == [(0, 0.5)]
    # A container started since the manager exists is probed at once.
    fresh = {"name": "new", "readinessProbe": exec_probe(["true"], periodSeconds=0.5)}
    manager.add(make_pod(fresh, uid="uid-2"), fresh, "c2", "", started_at=time.time())
    wait_until(lambda: len(runtime.requests) >= 2, "the fresh container's probe")
    assert spreads == [(0, 0.5)]


def test_remove_stops_workers_at_once_and_drops_late_results(
    manager_parts: tuple[FakeRuntime, ProbeManager], changes: Changes
) -> None:
    runtime, manager = manager_parts
    container = {"name": "main", "readinessProbe": exec_probe(["true"], periodSeconds=60),
                 "livenessProbe": exec_probe(["true"], periodSeconds=60)}  # fmt: skip
    manager.add(make_pod(container), container, "c1", "")
    wait_until(lambda: manager.ready("c1"), "ready")
    threads = manager.workers("c1")
    assert len(threads) == 2
    started = time.monotonic()
    manager.remove("c1")
    for thread in threads:
        thread.join(1)
        assert not thread.is_alive()
    assert time.monotonic() - started < 0.5  # not a 60 s period
    assert manager.workers("c1") == []

    # A probe in flight when its container goes away changes nothing.
    release = threading.Event()
    runtime.script = lambda cmd: exited(0) if release.wait(5) else exited(1)
    manager.add(make_pod(container, uid="uid-2"), container, "c2", "")
    wait_until(lambda: len(runtime.requests) >= 3, "probes in flight")
    before = changes.count()
    manager.remove_pod("uid-2")
    release.set()
    time.sleep(PERIOD)
    assert changes.count() == before


def test_add_is_idempotent_and_a_new_container_replaces_the_old(
    manager_parts: tuple[FakeRuntime, ProbeManager],
) -> None:
    runtime, manager = manager_parts
    runtime.script = lambda cmd: exited(1)
    container = {"name": "main", "livenessProbe": exec_probe(["check"], failureThreshold=1)}
    pod = make_pod(container)
    manager.add(pod, container, "c1", "")
    threads = manager.workers("c1")
    manager.add(pod, container, "c1", "")
    assert manager.workers("c1") == threads
    wait_until(lambda: manager.liveness_failed("c1"), "c1 to fail")

    runtime.script = lambda cmd: exited(0)
    manager.add(pod, container, "c2", "")  # the restarted container
    assert manager.liveness_failed("c2") is None
    assert manager.workers("c1") == []
    assert manager.liveness_failed("c1") is None  # forgotten with the old container


def test_no_probes_means_ready_and_started(manager_parts: tuple[FakeRuntime, ProbeManager]) -> None:
    runtime, manager = manager_parts
    container = {"name": "main"}
    manager.add(make_pod(container), container, "c1", "")
    assert manager.workers("c1") == []
    assert manager.ready("c1") and manager.started("c1") and manager.liveness_failed("c1") is None
    assert manager.ready("unknown") and manager.started("unknown")
    time.sleep(PERIOD * 2)
    assert runtime.requests == []


def test_a_bad_probe_starts_nothing(manager_parts: tuple[FakeRuntime, ProbeManager]) -> None:
    _, manager = manager_parts
    liveness = {"exec": {"command": ["true"]}, "successThreshold": 3}
    container = {"name": "main", "readinessProbe": exec_probe(["true"]), "livenessProbe": liveness}
    with pytest.raises(ProbeSpecError, match=r"spec\.containers\[main\]\.livenessProbe"):
        manager.add(make_pod(container), container, "c1", "")
    assert manager.workers("c1") == []


def test_probes_that_cannot_run_are_reported_not_counted(
    manager_parts: tuple[FakeRuntime, ProbeManager], events: RecordingEvents
) -> None:
    runtime, manager = manager_parts
    runtime.script = lambda cmd: FakeRpcError(grpc.StatusCode.UNAVAILABLE, "runtime down")
    container = {"name": "main", "livenessProbe": exec_probe(["true"], failureThreshold=1)}
    manager.add(make_pod(container), container, "c1", "")
    wait_until(lambda: len(runtime.requests) >= 4, "probes")
    assert manager.liveness_failed("c1") is None
    reason, message = events.reasons()[0]
    assert reason == "Unhealthy"
    assert message.startswith("Liveness probe errored and resulted in unknown state: ")
    assert "runtime down" in message


def test_http_readiness_events_and_warnings(
    manager_parts: tuple[FakeRuntime, ProbeManager],
    events: RecordingEvents,
    http_server: HttpServer,
) -> None:
    _, manager = manager_parts
    http_server.routes["/ready"] = Route(500)
    http_server.routes["/away"] = Route(302, headers={"Location": "http://localhost:{port}/"})
    container = {
        "name": "main", "ports": [{"name": "http", "containerPort": http_server.port}],
        "readinessProbe": {"httpGet": {"port": "http", "path": "/ready"}, "periodSeconds": PERIOD},
    }  # fmt: skip
    manager.add(make_pod(container), container, "c1", "127.0.0.1")
    wait_until(lambda: events.events, "an event")
    assert events.reasons()[0] == (
        "Unhealthy",
        "Readiness probe failed: HTTP probe failed with statuscode: 500",
    )
    assert not manager.ready("c1")
    http_server.routes["/ready"] = Route(302, headers={"Location": "http://localhost:{port}/"})
    wait_until(lambda: manager.ready("c1"), "ready on a redirect elsewhere")
    assert (
        "ProbeWarning",
        "Readiness probe warning: Probe terminated redirects, Response body: ok",
    ) in events.reasons()


def test_stop_liveness_and_startup_keeps_readiness(
    manager_parts: tuple[FakeRuntime, ProbeManager],
) -> None:
    runtime, manager = manager_parts
    container = {"name": "main", "readinessProbe": exec_probe(["ready"]),
                 "livenessProbe": exec_probe(["live"], failureThreshold=1)}  # fmt: skip
    manager.add(make_pod(container), container, "c1", "")
    wait_until(lambda: manager.ready("c1"), "ready")
    manager.stop_liveness_and_startup("uid-1")
    runtime.script = lambda cmd: exited(1)
    wait_until(lambda: not manager.ready("c1"), "readiness to keep probing")
    assert manager.liveness_failed("c1") is None
    assert [t.name.split("-")[1] for t in manager.workers("c1")] == ["readiness"]


def test_on_change_errors_do_not_stop_probing(events: RecordingEvents) -> None:
    runtime = FakeRuntime(Health(ready=True))
    calls: list[str] = []

    def broken(pod_uid: str) -> None:
        calls.append(pod_uid)
        raise RuntimeError("pod worker gone")

    manager = ProbeManager(runtime, events, broken)
    try:
        container = {"name": "main", "readinessProbe": exec_probe(["cat", "/tmp/ready"])}
        manager.add(make_pod(container), container, "c1", "")
        wait_until(lambda: calls, "on_change")
        seen = len(runtime.requests)
        wait_until(lambda: len(runtime.requests) > seen + 2, "more probes")
    finally:
        manager.stop()
