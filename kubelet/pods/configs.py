"""The CRI configurations of a pod's sandbox and containers, built from the pod spec
(the kubelet's generatePodSandboxConfig and generateContainerConfig). Pure: the
caller supplies what needs I/O (DNS, environment, mounts, the image).

Labels find the objects again (io.kubernetes.pod.*, io.kubernetes.container.name);
annotations carry what the kubelet must remember across its own restarts: the
container's restart count, spec hash, type (init or app), termination message path
and policy, and the pod's grace period.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cri.api import api_pb2
from kubelet.pods import runtime as labels
from kubelet.pods.actions import container_hash
from kubelet.pods.qos import container_resources

# The kubelet's defaults for non-privileged containers (securitycontext.DefaultProcMount).
DEFAULT_MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
)  # fmt: skip
DEFAULT_READONLY_PATHS = (
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
)  # fmt: skip
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
DEFAULT_GRACE_PERIOD = 30

_PROTOCOLS = {"TCP": api_pb2.TCP, "UDP": api_pb2.UDP, "SCTP": api_pb2.SCTP}


def meta(pod: dict[str, Any]) -> dict[str, Any]:
    return dict(pod.get("metadata") or {})


def spec(pod: dict[str, Any]) -> dict[str, Any]:
    return dict(pod.get("spec") or {})


def pod_full_name(pod: dict[str, Any]) -> str:
    """<name>_<namespace>, the kubelet's name for a pod in messages."""
    m = meta(pod)
    return f"{m.get('name')}_{m.get('namespace') or 'default'}"


def pod_log_dir_name(pod: dict[str, Any]) -> str:
    """<namespace>_<name>_<uid>, the directory of the pod's container logs (as
    /var/log/pods/<namespace>_<name>_<uid>)."""
    m = meta(pod)
    return f"{m.get('namespace') or 'default'}_{m.get('name')}_{m.get('uid')}"


def grace_period(pod: dict[str, Any]) -> int:
    """The grace period of a stop: the deletion's when the pod is being deleted, else
    the spec's terminationGracePeriodSeconds (30 by default)."""
    given = meta(pod).get("deletionGracePeriodSeconds")
    if given is None:
        given = spec(pod).get("terminationGracePeriodSeconds")
    if given is None:
        return DEFAULT_GRACE_PERIOD
    return max(0, int(given))


def _sandbox_namespaces(pod: dict[str, Any]) -> api_pb2.NamespaceOption:
    s = spec(pod)
    return api_pb2.NamespaceOption(
        network=api_pb2.NODE if s.get("hostNetwork") else api_pb2.POD,
        pid=api_pb2.NODE if s.get("hostPID")
        else api_pb2.POD if s.get("shareProcessNamespace") else api_pb2.CONTAINER,
        ipc=api_pb2.NODE if s.get("hostIPC") else api_pb2.POD,
    )  # fmt: skip


def _profile(given: dict[str, Any] | None) -> api_pb2.SecurityProfile:
    """A seccomp profile; none given is Unconfined, as the kubelet sends without
    SeccompDefault."""
    kind = (given or {}).get("type", "Unconfined")
    if kind == "RuntimeDefault":
        return api_pb2.SecurityProfile(profile_type=api_pb2.SecurityProfile.RuntimeDefault)
    if kind == "Localhost":
        return api_pb2.SecurityProfile(
            profile_type=api_pb2.SecurityProfile.Localhost,
            localhost_ref=str((given or {}).get("localhostProfile", "")),
        )
    return api_pb2.SecurityProfile(profile_type=api_pb2.SecurityProfile.Unconfined)


def port_mappings(pod: dict[str, Any]) -> list[api_pb2.PortMapping]:
    mappings = []
    for container in spec(pod).get("containers") or []:
        for port in container.get("ports") or []:
            if not port.get("containerPort"):
                continue
            mappings.append(
                api_pb2.PortMapping(
                    protocol=_PROTOCOLS.get(str(port.get("protocol", "TCP")), api_pb2.TCP),
                    container_port=int(port["containerPort"]),
                    host_port=int(port.get("hostPort") or 0),
                    host_ip=str(port.get("hostIP") or ""),
                )
            )
    return mappings


