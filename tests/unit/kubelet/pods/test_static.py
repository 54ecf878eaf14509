"""Static pod manifests: parsing, defaults, names and uids, mirror pods."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubelet.pods.static import (
    ManifestError,
    default_pull_policy,
    is_mirror,
    is_static,
    mirror_pod,
    parse_manifest,
    read_static_pods,
    static_pod,
)

MANIFEST = """
apiVersion: v1
kind: Pod
metadata:
  name: etcd
  labels: {tier: control-plane}
spec:
  containers:
  - name: etcd
    image: registry.local/etcd:3.5
"""


def test_static_pod_name_uid_defaults_and_annotations() -> None:
    pod = static_pod(parse_manifest(MANIFEST, "etcd.yaml"), "node-a")
    meta = pod["metadata"]
    assert meta["name"] == "etcd-node-a" and meta["namespace"] == "default"
    assert meta["annotations"]["kubernetes.io/config.source"] == "file"
    assert meta["annotations"]["kubernetes.io/config.hash"] == meta["uid"]
    assert pod["spec"]["nodeName"] == "node-a"
    assert pod["spec"]["restartPolicy"] == "Always"
    container = pod["spec"]["containers"][0]
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert is_static(pod) and not is_mirror(pod)


def test_uid_is_stable_per_manifest_and_node() -> None:
    manifest = parse_manifest(MANIFEST, "etcd.yaml")
    uid = static_pod(manifest, "node-a")["metadata"]["uid"]
    assert static_pod(manifest, "node-a")["metadata"]["uid"] == uid
    assert static_pod(manifest, "node-b")["metadata"]["uid"] != uid
    edited = parse_manifest(MANIFEST.replace("3.5", "3.6"), "etcd.yaml")
    assert static_pod(edited, "node-a")["metadata"]["uid"] != uid


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("- a list", "not a mapping"),
        ("kind: Deployment\nmetadata: {name: x}", "is not Pod"),
        ("kind: Pod\nspec: {containers: [{name: a, image: b}]}", "metadata.name"),
        ("kind: Pod\nmetadata: {name: x}\nspec: {}", "spec.containers"),
        ("kind: Pod\nmetadata: {name: x}\nspec: {containers: [{name: a}]}", "containers[0]"),
        ("kind: Pod\nmetadata: {name: x\n", "static pod bad.yaml"),
    ],
)
def test_bad_manifests(text: str, error: str) -> None:
    with pytest.raises(ManifestError, match=error.replace("[", r"\[")):
        parse_manifest(text, "bad.yaml")


def test_read_directory_skips_bad_hidden_and_duplicate_files(tmp_path: Path) -> None:
    (tmp_path / "etcd.yaml").write_text(MANIFEST)
    (tmp_path / "web.json").write_text(
        json.dumps(
            {
                "kind": "Pod",
                "metadata": {"name": "web", "namespace": "kube-system"},
                "spec": {"containers": [{"name": "w", "image": "nginx"}]},
            }
        )
    )
    (tmp_path / "broken.yaml").write_text("kind: Pod\nmetadata: [")
    (tmp_path / ".hidden.yaml").write_text(MANIFEST.replace("etcd", "hidden"))
    (tmp_path / "notes.txt").write_text(MANIFEST.replace("etcd", "txt"))
    (tmp_path / "etcd-copy.yml").write_text(MANIFEST)
    pods = read_static_pods(tmp_path, "n1")
    names = sorted(p["metadata"]["name"] for p in pods.values())
    assert names == ["etcd-n1", "web-n1"]
    web = next(p for p in pods.values() if p["metadata"]["name"] == "web-n1")
    assert web["spec"]["containers"][0]["imagePullPolicy"] == "Always"  # untagged
    assert read_static_pods(tmp_path / "missing", "n1") == {}


def test_mirror_pod_body() -> None:
    pod = static_pod(parse_manifest(MANIFEST, "etcd.yaml"), "node-a")
    node = {"metadata": {"name": "node-a", "uid": "node-uid"}}
    mirror = mirror_pod(pod, node)
    meta = mirror["metadata"]
    assert meta["name"] == "etcd-node-a" and meta["labels"] == {"tier": "control-plane"}
    assert meta["annotations"]["kubernetes.io/config.mirror"] == pod["metadata"]["uid"]
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "v1",
            "kind": "Node",
            "name": "node-a",
            "uid": "node-uid",
            "controller": True,
        }
    ]
    assert "uid" not in meta and mirror["spec"]["nodeName"] == "node-a"
    assert is_mirror(mirror) and not is_static(mirror)


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        ("busybox", "Always"),
        ("busybox:latest", "Always"),
        ("busybox:1.36", "IfNotPresent"),
        ("localhost:5000/busybox", "Always"),
        ("localhost:5000/b:1", "IfNotPresent"),
        ("b@sha256:" + "a" * 64, "IfNotPresent"),
    ],
)
def test_default_pull_policy(image: str, policy: str) -> None:
    assert default_pull_policy(image) == policy
