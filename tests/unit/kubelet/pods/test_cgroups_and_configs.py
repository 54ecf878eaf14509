"""Pod cgroups on fake cgroupfs trees (v1 and v2), and the CRI configs of sandboxes and
containers built from pod specs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cri.api import api_pb2
from kubelet.pods.cgroups import PodCgroups, shares_to_weight
from kubelet.pods.configs import (
    ContainerInputs,
    SandboxInputs,
    container_config,
    grace_period,
    run_as_non_root_violation,
    sandbox_config,
)
from kubelet.pods.qos import PodCgroupLimits

LIMITS = PodCgroupLimits(cpu_shares=512, cpu_quota=50_000, memory_limit_in_bytes=1 << 28)


def test_v1_pod_cgroup_limits_and_removal(tmp_path: Path) -> None:
    for controller in ("cpu,cpuacct", "memory", "pids"):
        (tmp_path / controller).mkdir()
    (tmp_path / "cpu").symlink_to(tmp_path / "cpu,cpuacct")
    cgroups = PodCgroups(tmp_path)
    cgroups.ensure("/root/kubepods/burstable/podu1", LIMITS)
    cpu = tmp_path / "cpu/root/kubepods/burstable/podu1"
    assert (cpu / "cpu.shares").read_text() == "512"
    assert (cpu / "cpu.cfs_quota_us").read_text() == "50000"
    assert (cpu / "cpu.cfs_period_us").read_text() == "100000"
    memory = tmp_path / "memory/root/kubepods/burstable/podu1"
    assert (memory / "memory.limit_in_bytes").read_text() == str(1 << 28)
    assert cgroups.exists("/root/kubepods/burstable/podu1")
    # Real cgroup directories hold only kernel files, which rmdir ignores; the fake's
    # files must go first.
    for directory in (cpu, memory):
        for file in directory.iterdir():
            file.unlink()
    (tmp_path / "pids/root/kubepods/burstable/podu1/sandbox").mkdir(parents=True)
    assert cgroups.remove("/root/kubepods/burstable/podu1")
    assert not cgroups.exists("/root/kubepods/burstable/podu1")
    assert (tmp_path / "memory/root/kubepods/burstable").is_dir()  # the QoS level stays


def test_v2_enables_controllers_on_the_way_down(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids io")
    (tmp_path / "cgroup.subtree_control").write_text("")
    cgroups = PodCgroups(tmp_path)
    assert cgroups.unified
    cgroups.ensure("/kubepods/podu2", LIMITS)
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert (tmp_path / "kubepods").is_dir() and (tmp_path / "kubepods/podu2").is_dir()
    # A fake tree has no kernel files: no cpu.weight appears, and nothing is written.
    assert not (tmp_path / "kubepods/podu2/cpu.weight").exists()


def test_shares_to_weight() -> None:
    assert shares_to_weight(2) == 1
    assert shares_to_weight(1024) == 39
    assert shares_to_weight(262144) == 10000


def _pod(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "web",
            "namespace": "prod",
            "uid": "u1",
            "labels": {"app": "web"},
            "annotations": {"note": "x"},
        },
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": "busybox:1",
                    "ports": [
                        {"containerPort": 80, "hostPort": 8080},
                        {"containerPort": 53, "protocol": "UDP"},
                    ],
                }
            ],
            **spec,
        },
    }


def test_sandbox_config() -> None:
    pod = _pod(
        securityContext={
            "runAsUser": 1000,
            "fsGroup": 2000,
            "sysctls": [{"name": "net.core.somaxconn", "value": "1024"}],
        },
        hostPID=True,
    )
    config = sandbox_config(
        pod,
        SandboxInputs(
            attempt=2,
            hostname="web",
            log_directory="/logs/prod_web_u1",
            cgroup_parent="/kubepods/besteffort/podu1",
            dns=api_pb2.DNSConfig(servers=["10.96.0.10"]),
        ),
    )
    assert (
        config.metadata.name,
        config.metadata.namespace,
        config.metadata.uid,
        config.metadata.attempt,
    ) == ("web", "prod", "u1", 2)
    assert config.labels == {
        "app": "web",
        "io.kubernetes.pod.name": "web",
        "io.kubernetes.pod.namespace": "prod",
        "io.kubernetes.pod.uid": "u1",
    }
    assert config.hostname == "web" and config.log_directory == "/logs/prod_web_u1"
    assert list(config.dns_config.servers) == ["10.96.0.10"]
    assert [(p.container_port, p.host_port, p.protocol) for p in config.port_mappings] == [
        (80, 8080, api_pb2.TCP),
        (53, 0, api_pb2.UDP),
    ]
    linux = config.linux
    assert linux.cgroup_parent == "/kubepods/besteffort/podu1"
    assert linux.security_context.namespace_options.pid == api_pb2.NODE
    assert linux.security_context.namespace_options.network == api_pb2.POD
    assert linux.security_context.run_as_user.value == 1000
    assert list(linux.security_context.supplemental_groups) == [2000]
    assert dict(linux.sysctls) == {"net.core.somaxconn": "1024"}


def _container(pod: dict[str, Any], **fields: Any) -> api_pb2.ContainerConfig:
    container = {**pod["spec"]["containers"][0], **fields}
    pod["spec"]["containers"] = [container]
    return container_config(
        pod,
        container,
        ContainerInputs(
            restart_count=3,
            init=False,
            image="busybox:1",
            envs=[api_pb2.KeyValue(key="A", value=b"1")],
            mounts=[api_pb2.Mount(container_path="/data", host_path="/v/data")],
            termination_message_host_path="/pods/u1/containers/main/abc",
            memory_capacity=1 << 30,
        ),
    )


def test_container_config() -> None:
    pod = _pod()
    config = _container(
        pod,
        command=["sh"],
        args=["-c", "true"],
        workingDir="/w",
        tty=True,
        resources={
            "requests": {"cpu": "500m", "memory": "32Mi"},
            "limits": {"cpu": "1", "memory": "64Mi"},
        },
        securityContext={
            "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "runAsGroup": 5,
        },
        terminationMessagePath="/tmp/msg",
    )
    assert (config.metadata.name, config.metadata.attempt) == ("main", 3)
    assert config.image.image == "busybox:1" and config.image.user_specified_image == "busybox:1"
    assert list(config.command) == ["sh"] and list(config.args) == ["-c", "true"]
    assert config.working_dir == "/w" and config.tty and config.log_path == "main/3.log"
    assert [m.container_path for m in config.mounts] == ["/data", "/tmp/msg"]
    assert config.mounts[1].host_path == "/pods/u1/containers/main/abc"
    assert config.labels["io.kubernetes.container.name"] == "main"
    assert config.annotations["io.kubernetes.container.restartCount"] == "3"
    assert config.annotations["io.kubernetes.container.hash"]
    resources = config.linux.resources
    assert (resources.cpu_shares, resources.cpu_quota, resources.cpu_period) == (
        512,
        100_000,
        100_000,
    )
    assert resources.memory_limit_in_bytes == 64 << 20
    assert resources.oom_score_adj == 1000 - (1000 * (32 << 20)) // (1 << 30)  # Burstable
    security = config.linux.security_context
    assert list(security.capabilities.add_capabilities) == ["NET_ADMIN"]
    assert list(security.capabilities.drop_capabilities) == ["ALL"]
    assert security.readonly_rootfs and security.no_new_privs
    assert security.run_as_group.value == 5 and not security.HasField("run_as_user")
    assert "/proc/kcore" in security.masked_paths and "/proc/sys" in security.readonly_paths
    assert security.seccomp.profile_type == api_pb2.SecurityProfile.Unconfined


def test_privileged_container_has_no_masked_paths() -> None:
    security = _container(_pod(), securityContext={"privileged": True}).linux.security_context
    assert security.privileged and not security.masked_paths and not security.no_new_privs


def test_grace_period_and_non_root_checks() -> None:
    pod = _pod(terminationGracePeriodSeconds=5)
    assert grace_period(pod) == 5
    pod["metadata"]["deletionGracePeriodSeconds"] = 1
    assert grace_period(pod) == 1
    assert grace_period(_pod()) == 30
    root = {"name": "c", "securityContext": {"runAsNonRoot": True, "runAsUser": 0}}
    assert "non-root" in run_as_non_root_violation(_pod(), root)
    assert run_as_non_root_violation(_pod(), {"name": "c"}) == ""


def test_qos_level_shares(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    cgroups = PodCgroups(tmp_path)
    cgroups.ensure_qos("/r", burstable_shares=1536)
    assert (tmp_path / "cpu/r/kubepods/besteffort/cpu.shares").read_text() == "2"
    burstable = tmp_path / "cpu/r/kubepods/burstable/cpu.shares"
    assert burstable.read_text() == "1536"
    burstable.write_text("999")
    cgroups.ensure_qos("/r", burstable_shares=1536)
    assert burstable.read_text() == "999"  # unchanged values are not written again
    cgroups.ensure_qos("/r", burstable_shares=0)
    assert burstable.read_text() == "2"