def _supplemental_groups(pod_sc: dict[str, Any]) -> list[int]:
    groups = [int(g) for g in pod_sc.get("supplementalGroups") or []]
    if pod_sc.get("fsGroup") is not None and int(pod_sc["fsGroup"]) not in groups:
        groups.append(int(pod_sc["fsGroup"]))
    return groups


@dataclass(frozen=True, slots=True)
class SandboxInputs:
    attempt: int
    hostname: str
    log_directory: str
    cgroup_parent: str
    dns: api_pb2.DNSConfig


def sandbox_config(pod: dict[str, Any], inputs: SandboxInputs) -> api_pb2.PodSandboxConfig:
    m, s = meta(pod), spec(pod)
    pod_sc = dict(s.get("securityContext") or {})
    privileged = any(
        (c.get("securityContext") or {}).get("privileged")
        for c in list(s.get("containers") or []) + list(s.get("initContainers") or [])
    )
    security = api_pb2.LinuxSandboxSecurityContext(
        namespace_options=_sandbox_namespaces(pod),
        privileged=bool(privileged),
        supplemental_groups=_supplemental_groups(pod_sc),
        seccomp=_profile(pod_sc.get("seccompProfile")),
    )
    if pod_sc.get("runAsUser") is not None:
        security.run_as_user.value = int(pod_sc["runAsUser"])
    if pod_sc.get("runAsGroup") is not None:
        security.run_as_group.value = int(pod_sc["runAsGroup"])
    sysctls = {str(x["name"]): str(x.get("value", "")) for x in pod_sc.get("sysctls") or []}
    sandbox_labels = {
        **{str(k): str(v) for k, v in (m.get("labels") or {}).items()},
        labels.POD_NAME_LABEL: str(m.get("name")),
        labels.POD_NAMESPACE_LABEL: str(m.get("namespace") or "default"),
        labels.POD_UID_LABEL: str(m.get("uid")),
    }
    return api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(
            name=str(m.get("name")),
            uid=str(m.get("uid")),
            namespace=str(m.get("namespace") or "default"),
            attempt=inputs.attempt,
        ),
        hostname="" if s.get("hostNetwork") else inputs.hostname,
        log_directory=inputs.log_directory,
        dns_config=inputs.dns,
        port_mappings=port_mappings(pod),
        labels=sandbox_labels,
        annotations={str(k): str(v) for k, v in (m.get("annotations") or {}).items()},
        linux=api_pb2.LinuxPodSandboxConfig(
            cgroup_parent=inputs.cgroup_parent, security_context=security, sysctls=sysctls
        ),
    )


def _container_security(
    pod: dict[str, Any], container: dict[str, Any]
) -> api_pb2.LinuxContainerSecurityContext:
    pod_sc = dict(spec(pod).get("securityContext") or {})
    sc = dict(container.get("securityContext") or {})
    privileged = bool(sc.get("privileged"))
    capabilities = dict(sc.get("capabilities") or {})
    result = api_pb2.LinuxContainerSecurityContext(
        capabilities=api_pb2.Capability(
            add_capabilities=[str(c) for c in capabilities.get("add") or []],
            drop_capabilities=[str(c) for c in capabilities.get("drop") or []],
        ),
        privileged=privileged,
        namespace_options=_sandbox_namespaces(pod),
        readonly_rootfs=bool(sc.get("readOnlyRootFilesystem")),
        supplemental_groups=_supplemental_groups(pod_sc),
        # The kubelet sets no_new_privs only when privilege escalation is refused.
        no_new_privs=sc.get("allowPrivilegeEscalation") is False,
        seccomp=_profile(sc.get("seccompProfile") or pod_sc.get("seccompProfile")),
    )
    run_as_user = sc.get("runAsUser", pod_sc.get("runAsUser"))
    run_as_group = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
    if run_as_user is not None:
        result.run_as_user.value = int(run_as_user)
    if run_as_group is not None:
        result.run_as_group.value = int(run_as_group)
    if not privileged and sc.get("procMount") != "Unmasked":
        result.masked_paths.extend(DEFAULT_MASKED_PATHS)
        result.readonly_paths.extend(DEFAULT_READONLY_PATHS)
    return result


