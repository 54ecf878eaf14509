"""VolumeManager without root: a recording mounter stands in for mount(2) and an
in-memory API for the API server. Setup of each volume kind, the errors, tmpfs
sizes, container mounts (read-only, propagation, subPath, subPathExpr), the managed
/etc/hosts, teardown and orphan cleanup."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from cri.api import api_pb2
from kubelet.config import KubeletConfig
from kubelet.volumes import VolumeError, VolumeManager
from kubelet.volumes.testing import MountCall, RecordingMounter
from tests.unit.kubelet.volumes.fake_api import FakeApi

Object = dict[str, Any]
GI = 2**30


@pytest.fixture
def api() -> FakeApi:
    api = FakeApi()
    api.config_map("shop", "settings", {"app.conf": "port=80\n", "level": "3"},
                   binary={"logo.bin": b"\x89PNG\x00"})  # fmt: skip
    api.secret("shop", "creds", {"password": b"s3cr3t", "user": b"admin"})
    return api


@pytest.fixture
def mounter() -> RecordingMounter:
    return RecordingMounter()


@pytest.fixture
def manager(api: FakeApi, mounter: RecordingMounter, tmp_path: Path) -> VolumeManager:
    config = KubeletConfig(kubeconfig="k", root_dir=tmp_path / "kubelet")
    node_hosts = tmp_path / "node-hosts"
    node_hosts.write_text("127.0.0.1 localhost\n192.0.2.1 node-a\n")
    return VolumeManager(api, config, mounter=mounter,
                         allocatable=lambda: {"cpu": "4", "memory": "8Gi"},
                         node_hosts_file=node_hosts)  # fmt: skip


def make_pod(volumes: list[Object], containers: list[Object] | None = None, **spec: Any) -> Object:
    return {
        "metadata": {"name": "web", "namespace": "shop", "uid": "uid-1",
                     "labels": {"app": "web"}, "annotations": {"a": "1"}},
        "spec": {"volumes": volumes, "containers": containers or [{"name": "app"}], **spec},
        "status": {"podIP": "10.1.0.5", "hostIP": "192.0.2.1"},
    }  # fmt: skip


def volumes_dir(manager: VolumeManager) -> Path:
    return manager.config.pod_dir("uid-1") / "volumes"


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o7777


def test_config_map_all_keys_and_binary_data(manager: VolumeManager) -> None:
    paths = manager.setup(make_pod([{"name": "conf", "configMap": {"name": "settings"}}]))
    target = volumes_dir(manager) / "kubernetes.io~configmap" / "conf"
    assert paths == {"conf": target}
    assert (target / "app.conf").read_text() == "port=80\n"
    assert (target / "logo.bin").read_bytes() == b"\x89PNG\x00"
    assert os.readlink(target / "level") == "..data/level"
    assert mode(target / "level") == 0o644


def test_config_map_items_modes_and_updates(manager: VolumeManager, api: FakeApi) -> None:
    pod = make_pod([{"name": "conf", "configMap": {
        "name": "settings", "defaultMode": 0o600,
        "items": [{"key": "app.conf", "path": "etc/app.conf", "mode": 0o640},
                  {"key": "level", "path": "level.txt"}]}}])  # fmt: skip
    target = manager.setup(pod)["conf"]
    assert sorted(p.name for p in target.iterdir() if not p.name.startswith("..")) == [
        "etc", "level.txt"]  # fmt: skip
    assert mode(target / "etc" / "app.conf") == 0o640
    assert mode(target / "level.txt") == 0o600
    first = os.readlink(target / "..data")
    assert manager.setup(pod) == {"conf": target}
    assert os.readlink(target / "..data") == first  # unchanged: not rewritten
    api.config_map("shop", "settings", {"app.conf": "port=8080\n", "level": "4"})
    manager.setup(pod)
    assert os.readlink(target / "..data") != first
    assert (target / "etc" / "app.conf").read_text() == "port=8080\n"


def test_missing_config_map_or_key(manager: VolumeManager) -> None:
    optional = make_pod([{"name": "conf", "configMap": {"name": "nope", "optional": True}}])
    target = manager.setup(optional)["conf"]
    assert [p.name for p in target.iterdir() if not p.name.startswith("..")] == []
    assert (target / "..data").is_dir()
    with pytest.raises(VolumeError) as error:
        manager.setup(make_pod([{"name": "conf", "configMap": {"name": "nope"}}]))
    assert error.value.reason == "FailedMount"
    assert error.value.message == (
        'MountVolume.SetUp failed for volume "conf" : configmap "nope" not found'
    )
    missing_key = {"name": "settings", "items": [{"key": "k", "path": "k"}]}
    with pytest.raises(VolumeError, match="secret references non-existent secret key: k"):
        manager.setup(make_pod([{"name": "s", "secret": {"secretName": "creds", **missing_key}}]))
    optional_key = {**missing_key, "optional": True}
    assert manager.setup(make_pod([{"name": "c", "configMap": optional_key}]))["c"].is_dir()
    with pytest.raises(VolumeError, match="configmap references non-existent config key: k"):
        manager.setup(make_pod([{"name": "conf", "configMap": missing_key}]))


def test_secret_on_tmpfs_sized_by_pod_limit(
    manager: VolumeManager, mounter: RecordingMounter
) -> None:
    containers = [{"name": "a", "resources": {"limits": {"memory": "256Mi"}}},
                  {"name": "b", "resources": {"limits": {"memory": "256Mi"}}}]  # fmt: skip
    pod = make_pod([{"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o400}}],
                   containers)  # fmt: skip
    target = manager.setup(pod)["creds"]
    assert target == volumes_dir(manager) / "kubernetes.io~secret" / "creds"
    assert mounter.calls == [MountCall("tmpfs", target, 512 * 2**20)]
    assert (target / "password").read_bytes() == b"s3cr3t"
    assert mode(target / "password") == 0o400
    manager.setup(pod)
    assert len(mounter.calls) == 1  # mounted once


def test_empty_dir_on_disk_and_in_memory(manager: VolumeManager, mounter: RecordingMounter) -> None:
    pod = make_pod([
        {"name": "scratch", "emptyDir": {}},
        {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
        {"name": "big", "emptyDir": {"medium": "Memory", "sizeLimit": "64Gi"}},
        {"name": "nolimit", "emptyDir": {"medium": "Memory"}},
    ])  # fmt: skip
    paths = manager.setup(pod)
    assert paths["scratch"].is_dir()
    assert mode(paths["scratch"]) == 0o777
    assert [(c.target.name, c.size_bytes) for c in mounter.calls] == [
        ("cache", 64 * 2**20), ("big", 8 * GI), ("nolimit", 8 * GI)]  # fmt: skip
    with pytest.raises(VolumeError, match="emptyDir medium HugePages is not supported"):
        manager.setup(make_pod([{"name": "h", "emptyDir": {"medium": "HugePages"}}]))


def test_host_path_and_unsupported_kinds(manager: VolumeManager, tmp_path: Path) -> None:
    made = tmp_path / "made"
    pod = make_pod([{"name": "data", "hostPath": {"path": str(made), "type": "DirectoryOrCreate"}}])
    assert manager.setup(pod) == {"data": made}
    assert made.is_dir()
    file_pod = make_pod([{"name": "f", "hostPath": {"path": str(made), "type": "File"}}])
    with pytest.raises(VolumeError) as error:
        manager.setup(file_pod)
    assert error.value.message == (
        'MountVolume.SetUp failed for volume "f" : '
        f"hostPath type check failed: {made} is not a file"
    )
    with pytest.raises(VolumeError, match="volume type persistentVolumeClaim is not supported"):
        manager.setup(make_pod([{"name": "p", "persistentVolumeClaim": {"claimName": "c"}}]))


def test_downward_api_volume(manager: VolumeManager, mounter: RecordingMounter) -> None:
    containers = [{"name": "app", "resources": {"limits": {"memory": "1Gi"}}}]
    pod = make_pod([{"name": "info", "downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}, "mode": 0o600},
        {"path": "mem", "resourceFieldRef": {"containerName": "app", "resource": "limits.memory",
                                              "divisor": "1Mi"}},
        {"path": "cpu", "resourceFieldRef": {"containerName": "app", "resource": "limits.cpu"}},
    ]}}], containers)  # fmt: skip
    target = manager.setup(pod)["info"]
    assert mounter.calls[0].kind == "tmpfs"
    assert (target / "labels").read_text() == 'app="web"'
    assert (target / "name").read_text() == "web"
    assert mode(target / "name") == 0o600
    assert (target / "mem").read_text() == "1024"
    assert (target / "cpu").read_text() == "4"  # no limit: the node's allocatable
    bad = make_pod([{"name": "info", "downwardAPI": {"items": [
        {"path": "x", "fieldRef": {"fieldPath": "spec.nodeName"}}]}}])  # fmt: skip
    with pytest.raises(VolumeError, match="unsupported fieldPath: spec.nodeName"):
        manager.setup(bad)


def test_projected_sources_and_service_account_token(manager: VolumeManager, api: FakeApi) -> None:
    sources = [
        {"configMap": {"name": "settings", "items": [{"key": "level", "path": "level"}]}},
        {"secret": {"name": "creds", "items": [{"key": "user", "path": "user", "mode": 0o400}]}},
        {"downwardAPI": {"items": [{"path": "ns",
                                    "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
        {"serviceAccountToken": {"path": "token", "audience": "vault", "expirationSeconds": 600}},
    ]  # fmt: skip
    pod = make_pod([{"name": "all", "projected": {"sources": sources, "defaultMode": 0o440}}],
                   serviceAccountName="builder")  # fmt: skip
    with pytest.raises(VolumeError) as error:
        manager.setup(pod)  # this API has no TokenRequest: no token to write
    assert error.value.message.startswith(
        'MountVolume.SetUp failed for volume "all" : failed to fetch token: POST '
    )
    token_path = "/api/v1/namespaces/shop/serviceaccounts/builder/token"
    api.post_handlers[token_path] = lambda body: {"status": {"token": "header.payload.sig"}}
    target = manager.setup(pod)["all"]
    assert (target / "level").read_text() == "3"
    assert mode(target / "level") == 0o440
    assert mode(target / "user") == 0o400
    assert (target / "ns").read_text() == "shop"
    assert (target / "token").read_text() == "header.payload.sig"
    request = api.posts[-1][1]
    assert request["spec"]["audiences"] == ["vault"]
    assert request["spec"]["expirationSeconds"] == 600
    assert request["spec"]["boundObjectRef"] == {"apiVersion": "v1", "kind": "Pod",
                                                 "name": "web", "uid": "uid-1"}  # fmt: skip


def test_mounts_readonly_propagation_and_hosts(manager: VolumeManager, tmp_path: Path) -> None:
    data = tmp_path / "data"
    container = {"name": "app", "volumeMounts": [
        {"name": "conf", "mountPath": "/etc/app"},
        {"name": "data", "mountPath": "/data", "mountPropagation": "HostToContainer"},
        {"name": "scratch", "mountPath": "/scratch", "readOnly": True},
        {"name": "data", "mountPath": "/shared", "mountPropagation": "Bidirectional"},
    ]}  # fmt: skip
    pod = make_pod([
        {"name": "conf", "configMap": {"name": "settings"}},
        {"name": "data", "hostPath": {"path": str(data), "type": "DirectoryOrCreate"}},
        {"name": "scratch", "emptyDir": {}},
    ], [container], hostAliases=[{"ip": "192.0.2.9", "hostnames": ["db.local"]}])  # fmt: skip
    volumes = manager.setup(pod)
    mounts = manager.mounts(pod, container, volumes)
    assert [(m.container_path, m.host_path, m.readonly, m.propagation) for m in mounts] == [
        ("/etc/app", str(volumes["conf"]), True, api_pb2.PROPAGATION_PRIVATE),
        ("/data", str(data), False, api_pb2.PROPAGATION_HOST_TO_CONTAINER),
        ("/scratch", str(volumes["scratch"]), True, api_pb2.PROPAGATION_PRIVATE),
        ("/shared", str(data), False, api_pb2.PROPAGATION_BIDIRECTIONAL),
        ("/etc/hosts", str(manager.config.pod_dir("uid-1") / "etc-hosts"), False,
         api_pb2.PROPAGATION_PRIVATE),
    ]  # fmt: skip
    hosts = (manager.config.pod_dir("uid-1") / "etc-hosts").read_text()
    assert hosts.startswith("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n")
    assert "10.1.0.5\tweb\n" in hosts
    assert hosts.endswith("# Entries added by HostAliases.\n192.0.2.9\tdb.local\n")

    own_hosts = {"name": "app", "volumeMounts": [{"name": "conf", "mountPath": "/etc/hosts",
                                                  "subPath": "level"}]}  # fmt: skip
    assert [m.container_path for m in manager.mounts(pod, own_hosts, volumes)] == ["/etc/hosts"]
    with pytest.raises(VolumeError) as error:
        manager.mounts(pod, {"name": "app", "volumeMounts": [{"name": "x", "mountPath": "/x"}]},
                       volumes)  # fmt: skip
    assert error.value.reason == "CreateContainerConfigError"
    assert error.value.message == 'cannot find volume "x" to mount into container "app"'


def test_host_network_pods_get_the_node_hosts_file(manager: VolumeManager) -> None:
    pod = make_pod([], hostNetwork=True, subdomain="peers")
    [hosts] = manager.mounts(pod, {"name": "app"}, {})
    assert Path(hosts.host_path).read_text() == (
        "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n192.0.2.1 node-a\n"
    )
    no_ip = make_pod([])
    no_ip["status"] = {}
    assert manager.mounts(no_ip, {"name": "app"}, {}) == []


def test_subpaths(manager: VolumeManager, mounter: RecordingMounter, tmp_path: Path) -> None:
    pod = make_pod([{"name": "scratch", "emptyDir": {}},
                    {"name": "conf", "configMap": {"name": "settings"}}])  # fmt: skip
    volumes = manager.setup(pod)
    container = {"name": "app", "env": [{"name": "POD", "valueFrom": {"fieldRef": {
        "fieldPath": "metadata.name"}}}], "volumeMounts": [
        {"name": "scratch", "mountPath": "/logs", "subPath": "logs/app"},
        {"name": "conf", "mountPath": "/etc/app.conf", "subPath": "app.conf"},
        {"name": "scratch", "mountPath": "/per-pod", "subPathExpr": "pods/$(POD)"},
    ]}  # fmt: skip
    mounts = manager.mounts(pod, container, volumes)
    subpaths = manager.config.pod_dir("uid-1") / "volume-subpaths"
    assert [m.host_path for m in mounts[:3]] == [
        str(subpaths / "scratch" / "app" / "0"),
        str(subpaths / "conf" / "app" / "1"),
        str(subpaths / "scratch" / "app" / "2"),
    ]
    assert (volumes["scratch"] / "logs" / "app").is_dir()
    assert (volumes["scratch"] / "pods" / "web").is_dir()
    conf_version = os.readlink(volumes["conf"] / "..data")
    assert [(c.target.name, c.source) for c in mounter.calls] == [
        ("0", str(volumes["scratch"] / "logs" / "app")),
        ("1", str(volumes["conf"] / conf_version / "app.conf")),  # the resolved file
        ("2", str(volumes["scratch"] / "pods" / "web")),
    ]
    assert (subpaths / "conf" / "app" / "1").is_file()

    (volumes["scratch"] / "escape").symlink_to(tmp_path)
    for sub, message in [
        ("../up", "must not contain '..'"),
        ("/abs", "must not be an absolute path"),
        ("escape", "resolves outside the volume"),
        ("escape/x", "failed to create subPath directory"),  # mkdir does not follow it
    ]:
        bad = {"name": "app", "volumeMounts": [{"name": "scratch", "mountPath": "/x",
                                                 "subPath": sub}]}  # fmt: skip
        with pytest.raises(VolumeError, match=message) as error:
            manager.mounts(pod, bad, volumes)
        assert error.value.reason == "CreateContainerConfigError"
    missing = {"name": "app", "volumeMounts": [{"name": "scratch", "mountPath": "/x",
                                                 "subPathExpr": "$(NOPE)/$(POD)"}]}  # fmt: skip
    with pytest.raises(VolumeError, match="missing value for NOPE, POD"):
        manager.mounts(pod, missing, volumes, env=[])


def test_teardown_unmounts_everything_and_removes_dirs(
    manager: VolumeManager, mounter: RecordingMounter
) -> None:
    pod = make_pod([{"name": "creds", "secret": {"secretName": "creds"}},
                    {"name": "cache", "emptyDir": {"medium": "Memory"}}])  # fmt: skip
    container = {"name": "app", "volumeMounts": [{"name": "creds", "mountPath": "/p",
                                                   "subPath": "password"}]}  # fmt: skip
    volumes = manager.setup(pod)
    manager.mounts(pod, container, volumes)
    assert len(mounter.mounted) == 3
    pod_dir = manager.config.pod_dir("uid-1")
    (pod_dir / "kept-by-others").write_text("x")
    manager.teardown("uid-1")
    assert mounter.mounted == []
    assert mounter.unmounted[0].name == "0"  # the subPath bind (deepest) first
    assert sorted(p.name for p in pod_dir.iterdir()) == ["kept-by-others"]
    manager.teardown("uid-1")  # again: nothing left to do


def test_cleanup_orphans(manager: VolumeManager, mounter: RecordingMounter) -> None:
    manager.setup(make_pod([{"name": "creds", "secret": {"secretName": "creds"}}]))
    (manager.config.pods_dir / "alive").mkdir()
    assert manager.cleanup_orphans({"alive"}) == ["uid-1"]
    assert [p.name for p in manager.config.pods_dir.iterdir()] == ["alive"]
    assert mounter.mounted == []
    assert manager.cleanup_orphans({"alive"}) == []


def test_the_sandbox_ip_wins_over_an_older_status(manager: VolumeManager) -> None:
    pod = make_pod([], subdomain="peers")
    pod["status"] = {}
    [hosts] = manager.mounts(pod, {"name": "app"}, {}, pod_ip="10.1.0.77")
    text = Path(hosts.host_path).read_text()
    assert "10.1.0.77\tweb.peers.shop.svc.cluster.local\tweb\n" in text
    pod["status"] = {"podIP": "10.1.0.5"}
    manager.mounts(pod, {"name": "app"}, {}, pod_ip="10.1.0.78")
    assert "10.1.0.78\t" in Path(hosts.host_path).read_text()
    assert "10.1.0.5" not in Path(hosts.host_path).read_text()
