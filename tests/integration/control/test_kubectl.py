"""`kubeling apiserver` as a user meets it: a real server process over HTTPS on the
SQLite store, driven by the `kubectl` on the machine with the kubeconfig the server
writes (no extra flags: validation on, as users run it), and restarted or killed
as an operator would."""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from control.storage.testing import LocalEtcd, etcd_binary
from tests.integration.control.support import free_port

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl")

POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  containers:
  - name: web
    image: busybox:1.36
    ports: [{containerPort: 80}]
"""

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: busybox:1.36
        env: [{name: A, value: "1"}, {name: B, value: "2"}]
      - {name: side, image: busybox:1.36}
"""


KUBELING = str(Path(sys.executable).parent / "kubeling")


@dataclass
class Server:
    data: Path
    port: int
    store: str = ""  # default: the SQLite file in the data directory
    process: subprocess.Popen[str] | None = None

    @property
    def kubeconfig(self) -> Path:
        return self.data / "admin.kubeconfig"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [KUBELING, "apiserver", "--data-dir", str(self.data),
             "--listen", f"127.0.0.1:{self.port}", "--log-level", "warning",
             *(["--store", self.store] if self.store else [])],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert "serving the API on https://127.0.0.1" in line, line

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(sig)
                self.process.wait(30)
            if self.process.stdout is not None:
                self.process.stdout.close()
        self.process = None

    def config(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.kubeconfig.read_text())
        return loaded

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One request as the admin, straight over HTTPS with the cluster's CA."""
        config = self.config()
        context = ssl.create_default_context(cafile=str(self.data / "pki" / "ca.crt"))
        token = config["users"][0]["user"]["token"]
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"https://127.0.0.1:{self.port}{path}", data=data, method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, context=context, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path / "control", free_port())
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def kubectl(server: Server, tmp_path: Path) -> Any:
    environment = {
        **os.environ, "KUBECONFIG": str(server.kubeconfig), "KUBECACHEDIR": str(tmp_path / "cache"),
    }  # fmt: skip

    def run(*args: str, stdin: str = "", check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["kubectl", *args], input=stdin, capture_output=True, text=True, timeout=60,
            env=environment,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr}")
        return result

    run.environment = environment  # type: ignore[attr-defined]
    return run


def test_namespaces_pods_and_errors(kubectl: Any) -> None:
    namespaces = kubectl("get", "ns").stdout
    for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
        assert name in namespaces
    assert "No resources found in default namespace." in kubectl("get", "pods").stderr

    assert kubectl("create", "-f", "-", stdin=POD).stdout.strip() == "pod/web created"
    table = kubectl("get", "pods", "-o", "wide").stdout.splitlines()
    assert table[0].split()[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert table[1].split()[:3] == ["web", "0/1", "Pending"]
    pod = json.loads(kubectl("get", "po", "web", "-o", "json").stdout)
    assert pod["spec"]["restartPolicy"] == "Always"
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert pod["metadata"]["uid"] and pod["metadata"]["resourceVersion"].isdigit()

    again = kubectl("create", "-f", "-", stdin=POD, check=False)
    assert again.returncode == 1
    assert (
        'Error from server (AlreadyExists): error when creating "STDIN": pods "web" already exists'
        in again.stderr
    )
    missing = kubectl("get", "po", "nope", check=False)
    assert 'Error from server (NotFound): pods "nope" not found' in missing.stderr

    bad = POD.replace("name: web\n  labels", "name: Bad_Name\n  labels").replace(
        "    image: busybox:1.36\n", ""
    )
    invalid = kubectl("create", "-f", "-", stdin=bad, check=False)
    assert invalid.returncode == 1
    assert 'The Pod "Bad_Name" is invalid' in invalid.stderr
    assert "metadata.name: Invalid value" in invalid.stderr
    assert "spec.containers[0].image: Required value" in invalid.stderr

    kubectl("label", "pod", "web", "tier=front")
    assert "web" in kubectl("get", "po", "-l", "tier=front,app in (web)").stdout
    assert "No resources found" in kubectl("get", "po", "-l", "tier!=front").stderr
    assert kubectl("delete", "pod", "web").stdout.strip() == 'pod "web" deleted'
    assert "No resources found" in kubectl("get", "pods").stderr


def test_apply_twice_updates_by_merge_keys(kubectl: Any, tmp_path: Path) -> None:
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text(DEPLOYMENT)
    assert kubectl("apply", "-f", str(manifest)).stdout.strip() == "deployment.apps/web created"
    first = json.loads(kubectl("get", "deploy", "web", "-o", "json").stdout)
    assert first["spec"]["strategy"]["type"] == "RollingUpdate"  # defaulted
    manifest.write_text(
        DEPLOYMENT.replace("replicas: 2", "replicas: 3")
        .replace(', {name: B, value: "2"}', "")
        .replace("      - {name: side, image: busybox:1.36}\n", "")
    )
    assert kubectl("apply", "-f", str(manifest)).stdout.strip() == "deployment.apps/web configured"
    deployment = json.loads(kubectl("get", "deploy", "web", "-o", "json").stdout)
    spec = deployment["spec"]
    assert spec["replicas"] == 3
    assert [c["name"] for c in spec["template"]["spec"]["containers"]] == ["web"]
    assert spec["template"]["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1"}]
    assert deployment["metadata"]["generation"] == 2
    assert int(deployment["metadata"]["resourceVersion"]) > int(
        first["metadata"]["resourceVersion"]
    )
    assert "unchanged" in kubectl("apply", "-f", str(manifest)).stdout
    columns = kubectl("get", "deploy").stdout.splitlines()[0].split()
    assert columns == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]