def run_as_non_root_violation(pod: dict[str, Any], container: dict[str, Any]) -> str:
    """The CreateContainerConfigError message when runAsNonRoot is asked for with an
    explicit user 0, else "" (an image's own user is checked by the runtime)."""
    pod_sc = dict(spec(pod).get("securityContext") or {})
    sc = dict(container.get("securityContext") or {})
    non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
    user = sc.get("runAsUser", pod_sc.get("runAsUser"))
    if non_root and user is not None and int(user) == 0:
        return "container's runAsUser breaks non-root policy"
    return ""


def _stop_signal(container: dict[str, Any]) -> int:
    name = str(((container.get("lifecycle") or {}).get("stopSignal")) or "")
    if not name:
        return api_pb2.RUNTIME_DEFAULT
    try:
        return int(api_pb2.Signal.Value(name))
    except ValueError:
        return api_pb2.RUNTIME_DEFAULT


@dataclass(frozen=True, slots=True)
class ContainerInputs:
    restart_count: int
    init: bool
    image: str  # what to run: the image as pulled
    envs: list[api_pb2.KeyValue]
    mounts: list[api_pb2.Mount]
    termination_message_host_path: str
    memory_capacity: int  # node memory in bytes, for the Burstable OOM score


def container_config(
    pod: dict[str, Any], container: dict[str, Any], inputs: ContainerInputs
) -> api_pb2.ContainerConfig:
    m = meta(pod)
    name = str(container["name"])
    resources = container_resources(pod, container, memory_capacity=inputs.memory_capacity)
    message_path = str(container.get("terminationMessagePath") or DEFAULT_TERMINATION_MESSAGE_PATH)
    mounts = list(inputs.mounts)
    if inputs.termination_message_host_path:
        mounts.append(
            api_pb2.Mount(
                container_path=message_path, host_path=inputs.termination_message_host_path
            )
        )
    container_labels = {
        labels.CONTAINER_NAME_LABEL: name,
        labels.POD_NAME_LABEL: str(m.get("name")),
        labels.POD_NAMESPACE_LABEL: str(m.get("namespace") or "default"),
        labels.POD_UID_LABEL: str(m.get("uid")),
    }
    annotations = {
        labels.CONTAINER_HASH_ANNOTATION: container_hash(container),
        labels.RESTART_COUNT_ANNOTATION: str(inputs.restart_count),
        labels.CONTAINER_TYPE_ANNOTATION: "init" if inputs.init else "app",
        labels.TERMINATION_MESSAGE_PATH_ANNOTATION: message_path,
        labels.TERMINATION_MESSAGE_POLICY_ANNOTATION: str(
            container.get("terminationMessagePolicy") or "File"
        ),
        labels.TERMINATION_MESSAGE_HOST_PATH_ANNOTATION: inputs.termination_message_host_path,
        labels.GRACE_PERIOD_ANNOTATION: str(grace_period(pod)),
    }
    return api_pb2.ContainerConfig(
        metadata=api_pb2.ContainerMetadata(name=name, attempt=inputs.restart_count),
        image=api_pb2.ImageSpec(image=inputs.image,
                                user_specified_image=str(container.get("image", ""))),
        command=[str(x) for x in container.get("command") or []],
        args=[str(x) for x in container.get("args") or []],
        working_dir=str(container.get("workingDir") or ""),
        envs=inputs.envs,
        mounts=mounts,
        labels=container_labels,
        annotations=annotations,
        log_path=f"{name}/{inputs.restart_count}.log",
        stdin=bool(container.get("stdin")),
        stdin_once=bool(container.get("stdinOnce")),
        tty=bool(container.get("tty")),
        linux=api_pb2.LinuxContainerConfig(
            resources=api_pb2.LinuxContainerResources(
                cpu_shares=resources.cpu_shares,
                cpu_quota=resources.cpu_quota,
                cpu_period=resources.cpu_period,
                memory_limit_in_bytes=resources.memory_limit_in_bytes,
                oom_score_adj=resources.oom_score_adj,
            ),
            security_context=_container_security(pod, container),
        ),
        stop_signal=_stop_signal(container),  # type: ignore[arg-type]
    )  # fmt: skip


def termination_message_dir(pod_dir: Path, container_name: str) -> Path:
    """Where the termination message files of a container's instances live."""
    return pod_dir / "containers" / container_name
