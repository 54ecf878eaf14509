"""The node lifecycle, taint eviction, endpoints, namespace and garbage-collector
controllers of `kubeling controller-manager`, against a real `kubeling apiserver`
process (memory store) with fake Node objects whose Leases the test renews (no
kubelet, no containers: the test sets pod IPs and readiness itself), short grace
periods, and `kubeling scheduler` where pods must move to another node."""

from __future__ import annotations

import datetime
import functools
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from control.leader import micro_time
from kubeapi.client import ApiError, Client
from tests.integration.control.support import free_port, stop, wait_for

KUBELING = str(Path(sys.executable).parent / "kubeling")
PODS = "/api/v1/namespaces/default/pods"
RSS = "/apis/apps/v1/namespaces/default/replicasets"
DEPLOYS = "/apis/apps/v1/namespaces/default/deployments"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
UNREACHABLE = "node.kubernetes.io/unreachable"


@dataclass
class Cluster:
    data: Path
    client: Client
    processes: list[subprocess.Popen[str]] = field(default_factory=list)
    renewing: set[str] = field(default_factory=set)  # nodes whose leases are renewed

    @property
    def kubeconfig(self) -> Path:
        return self.data / "admin.kubeconfig"

    def start(self, name: str, *args: str) -> None:
        with open(self.data / f"{name}.log", "w") as log:
            self.processes.append(subprocess.Popen(
                [KUBELING, name, "--kubeconfig", str(self.kubeconfig), "--log-level", "debug",
                 *args], stdout=log, stderr=subprocess.STDOUT, text=True,
            ))  # fmt: skip

    def node(self, name: str) -> None:
        self.client.create("/api/v1/nodes", {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                       "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True",
                                       "reason": "KubeletReady"}]},
        })  # fmt: skip
        self.client.create(LEASES, {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
                     "renewTime": micro_time(time.time())},
        })  # fmt: skip
        self.renewing.add(name)

    def renew_leases(self, stop_renewing: threading.Event) -> None:
        while not stop_renewing.wait(0.3):
            for name in list(self.renewing):
                try:
                    self.client.patch(f"{LEASES}/{name}",
                                      {"spec": {"renewTime": micro_time(time.time())}})  # fmt: skip
                except ApiError:
                    pass

    def get(self, path: str) -> dict[str, Any] | None:
        try:
            return self.client.get(path)
        except ApiError as e:
            assert e.code == 404, e
            return None

    def pod(self, name: str, *, namespace: str = "default",
            labels: dict[str, str] | None = None, ports: list[Any] | None = None,
            spec: dict[str, Any] | None = None) -> None:  # fmt: skip
        container: dict[str, Any] = {"name": "c", "image": "busybox:1.36"}
        if ports:
            container["ports"] = ports
        self.client.create(f"/api/v1/namespaces/{namespace}/pods", {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"containers": [container], **(spec or {})},
        })  # fmt: skip

    def set_pod_status(self, name: str, *, ip: str = "", ready: bool) -> None:
        status: dict[str, Any] = {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        }
        if ip:
            status["podIP"] = ip
        self.client.patch(f"{PODS}/{name}/status", {"status": status})

    def kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig),
               "KUBECACHEDIR": str(self.data / "kubecache")}  # fmt: skip
        return subprocess.run(["kubectl", *args], env=env, capture_output=True, text=True,
                              timeout=60)  # fmt: skip


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    data = tmp_path / "control"
    api = subprocess.Popen(
        [KUBELING, "apiserver", "--data-dir", str(data), "--store", "memory://",
         "--listen", f"127.0.0.1:{free_port()}", "--log-level", "warning",
         "--default-unreachable-toleration-seconds", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    renewer_stop = threading.Event()
    running: Cluster | None = None
    try:
        assert api.stdout is not None
        line = api.stdout.readline()
        assert "serving the API on" in line, line
        running = Cluster(data, Client.from_kubeconfig(data / "admin.kubeconfig"))
        running.start("controller-manager", "--node-monitor-grace-period", "2s",
                      "--node-monitor-period", "0.3s")  # fmt: skip
        renewer = threading.Thread(target=running.renew_leases, args=(renewer_stop,))
        renewer.start()
        try:
            yield running
        finally:
            renewer_stop.set()
            renewer.join()
    finally:
        if running is not None:
            for process in running.processes:
                stop(process)
            running.client.close()
        stop(api)
        if api.stdout is not None:
            api.stdout.close()
        log = data / "controller-manager.log"
        if log.exists():
            print(log.read_text()[-6000:])


def _conditions(obj: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in ((obj or {}).get("status") or {}).get("conditions") or []}


def _seconds(rfc3339: str) -> float:
    return datetime.datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def _taints(node: dict[str, Any] | None) -> set[str]:
    taints = ((node or {}).get("spec") or {}).get("taints") or []
    return {f"{t['key']}:{t['effect']}" for t in taints}


# -- node lifecycle and taint eviction ----------------------------------------------------


def test_unreachable_node_is_tainted_and_its_pods_move(cluster: Cluster) -> None:
    cluster.node("a")
    cluster.start("scheduler", "--retry-interval", "1")
    cluster.client.create(RSS, {
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}},
    })  # fmt: skip
    # Tolerates every taint for ever: stays on the node.
    cluster.pod("stays", spec={"tolerations": [{"operator": "Exists"}]})

    def bound(app: str) -> list[dict[str, Any]]:
        pods = cluster.client.list(PODS, labelSelector=f"app={app}")["items"]
        return [p for p in pods if p["spec"].get("nodeName")
                and not p["metadata"].get("deletionTimestamp")]  # fmt: skip

    first = wait_for(lambda: len(p := bound("web")) == 2 and p)
    assert {p["spec"]["nodeName"] for p in first} == {"a"}
    # The API server's DefaultTolerationSeconds (2 s here, by flag).
    tolerations = {t["key"]: t for t in first[0]["spec"]["tolerations"]}
    assert tolerations[UNREACHABLE]["tolerationSeconds"] == 2
    assert tolerations["node.kubernetes.io/not-ready"]["tolerationSeconds"] == 300
    wait_for(lambda: cluster.client.get(f"{PODS}/stays")["spec"].get("nodeName") == "a")
    for pod in [*first, cluster.client.get(f"{PODS}/stays")]:
        cluster.set_pod_status(pod["metadata"]["name"], ip="10.0.0.9", ready=True)
    cluster.node("b")
    time.sleep(1.0)  # b is healthy: nothing happens to it or to a
    assert _taints(cluster.get("/api/v1/nodes/a")) == set()

    started = time.monotonic()
    cluster.renewing.discard("a")  # the kubelet on a stops
    node = wait_for(lambda: _conditions(n := cluster.get("/api/v1/nodes/a"))["Ready"]
                    ["status"] == "Unknown" and n, 15)  # fmt: skip
    unknown_after = time.monotonic() - started
    conditions = _conditions(node)
    assert conditions["Ready"]["reason"] == "NodeStatusUnknown"
    assert conditions["Ready"]["message"] == "Kubelet stopped posting node status."
    for kind in ("MemoryPressure", "DiskPressure", "PIDPressure"):
        assert conditions[kind]["status"] == "Unknown"
    wait_for(lambda: _taints(cluster.get("/api/v1/nodes/a"))
             == {f"{UNREACHABLE}:NoExecute", f"{UNREACHABLE}:NoSchedule"})  # fmt: skip
    assert _taints(cluster.get("/api/v1/nodes/b")) == set()
    # Its pods are marked not ready ...
    wait_for(lambda: _conditions(cluster.get(f"{PODS}/stays"))["Ready"]["status"] == "False")
    # ... evicted after their 2 s toleration, and replaced on b.
    moved = wait_for(lambda: len(p := bound("web")) == 2
                     and {x["spec"]["nodeName"] for x in p} == {"b"} and p, 20)  # fmt: skip
    assert not {p["metadata"]["uid"] for p in moved} & {p["metadata"]["uid"] for p in first}
    moved_after = time.monotonic() - started
    tainted_at = next(t["timeAdded"] for t in cluster.client.get("/api/v1/nodes/a")["spec"]
                      ["taints"] if t["effect"] == "NoExecute")  # fmt: skip
    for pod in first:
        old = cluster.client.get(f"{PODS}/{pod['metadata']['name']}")  # no kubelet to finish
        # Deleted with the pod's 30 s grace period, once its 2 s toleration had run out.
        evicted = _seconds(old["metadata"]["deletionTimestamp"]) - 30
        assert evicted - _seconds(tainted_at) >= 2, (tainted_at, old["metadata"])
        assert evicted - _seconds(tainted_at) <= 6
        assert _conditions(old)["DisruptionTarget"]["reason"] == "DeletionByTaintManager"
    stays = cluster.client.get(f"{PODS}/stays")
    assert not stays["metadata"].get("deletionTimestamp")

    # a comes back: the kubelet renews its lease and reports Ready again.
    cluster.client.patch(f"{LEASES}/a", {"spec": {"renewTime": micro_time(time.time())}})
    cluster.renewing.add("a")
    beat = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    cluster.client.patch("/api/v1/nodes/a/status", {"status": {"conditions": [
        {"type": kind, "status": "True" if kind == "Ready" else "False",
         "lastHeartbeatTime": beat, "lastTransitionTime": beat}
        for kind in ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")]}})  # fmt: skip
    wait_for(lambda: _taints(cluster.get("/api/v1/nodes/a")) == set(), 10)
    time.sleep(2.5)  # beyond the grace period: renewed, so still Ready
    assert _conditions(cluster.get("/api/v1/nodes/a"))["Ready"]["status"] == "True"
    print(f"unknown after {unknown_after:.1f}s, pods moved after {moved_after:.1f}s")

    # Alive but not ready (the kubelet says so): not-ready taints; the pods on b
    # tolerate them for the default 300 s, so they stay.
    cluster.client.patch("/api/v1/nodes/b/status", {"status": {"conditions": [
        {"type": "Ready", "status": "False", "reason": "KubeletNotReady",
         "lastHeartbeatTime": beat}]}})  # fmt: skip
    not_ready = "node.kubernetes.io/not-ready"
    wait_for(lambda: _taints(cluster.get("/api/v1/nodes/b"))
             == {f"{not_ready}:NoExecute", f"{not_ready}:NoSchedule"})  # fmt: skip
    time.sleep(1.0)
    assert {p["metadata"]["uid"] for p in bound("web")} == {p["metadata"]["uid"] for p in moved}
    assert _conditions(cluster.get("/api/v1/nodes/b"))["Ready"]["reason"] == "KubeletNotReady"


# -- endpoints ------------------------------------------------------------------------------


def test_endpoints_follow_readiness_and_named_ports(cluster: Cluster) -> None:
    # The API server's own service and its endpoints.
    kubernetes = cluster.client.get("/api/v1/namespaces/default/endpoints/kubernetes")
    assert kubernetes["subsets"][0]["addresses"] == [{"ip": "127.0.0.1"}]
    assert kubernetes["subsets"][0]["ports"][0]["name"] == "https"

    cluster.client.create("/api/v1/namespaces/default/services", {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "labels": {"team": "x"}},
        "spec": {"selector": {"app": "web"}, "ports": [
            {"name": "http", "port": 80, "targetPort": "http"},
            {"name": "metrics", "port": 9100, "targetPort": 9100}]},
    })  # fmt: skip
    path = "/api/v1/namespaces/default/endpoints/web"
    cluster.pod("one", labels={"app": "web"}, ports=[{"name": "http", "containerPort": 8080}])
    cluster.pod("two", labels={"app": "web"}, ports=[{"name": "http", "containerPort": 9090}])
    cluster.pod("other", labels={"app": "db"}, ports=[{"name": "http", "containerPort": 8080}])
    cluster.pod("no-ip", labels={"app": "web"}, ports=[{"name": "http", "containerPort": 8080}])
    empty = wait_for(lambda: cluster.get(path))
    assert empty.get("subsets") in (None, [])  # no pod has an IP yet
    assert empty["metadata"]["labels"] == {"team": "x"}
    cluster.set_pod_status("one", ip="10.1.0.1", ready=True)
    cluster.set_pod_status("two", ip="10.1.0.2", ready=False)
    cluster.set_pod_status("other", ip="10.1.0.3", ready=True)

    def subsets() -> list[dict[str, Any]]:
        return list((cluster.get(path) or {}).get("subsets") or [])

    def by_port() -> dict[int, dict[str, Any]]:
        found = {}
        for subset in subsets():
            ports = {p["name"]: p["port"] for p in subset.get("ports") or []}
            assert ports["metrics"] == 9100
            found[ports["http"]] = subset
        return found

    found = wait_for(lambda: len(f := by_port()) == 2 and f)
    assert [a["ip"] for a in found[8080].get("addresses") or []] == ["10.1.0.1"]
    assert not found[8080].get("notReadyAddresses")
    address = found[8080]["addresses"][0]
    assert address["targetRef"]["kind"] == "Pod" and address["targetRef"]["name"] == "one"
    assert [a["ip"] for a in found[9090].get("notReadyAddresses") or []] == ["10.1.0.2"]
    assert not found[9090].get("addresses")

    # Readiness flips both ways.
    cluster.set_pod_status("one", ready=False)
    cluster.set_pod_status("two", ready=True)
    wait_for(lambda: [a["ip"] for a in by_port()[9090].get("addresses") or []] == ["10.1.0.2"]
             and [a["ip"] for a in by_port()[8080].get("notReadyAddresses") or []]
             == ["10.1.0.1"])  # fmt: skip
    # Nothing changed for the endpoints: no write.
    version = cluster.client.get(path)["metadata"]["resourceVersion"]
    cluster.client.patch(f"{PODS}/other", {"metadata": {"labels": {"app": "db", "x": "y"}}})
    cluster.client.patch(f"{PODS}/one", {"metadata": {"annotations": {"note": "unrelated"}}})
    time.sleep(1.0)
    assert cluster.client.get(path)["metadata"]["resourceVersion"] == version
    # A terminating pod leaves; the endpoints go with the service.
    cluster.client.delete(f"{PODS}/two")
    wait_for(lambda: list(by_port()) == [8080])
    cluster.client.delete("/api/v1/namespaces/default/services/web")
    wait_for(lambda: cluster.get(path) is None)


# -- namespaces -----------------------------------------------------------------------------


def test_namespace_deletion_removes_its_content_then_itself(cluster: Cluster) -> None:
    namespaces = "/api/v1/namespaces"
    cluster.client.create(namespaces, {"apiVersion": "v1", "kind": "Namespace",
                                       "metadata": {"name": "team"}})  # fmt: skip
    created = cluster.client.get(f"{namespaces}/team")
    assert created["spec"]["finalizers"] == ["kubernetes"]
    base = f"{namespaces}/team"
    cluster.client.create(f"{base}/configmaps", {"metadata": {"name": "settings"}})
    cluster.client.create(f"{base}/configmaps", {"metadata": {
        "name": "held", "finalizers": ["example.com/hold"]}})  # fmt: skip
    cluster.client.create(f"{base}/secrets", {"metadata": {"name": "token"}})
    cluster.pod("lone", namespace="team")
    cluster.client.create("/apis/apps/v1/namespaces/team/replicasets", {
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}},
    })  # fmt: skip
    wait_for(lambda: len(cluster.client.list(f"{base}/pods")["items"]) == 3)

    cluster.client.delete(f"{namespaces}/team")
    terminating = cluster.client.get(f"{namespaces}/team")
    assert terminating["metadata"]["deletionTimestamp"]
    assert terminating["status"]["phase"] == "Terminating"
    with pytest.raises(ApiError) as refused:
        cluster.client.create(f"{base}/configmaps", {"metadata": {"name": "late"}})
    assert refused.value.code == 403
    assert ("unable to create new content in namespace team because it is being terminated"
            in refused.value.status["message"])  # fmt: skip

    def left(kind: str) -> list[str]:
        return [o["metadata"]["name"] for o in cluster.client.list(f"{base}/{kind}")["items"]]

    wait_for(lambda: not left("pods") and not left("secrets") and left("configmaps") == ["held"])
    assert not cluster.client.list("/apis/apps/v1/namespaces/team/replicasets")["items"]
    # Held up by the configmap's finalizer, and it says so.
    namespace = wait_for(lambda: _conditions(n := cluster.get(f"{namespaces}/team"))
                         .get("NamespaceFinalizersRemaining", {}).get("status") == "True"
                         and n)  # fmt: skip
    conditions = _conditions(namespace)
    assert (
        "example.com/hold in 1 resource instances"
        in (conditions["NamespaceFinalizersRemaining"]["message"])
    )
    assert conditions["NamespaceContentRemaining"]["reason"] == "SomeResourcesRemain"
    assert namespace["spec"]["finalizers"] == ["kubernetes"]
    cluster.client.patch(f"{base}/configmaps/held", {"metadata": {"finalizers": None}})
    wait_for(lambda: cluster.get(f"{namespaces}/team") is None)

    # The system namespaces stay.
    for name in ("default", "kube-system", "kube-public"):
        with pytest.raises(ApiError) as forbidden:
            cluster.client.delete(f"{namespaces}/{name}")
        assert forbidden.value.code == 403
        assert "this namespace may not be deleted" in forbidden.value.status["message"]


def test_namespace_finalize_subresource_changes_only_the_finalizers(cluster: Cluster) -> None:
    namespaces = "/api/v1/namespaces"
    cluster.client.create(namespaces, {"apiVersion": "v1", "kind": "Namespace",
                                       "metadata": {"name": "keep",
                                                    "labels": {"a": "b"}}})  # fmt: skip
    namespace = cluster.client.get(f"{namespaces}/keep")
    # A plain update does not change spec.finalizers.
    cluster.client.update(f"{namespaces}/keep", {**namespace, "spec": {"finalizers": []}})
    assert cluster.client.get(f"{namespaces}/keep")["spec"]["finalizers"] == ["kubernetes"]
    finalized = cluster.client.update(f"{namespaces}/keep/finalize", {
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "keep", "labels": {"changed": "no"}},
        "spec": {"finalizers": ["example.com/other"]},
    })  # fmt: skip
    assert finalized["spec"]["finalizers"] == ["example.com/other"]
    assert finalized["metadata"]["labels"] == {"a": "b"}
    cluster.client.delete(f"{namespaces}/keep")
    time.sleep(1.0)  # the controller removes only "kubernetes": this one holds it
    held = cluster.client.get(f"{namespaces}/keep")
    assert held["status"]["phase"] == "Terminating"
    cluster.client.update(f"{namespaces}/keep/finalize", {**held, "spec": {"finalizers": []}})
    assert cluster.get(f"{namespaces}/keep") is None


