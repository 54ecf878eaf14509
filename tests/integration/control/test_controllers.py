"""`kubeling controller-manager` against a real `kubeling apiserver` process (memory
store; no scheduler, no kubelet: the tests mark pods Running and Ready themselves):
ReplicaSets keep their replicas, scale down in kube's order and adopt orphans;
Deployments create their ReplicaSet and pods, roll out an image change within
maxSurge/maxUnavailable at every observed step, and `kubectl rollout status` ends;
a new namespace gets its `default` ServiceAccount."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kubeapi.client import ApiError, Client
from tests.integration.control.support import free_port, stop, wait_for

KUBELING = str(Path(sys.executable).parent / "kubeling")
PODS = "/api/v1/namespaces/default/pods"
RSS = "/apis/apps/v1/namespaces/default/replicasets"
DEPLOYS = "/apis/apps/v1/namespaces/default/deployments"
CONTAINER = {"name": "c", "image": "busybox:1.36"}


@dataclass
class Cluster:
    data: Path
    client: Client

    @property
    def kubeconfig(self) -> Path:
        return self.data / "admin.kubeconfig"

    def pods(self, app: str) -> list[dict[str, Any]]:
        items = self.client.list(PODS, labelSelector=f"app={app}")["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    def ready(self, name: str) -> None:
        self.client.patch(f"{PODS}/{name}/status", {"status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
        }})  # fmt: skip

    def replicaset(self, name: str, replicas: int, app: str) -> dict[str, Any]:
        return self.client.create(RSS, {
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": app}},
                     "template": {"metadata": {"labels": {"app": app}},
                                  "spec": {"containers": [CONTAINER]}}},
        })  # fmt: skip

    def deployment(self, name: str, replicas: int, surge: Any, unavailable: Any) -> None:
        self.client.create(DEPLOYS, {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {
                         "maxSurge": surge, "maxUnavailable": unavailable}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [CONTAINER]}}},
        })  # fmt: skip

    def kubectl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig),
               "KUBECACHEDIR": str(self.data / "kubecache")}  # fmt: skip
        return subprocess.run(["kubectl", *args], env=env, capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    data = tmp_path / "control"
    api = subprocess.Popen(
        [KUBELING, "apiserver", "--data-dir", str(data), "--store", "memory://",
         "--listen", f"127.0.0.1:{free_port()}", "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    manager: subprocess.Popen[str] | None = None
    try:
        assert api.stdout is not None
        line = api.stdout.readline()
        assert "serving the API on" in line, line
        log = open(tmp_path / "controller-manager.log", "w")  # noqa: SIM115
        manager = subprocess.Popen(
            [KUBELING, "controller-manager", "--kubeconfig", str(data / "admin.kubeconfig"),
             "--log-level", "debug", "--leader-elect", "--retry-period", "0.5"],
            stdout=log, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        log.close()
        client = Client.from_kubeconfig(data / "admin.kubeconfig")
        yield Cluster(data, client)
        client.close()
    finally:
        if manager is not None:
            stop(manager)
        stop(api)
        if api.stdout is not None:
            api.stdout.close()
        print((tmp_path / "controller-manager.log").read_text()[-4000:])


def _owner(pod: dict[str, Any]) -> str:
    refs = pod["metadata"].get("ownerReferences") or []
    return str(refs[0]["name"]) if refs else ""


def test_replicaset_keeps_replicas_and_scales_down_in_order(cluster: Cluster) -> None:
    rs = cluster.replicaset("web", 3, "web")
    pods = wait_for(lambda: len(p := cluster.pods("web")) == 3 and p)
    for pod in pods:
        meta = pod["metadata"]
        assert meta["name"].startswith("web-")
        ref = meta["ownerReferences"][0]
        assert ref["uid"] == rs["metadata"]["uid"] and ref["controller"]
        assert ref["blockOwnerDeletion"] and ref["kind"] == "ReplicaSet"
    # A deleted pod is replaced.
    victim = pods[0]["metadata"]["name"]
    cluster.client.delete(f"{PODS}/{victim}")
    replaced = wait_for(lambda: len(p := cluster.pods("web")) == 3
                        and victim not in {x["metadata"]["name"] for x in p} and p)  # fmt: skip
    names = sorted(p["metadata"]["name"] for p in replaced)
    # Two ready, one not: scaling to 2 deletes the not-ready one, then to 1 the newer
    # of the ready ones... both ready ones have one creation second, so check only
    # that ready ones survive the first step.
    for name in names[:2]:
        cluster.ready(name)
    wait_for(lambda: cluster.client.get(f"{RSS}/web").get("status", {}).get("readyReplicas") == 2)
    cluster.client.patch(f"{RSS}/web", {"spec": {"replicas": 2}})
    left = wait_for(lambda: len(p := cluster.pods("web")) == 2 and p)
    assert sorted(p["metadata"]["name"] for p in left) == names[:2]
    status = wait_for(lambda: (s := cluster.client.get(f"{RSS}/web")["status"])
                      .get("replicas") == 2 and s)  # fmt: skip
    assert status["readyReplicas"] == 2 and status["availableReplicas"] == 2
    assert status["fullyLabeledReplicas"] == 2
    assert status["observedGeneration"] == 2


def test_replicaset_adopts_an_orphan_and_releases_a_relabelled_pod(cluster: Cluster) -> None:
    cluster.client.create(PODS, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "orphan", "labels": {"app": "db"}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]},
    })  # fmt: skip
    rs = cluster.replicaset("db", 2, "db")
    wait_for(lambda: _owner(cluster.client.get(f"{PODS}/orphan")) == "db")
    orphan = cluster.client.get(f"{PODS}/orphan")
    assert orphan["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]
    wait_for(lambda: len(cluster.pods("db")) == 2)
    time.sleep(1)
    assert len(cluster.pods("db")) == 2  # the orphan counts: only one pod created
    # Relabelled: released, and replaced.
    cluster.client.patch(f"{PODS}/orphan", {"metadata": {"labels": {"app": "other"}}})
    wait_for(lambda: not cluster.client.get(f"{PODS}/orphan")["metadata"].get("ownerReferences"))
    wait_for(lambda: len(cluster.pods("db")) == 2)


def _deploy_replicasets(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    items = cluster.client.list(RSS)["items"]
    return [r for r in items if _owner(r) == name]


def test_deployment_rolls_out_within_surge_and_unavailable(cluster: Cluster) -> None:
    replicas, surge, unavailable = 4, 1, 1
    cluster.deployment("app", replicas, surge, unavailable)
    pods = wait_for(lambda: len(p := cluster.pods("app")) == replicas and p)
    (first,) = _deploy_replicasets(cluster, "app")
    hash_value = first["metadata"]["labels"]["pod-template-hash"]
    assert first["metadata"]["name"] == f"app-{hash_value}"
    assert first["spec"]["selector"]["matchLabels"]["pod-template-hash"] == hash_value
    assert first["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    for pod in pods:
        assert pod["metadata"]["labels"]["pod-template-hash"] == hash_value
        cluster.ready(pod["metadata"]["name"])
    wait_for(lambda: cluster.client.get(f"{DEPLOYS}/app")
             .get("status", {}).get("availableReplicas") == replicas)  # fmt: skip
    done = cluster.kubectl("rollout", "status", "deploy/app", "--timeout=30s")
    assert done.returncode == 0, done.stderr
    assert "successfully rolled out" in done.stdout

    cluster.client.patch(f"{DEPLOYS}/app", {"spec": {"template": {"spec": {
        "containers": [{"name": "c", "image": "busybox:1.37"}]}}}})  # fmt: skip
    rollout = subprocess.Popen(
        ["kubectl", "rollout", "status", "deploy/app", "--timeout=90s"],
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig),
             "KUBECACHEDIR": str(cluster.data / "kubecache")},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        most, fewest_ready = 0, replicas
        while True:
            assert time.monotonic() < deadline, [
                (
                    r["metadata"]["name"],
                    r["metadata"]["generation"],
                    r["spec"]["replicas"],
                    r.get("status"),
                )
                for r in _deploy_replicasets(cluster, "app")
            ]
            current = cluster.pods("app")
            ready = [p for p in current if any(c.get("type") == "Ready"
                     and c.get("status") == "True"
                     for c in p.get("status", {}).get("conditions") or [])]  # fmt: skip
            most = max(most, len(current))
            fewest_ready = min(fewest_ready, len(ready))
            assert len(current) <= replicas + surge, current
            assert len(ready) >= replicas - unavailable, ready
            for pod in current:
                if pod not in ready and pod["spec"]["containers"][0]["image"] == "busybox:1.37":
                    cluster.ready(pod["metadata"]["name"])
            deploy = cluster.client.get(f"{DEPLOYS}/app")
            status = deploy.get("status", {})
            if (status.get("observedGeneration") == deploy["metadata"]["generation"]
                    and status.get("updatedReplicas") == replicas
                    and status.get("replicas") == replicas
                    and status.get("availableReplicas") == replicas):  # fmt: skip
                break
            time.sleep(0.05)
        out, err = rollout.communicate(timeout=15)
    finally:
        if rollout.poll() is None:
            rollout.kill()
            rollout.wait()
    assert rollout.returncode == 0, err
    assert "successfully rolled out" in out
    assert most == replicas + surge  # the surge was used
    final = cluster.pods("app")
    assert {p["spec"]["containers"][0]["image"] for p in final} == {"busybox:1.37"}
    rss = {r["metadata"]["name"]: r for r in _deploy_replicasets(cluster, "app")}
    assert rss[first["metadata"]["name"]]["spec"]["replicas"] == 0
    new = next(r for n, r in rss.items() if n != first["metadata"]["name"])
    assert new["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    deploy = cluster.client.get(f"{DEPLOYS}/app")
    assert deploy["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    conditions = {c["type"]: c for c in deploy["status"]["conditions"]}
    assert conditions["Available"]["reason"] == "MinimumReplicasAvailable"
    assert conditions["Progressing"]["reason"] == "NewReplicaSetAvailable"
    assert deploy["status"]["unavailableReplicas"] == 0
    assert deploy["status"]["observedGeneration"] == deploy["metadata"]["generation"]


def test_revision_history_limit_deletes_old_replicasets(cluster: Cluster) -> None:
    cluster.deployment("hist", 1, 1, 0)
    cluster.client.patch(f"{DEPLOYS}/hist", {"spec": {"revisionHistoryLimit": 1}})
    for version in ("1.35", "1.36", "1.37"):
        cluster.client.patch(f"{DEPLOYS}/hist", {"spec": {"template": {"spec": {
            "containers": [{"name": "c", "image": f"busybox:{version}"}]}}}})  # fmt: skip

        def rolled(version: str = version) -> bool:
            for pod in cluster.pods("hist"):
                if pod["spec"]["containers"][0]["image"] != f"busybox:{version}":
                    continue
                cluster.ready(pod["metadata"]["name"])
            deploy = cluster.client.get(f"{DEPLOYS}/hist")
            status = deploy.get("status", {})
            return bool(status.get("observedGeneration") == deploy["metadata"]["generation"]
                        and status.get("updatedReplicas") == 1 and status.get("replicas") == 1
                        and status.get("availableReplicas") == 1)  # fmt: skip

        wait_for(rolled, 30)
    # The current one and one old one are kept.
    wait_for(lambda: len(_deploy_replicasets(cluster, "hist")) == 2)


def test_default_service_account_in_a_new_namespace(cluster: Cluster) -> None:
    cluster.client.create("/api/v1/namespaces", {
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}})  # fmt: skip

    def account() -> bool:
        try:
            cluster.client.get("/api/v1/namespaces/team/serviceaccounts/default")
        except ApiError as e:
            assert e.code == 404
            return False
        return True

    wait_for(account)
    cluster.client.delete("/api/v1/namespaces/team/serviceaccounts/default")
    time.sleep(0.2)
    wait_for(account)  # created again


pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl")


def _rolled_out(cluster: Cluster, name: str, replicas: int, image: str) -> bool:
    for pod in cluster.pods(name):
        if pod["spec"]["containers"][0]["image"] == image:
            cluster.ready(pod["metadata"]["name"])
    deploy = cluster.client.get(f"{DEPLOYS}/{name}")
    status = deploy.get("status", {})
    return bool(
        status.get("observedGeneration") == deploy["metadata"]["generation"]
        and status.get("updatedReplicas") == replicas
        and status.get("replicas") == replicas
        and status.get("availableReplicas") == replicas
    )


def _set_image(cluster: Cluster, name: str, image: str) -> None:
    cluster.client.patch(f"{DEPLOYS}/{name}", {"spec": {"template": {"spec": {
        "containers": [{"name": "c", "image": image}]}}}})  # fmt: skip


def test_rollout_undo_pause_and_resume(cluster: Cluster) -> None:
    cluster.deployment("undo", 2, 1, 0)
    wait_for(lambda: _rolled_out(cluster, "undo", 2, "busybox:1.36"), 30)
    _set_image(cluster, "undo", "busybox:1.37")
    wait_for(lambda: _rolled_out(cluster, "undo", 2, "busybox:1.37"), 30)
    undone = cluster.kubectl("rollout", "undo", "deploy/undo")
    assert undone.returncode == 0, undone.stderr
    wait_for(lambda: _rolled_out(cluster, "undo", 2, "busybox:1.36"), 30)
    rss = _deploy_replicasets(cluster, "undo")
    assert len(rss) == 2  # the first ReplicaSet is reused, as revision 3
    revisions = {
        r["spec"]["template"]["spec"]["containers"][0]["image"]: r["metadata"]["annotations"][
            "deployment.kubernetes.io/revision"
        ]
        for r in rss
    }
    assert revisions == {"busybox:1.36": "3", "busybox:1.37": "2"}
    history = cluster.kubectl("rollout", "history", "deploy/undo")
    assert history.returncode == 0, history.stderr

    paused = cluster.kubectl("rollout", "pause", "deploy/undo")
    assert paused.returncode == 0, paused.stderr
    _set_image(cluster, "undo", "busybox:1.38")
    time.sleep(1.5)
    assert len(_deploy_replicasets(cluster, "undo")) == 2  # nothing rolled out
    deploy = cluster.client.get(f"{DEPLOYS}/undo")
    progressing = {c["type"]: c for c in deploy["status"]["conditions"]}["Progressing"]
    assert progressing["reason"] == "DeploymentPaused"
    cluster.client.patch(f"{DEPLOYS}/undo", {"spec": {"replicas": 3}})  # scaled while paused
    wait_for(lambda: len(cluster.pods("undo")) == 3)
    assert len(_deploy_replicasets(cluster, "undo")) == 2
    resumed = cluster.kubectl("rollout", "resume", "deploy/undo")
    assert resumed.returncode == 0, resumed.stderr
    wait_for(lambda: _rolled_out(cluster, "undo", 3, "busybox:1.38"), 30)


def test_recreate_removes_old_pods_before_making_new_ones(cluster: Cluster) -> None:
    cluster.deployment("rec", 3, 1, 1)
    cluster.client.patch(f"{DEPLOYS}/rec", {"spec": {"strategy": {
        "type": "Recreate", "rollingUpdate": None}}})  # fmt: skip
    wait_for(lambda: _rolled_out(cluster, "rec", 3, "busybox:1.36"), 30)
    _set_image(cluster, "rec", "busybox:1.37")
    deadline = time.monotonic() + 30
    while not _rolled_out(cluster, "rec", 3, "busybox:1.37"):
        assert time.monotonic() < deadline
        images = {p["spec"]["containers"][0]["image"] for p in cluster.pods("rec")}
        assert len(images) <= 1, images  # never old and new together
        time.sleep(0.05)


def test_a_second_leader_elected_manager_waits(cluster: Cluster, tmp_path: Path) -> None:
    lease = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager"
    holder = wait_for(lambda: _holder(cluster, lease))
    with open(tmp_path / "second.log", "w") as log:
        second = subprocess.Popen(
            [KUBELING, "controller-manager", "--kubeconfig", str(cluster.kubeconfig),
             "--leader-elect", "--retry-period", "0.5"],
            stdout=log, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    try:
        cluster.replicaset("solo", 2, "solo")
        wait_for(lambda: len(cluster.pods("solo")) == 2)
        time.sleep(1.5)
        assert len(cluster.pods("solo")) == 2
        assert _holder(cluster, lease) == holder
        assert second.poll() is None
    finally:
        stop(second)
    assert "leading as" not in (tmp_path / "second.log").read_text()


def _holder(cluster: Cluster, lease: str) -> str:
    try:
        return str(cluster.client.get(lease)["spec"].get("holderIdentity") or "")
    except ApiError:
        return ""
