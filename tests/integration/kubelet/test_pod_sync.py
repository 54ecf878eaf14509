"""The kubelet's pod sync against a real `kubeling apiserver` (memory store) and a real
CRI server: pods bound to the node run and report Running with their IP and
container statuses; deletion stops them and removes the API object; restarts with
back-off (CrashLoopBackOff); a container killed behind the kubelet's back is
restarted; a restarted kubelet adopts its pods without restarting containers; static
pods get mirror pods."""

from __future__ import annotations

import base64
import functools
import json
import subprocess
import time
from pathlib import Path
from typing import Any

from cri.api import api_pb2
from images.testing import LocalRegistry
from tests.integration.control.support import stop
from tests.integration.cri.support import NEEDS_CRI, Cri
from tests.integration.kubelet.support import (
    KUBELING,
    ApiServer,
    get_or_none,
    kubelet_config,
    pod,
    running_kubelet,
    unique_name,
    wait_for,
)

pytestmark = NEEDS_CRI

PODS = "/api/v1/namespaces/default/pods"


def _status(api: ApiServer, name: str) -> dict[str, Any]:
    found = get_or_none(api.client, f"{PODS}/{name}")
    return dict((found or {}).get("status") or {})


def _container_status(api: ApiServer, name: str, container: str = "main") -> dict[str, Any]:
    for status in _status(api, name).get("containerStatuses") or []:
        if status.get("name") == container:
            return dict(status)
    return {}


def _running(api: ApiServer, name: str) -> dict[str, Any] | None:
    status = _status(api, name)
    if status.get("phase") != "Running":
        return None
    statuses = status.get("containerStatuses") or []
    if not statuses or not all("running" in s.get("state", {}) for s in statuses):
        return None
    return status


def _copy_image(source: str, destination: str, *options: str) -> None:
    """Copy an image between the tests' plain-HTTP registries."""
    subprocess.run(
        ["skopeo", "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false",
         *options, f"docker://{source}", f"docker://{destination}"],
        check=True,
        timeout=60,
    )  # fmt: skip


def _gone(api: ApiServer, name: str) -> bool:
    return get_or_none(api.client, f"{PODS}/{name}") is None


def _containers_of(cri: Cri, uid: str) -> list[api_pb2.Container]:
    request = api_pb2.ListContainersRequest(
        filter=api_pb2.ContainerFilter(label_selector={"io.kubernetes.pod.uid": uid})
    )
    return list(cri.runtime.ListContainers(request).containers)


def _sandboxes_of(cri: Cri, uid: str) -> list[api_pb2.PodSandbox]:
    request = api_pb2.ListPodSandboxRequest(
        filter=api_pb2.PodSandboxFilter(label_selector={"io.kubernetes.pod.uid": uid})
    )
    return list(cri.runtime.ListPodSandbox(request).items)


def test_pod_runs_reports_status_and_is_deleted(api: ApiServer, cri: Cri, tmp_path: Path) -> None:
    config = kubelet_config(api, cri, tmp_path / "kubelet")
    with running_kubelet(config):
        name = unique_name("web")
        created = api.client.create(PODS, pod(name, config.node_name, cri.image))
        uid = created["metadata"]["uid"]
        started = time.monotonic()
        status = wait_for(lambda: _running(api, name), "the pod to run")
        elapsed = time.monotonic() - started
        print(f"pod create to Running: {elapsed:.2f}s")
        assert status["podIP"] and status["podIPs"] == [{"ip": status["podIP"]}]
        assert status["hostIP"] == "127.0.0.1"
        assert status["qosClass"] == "BestEffort"
        container = status["containerStatuses"][0]
        assert (
            container["containerID"].startswith("kubeling://") or "://" in container["containerID"]
        )
        assert container["ready"] is True and container["started"] is True
        assert container["restartCount"] == 0
        assert container["imageID"]
        conditions = {c["type"]: c["status"] for c in status["conditions"]}
        assert conditions["Ready"] == "True" and conditions["ContainersReady"] == "True"
        assert conditions["Initialized"] == "True" and conditions["PodScheduled"] == "True"
        (container_record,) = _containers_of(cri, uid)
        assert container_record.state == api_pb2.CONTAINER_RUNNING
        assert container_record.labels["io.kubernetes.container.name"] == "main"
        (sandbox,) = _sandboxes_of(cri, uid)
        assert sandbox.labels["io.kubernetes.pod.name"] == name

        api.client.delete(f"{PODS}/{name}")
        wait_for(
            lambda: get_or_none(api.client, f"{PODS}/{name}") is None,
            "the pod to be deleted from the API",
        )
        assert _containers_of(cri, uid) == []
        assert _sandboxes_of(cri, uid) == []
        assert not (config.root_dir / "pods" / uid).exists()