# -- garbage collection ---------------------------------------------------------------------


def _deployment(cluster: Cluster, name: str, replicas: int = 2) -> None:
    cluster.client.create(DEPLOYS, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}},
    })  # fmt: skip


def _owned(cluster: Cluster, app: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rss = [r for r in cluster.client.list(RSS)["items"]
           if r["metadata"]["name"].startswith(f"{app}-")]  # fmt: skip
    pods = cluster.client.list(PODS, labelSelector=f"app={app}")["items"]
    return rss, pods


def _counted(cluster: Cluster, app: str, replicasets: int, pods: int) -> bool:
    found = _owned(cluster, app)
    return len(found[0]) == replicasets and len(found[1]) == pods


def test_background_and_orphan_cascades_with_kubectl(cluster: Cluster) -> None:
    _deployment(cluster, "gone")
    _deployment(cluster, "orphans")
    for app in ("gone", "orphans"):
        wait_for(functools.partial(_counted, cluster, app, 1, 2))
    deleted = cluster.kubectl("delete", "deployment", "gone")
    assert deleted.returncode == 0, deleted.stderr
    wait_for(lambda: _owned(cluster, "gone") == ([], []))

    (rs,), pods = _owned(cluster, "orphans")
    orphaned = cluster.kubectl("delete", "deployment", "orphans", "--cascade=orphan")
    assert orphaned.returncode == 0, orphaned.stderr
    wait_for(lambda: cluster.get(f"{DEPLOYS}/orphans") is None)
    time.sleep(1.0)
    (kept,), kept_pods = _owned(cluster, "orphans")
    assert kept["metadata"]["uid"] == rs["metadata"]["uid"]
    assert not kept["metadata"].get("ownerReferences")
    assert {p["metadata"]["uid"] for p in kept_pods} == {p["metadata"]["uid"] for p in pods}

    # A dependent whose owner is another object under that name goes too.
    cluster.client.create(
        "/api/v1/namespaces/default/configmaps",
        {
            "metadata": {
                "name": "stale",
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "name": kept["metadata"]["name"],
                        "uid": "00000000-0000-0000-0000-000000000000",
                    }
                ],
            }
        },
    )
    wait_for(lambda: cluster.get("/api/v1/namespaces/default/configmaps/stale") is None)
    assert cluster.get(f"{RSS}/{kept['metadata']['name']}") is not None


def test_foreground_deletion_waits_for_dependents(cluster: Cluster) -> None:
    _deployment(cluster, "fg", replicas=3)
    wait_for(functools.partial(_counted, cluster, "fg", 1, 3))
    cluster.client.delete(f"{DEPLOYS}/fg", {"propagationPolicy": "Foreground"})
    deploy = cluster.get(f"{DEPLOYS}/fg")
    assert deploy is not None and "foregroundDeletion" in deploy["metadata"]["finalizers"]
    deadline = time.monotonic() + 20
    while (deploy := cluster.get(f"{DEPLOYS}/fg")) is not None:
        assert time.monotonic() < deadline, deploy
        time.sleep(0.05)
    # Gone only after every dependent.
    assert _owned(cluster, "fg") == ([], [])


pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl")
