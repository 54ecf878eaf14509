"""`kubeling up` as a user runs it: one command brings a node Ready; `kubectl apply
-f examples/web.yaml` gives Running pods whose IPs answer HTTP from the host; scaling
to 5 and back works; a second `up` refuses; `kubeling down` stops every process it
started and a second `up` resumes the same cluster."""

from __future__ import annotations

import json
import os
import signal
from contextlib import closing
from typing import Any

import pytest

from tests.e2e.support import Cluster, alive, http_get, wait_for

pytestmark = [pytest.mark.root, pytest.mark.timeout(600)]


def web_pods(cluster: Cluster) -> list[dict[str, Any]]:
    listed = json.loads(cluster.kubectl("get", "pods", "-l", "app=web", "-o", "json").stdout)
    return [p for p in listed["items"] if not p["metadata"].get("deletionTimestamp")]


def serving(cluster: Cluster, replicas: int) -> list[str]:
    """The pod IPs once exactly `replicas` web pods are Running and Ready, each
    answering with a page that names it; [] before."""
    pods = web_pods(cluster)
    if len(pods) != replicas:
        return []
    ips = []
    for pod in pods:
        status = pod["status"]
        ready = [c for c in status.get("conditions") or [] if c["type"] == "Ready"]
        if status.get("phase") != "Running" or not ready or ready[0]["status"] != "True":
            return []
        ips.append(str(status["podIP"]))
    for pod, ip in zip(pods, ips, strict=True):
        name = pod["metadata"]["name"]
        assert http_get(f"http://{ip}:8080/").strip() == f"hello from {name}"
    return ips


def test_the_node_is_ready_and_has_the_node_images(cluster: Cluster) -> None:
    nodes = cluster.kubectl("get", "nodes", "-o", "wide").stdout
    assert cluster.node_name in nodes and " Ready " in nodes, nodes
    with closing(cluster.client()) as client:
        node = client.get(f"/api/v1/nodes/{cluster.node_name}")
    names = {n for image in node["status"]["images"] for n in image["names"]}
    assert "kubeling.local/busybox:latest" in names
    assert node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] == cluster.kubelet_port


def test_a_second_up_refuses(cluster: Cluster) -> None:
    result = cluster.up(check=False)
    assert result.returncode == 1
    assert "already running" in result.stderr


def test_a_child_that_dies_is_restarted(cluster: Cluster) -> None:
    before = cluster.pids()["scheduler"]
    os.kill(before, signal.SIGKILL)
    wait_for(lambda: cluster.pids().get("scheduler", before) != before, "a new scheduler", 20)
    log = (cluster.root / "log" / "up.log").read_text()
    assert f"scheduler (pid {before}) exited with status -9; restarting it in 1s" in log
    assert alive(cluster.pids()["scheduler"])


def test_web_runs_answers_http_and_scales(cluster: Cluster) -> None:
    applied = cluster.kubectl("apply", "-f", "examples/web.yaml").stdout
    assert "deployment.apps/web created" in applied and "service/web created" in applied
    ips = wait_for(lambda: serving(cluster, 3), "3 web pods serving", 120)
    assert len(set(ips)) == 3
    cluster.kubectl("scale", "deployment/web", "--replicas=5")
    wait_for(lambda: serving(cluster, 5), "5 web pods serving", 120)
    cluster.kubectl("scale", "deployment/web", "--replicas=3")
    wait_for(lambda: serving(cluster, 3), "3 web pods after scaling down", 120)
    rollout = cluster.kubectl("rollout", "status", "deployment/web", "--timeout=60s").stdout
    assert "successfully rolled out" in rollout


def test_a_rolling_update_to_another_image(cluster: Cluster) -> None:
    cluster.kubectl("set", "image", "deployment/web", "httpd=kubeling.local/httpd:latest")
    rollout = cluster.kubectl("rollout", "status", "deployment/web", "--timeout=90s",
                              timeout=120).stdout  # fmt: skip
    assert "successfully rolled out" in rollout

    def updated() -> list[str]:
        pods = web_pods(cluster)
        images = {c["image"] for p in pods for c in p["spec"]["containers"]}
        return serving(cluster, 3) if images == {"kubeling.local/httpd:latest"} else []

    wait_for(updated, "3 pods of the new image serving", 90)