def test_crash_loop_back_off_and_restart_count(api: ApiServer, cri: Cri, tmp_path: Path) -> None:
    config = kubelet_config(api, cri, tmp_path / "kubelet")
    with running_kubelet(config):
        name = unique_name("crash")
        api.client.create(
            PODS,
            pod(
                name,
                config.node_name,
                cri.image,
                ["sh", "-c", "echo bye > /dev/termination-log; exit 3"],
            ),
        )

        def backing_off() -> dict[str, Any] | None:
            status = _container_status(api, name)
            waiting = status.get("state", {}).get("waiting", {})
            if waiting.get("reason") == "CrashLoopBackOff" and status.get("restartCount", 0) >= 1:
                return status
            return None

        status = wait_for(backing_off, "CrashLoopBackOff", timeout=30)
        assert "restarting failed container=main pod=" in status["state"]["waiting"]["message"]
        last = status["lastState"]["terminated"]
        assert last["exitCode"] == 3 and last["reason"] == "Error"
        assert last["message"] == "bye\n"
        assert _status(api, name)["phase"] == "Running"  # restartPolicy Always
        wait_for(
            lambda: _container_status(api, name).get("restartCount", 0) >= 2,
            "a second restart",
            timeout=30,
        )
        api.client.delete(f"{PODS}/{name}")
        wait_for(lambda: get_or_none(api.client, f"{PODS}/{name}") is None, "deletion")


def test_container_killed_by_hand_is_restarted(api: ApiServer, cri: Cri, tmp_path: Path) -> None:
    config = kubelet_config(api, cri, tmp_path / "kubelet")
    with running_kubelet(config):
        name = unique_name("victim")
        uid = api.client.create(PODS, pod(name, config.node_name, cri.image))["metadata"]["uid"]
        first = wait_for(lambda: _running(api, name), "the pod to run")["containerStatuses"][0]
        cri.runtime.StopContainer(
            api_pb2.StopContainerRequest(
                container_id=first["containerID"].split("://")[1], timeout=0
            )
        )
        started = time.monotonic()

        def restarted() -> dict[str, Any] | None:
            status = _container_status(api, name)
            if status.get("restartCount") == 1 and "running" in status.get("state", {}):
                return status
            return None

        again = wait_for(restarted, "the container to be restarted", timeout=15)
        print(f"killed container restarted after {time.monotonic() - started:.2f}s")
        assert again["containerID"] != first["containerID"]
        assert again["lastState"]["terminated"]["exitCode"] != 0
        assert (
            len([c for c in _containers_of(cri, uid) if c.state == api_pb2.CONTAINER_RUNNING]) == 1
        )


