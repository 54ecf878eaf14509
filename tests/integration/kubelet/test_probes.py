"""Probes and lifecycle hooks against a real CRI server and a busybox container (root):
the kubelet's CRI client (kubelet.cri_client.CriClient) on the server's socket, exec
probes through ExecSync, an httpGet probe and hook against busybox httpd in the pod's
network namespace (the host reaches pod IPs over the test's bridge); then the whole
kubelet with a real API server: readiness in the pod's status, a restart on a failed
liveness probe, and the events. Periods of 1 s and small thresholds keep each test
to seconds."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubelet.cri_client import CriClient
from kubelet.lifecycle import MINIMUM_GRACE_PERIOD, run_handler, run_post_start, run_pre_stop
from kubelet.probes import ProbeManager
from tests.integration.cri.support import NEEDS_CRI, Cri, wait_for
from tests.integration.kubelet.support import (
    ApiServer,
    get_or_none,
    kubelet_config,
    pod,
    running_kubelet,
    unique_name,
)
from tests.unit.kubelet.probe_servers import Changes, RecordingEvents

pytestmark = NEEDS_CRI

# httpd serves /www on :8080 (named "http" in the container's ports); the probes read
# /tmp/healthy and /tmp/ready, which the test removes and puts back with ExecSync.
SERVE = (
    "mkdir -p /www && echo up > /www/index.html && httpd -p 8080 -h /www"
    " && touch /tmp/healthy /tmp/ready && trap 'exit 0' TERM; sleep 3600 & wait"
)


@pytest.fixture
def client(cri: Cri) -> Iterator[CriClient]:
    cri_client = CriClient(f"unix://{cri.socket}", timeout=30)
    try:
        yield cri_client
    finally:
        cri_client.close()


def running(cri: Cri, name: str, container: dict[str, Any]) -> tuple[dict[str, Any], str, str]:
    """A sandbox `name` with busybox running `container["command"]`: the pod object,
    the container id and the pod IP."""
    sandbox = cri.run_sandbox(name)
    container_id = cri.create(sandbox, container["name"], container["command"])
    cri.start_container(container_id)
    pod_ip = cri.sandbox_status(sandbox).status.network.ip
    assert pod_ip
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "test", "uid": f"uid-{name}"},
        "spec": {"containers": [container]},
    }
    return pod, container_id, pod_ip


def test_exec_and_http_probes_on_a_real_container(cri: Cri, client: CriClient) -> None:
    container = {
        "name": "web",
        "command": ["sh", "-c", SERVE],
        "ports": [{"name": "http", "containerPort": 8080}],
        # The startup probe is the HTTP one: liveness and readiness wait for httpd.
        "startupProbe": {
            "httpGet": {"port": "http", "path": "/index.html"},
            "periodSeconds": 1,
            "failureThreshold": 20,
        },
        "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1},
        "livenessProbe": {
            "exec": {"command": ["cat", "/tmp/healthy"]},
            "periodSeconds": 1,
            "failureThreshold": 2,
        },
    }
    pod, container_id, pod_ip = running(cri, "probed", container)
    events, changes = RecordingEvents(), Changes()
    probes = ProbeManager(client, events, changes)
    try:
        probes.add(pod, container, container_id, pod_ip)
        wait_for(lambda: probes.started(container_id), "the httpGet startup probe", timeout=20)
        wait_for(lambda: probes.ready(container_id), "ready", timeout=5)
        assert changes.calls[:2] == ["uid-probed", "uid-probed"]

        cri.exec(container_id, ["rm", "/tmp/ready"])
        wait_for(lambda: not probes.ready(container_id), "unready", timeout=6)
        cri.exec(container_id, ["touch", "/tmp/ready"])
        wait_for(lambda: probes.ready(container_id), "ready again", timeout=6)
        assert probes.liveness_failed(container_id) is None

        removed = time.monotonic()
        cri.exec(container_id, ["rm", "/tmp/healthy"])
        message = wait_for(lambda: probes.liveness_failed(container_id), "liveness", timeout=8)
        took = time.monotonic() - removed
        assert message == "Container web failed liveness probe, will be restarted"
        assert 1 <= took < 5  # two failures one period apart
        failures = [e.message for e in events.events if e.message.startswith("Liveness")]
        assert len(failures) == 2
        assert failures[0].startswith("Liveness probe failed: cat: can't open '/tmp/healthy'")
        readiness = [e.message for e in events.events if e.message.startswith("Readiness")]
        assert readiness and readiness[0].startswith("Readiness probe failed: cat:")
        assert all(e.field_path == "spec.containers{web}" for e in events.events)
    finally:
        probes.stop()


def test_http_readiness_failure_message(cri: Cri, client: CriClient) -> None:
    container = {
        "name": "web",
        "command": ["sh", "-c", SERVE],
        "readinessProbe": {"httpGet": {"port": 8080, "path": "/missing"}, "periodSeconds": 1},
    }
    pod, container_id, pod_ip = running(cri, "missing", container)
    events = RecordingEvents()
    probes = ProbeManager(client, events, Changes())
    try:
        probes.add(pod, container, container_id, pod_ip)
        expected = "Readiness probe failed: HTTP probe failed with statuscode: 404"
        wait_for(lambda: expected in [e.message for e in events.events], "a 404", timeout=10)
        assert not probes.ready(container_id)
    finally:
        probes.stop()


def test_lifecycle_hooks_on_a_real_container(cri: Cri, client: CriClient) -> None:
    container = {
        "name": "hooked",
        "command": ["sh", "-c", SERVE],
        "lifecycle": {
            "postStart": {"exec": {"command": ["sh", "-c", "echo started > /tmp/post-start"]}},
            "preStop": {"exec": {"command": ["sh", "-c", "sleep 1; echo bye > /tmp/pre-stop"]}},
        },
    }
    pod, container_id, pod_ip = running(cri, "hooked", container)
    events = RecordingEvents()
    assert run_post_start(client, events, pod, container, container_id, pod_ip, timeout=10) is None
    assert cri.exec(container_id, ["cat", "/tmp/post-start"]).stdout == b"started\n"

    failing = {"exec": {"command": ["sh", "-c", "echo out; echo err >&2; exit 7"]}}
    message = run_handler(client, failing, pod, container, container_id, pod_ip, 5)
    assert message == (
        "Exec lifecycle hook ([sh -c echo out; echo err >&2; exit 7]) for Container "
        '"hooked" in Pod "hooked_test(uid-hooked)" failed - error: command '
        "'sh -c echo out; echo err >&2; exit 7' exited with 7: err\n, "
        'message: "out\\nerr\\n"'
    )
    wait_for(
        lambda: (
            run_handler(
                client,
                {"httpGet": {"port": 8080, "path": "/index.html"}},
                pod,
                container,
                container_id,
                pod_ip,
                2,
            )
            is None
        ),
        "the httpGet hook on httpd",
    )

    remaining = run_pre_stop(client, events, pod, container, container_id, pod_ip, grace_period=10)
    assert 7 < remaining < 9.5  # the hook's second (and the exec's own cost) is spent
    assert cri.exec(container_id, ["cat", "/tmp/pre-stop"]).stdout == b"bye\n"
    assert events.events == []

    slow = {"exec": {"command": ["sleep", "30"]}}
    started = time.monotonic()
    message = run_handler(client, slow, pod, container, container_id, pod_ip, 1)
    assert message is not None and message.endswith('command "sleep 30" timed out')
    assert time.monotonic() - started < 5

    # A preStop hook longer than the grace period is cut off at its end, and the
    # container still gets the minimum to handle SIGTERM.
    stubborn = dict(container, lifecycle={"preStop": slow})
    started = time.monotonic()
    remaining = run_pre_stop(client, events, pod, stubborn, container_id, pod_ip, grace_period=1)
    assert time.monotonic() - started < 2.5
    assert remaining == MINIMUM_GRACE_PERIOD


PODS = "/api/v1/namespaces/default/pods"


def _main_status(api: ApiServer, name: str) -> dict[str, Any]:
    found = get_or_none(api.client, f"{PODS}/{name}") or {}
    for status in (found.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == "main":
            return dict(status)
    return {}


def _ready(api: ApiServer, name: str) -> dict[str, Any] | None:
    status = _main_status(api, name)
    return status if status.get("ready") else None


def test_the_kubelet_reports_readiness_and_restarts_on_liveness(
    api: ApiServer, cri: Cri, tmp_path: Path
) -> None:
    config = kubelet_config(api, cri, tmp_path / "kubelet")
    name = unique_name("probed")
    command = "touch /tmp/healthy /tmp/ready; trap 'exit 0' TERM; sleep 3600 & wait"
    manifest = pod(name, config.node_name, cri.image, ["sh", "-c", command])
    main = manifest["spec"]["containers"][0]
    main["readinessProbe"] = {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1}
    main["livenessProbe"] = {
        "exec": {"command": ["cat", "/tmp/healthy"]},
        "periodSeconds": 1,
        "failureThreshold": 2,
    }
    with running_kubelet(config):
        api.client.create(PODS, manifest)
        status = wait_for(lambda: _ready(api, name), "the container to be ready", timeout=30)
        container_id = status["containerID"].split("://", 1)[-1]

        cri.exec(container_id, ["rm", "/tmp/ready"])
        wait_for(lambda: _main_status(api, name).get("ready") is False, "unready", timeout=10)
        assert _main_status(api, name)["restartCount"] == 0  # readiness never restarts
        cri.exec(container_id, ["touch", "/tmp/ready"])
        wait_for(lambda: _main_status(api, name).get("ready"), "ready again", timeout=10)

        cri.exec(container_id, ["rm", "/tmp/healthy"])
        wait_for(
            lambda: _main_status(api, name).get("restartCount", 0) >= 1, "a restart", timeout=30
        )
        restarted = wait_for(lambda: _ready(api, name), "the new container to be ready", timeout=30)
        assert restarted["containerID"].split("://", 1)[-1] != container_id

        def probe_failures() -> list[tuple[str, str]] | None:
            # Events are written by the recorder's own thread: wait for both.
            events = api.client.list("/api/v1/namespaces/default/events")["items"]
            mine = [
                (e["reason"], e["message"])
                for e in events
                if e["involvedObject"].get("name") == name
            ]
            liveness = any(
                reason == "Unhealthy"
                and message.startswith("Liveness probe failed: cat: can't open '/tmp/healthy'")
                for reason, message in mine
            )
            readiness = any(
                reason == "Unhealthy" and message.startswith("Readiness probe failed: ")
                for reason, message in mine
            )
            return mine if liveness and readiness else None

        wait_for(probe_failures, "the liveness and readiness failure events", timeout=10)
        api.client.delete(f"{PODS}/{name}")
        wait_for(lambda: get_or_none(api.client, f"{PODS}/{name}") is None, "deletion", timeout=30)
