"""kubectl's typed commands against a real `kubeling apiserver` process: `kubectl create
namespace|configmap|secret|deployment|service|serviceaccount` and `kubectl drain` send
their bodies as Kubernetes protobuf (application/vnd.kubernetes.protobuf), and what
they create reads back through `kubectl get -o json` with the data they were given."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.control.support import free_port, stop

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl")

KUBELING = str(Path(sys.executable).parent / "kubeling")
PROTOBUF_SENT = "Content-Type: application/vnd.kubernetes.protobuf"


class Kubectl:
    """kubectl with the admin kubeconfig of one server and a cache of its own."""

    def __init__(self, data: Path, cache: Path) -> None:
        self.environment = {
            **os.environ, "KUBECONFIG": str(data / "admin.kubeconfig"),
            "KUBECACHEDIR": str(cache),
        }  # fmt: skip

    def __call__(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["kubectl", *args], input=stdin, capture_output=True, text=True, timeout=60,
            env=self.environment,
        )  # fmt: skip
        if result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr[-3000:]}")
        return result

    def object(self, *args: str) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self("get", *args, "-o", "json").stdout)
        return loaded


@pytest.fixture
def kubectl(tmp_path: Path) -> Iterator[Kubectl]:
    data = tmp_path / "control"
    process = subprocess.Popen(
        [KUBELING, "apiserver", "--data-dir", str(data), "--store", "memory://",
         "--listen", f"127.0.0.1:{free_port()}", "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "serving the API on https://127.0.0.1" in line, line
        yield Kubectl(data, tmp_path / "cache")
    finally:
        stop(process)
        if process.stdout is not None:
            process.stdout.close()


def test_typed_creates(kubectl: Kubectl) -> None:
    created = kubectl("create", "namespace", "shop", "-v=8")
    assert PROTOBUF_SENT in created.stderr  # the body this test is about
    assert created.stdout.strip() == "namespace/shop created"
    namespace = kubectl.object("namespace", "shop")
    assert namespace["status"]["phase"] == "Active"
    assert namespace["spec"]["finalizers"] == ["kubernetes"]

    ns = ("-n", "shop")
    kubectl("create", "configmap", "settings", "--from-literal=mode=fast",
            "--from-literal=greeting=hello world", *ns)  # fmt: skip
    assert kubectl.object("configmap", "settings", *ns)["data"] == {
        "mode": "fast", "greeting": "hello world",
    }  # fmt: skip

    kubectl("create", "secret", "generic", "login", "--from-literal=user=admin",
            "--from-literal=password=p@ss w:rd", *ns)  # fmt: skip
    secret = kubectl.object("secret", "login", *ns)
    assert {k: base64.b64decode(v).decode() for k, v in secret["data"].items()} == {
        "user": "admin", "password": "p@ss w:rd",
    }  # fmt: skip

    kubectl("create", "deployment", "web", "--image=busybox:1.36", "--replicas=2",
            "--port=8080", *ns)  # fmt: skip
    deployment = kubectl.object("deployment", "web", *ns)
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"  # defaulted
    template = deployment["spec"]["template"]
    assert template["metadata"]["labels"] == {"app": "web"}
    [container] = template["spec"]["containers"]
    assert (container["name"], container["image"]) == ("busybox", "busybox:1.36")
    assert container["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]
    assert template["spec"]["restartPolicy"] == "Always"

    kubectl("create", "service", "clusterip", "web", "--tcp=80:8080", "--tcp=443", *ns)
    service = kubectl.object("service", "web", *ns)
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"] == {"app": "web"}
    assert [(p["name"], p["port"], p["targetPort"], p["protocol"])
            for p in service["spec"]["ports"]] == [
        ("80-8080", 80, 8080, "TCP"), ("443", 443, 443, "TCP"),  # targetPort defaulted
    ]  # fmt: skip

    kubectl("create", "serviceaccount", "robot", *ns)
    assert kubectl.object("serviceaccount", "robot", *ns)["metadata"]["namespace"] == "shop"

    kubectl("create", "secret", "docker-registry", "pull", "--docker-server=registry.test",
            "--docker-username=u", "--docker-password=p", *ns)  # fmt: skip
    pull = kubectl.object("secret", "pull", *ns)
    assert pull["type"] == "kubernetes.io/dockerconfigjson"
    auths = json.loads(base64.b64decode(pull["data"][".dockerconfigjson"]))["auths"]
    assert auths["registry.test"]["username"] == "u"


def test_create_of_an_existing_object_is_a_conflict(kubectl: Kubectl) -> None:
    kubectl("create", "configmap", "once", "--from-literal=a=1")
    again = subprocess.run(
        ["kubectl", "create", "configmap", "once", "--from-literal=a=2"],
        capture_output=True, text=True, timeout=60, env=kubectl.environment,
    )  # fmt: skip
    assert again.returncode != 0
    assert 'configmaps "once" already exists' in again.stderr
    assert kubectl.object("configmap", "once")["data"] == {"a": "1"}


# kubectl create commands and the object each makes: sent typed (protobuf), or printed
# by --dry-run=client as JSON and sent as that, they must store the same object.
GENERATORS = [
    ("configmap", "settings", "--from-literal=mode=fast", "--from-literal=empty="),
    ("secret", "generic", "login", "--from-literal=user=admin", "--type=Opaque"),
    ("deployment", "web", "--image=busybox:1.36", "--replicas=3", "--port=8080"),
    ("service", "nodeport", "edge", "--tcp=8080:80"),
    ("service", "clusterip", "headless", "--clusterip=None"),
    ("serviceaccount", "robot"),
]
SERVER_FIELDS = ("namespace", "uid", "resourceVersion", "creationTimestamp", "managedFields")


def test_protobuf_and_json_bodies_make_the_same_objects(kubectl: Kubectl) -> None:
    kubectl("create", "namespace", "typed")
    kubectl("create", "namespace", "printed")
    for generator in GENERATORS:
        kubectl("create", *generator, "-n", "typed")
        printed = kubectl("create", *generator, "--dry-run=client", "-o", "json").stdout
        kubectl("create", "-f", "-", "-n", "printed", stdin=printed)  # a JSON body
    for kind in ("configmaps", "secrets", "deployments", "services", "serviceaccounts"):
        objects = {}
        for namespace in ("typed", "printed"):
            items = kubectl.object(kind, "-n", namespace)["items"]
            for item in items:
                for name in SERVER_FIELDS:
                    item["metadata"].pop(name, None)
                item.get("spec", {}).pop("clusterIP", None)  # allocated, may differ
                item.get("spec", {}).pop("clusterIPs", None)
                for port in item.get("spec", {}).get("ports", []):
                    port.pop("nodePort", None)
            objects[namespace] = sorted(items, key=lambda item: item["metadata"]["name"])
        assert objects["typed"] == objects["printed"], kind
        assert objects["typed"], kind


NODE_AND_POD = """\
apiVersion: v1
kind: Node
metadata: {name: worker}
---
apiVersion: v1
kind: Pod
metadata: {name: lonely, namespace: default}
spec:
  nodeName: worker
  containers: [{name: c, image: busybox:1.36}]
"""


def test_drain_evicts_through_the_eviction_subresource(kubectl: Kubectl) -> None:
    kubectl("create", "-f", "-", stdin=NODE_AND_POD)
    drained = kubectl("drain", "worker", "--force", "--grace-period=0", "--timeout=30s", "-v=8")
    # Discovery names pods/eviction policy/v1 Eviction, so kubectl evicts the pod
    # (gracePeriodSeconds 0) rather than deleting it.
    assert "POST https://" in drained.stderr and "/pods/lonely/eviction" in drained.stderr
    assert "node/worker drained" in drained.stdout
    assert kubectl.object("node", "worker")["spec"]["unschedulable"] is True
    pods = kubectl.object("pods", "-n", "default")
    assert pods["items"] == []