def test_restarted_kubelet_adopts_running_pods(api: ApiServer, cri: Cri, tmp_path: Path) -> None:
    config = kubelet_config(api, cri, tmp_path / "kubelet")
    name = unique_name("adopted")
    with running_kubelet(config):
        api.client.create(PODS, pod(name, config.node_name, cri.image))
        before = wait_for(lambda: _running(api, name), "the pod to run")["containerStatuses"][0]
    with running_kubelet(config):
        time.sleep(3 * config.pleg_relist_period + config.sync_frequency)
        after = _container_status(api, name)
        assert after["containerID"] == before["containerID"]
        assert after["restartCount"] == before["restartCount"] == 0
        assert "running" in after["state"]
        api.client.delete(f"{PODS}/{name}")
        wait_for(lambda: get_or_none(api.client, f"{PODS}/{name}") is None, "deletion")


def test_static_pod_gets_a_mirror_pod(api: ApiServer, cri: Cri, tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    config = kubelet_config(api, cri, tmp_path / "kubelet", pod_manifest_path=manifests)
    static_name = unique_name("static")
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": static_name},
        "spec": {
            "containers": [{"name": "main", "image": cri.image, "command": ["sleep", "3600"]}],
            "terminationGracePeriodSeconds": 1,
        },
    }
    (manifests / "static.json").write_text(json.dumps(manifest))
    mirror_name = f"{static_name}-{config.node_name}"
    with running_kubelet(config):
        mirror = wait_for(
            lambda: get_or_none(api.client, f"{PODS}/{mirror_name}"), "the mirror pod"
        )
        annotations = mirror["metadata"]["annotations"]
        assert annotations["kubernetes.io/config.source"] == "file"
        assert annotations["kubernetes.io/config.mirror"]
        assert mirror["metadata"]["ownerReferences"][0]["kind"] == "Node"
        wait_for(lambda: _running(api, mirror_name), "the mirror pod to report Running")
        # Deleted by hand, the mirror pod comes back.
        api.client.delete(f"{PODS}/{mirror_name}", gracePeriodSeconds=0)
        wait_for(
            lambda: (
                (get_or_none(api.client, f"{PODS}/{mirror_name}") or {})
                .get("metadata", {})
                .get("uid")
                not in (None, mirror["metadata"]["uid"])
            ),
            "the mirror pod to be recreated",
        )
        # The manifest removed: the pod stops and its mirror goes.
        (manifests / "static.json").unlink()
        wait_for(
            lambda: get_or_none(api.client, f"{PODS}/{mirror_name}") is None,
            "the mirror pod to be removed",
        )
        uid = annotations["kubernetes.io/config.mirror"]
        wait_for(lambda: not _sandboxes_of(cri, uid), "the static pod's sandbox to go")


def test_twenty_pods_at_once(api: ApiServer, cri: Cri, tmp_path: Path) -> None:
    config = kubelet_config(api, cri, tmp_path / "kubelet")
    with running_kubelet(config):
        names = [unique_name(f"many{i}") for i in range(20)]
        started = time.monotonic()
        for name in names:
            api.client.create(PODS, pod(name, config.node_name, cri.image))
        created = time.monotonic() - started
        for name in names:
            wait_for(functools.partial(_running, api, name), f"pod {name} to run", timeout=90)
        elapsed = time.monotonic() - started
        print(f"20 pods: created in {created:.2f}s, all Running after {elapsed:.2f}s")
        ips = {_status(api, name)["podIP"] for name in names}
        assert len(ips) == 20
        started = time.monotonic()
        for name in names:
            api.client.delete(f"{PODS}/{name}")
        for name in names:
            wait_for(
                functools.partial(_gone, api, name),
                f"pod {name} to be deleted",
                timeout=90,
            )
        print(f"20 pods: all deleted after {time.monotonic() - started:.2f}s")


