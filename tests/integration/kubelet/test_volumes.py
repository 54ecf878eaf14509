"""The volume manager with real mounts (root) against a real `kubeling apiserver`:
ConfigMap and Secret files with their modes, the Secret and a memory emptyDir on
tmpfs (sized), a subPath bind mount, a ConfigMap update that readers only ever see
whole, a teardown that leaves no mount behind, and a serviceAccountToken source
failing on a server without TokenRequest. Then through a real CRI server: a busybox
container sees the files, the managed /etc/hosts and a ConfigMap update while it
runs; and through the whole kubelet: a pod's container sees its volumes, the
environment taken from them, the managed /etc/hosts (pod IP and hostname) and a
ConfigMap update within a resync."""

from __future__ import annotations

import base64
import functools
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cri.api import api_pb2
from kubelet.config import KubeletConfig
from kubelet.volumes import VolumeError, VolumeManager
from tests.integration.cri.support import NEEDS_CRI, Cri
from tests.integration.kubelet.support import (
    ApiServer,
    get_or_none,
    kubelet_config,
    pod,
    running_kubelet,
    unique_name,
    wait_for,
)

pytestmark = NEEDS_CRI  # root; the second test runs a CRI server too

Object = dict[str, Any]
NAMESPACE = "default"


def mounts_under(directory: Path) -> dict[str, tuple[str, str]]:
    """Mount point → (fstype, super options) of every mount at or below `directory`."""
    found = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        point = fields[4].replace("\\040", " ")
        after = fields[fields.index("-") + 1 :]
        if point == str(directory) or point.startswith(f"{directory}/"):
            found[point] = (after[0], after[2])
    return found


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o7777


@pytest.fixture
def objects(api: ApiServer) -> Iterator[tuple[str, str]]:
    config_map, secret = unique_name("settings"), unique_name("creds")
    api.client.create(
        f"/api/v1/namespaces/{NAMESPACE}/configmaps",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": config_map},
            "data": {"app.conf": "version=1\n", "level": "1"},
        },
    )
    api.client.create(
        f"/api/v1/namespaces/{NAMESPACE}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": secret},
            "data": {"password": base64.b64encode(b"s3cr3t").decode()},
        },
    )
    try:
        yield config_map, secret
    finally:
        api.client.delete(f"/api/v1/namespaces/{NAMESPACE}/configmaps/{config_map}")
        api.client.delete(f"/api/v1/namespaces/{NAMESPACE}/secrets/{secret}")


def volume_pod(name: str, uid: str, config_map: str, secret: str) -> Object:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": uid, "labels": {"app": name}},
        "spec": {
            "containers": [{"name": "main", "resources": {"limits": {"memory": "64Mi"}}}],
            "volumes": [
                {"name": "conf", "configMap": {"name": config_map, "defaultMode": 0o640}},
                {"name": "creds", "secret": {"secretName": secret, "defaultMode": 0o400}},
                {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
                {
                    "name": "info",
                    "downwardAPI": {
                        "items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]
                    },
                },
                {"name": "scratch", "emptyDir": {}},
            ],
        },
        "status": {"podIP": "10.214.0.9", "hostIP": "127.0.0.1"},
    }


def shell(cri: Cri, container_id: str, script: str) -> str:
    """What `sh -c script` prints in the container (it must succeed)."""
    result = cri.exec(container_id, ["sh", "-c", script], timeout=10)
    assert result.exit_code == 0, result.stderr
    return str(result.stdout.decode())


def update_config_map(api: ApiServer, name: str, data: dict[str, str]) -> None:
    path = f"/api/v1/namespaces/{NAMESPACE}/configmaps/{name}"
    current = api.client.get(path)
    current["data"] = data
    api.client.update(path, current)