def test_kubectl_logs_exec_and_top(cluster: Cluster) -> None:
    pod = web_pods(cluster)[0]["metadata"]["name"]
    page = cluster.kubectl("exec", pod, "--", "cat", "/www/index.html").stdout
    assert page.strip() == f"hello from {pod}"
    cluster.kubectl("run", "talker", "--image=kubeling.local/busybox:latest",
                    "--image-pull-policy=Never", "--restart=Never", "--",
                    "sh", "-c", "for i in 1 2 3; do echo line $i; done; sleep 3600")  # fmt: skip
    logs = wait_for(
        lambda: "line 3" in (out := cluster.kubectl("logs", "talker").stdout) and out
        if "Running" in cluster.kubectl("get", "pod", "talker").stdout else "",
        "the talker's logs", 60,
    )  # fmt: skip
    assert logs.splitlines() == ["line 1", "line 2", "line 3"]
    top = wait_for(
        lambda: (r := subprocess_ok(cluster, "top", "pod", "talker")) and "talker" in r and r,
        "kubectl top pod", 60,
    )  # fmt: skip
    assert "CPU(cores)" in top
    cluster.kubectl("delete", "pod", "talker", "--grace-period=1", "--wait=false")


def subprocess_ok(cluster: Cluster, *args: str) -> str:
    """kubectl's output, or "" while it fails (metrics come a few seconds after a start)."""
    try:
        return cluster.kubectl(*args).stdout
    except AssertionError:
        return ""


def test_a_static_pod_from_the_manifest_dir_runs_as_a_mirror_pod(cluster: Cluster) -> None:
    manifest = cluster.root / "etc" / "manifests" / "static-web.yaml"
    manifest.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "static-web"},
        "spec": {"terminationGracePeriodSeconds": 2, "containers": [{
            "name": "httpd", "image": "kubeling.local/httpd:latest",
            "imagePullPolicy": "Never",
        }]},
    }))  # fmt: skip
    name = f"static-web-{cluster.node_name}"

    def running() -> dict[str, Any] | None:
        listed = json.loads(cluster.kubectl("get", "pods", "-o", "json").stdout)["items"]
        found = [p for p in listed if p["metadata"]["name"] == name]
        return found[0] if found and found[0]["status"].get("phase") == "Running" else None

    mirror = wait_for(running, "the mirror pod to run", 60)
    assert "kubernetes.io/config.mirror" in mirror["metadata"]["annotations"]
    assert "hello from kubeling httpd" in http_get(f"http://{mirror['status']['podIP']}:80/")
    manifest.unlink()
    wait_for(lambda: name not in cluster.kubectl("get", "pods").stdout, "the mirror pod to go", 60)


def test_down_stops_every_process_and_up_resumes(cluster: Cluster) -> None:
    with closing(cluster.client()) as client:
        marker = client.create("/api/v1/namespaces/default/configmaps", {
            "metadata": {"name": "resume-marker"}, "data": {"kept": "yes"},
        })  # fmt: skip
    pids = cluster.pids()
    assert {"up", "apiserver", "cri", "scheduler", "controller-manager", "kubelet",
            "supervisor"} <= set(pids), pids  # fmt: skip
    assert all(alive(pid) for pid in pids.values())
    cluster.down()
    still = {name: pid for name, pid in pids.items() if alive(pid)}
    assert not still, f"still running after kubeling down: {still}"

    cluster.up()
    with closing(cluster.client()) as client:
        kept = client.get("/api/v1/namespaces/default/configmaps/resume-marker")
    assert kept["metadata"]["uid"] == marker["metadata"]["uid"]
    if any(p["metadata"]["name"] for p in web_pods(cluster)):  # the web test ran first
        wait_for(lambda: serving(cluster, 3), "the web pods to serve again", 120)


def test_up_after_a_killed_up_stops_its_leftovers_and_resumes(cluster: Cluster) -> None:
    pids = cluster.pids()
    os.kill(pids["up"], signal.SIGKILL)
    wait_for(lambda: not alive(pids["up"]), "the killed up to be gone", 10)
    assert alive(pids["apiserver"]) and alive(pids["kubelet"])  # orphans now
    result = cluster.up()
    for name in ("apiserver", "cri", "scheduler", "controller-manager", "kubelet"):
        assert f"stopping {name} (pid {pids[name]}) left running by an earlier up" in (
            result.stdout
        ), result.stdout
        assert not alive(pids[name])
    assert "is Ready" in result.stdout