def test_init_containers_then_a_terminal_pod(api: ApiServer, cri: Cri, tmp_path: Path) -> None:
    config = kubelet_config(api, cri, tmp_path / "kubelet")
    with running_kubelet(config):
        name = unique_name("job")
        body = pod(
            name,
            config.node_name,
            cri.image,
            ["sh", "-c", "cat /shared/step; exit 1"],
            restart_policy="Never",
        )
        body["spec"]["initContainers"] = [
            {"name": "first", "image": cri.image, "command": ["sh", "-c", "echo one > /x"]},
            {"name": "second", "image": cri.image, "command": ["true"]},
        ]
        uid = api.client.create(PODS, body)["metadata"]["uid"]
        status = wait_for(
            lambda: _status(api, name) if _status(api, name).get("phase") == "Failed" else None,
            "the pod to fail",
        )
        first, second = status["initContainerStatuses"]
        assert first["state"]["terminated"]["reason"] == "Completed"
        assert second["state"]["terminated"]["exitCode"] == 0
        main = status["containerStatuses"][0]["state"]["terminated"]
        assert main["exitCode"] == 1 and main["reason"] == "Error"
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "False" and ready["reason"] == "PodCompleted"
        # Terminal: nothing restarts, the sandbox is stopped, the containers are kept.
        wait_for(
            lambda: all(s.state == api_pb2.SANDBOX_NOTREADY for s in _sandboxes_of(cri, uid)),
            "the sandbox to be stopped",
        )
        time.sleep(2 * config.pleg_relist_period)
        containers = _containers_of(cri, uid)
        assert len(containers) == 3
        assert all(c.state == api_pb2.CONTAINER_EXITED for c in containers)
        assert _status(api, name)["phase"] == "Failed"


def test_pull_failure_backs_off(api: ApiServer, cri: Cri, tmp_path: Path) -> None:
    config = kubelet_config(api, cri, tmp_path / "kubelet")
    with running_kubelet(config):
        name = unique_name("nopull")
        missing = cri.image.rsplit("/", 1)[0] + "/does-not-exist:1"
        api.client.create(PODS, pod(name, config.node_name, missing))
        seen: set[str] = set()

        def both_reasons() -> bool:
            waiting = _container_status(api, name).get("state", {}).get("waiting", {})
            seen.add(str(waiting.get("reason")))
            return {"ErrImagePull", "ImagePullBackOff"} <= seen

        deadline = time.monotonic() + 30
        while not both_reasons():
            assert time.monotonic() < deadline, (
                f"reasons seen: {seen}; status: {_status(api, name)}"
            )
            time.sleep(0.1)
        assert _status(api, name)["phase"] == "Pending"

        def reasons() -> set[str]:
            events = api.client.list("/api/v1/namespaces/default/events")["items"]
            return {e["reason"] for e in events if e["involvedObject"].get("name") == name}

        deadline = time.monotonic() + 10  # the recorder's thread writes them
        while not {"Pulling", "Failed"} <= reasons():
            assert time.monotonic() < deadline, f"event reasons: {reasons()}"
            time.sleep(0.1)


