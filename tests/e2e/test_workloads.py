"""Pod behaviour as a user sees it through kubectl on a `kubeling up` cluster: probes
restart a container or flip its pod's readiness (and the Service's endpoints with
it), a failing container goes into CrashLoopBackOff, init containers run in order,
configMap/secret/emptyDir contents reach the container, a killed kubelet restarts
without restarting any container, a deleted pod runs its preStop hook, and logs of
a previous instance and followed logs work. Each test has its own namespace."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.support import Cluster, alive, wait_for

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

BUSYBOX = "kubeling.local/busybox:latest"


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A namespace of the test's own, deleted (and waited for) afterwards."""
    name = f"wl-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false")
        wait_for(lambda: not exists(cluster, "namespace", name), f"namespace {name} to go", 90)


def exists(cluster: Cluster, *what: str) -> bool:
    found = cluster.kubectl("get", *what, "--ignore-not-found", "-o", "name").stdout
    return bool(found.strip())


def apply(cluster: Cluster, *objects: dict[str, Any]) -> None:
    """`kubectl apply -f` of the objects as one manifest file (a v1 List, in JSON, which
    is YAML too)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as manifest:
        json.dump({"apiVersion": "v1", "kind": "List", "items": list(objects)}, manifest)
    try:
        cluster.kubectl("apply", "-f", manifest.name)
    finally:
        os.unlink(manifest.name)


def pod_manifest(
    namespace: str, name: str, containers: list[dict[str, Any]], **spec: Any
) -> dict[str, Any]:
    for container in containers:
        container.setdefault("image", BUSYBOX)
        container.setdefault("imagePullPolicy", "Never")
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": containers, **spec},
    }  # fmt: skip


def get_pod(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    return dict(
        json.loads(cluster.kubectl("get", "pod", name, "-n", namespace, "-o", "json").stdout)
    )


def condition(pod: dict[str, Any], kind: str) -> str:
    found = [c for c in pod["status"].get("conditions") or [] if c["type"] == kind]
    return str(found[0]["status"]) if found else ""


def container_status(pod: dict[str, Any], index: int = 0) -> dict[str, Any]:
    statuses = pod["status"].get("containerStatuses") or []
    return dict(statuses[index]) if len(statuses) > index else {}


def running_and_ready(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    pod = get_pod(cluster, namespace, name)
    if pod["status"].get("phase") == "Running" and condition(pod, "Ready") == "True":
        return pod
    return None


def jsonpath(cluster: Cluster, namespace: str, name: str, path: str) -> str:
    return cluster.kubectl("get", "pod", name, "-n", namespace, "-o", f"jsonpath={{{path}}}").stdout


def events_of(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    listed = json.loads(cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)
    return [e for e in listed["items"] if e["involvedObject"].get("name") == name]


def test_a_failing_liveness_probe_restarts_the_container(cluster: Cluster, namespace: str) -> None:
    apply(cluster, pod_manifest(namespace, "live", [{
        "name": "app", "command": ["sh", "-c", "touch /tmp/healthy && exec sleep 3600"],
        "livenessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]},
                          "periodSeconds": 1, "timeoutSeconds": 5, "failureThreshold": 1},
    }]))  # fmt: skip
    first = wait_for(lambda: running_and_ready(cluster, namespace, "live"), "live to run", 60)
    assert container_status(first)["restartCount"] == 0
    cluster.kubectl("exec", "-n", namespace, "live", "--", "rm", "/tmp/healthy")

    path = ".status.containerStatuses[0].restartCount"
    wait_for(lambda: int(jsonpath(cluster, namespace, "live", path) or 0) >= 1, "a restart", 30)
    again = wait_for(lambda: running_and_ready(cluster, namespace, "live"), "live again", 30)
    status = container_status(again)
    assert status["containerID"] != container_status(first)["containerID"]
    assert "running" in status["state"], status

    def probe_events() -> dict[str, str]:
        found = {e["reason"]: e["message"] for e in events_of(cluster, namespace, "live")}
        return found if {"Unhealthy", "Killing"} <= set(found) else {}

    events = wait_for(probe_events, "Unhealthy and Killing events", 20)
    assert events["Unhealthy"].startswith("Liveness probe failed"), events
    assert "failed liveness probe, will be restarted" in events["Killing"], events
    described = cluster.kubectl("describe", "pod", "live", "-n", namespace).stdout
    assert "Liveness probe failed" in described, described


def test_a_readiness_probe_flips_ready_and_the_endpoints(cluster: Cluster, namespace: str) -> None:
    apply(
        cluster,
        pod_manifest(namespace, "ready", [{
            "name": "app", "command": ["sh", "-c", "exec sleep 3600"],
            "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]},
                               "periodSeconds": 1, "timeoutSeconds": 5, "failureThreshold": 1},
        }]),
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "ready", "namespace": namespace},
         "spec": {"selector": {"app": "ready"}, "ports": [{"port": 80, "targetPort": 8080}]}},
    )  # fmt: skip

    def state() -> tuple[str, str, list[str], list[str]]:
        pod = get_pod(cluster, namespace, "ready")
        endpoints = json.loads(
            cluster.kubectl("get", "endpoints", "ready", "-n", namespace, "-o", "json").stdout
        )
        subsets = endpoints.get("subsets") or []
        ready = [a["ip"] for s in subsets for a in s.get("addresses") or []]
        not_ready = [a["ip"] for s in subsets for a in s.get("notReadyAddresses") or []]
        return condition(pod, "Ready"), pod["status"].get("podIP", ""), ready, not_ready

    def reaches(wanted: str) -> bool:
        ready, ip, addresses, not_ready = state()
        if not ip or ready != wanted:
            return False
        return (addresses, not_ready) == (([ip], []) if wanted == "True" else ([], [ip]))

    wait_for(lambda: get_pod(cluster, namespace, "ready")["status"].get("phase") == "Running",
             "the pod to run", 60)  # fmt: skip
    wait_for(lambda: reaches("False"), "not ready, in notReadyAddresses", 30)
    exec_in = ["exec", "-n", namespace, "ready", "--"]
    cluster.kubectl(*exec_in, "touch", "/tmp/ready")
    wait_for(lambda: reaches("True"), "ready, in addresses", 30)
    cluster.kubectl(*exec_in, "rm", "/tmp/ready")
    wait_for(lambda: reaches("False"), "not ready again, in notReadyAddresses", 30)
    cluster.kubectl(*exec_in, "touch", "/tmp/ready")
    wait_for(lambda: reaches("True"), "ready again, in addresses", 30)
    assert container_status(get_pod(cluster, namespace, "ready"))["restartCount"] == 0


def test_a_container_that_exits_1_goes_into_crash_loop_back_off(
    cluster: Cluster, namespace: str
) -> None:
    apply(cluster, pod_manifest(namespace, "crash", [
        {"name": "app", "command": ["sh", "-c", "echo crashing; exit 1"]},
    ]))  # fmt: skip

    def backing_off() -> dict[str, Any] | None:
        status = container_status(get_pod(cluster, namespace, "crash"))
        waiting = (status.get("state") or {}).get("waiting") or {}
        return status if waiting.get("reason") == "CrashLoopBackOff" else None

    status = wait_for(backing_off, "waiting.reason CrashLoopBackOff", 60)
    assert status["restartCount"] >= 1
    assert status["lastState"]["terminated"]["exitCode"] == 1
    assert "back-off" in status["state"]["waiting"].get("message", ""), status
    listed = cluster.kubectl("get", "pod", "crash", "-n", namespace).stdout
    assert "CrashLoopBackOff" in listed, listed
    wait_for(
        lambda: "BackOff" in {e["reason"] for e in events_of(cluster, namespace, "crash")},
        "a BackOff event", 10,
    )  # fmt: skip


def test_init_containers_run_in_order_before_the_app(cluster: Cluster, namespace: str) -> None:
    shared = [{"name": "work", "mountPath": "/work"}]
    apply(cluster, pod_manifest(
        namespace, "init",
        [{"name": "app", "command": ["sh", "-c", "cat /work/order; exec sleep 3600"],
          "volumeMounts": shared}],
        initContainers=[
            {"name": "first", "image": BUSYBOX, "imagePullPolicy": "Never",
             "command": ["sh", "-c", "echo first >> /work/order"], "volumeMounts": shared},
            # Fails unless the first one has finished: the order is checked in the pod.
            {"name": "second", "image": BUSYBOX, "imagePullPolicy": "Never",
             "command": ["sh", "-c", "grep -qx first /work/order && echo second >> /work/order"],
             "volumeMounts": shared},
        ],
        volumes=[{"name": "work", "emptyDir": {}}],
    ))  # fmt: skip
    pod = wait_for(lambda: running_and_ready(cluster, namespace, "init"), "init to run", 60)
    assert condition(pod, "Initialized") == "True"
    inits = pod["status"]["initContainerStatuses"]
    assert [s["name"] for s in inits] == ["first", "second"]
    for status in inits:
        assert status["state"]["terminated"]["exitCode"] == 0, status
        assert status["state"]["terminated"]["reason"] == "Completed", status
        assert status["restartCount"] == 0, status
    seen = cluster.kubectl("exec", "-n", namespace, "init", "--", "cat", "/work/order").stdout
    assert seen.splitlines() == ["first", "second"]
    logs = cluster.kubectl("logs", "-n", namespace, "init", "-c", "app").stdout
    assert logs.splitlines() == ["first", "second"]


def test_config_map_secret_and_empty_dir_reach_the_container(
    cluster: Cluster, namespace: str
) -> None:
    apply(
        cluster,
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": "settings", "namespace": namespace},
         "data": {"greeting": "hello from a config map", "mode": "fast"}},
        {"apiVersion": "v1", "kind": "Secret",
         "metadata": {"name": "credentials", "namespace": namespace},
         "type": "Opaque",
         "data": {"password": "czNjcmV0LXBhc3N3b3Jk"},  # s3cret-password
         "stringData": {"token": "plain-token"}},
        pod_manifest(namespace, "mounts", [{
            "name": "app", "command": ["sh", "-c", "exec sleep 3600"],
            "env": [
                {"name": "GREETING", "valueFrom": {"configMapKeyRef": {
                    "name": "settings", "key": "greeting"}}},
                {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {
                    "name": "credentials", "key": "password"}}},
            ],
            "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"},
                        {"secretRef": {"name": "credentials"}}],
            "volumeMounts": [
                {"name": "config", "mountPath": "/etc/config"},
                {"name": "secret", "mountPath": "/etc/secret", "readOnly": True},
                {"name": "scratch", "mountPath": "/scratch"},
            ],
        }], volumes=[
            {"name": "config", "configMap": {"name": "settings"}},
            {"name": "secret", "secret": {"secretName": "credentials"}},
            {"name": "scratch", "emptyDir": {"medium": "Memory"}},
        ]),
    )  # fmt: skip
    wait_for(lambda: running_and_ready(cluster, namespace, "mounts"), "mounts to run", 60)

    def inside(*argv: str) -> str:
        return cluster.kubectl("exec", "-n", namespace, "mounts", "--", *argv).stdout

    assert inside("cat", "/etc/config/greeting") == "hello from a config map"
    assert inside("cat", "/etc/config/mode") == "fast"
    assert inside("cat", "/etc/secret/password") == "s3cret-password"
    assert inside("cat", "/etc/secret/token") == "plain-token"
    env = dict(line.split("=", 1) for line in inside("env").splitlines() if "=" in line)
    assert env["GREETING"] == "hello from a config map"
    assert env["PASSWORD"] == "s3cret-password"
    assert env["CFG_mode"] == "fast" and env["CFG_greeting"] == "hello from a config map"
    assert env["token"] == "plain-token"
    mounts = {fields[1]: fields[2] for fields in
              (line.split() for line in inside("cat", "/proc/mounts").splitlines())}  # fmt: skip
    assert mounts.get("/etc/secret") == "tmpfs", mounts
    assert mounts.get("/scratch") == "tmpfs", mounts
    inside("sh", "-c", "echo kept > /scratch/note")
    assert inside("cat", "/scratch/note") == "kept\n"
    with pytest.raises(AssertionError, match="Read-only file system"):
        inside("touch", "/etc/secret/new")


def node_heartbeats(cluster: Cluster) -> tuple[str, str]:
    """The Node's Ready status and its Lease's renewTime."""
    node = json.loads(cluster.kubectl("get", "node", cluster.node_name, "-o", "json").stdout)
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")["status"]
    lease_argv = ["get", "lease", cluster.node_name, "-n", "kube-node-lease", "-o", "json"]
    lease = json.loads(cluster.kubectl(*lease_argv).stdout)
    return str(ready), str(lease["spec"].get("renewTime", ""))


def micro_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_a_killed_kubelet_comes_back_without_restarting_containers(
    cluster: Cluster, namespace: str
) -> None:
    apply(cluster, pod_manifest(namespace, "steady", [
        {"name": "app", "command": ["sh", "-c", "exec sleep 3600"],
         "readinessProbe": {"exec": {"command": ["true"]},
                            "periodSeconds": 1, "timeoutSeconds": 5}},
        {"name": "side", "command": ["sh", "-c", "exec sleep 3600"]},
    ]))  # fmt: skip
    before = wait_for(lambda: running_and_ready(cluster, namespace, "steady"), "steady to run", 60)

    def containers(pod: dict[str, Any]) -> dict[str, tuple[str, int]]:
        return {s["name"]: (s["containerID"], s["restartCount"])
                for s in pod["status"]["containerStatuses"]}  # fmt: skip

    cluster.kubectl("exec", "-n", namespace, "steady", "-c", "app", "--", "touch", "/tmp/marker")
    kubelet = cluster.pids()["kubelet"]
    killed_at = time.time()
    os.kill(kubelet, signal.SIGKILL)
    wait_for(lambda: not alive(kubelet), "the killed kubelet to be gone", 10)
    new = wait_for(lambda: (pid := cluster.pids().get("kubelet", kubelet)) != kubelet and pid,
                   "up to start a new kubelet", 30)  # fmt: skip
    assert alive(new)

    def back() -> bool:
        ready, renewed = node_heartbeats(cluster)
        return ready == "True" and bool(renewed) and micro_time(renewed) > killed_at

    wait_for(back, "the node Ready with a new heartbeat", 60)
    # The new kubelet must serve this pod again (exec goes through it) and, for a few
    # of its sync and PLEG periods, leave its containers alone.
    cluster.kubectl("exec", "-n", namespace, "steady", "-c", "app", "--", "cat", "/tmp/marker")
    settle = time.monotonic() + 6
    readiness = []  # (seconds since the kill, Ready), for the message below
    while time.monotonic() < settle:
        pod = get_pod(cluster, namespace, "steady")
        assert containers(pod) == containers(before), (containers(pod), containers(before))
        assert pod["status"]["phase"] == "Running"
        readiness.append((round(time.time() - killed_at, 1), condition(pod, "Ready")))
        time.sleep(0.5)
    # A restarted kubelet reports readiness False until its first probe (as Kubernetes does).
    wait_for(lambda: condition(get_pod(cluster, namespace, "steady"), "Ready") == "True",
             f"steady Ready again (seen since the kill: {readiness})", 20)  # fmt: skip


def test_a_deleted_pod_runs_its_pre_stop_hook_and_goes_within_the_grace_period(
    cluster: Cluster, namespace: str
) -> None:
    hook_dir = Path(tempfile.mkdtemp(prefix="kle2e-hook-"))
    try:
        grace = 15
        # The hook writes first; SIGTERM then reaches the shell's trap, which exits.
        main = ("trap 'echo term >> /hook/log; exit 0' TERM; "
                "while true; do sleep 0.2; done")  # fmt: skip
        apply(cluster, pod_manifest(namespace, "stopper", [{
            "name": "app", "command": ["sh", "-c", main],
            "volumeMounts": [{"name": "hook", "mountPath": "/hook"}],
            "lifecycle": {"preStop": {"exec": {
                "command": ["sh", "-c", "echo prestop >> /hook/log"]}}},
        }], terminationGracePeriodSeconds=grace,
            volumes=[{"name": "hook", "hostPath": {"path": str(hook_dir), "type": "Directory"}}],
        ))  # fmt: skip
        wait_for(lambda: running_and_ready(cluster, namespace, "stopper"), "stopper to run", 60)
        assert not (hook_dir / "log").exists()
        started = time.monotonic()
        cluster.kubectl("delete", "pod", "stopper", "-n", namespace, "--wait=false")
        wait_for(lambda: not exists(cluster, "pod", "stopper", "-n", namespace),
                 "the pod object to go within its grace period", grace)  # fmt: skip
        took = time.monotonic() - started
        assert took < grace, took
        assert (hook_dir / "log").read_text().splitlines() == ["prestop", "term"]
    finally:
        shutil.rmtree(hook_dir, ignore_errors=True)


def test_logs_of_the_previous_instance(cluster: Cluster, namespace: str) -> None:
    # The first instance exits; the second (counted in the emptyDir) keeps running.
    script = ("n=$(( $(cat /state/count 2>/dev/null || echo 0) + 1 )); echo $n > /state/count; "
              "echo \"instance $n\"; [ $n -gt 1 ] || exit 3; exec sleep 3600")  # fmt: skip
    apply(cluster, pod_manifest(
        namespace, "twice", [{"name": "app", "command": ["sh", "-c", script],
                              "volumeMounts": [{"name": "state", "mountPath": "/state"}]}],
        volumes=[{"name": "state", "emptyDir": {}}],
    ))  # fmt: skip

    def restarted() -> dict[str, Any] | None:
        pod = running_and_ready(cluster, namespace, "twice")
        return pod if pod and container_status(pod)["restartCount"] == 1 else None

    pod = wait_for(restarted, "the second instance to run", 60)
    assert container_status(pod)["lastState"]["terminated"]["exitCode"] == 3
    current = wait_for(lambda: cluster.kubectl("logs", "-n", namespace, "twice").stdout,
                       "the second instance's log", 20)  # fmt: skip
    assert current.splitlines() == ["instance 2"]
    previous = cluster.kubectl("logs", "-n", namespace, "twice", "--previous").stdout
    assert previous.splitlines() == ["instance 1"]


def test_logs_follow_streams_a_line_written_later(cluster: Cluster, namespace: str) -> None:
    script = ("echo first line; while [ ! -e /tmp/go ]; do sleep 0.2; done; "
              "echo written later; exec sleep 3600")  # fmt: skip
    apply(
        cluster,
        pod_manifest(namespace, "talker", [{"name": "app", "command": ["sh", "-c", script]}]),
    )
    wait_for(lambda: running_and_ready(cluster, namespace, "talker"), "talker to run", 60)
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig),
           "KUBECACHEDIR": str(cluster.root / "kubecache")}  # fmt: skip
    with subprocess.Popen(
        ["kubectl", "logs", "-f", "-n", namespace, "talker"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    ) as follower:  # fmt: skip
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=pump, args=(follower, lines), daemon=True)
        reader.start()
        try:
            assert next_line(lines, 20) == "first line\n"
            cluster.kubectl("exec", "-n", namespace, "talker", "--", "touch", "/tmp/go")
            assert next_line(lines, 20) == "written later\n"
            assert follower.poll() is None, "kubectl logs -f ended while the container runs"
        finally:
            follower.kill()
            follower.wait(10)
            reader.join(10)


def pump(process: subprocess.Popen[str], lines: queue.Queue[str]) -> None:
    for line in process.stdout or []:
        lines.put(line)


def next_line(lines: queue.Queue[str], timeout: float) -> str:
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"no line from kubectl logs -f within {timeout:.0f}s") from None
