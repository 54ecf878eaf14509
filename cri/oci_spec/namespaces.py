"""Namespaces and the sysctls they allow: the default set, a container joining its
sandbox's network, IPC, UTS and pid namespaces per ``namespace_options``
(containerd ``WithPodNamespaces``; :data:`HOST` leaves one out), the refusal of user
namespaces, and the pod's sysctls checked against the namespaces it owns.
"""

from __future__ import annotations

from cri.api import api_pb2
from cri.oci_spec.inputs import _SC, SandboxInfo, _fail

HOST = "host"  # a SandboxInfo namespace that is the host's: the spec leaves it out

# Namespaced sysctls outside net.*: IPC (plus fs.mqueue.*) and UTS, as runc allows them.
_IPC_SYSCTLS = frozenset(
    {
        "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
        "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
    }
)  # fmt: skip
_UTS_SYSCTLS = frozenset({"kernel.hostname", "kernel.domainname"})


def _default_namespaces() -> list[dict[str, str]]:
    return [{"type": kind} for kind in ("pid", "ipc", "uts", "mount", "network")]


def _pod_namespaces(
    namespaces: list[dict[str, str]],
    options: api_pb2.NamespaceOption,
    sandbox: SandboxInfo,
) -> list[dict[str, str]]:
    """containerd ``WithPodNamespaces``: network, IPC and UTS are the sandbox's; the pid
    namespace per ``namespace_options.pid``. :data:`HOST` leaves a namespace out."""
    where = f"{_SC}.namespace_options"
    _no_user_namespace(options, where)
    paths = {"network": sandbox.network_ns, "ipc": sandbox.ipc_ns, "uts": sandbox.uts_ns}
    mode = options.pid
    if mode == api_pb2.POD:
        paths["pid"] = sandbox.pid_ns
    elif mode == api_pb2.NODE:
        paths["pid"] = HOST
    elif mode == api_pb2.TARGET:
        target = sandbox.container_pid_ns.get(options.target_id)
        if not options.target_id or not target:
            _fail(f"{where}.target_id", f"no container {options.target_id!r} in the sandbox")
        paths["pid"] = target
    elif mode != api_pb2.CONTAINER:
        _fail(f"{where}.pid", f"unknown namespace mode {mode}")
    out = []
    for namespace in namespaces:
        path = paths.get(namespace["type"], "")
        if path == HOST:
            continue
        out.append({"type": namespace["type"], "path": path} if path else namespace)
    return out


def _no_user_namespace(options: api_pb2.NamespaceOption, where: str) -> None:
    if options.HasField("userns_options") and options.userns_options.mode != api_pb2.NODE:
        _fail(f"{where}.userns_options", "user namespaces are not supported")


def _sandbox_sysctls(
    config: api_pb2.PodSandboxConfig,
    *,
    host_network: bool,
    host_ipc: bool,
    unprivileged_ports: bool,
    unprivileged_icmp: bool,
) -> dict[str, str]:
    where = "config.linux.sysctls"
    sysctls = dict(config.linux.sysctls)
    for key in sorted(sysctls):
        if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
            if host_ipc:
                _fail(where, f"{key} needs the pod's own IPC namespace, not the host's")
        elif key.startswith("net."):
            if host_network:
                _fail(where, f"{key} needs the pod's own network namespace, not the host's")
        elif key in _UTS_SYSCTLS:
            if host_network:
                _fail(where, f"{key} needs the pod's own UTS namespace, not the host's")
        else:
            _fail(where, f"{key} is not namespaced")
    if not host_network:
        if unprivileged_ports:
            sysctls.setdefault("net.ipv4.ip_unprivileged_port_start", "0")
        if unprivileged_icmp:
            sysctls.setdefault("net.ipv4.ping_group_range", "0 2147483647")
    return sysctls