def test_spec_change_restarts_the_container(api: ApiServer, cri: Cri, tmp_path: Path) -> None:
    config = kubelet_config(api, cri, tmp_path / "kubelet")
    with running_kubelet(config):
        name = unique_name("edit")
        body = pod(name, config.node_name, cri.image)
        body["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "100m"}}  # Burstable
        uid = api.client.create(PODS, body)["metadata"]["uid"]
        before = wait_for(lambda: _running(api, name), "the pod to run")["containerStatuses"][0]
        pod_cgroup = (
            Path("/sys/fs/cgroup/cpu")
            / cri.cgroup_parent.strip("/")
            / (f"kubepods/burstable/pod{uid}")
        )
        if Path("/sys/fs/cgroup/cpu").is_dir():
            assert (pod_cgroup / "cpu.shares").read_text().strip() == "102"
        # The same image under a second tag: a new image reference, a new spec hash.
        retagged = cri.image.rsplit(":", 1)[0] + ":second"
        _copy_image(cri.image, retagged)
        api.client.patch(
            f"{PODS}/{name}",
            {"spec": {"containers": [{"name": "main", "image": retagged}]}},
            content_type="application/strategic-merge-patch+json",
        )

        def replaced() -> dict[str, Any] | None:
            status = _container_status(api, name)
            if status.get("containerID") != before["containerID"] and "running" in status.get(
                "state", {}
            ):
                return status
            return None

        after = wait_for(replaced, "the container to be replaced")
        assert after["restartCount"] == 1
        api.client.delete(f"{PODS}/{name}")
        wait_for(lambda: get_or_none(api.client, f"{PODS}/{name}") is None, "deletion")
        assert not pod_cgroup.exists()


def test_pod_deleted_while_the_kubelet_was_down_is_cleaned_up(
    api: ApiServer, cri: Cri, tmp_path: Path
) -> None:
    config = kubelet_config(api, cri, tmp_path / "kubelet")
    name = unique_name("orphan")
    with running_kubelet(config):
        uid = api.client.create(PODS, pod(name, config.node_name, cri.image))["metadata"]["uid"]
        wait_for(lambda: _running(api, name), "the pod to run")
    api.client.delete(f"{PODS}/{name}", gracePeriodSeconds=0)
    assert _containers_of(cri, uid)
    with running_kubelet(config):
        wait_for(
            lambda: not _sandboxes_of(cri, uid) and not _containers_of(cri, uid),
            "the orphan's sandbox and containers to be removed",
            timeout=20,
        )


def test_kubeling_kubelet_command_leaves_containers_running_on_sigterm(
    api: ApiServer, cri: Cri, tmp_path: Path
) -> None:
    config = kubelet_config(api, cri, tmp_path / "kubelet")
    log = open(tmp_path / "kubelet.log", "w")  # noqa: SIM115
    process = subprocess.Popen(
        [
            KUBELING,
            "kubelet",
            "--kubeconfig",
            str(config.kubeconfig),
            "--node-name",
            config.node_name,
            "--container-runtime-endpoint",
            config.container_runtime_endpoint,
            "--root-dir",
            str(config.root_dir),
            "--address",
            "127.0.0.1",
            "--port",
            "0",
            "--node-ip",
            "127.0.0.1",
            "--cgroup-root",
            config.cgroup_root,
            "--sync-frequency",
            "2s",
            "--log-level",
            "debug",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    log.close()
    try:
        name = unique_name("cli")
        uid = api.client.create(PODS, pod(name, config.node_name, cri.image))["metadata"]["uid"]
        wait_for(lambda: _running(api, name), "the pod to run")
        node = api.client.get(f"/api/v1/nodes/{config.node_name}")
        assert node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] > 0
    finally:
        stop(process)
    assert process.returncode == 0, (tmp_path / "kubelet.log").read_text()[-2000:]
    (container,) = _containers_of(cri, uid)
    assert container.state == api_pb2.CONTAINER_RUNNING


def test_active_deadline_and_max_pods(api: ApiServer, cri: Cri, tmp_path: Path) -> None:
    config = kubelet_config(api, cri, tmp_path / "kubelet", max_pods=1)
    with running_kubelet(config):
        short, extra, later = (unique_name(p) for p in ("short", "extra", "later"))
        uid = api.client.create(
            PODS, pod(short, config.node_name, cri.image, activeDeadlineSeconds=3)
        )["metadata"]["uid"]
        wait_for(lambda: _running(api, short), "the pod to run")
        api.client.create(PODS, pod(extra, config.node_name, cri.image))
        rejected = wait_for(
            lambda: _status(api, extra) if _status(api, extra).get("phase") == "Failed" else None,
            "the second pod to be rejected",
        )
        assert rejected["reason"] == "OutOfpods" and "capacity: 1" in rejected["message"]
        assert not _containers_of(cri, api.client.get(f"{PODS}/{extra}")["metadata"]["uid"])
        ended = wait_for(
            lambda: _status(api, short) if _status(api, short).get("phase") == "Failed" else None,
            "the deadline to end the pod",
            timeout=15,
        )
        assert ended["reason"] == "DeadlineExceeded"
        wait_for(
            lambda: all(c.state == api_pb2.CONTAINER_EXITED for c in _containers_of(cri, uid)),
            "the pod's container to be stopped",
        )
        api.client.create(PODS, pod(later, config.node_name, cri.image))  # a free slot again
        wait_for(lambda: _running(api, later), "a pod to run after the deadline")


def test_dead_containers_are_collected(api: ApiServer, cri: Cri, tmp_path: Path) -> None:
    config = kubelet_config(api, cri, tmp_path / "kubelet", backoff_initial=0.2, backoff_max=0.4)
    with running_kubelet(config) as kubelet:
        assert kubelet.manager is not None
        kubelet.manager.gc_period = 0.5  # the kubelet's minute is too long for a test
        name = unique_name("gc")
        uid = api.client.create(
            PODS, pod(name, config.node_name, cri.image, ["sh", "-c", "exit 1"])
        )["metadata"]["uid"]
        wait_for(
            lambda: _container_status(api, name).get("restartCount", 0) >= 4,
            "a few restarts",
            timeout=30,
        )
        wait_for(lambda: len(_containers_of(cri, uid)) <= 2, "dead containers to be collected")
        status = _container_status(api, name)
        assert status["lastState"].get("terminated", {}).get("exitCode") == 1 or (
            status["state"].get("terminated", {}).get("exitCode") == 1
        )


def test_image_pull_secrets(api: ApiServer, cri: Cri, tmp_path: Path) -> None:
    with LocalRegistry(tmp_path / "private", users={"bob": "s3cret"}) as private:
        image = f"{private.host}/kubeling/busybox:private"
        _copy_image(cri.image, image, "--dest-creds", "bob:s3cret")
        config = kubelet_config(api, cri, tmp_path / "kubelet")
        with running_kubelet(config):
            refused = unique_name("nocreds")
            api.client.create(PODS, pod(refused, config.node_name, image))
            wait_for(
                lambda: (
                    _container_status(api, refused)
                    .get("state", {})
                    .get("waiting", {})
                    .get("reason")
                    in ("ErrImagePull", "ImagePullBackOff")
                ),
                "a refused pull",
            )
            auth = base64.b64encode(b"bob:s3cret").decode()
            dockerconfig = json.dumps({"auths": {private.host: {"auth": auth}}}).encode()
            secret = unique_name("pull")
            api.client.create(
                "/api/v1/namespaces/default/secrets",
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": secret},
                    "type": "kubernetes.io/dockerconfigjson",
                    "data": {".dockerconfigjson": base64.b64encode(dockerconfig).decode()},
                },
            )
            allowed = unique_name("creds")
            api.client.create(
                PODS, pod(allowed, config.node_name, image, imagePullSecrets=[{"name": secret}])
            )
            wait_for(lambda: _running(api, allowed), "the pod with pull credentials to run")
            for name in (refused, allowed):
                api.client.delete(f"{PODS}/{name}")
            for name in (refused, allowed):
                wait_for(functools.partial(_gone, api, name), "deletion")


def test_host_network_pod(api: ApiServer, cri: Cri, tmp_path: Path) -> None:
    config = kubelet_config(api, cri, tmp_path / "kubelet")
    with running_kubelet(config):
        name = unique_name("hostnet")
        uid = api.client.create(PODS, pod(name, config.node_name, cri.image, hostNetwork=True))[
            "metadata"
        ]["uid"]
        status = wait_for(lambda: _running(api, name), "the pod to run")
        assert status["podIP"] == "127.0.0.1" and status["podIPs"] == [{"ip": "127.0.0.1"}]
        time.sleep(2 * config.pleg_relist_period + config.sync_frequency)
        (sandbox,) = _sandboxes_of(cri, uid)  # kept: not re-created for having no IP
        assert sandbox.state == api_pb2.SANDBOX_READY
        assert _container_status(api, name)["restartCount"] == 0