def test_volumes_with_real_mounts(api: ApiServer, objects: tuple[str, str], tmp_path: Path) -> None:
    config_map, secret = objects
    config = KubeletConfig(kubeconfig=str(api.kubeconfig), root_dir=tmp_path / "kubelet")
    manager = VolumeManager(api.client, config)
    uid = str(uuid.uuid4())
    pod = volume_pod("vols", uid, config_map, secret)
    pod_dir = config.pod_dir(uid)
    try:
        volumes = manager.setup(pod)
        conf, creds = volumes["conf"], volumes["creds"]
        assert (conf / "app.conf").read_text() == "version=1\n"
        assert mode(conf / "app.conf") == 0o640
        assert (creds / "password").read_bytes() == b"s3cr3t"
        assert mode(creds / "password") == 0o400
        assert (volumes["info"] / "labels").read_text() == 'app="vols"'
        mounted = mounts_under(pod_dir)
        assert mounted[str(creds)][0] == "tmpfs"
        assert mounted[str(volumes["info"])][0] == "tmpfs"
        assert mounted[str(volumes["cache"])] == ("tmpfs", "rw,size=16384k")
        assert str(conf) not in mounted and str(volumes["scratch"]) not in mounted

        container = {
            "name": "main",
            "volumeMounts": [
                {"name": "creds", "mountPath": "/run/password", "subPath": "password"},
                {"name": "scratch", "mountPath": "/logs", "subPath": "logs"},
            ],
        }
        cri_mounts = manager.mounts(pod, container, volumes)
        assert [m.container_path for m in cri_mounts] == ["/run/password", "/logs", "/etc/hosts"]
        assert Path(cri_mounts[0].host_path).read_bytes() == b"s3cr3t"  # the bind mount
        assert cri_mounts[0].host_path in mounts_under(pod_dir)
        assert "10.214.0.9\tvols\n" in Path(cri_mounts[2].host_path).read_text()

        # Readers of a file being updated see a whole old or a whole new value.
        values = {"A" * 200_000, "B" * 200_000, "version=1\n"}
        seen: set[str] = set()
        stop = threading.Event()

        def read() -> None:
            while not stop.is_set():
                seen.add((conf / "app.conf").read_text())

        reader = threading.Thread(target=read)
        reader.start()
        try:
            for round_ in range(6):
                update_config_map(api, config_map, {"app.conf": "AB"[round_ % 2] * 200_000})
                manager.setup(pod)
        finally:
            stop.set()
            reader.join()
        assert seen <= values, {v[:10] for v in seen - values}
        assert (conf / "app.conf").read_text() == "B" * 200_000
        assert not (conf / "level").exists()  # gone from the ConfigMap: gone from the volume
        assert len([p for p in conf.iterdir() if p.name.startswith("..2")]) == 1
    finally:
        manager.teardown(uid)
    assert mounts_under(pod_dir) == {}
    assert not (pod_dir / "volumes").exists()
    assert not (pod_dir / "volume-subpaths").exists()
    assert manager.cleanup_orphans(set()) == [uid]
    assert not pod_dir.exists()


def test_a_container_sees_its_volumes(
    api: ApiServer, objects: tuple[str, str], cri: Cri, tmp_path: Path
) -> None:
    config_map, secret = objects
    config = KubeletConfig(kubeconfig=str(api.kubeconfig), root_dir=tmp_path / "kubelet")
    manager = VolumeManager(api.client, config)
    name = unique_name("vols")
    sandbox = cri.run_sandbox(name)
    pod_ip = cri.sandbox_status(sandbox).status.network.ip
    pod = volume_pod(name, f"uid-{name}", config_map, secret)
    pod["status"]["podIP"] = pod_ip
    container: Object = {
        "name": "main",
        "volumeMounts": [
            {"name": "conf", "mountPath": "/etc/app"},
            {"name": "creds", "mountPath": "/etc/creds"},
            {"name": "scratch", "mountPath": "/data/sub", "subPath": "sub"},
        ],
    }
    try:
        volumes = manager.setup(pod)
        mounts = manager.mounts(pod, container, volumes)
        config_request = api_pb2.ContainerConfig(
            metadata={"name": "main"},
            image={"image": cri.image},
            command=["sh", "-c", "sleep 3600"],
            log_path="main/0.log",
            mounts=mounts,
        )
        container_id = cri.runtime.CreateContainer(
            api_pb2.CreateContainerRequest(
                pod_sandbox_id=sandbox,
                config=config_request,
                sandbox_config=cri.sandbox_config(name),
            )
        ).container_id
        cri.start_container(container_id)

        sh = functools.partial(shell, cri, container_id)
        assert sh("cat /etc/app/app.conf") == "version=1\n"
        assert sh("cat /etc/creds/password") == "s3cr3t"
        assert sh("grep ' /etc/creds ' /proc/mounts").split()[2] == "tmpfs"
        assert "ro" in sh("grep ' /etc/app ' /proc/mounts").split()[3].split(",")
        assert f"{pod_ip}\t{name}\n" in sh("cat /etc/hosts")
        sh("echo hello > /data/sub/file")
        assert (volumes["scratch"] / "sub" / "file").read_text() == "hello\n"
        update_config_map(api, config_map, {"app.conf": "version=2\n"})
        manager.setup(pod)
        assert sh("cat /etc/app/app.conf") == "version=2\n"  # the running container sees it
    finally:
        cri.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=sandbox))
        cri.runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=sandbox))
        manager.teardown(f"uid-{name}")
    assert mounts_under(config.pod_dir(f"uid-{name}")) == {}