def test_watch_sees_changes(kubectl: Any) -> None:
    watcher = subprocess.Popen(
        ["kubectl", "get", "pods", "-w", "--request-timeout=8s"], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, env=kubectl.environment,
    )  # fmt: skip
    try:
        time.sleep(1.5)
        kubectl("create", "-f", "-", stdin=POD)
        kubectl("delete", "pod", "web", "--wait=false")
        output, _ = watcher.communicate(timeout=30)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    rows = [line.split() for line in output.splitlines() if line.startswith("web")]
    assert rows and rows[0][:3] == ["web", "0/1", "Pending"], output


def test_state_survives_restart_and_kill(server: Server) -> None:
    acknowledged: list[str] = []
    failures: list[int] = []
    stop = threading.Event()

    def writer() -> None:
        n = 0
        while not stop.is_set():
            name = f"cm-{n}"
            try:
                body = {"metadata": {"name": name}, "data": {"n": str(n)}}
                code, _ = server.request("POST", "/api/v1/namespaces/default/configmaps", body)
            except (OSError, ValueError):
                return  # the server is gone mid-request: unknown outcome
            if code == 201:
                acknowledged.append(name)
            else:
                failures.append(code)
            n += 1

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(1.5)
    server.stop(signal.SIGKILL)
    stop.set()
    thread.join(30)
    assert len(acknowledged) > 10 and not failures
    server.start()
    code, listed = server.request("GET", "/api/v1/namespaces/default/configmaps")
    assert code == 200
    present = {item["metadata"]["name"] for item in listed["items"]}
    assert set(acknowledged) <= present
    # The kubeconfig and CA are reused: the same token still works after a restart.
    code, _ = server.request("GET", "/api/v1/namespaces")
    assert code == 200


def test_requests_without_credentials_are_refused(server: Server) -> None:
    context = ssl.create_default_context(cafile=str(server.data / "pki" / "ca.crt"))
    request = urllib.request.Request(f"https://127.0.0.1:{server.port}/api/v1/pods")
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, context=context, timeout=10)
    assert raised.value.code == 401
    assert json.loads(raised.value.read())["reason"] == "Unauthorized"


def test_official_python_client(server: Server) -> None:
    kubernetes = pytest.importorskip("kubernetes")
    from kubernetes import client, config, watch

    api_client = config.new_client_from_config(config_file=str(server.kubeconfig))
    core = client.CoreV1Api(api_client)
    apps = client.AppsV1Api(api_client)
    try:
        created = core.create_namespaced_config_map(
            "default",
            client.V1ConfigMap(metadata=client.V1ObjectMeta(name="settings"), data={"a": "1"}),
        )
        assert created.metadata.resource_version
        patched = core.patch_namespaced_config_map("settings", "default", {"data": {"b": "2"}})
        assert patched.data == {"a": "1", "b": "2"}
        assert [c.metadata.name for c in core.list_namespaced_config_map("default").items] == [
            "settings"
        ]
        with pytest.raises(kubernetes.client.exceptions.ApiException) as raised:
            core.read_namespaced_config_map("missing", "default")
        assert raised.value.status == 404
        stale = created
        stale.data = {"c": "3"}
        with pytest.raises(kubernetes.client.exceptions.ApiException) as raised:
            core.replace_namespaced_config_map("settings", "default", stale)
        assert raised.value.status == 409

        deployment = client.V1Deployment(
            metadata=client.V1ObjectMeta(name="api"),
            spec=client.V1DeploymentSpec(
                selector=client.V1LabelSelector(match_labels={"app": "api"}),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels={"app": "api"}),
                    spec=client.V1PodSpec(
                        containers=[client.V1Container(name="c", image="busybox")]
                    ),
                ),
            ),
        )
        made = apps.create_namespaced_deployment("default", deployment)
        assert made.spec.replicas == 1 and made.spec.strategy.type == "RollingUpdate"

        listed = core.list_namespaced_pod("default")
        events = []
        stream = watch.Watch()
        pod = {
            "metadata": {"name": "p1"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }
        thread = threading.Thread(target=lambda: core.create_namespaced_pod("default", pod))
        thread.start()
        for event in stream.stream(
            core.list_namespaced_pod, "default", resource_version=listed.metadata.resource_version,
            timeout_seconds=5,
        ):  # fmt: skip
            events.append((event["type"], event["object"].metadata.name))
            stream.stop()
        thread.join()
        assert events == [("ADDED", "p1")]
    finally:
        api_client.close()


def test_scale_binding_and_eviction(server: Server, kubectl: Any, tmp_path: Path) -> None:
    kubectl("create", "-f", "-", stdin=DEPLOYMENT)
    assert kubectl("scale", "deploy", "web", "--replicas=5").stdout.strip() == (
        "deployment.apps/web scaled"
    )
    assert kubectl("get", "deploy", "web", "-o", "jsonpath={.spec.replicas}").stdout == "5"

    kubectl("create", "-f", "-", stdin=POD)
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "web"},
               "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}}  # fmt: skip
    code, _ = server.request("POST", "/api/v1/namespaces/default/pods/web/binding", binding)
    assert code == 201
    pod = json.loads(kubectl("get", "po", "web", "-o", "json").stdout)
    assert pod["spec"]["nodeName"] == "node-1"
    assert {"type": "PodScheduled", "status": "True"} in pod["status"]["conditions"]
    code, status = server.request("POST", "/api/v1/namespaces/default/pods/web/binding", binding)
    assert code == 409 and status["reason"] == "Conflict"

    # A bound pod is deleted gracefully: marked, and gone when deleted with grace 0.
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "web"}}
    code, _ = server.request("POST", "/api/v1/namespaces/default/pods/web/eviction", eviction)
    assert code == 201
    marked = json.loads(kubectl("get", "po", "web", "-o", "json").stdout)
    assert marked["metadata"]["deletionTimestamp"]
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 30
    assert "Terminating" in kubectl("get", "po", "web").stdout
    kubectl("delete", "po", "web", "--grace-period=0", "--force")
    assert kubectl("get", "po", "web", check=False).returncode == 1


def test_delete_collection_by_label(server: Server, kubectl: Any) -> None:
    for name, group in (("a", "x"), ("b", "x"), ("c", "y")):
        manifest = {"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name, "labels": {"group": group}}}  # fmt: skip
        kubectl("create", "-f", "-", stdin=json.dumps(manifest))
    code, deleted = server.request(
        "DELETE", "/api/v1/namespaces/default/configmaps?labelSelector=group%3Dx"
    )
    assert code == 200
    assert sorted(item["metadata"]["name"] for item in deleted["items"]) == ["a", "b"]
    assert kubectl("get", "cm", "-o", "name").stdout.split() == ["configmap/c"]


@pytest.mark.skipif(etcd_binary() is None, reason="needs etcd (Debian etcd-server)")
def test_two_api_servers_share_one_etcd(tmp_path: Path) -> None:
    with LocalEtcd(tmp_path / "etcd") as etcd:
        first = Server(tmp_path / "control", free_port(), etcd.url)
        first.start()
        # The second reuses the first's CA and tokens: one cluster, two endpoints.
        second = Server(tmp_path / "control", free_port(), etcd.url)
        try:
            second.start()
            path = "/api/v1/namespaces/default/configmaps"
            code, created = first.request("POST", path, {"metadata": {"name": "shared"}})
            assert code == 201
            code, seen = second.request("GET", f"{path}/shared")
            assert code == 200 and seen["metadata"]["uid"] == created["metadata"]["uid"]
            code, updated = second.request("PUT", f"{path}/shared", {**seen, "data": {"a": "1"}})
            assert code == 200
            # The first server's copy is stale now: a write from it conflicts.
            code, status = first.request("PUT", f"{path}/shared", {**created, "data": {"b": "2"}})
            assert code == 409 and status["reason"] == "Conflict"
            code, listed = first.request("GET", path)
            assert [i["data"] for i in listed["items"]] == [{"a": "1"}]
            assert listed["metadata"]["resourceVersion"] == updated["metadata"]["resourceVersion"]
        finally:
            second.stop()
            first.stop()