def test_service_account_token_without_token_request(api: ApiServer, tmp_path: Path) -> None:
    """This API server has no TokenRequest: the volume fails, with no made-up token."""
    config = KubeletConfig(kubeconfig=str(api.kubeconfig), root_dir=tmp_path / "kubelet")
    manager = VolumeManager(api.client, config)
    uid = str(uuid.uuid4())
    pod: Object = {
        "metadata": {"name": "sa", "namespace": NAMESPACE, "uid": uid},
        "spec": {
            "containers": [{"name": "main"}],
            "volumes": [
                {
                    "name": "token",
                    "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]},
                }
            ],
        },
    }
    try:
        with pytest.raises(VolumeError) as error:
            manager.setup(pod)
        assert error.value.reason == "FailedMount"
        assert error.value.message.startswith(
            'MountVolume.SetUp failed for volume "token" : failed to fetch token: '
        )
        assert not (config.pod_dir(uid) / "volumes" / "kubernetes.io~projected" / "token").exists()
    finally:
        manager.teardown(uid)
    assert mounts_under(config.pod_dir(uid)) == {}


def _container_id(cri: Cri, uid: str) -> str:
    request = api_pb2.ListContainersRequest(
        filter=api_pb2.ContainerFilter(
            label_selector={"io.kubernetes.pod.uid": uid},
            state=api_pb2.ContainerStateValue(state=api_pb2.CONTAINER_RUNNING),
        )
    )
    containers = cri.runtime.ListContainers(request).containers
    return str(containers[0].id) if containers else ""


def test_the_kubelet_runs_a_pod_with_volumes_and_env(
    api: ApiServer, objects: tuple[str, str], cri: Cri, tmp_path: Path
) -> None:
    """The whole kubelet: a pod's container sees its ConfigMap and Secret files, its
    environment from them and the managed /etc/hosts; a ConfigMap update reaches the
    running container within a resync; deleting the pod leaves no mount behind."""
    config_map, secret = objects
    config = kubelet_config(api, cri, tmp_path / "kubelet", sync_frequency=1.0)
    name = unique_name("vols")
    body = pod(
        name,
        config.node_name,
        cri.image,
        volumes=[
            {"name": "conf", "configMap": {"name": config_map}},
            {"name": "creds", "secret": {"secretName": secret}},
        ],
    )
    body["spec"]["containers"][0].update(
        {
            "env": [
                {
                    "name": "LEVEL",
                    "valueFrom": {"configMapKeyRef": {"name": config_map, "key": "level"}},
                },
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "GREETING", "value": "level $(LEVEL) in $(POD)"},
            ],
            "volumeMounts": [
                {"name": "conf", "mountPath": "/etc/app"},
                {"name": "creds", "mountPath": "/etc/creds", "readOnly": True},
            ],
        }
    )
    pods = f"/api/v1/namespaces/{NAMESPACE}/pods"
    with running_kubelet(config):
        uid = api.client.create(pods, body)["metadata"]["uid"]
        try:
            container_id = wait_for(lambda: _container_id(cri, uid), "the container to run", 60)

            sh = functools.partial(shell, cri, container_id)
            assert sh("cat /etc/app/app.conf") == "version=1\n"
            assert sh("cat /etc/creds/password") == "s3cr3t"
            assert sh("echo $GREETING") == f"level 1 in {name}\n"
            assert "ro" in sh("grep ' /etc/creds ' /proc/mounts").split()[3].split(",")
            pod_ip = wait_for(
                lambda: (
                    (get_or_none(api.client, f"{pods}/{name}") or {}).get("status", {}).get("podIP")
                ),
                "the pod IP in the status",
            )
            assert f"{pod_ip}\t{name}\n" in sh("cat /etc/hosts")  # the kubelet's, not the node's
            update_config_map(api, config_map, {"app.conf": "version=2\n", "level": "2"})
            updated = time.monotonic()
            wait_for(
                lambda: sh("cat /etc/app/app.conf") == "version=2\n",
                "the running container to see the ConfigMap update",
                10,
            )
            assert time.monotonic() - updated < config.sync_frequency + 5
        finally:
            api.client.delete(f"{pods}/{name}")
            wait_for(
                lambda: get_or_none(api.client, f"{pods}/{name}") is None,
                "the pod to be deleted",
                30,
            )
    assert mounts_under(config.pod_dir(uid)) == {}
