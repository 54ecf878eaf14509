"""CRI requests to OCI runtime configs (config.json dicts), the way containerd's CRI
plugin builds them (internal/cri/server/container_create_linux.go, podsandbox/
sandbox_run_linux.go, internal/cri/opts and pkg/oci spec opts).

What it owns: :func:`container_spec` (CreateContainer) and :func:`sandbox_spec` (the
sandbox's pause container), the small values they take (:class:`SandboxInfo`,
:class:`HostFacts`, :class:`UserDB`, :class:`DeviceInfo`), and every check of the
request on the way, raising :class:`cri.errors.InvalidArgument` with the CRI field path
(``config.mounts[2].container_path: must be absolute``). What it doesn't: reading the
rootfs's /etc/passwd and /etc/group (the caller parses them into a :class:`UserDB`),
stat-ing devices or loading seccomp profiles (callables passed in), creating mount
sources or resolving their symlinks, listing the host's devices for privileged
containers (see :func:`wants_host_devices`), writing the bundle.

Pure: no I/O beyond the callables passed in, and the result depends only on the
arguments (``HostFacts()`` fills its defaults from ``uname``). Every spec produced passes
``runtime.spec.validate`` when the namespace paths it names exist.

The steps follow containerd's order, which matters in three places: capabilities are
final before the RuntimeDefault seccomp profile is built from the bounding set;
``privileged`` overrides add/drop, masked paths and sysfs/cgroupfs read-only after they
are applied; the user (and so the additional gids) is resolved last, after the
supplemental groups, so ``WithUser``'s reset of the gid list is reproduced.

Deliberate differences from containerd, each because kubeling cannot or should not
copy it:

- Masked and read-only paths: containerd (since 1.5) starts from empty lists and uses
  the request's; here an empty list in the request means containerd's default lists
  (``pkg/oci`` ``populateDefaultUnixSpec``), as proto3 cannot tell empty from unset.
  The kubelet always sends the lists, so this only matters for other clients.
- Environment: containerd can emit a key twice when the image and the request both
  set one the defaults lack (runc then keeps the last); here the later value replaces
  the earlier one in place, which is what runs either way.
- Unknown capability names are refused (runc ignores them with a warning); a
  ``CAP_`` prefix in the request is accepted.
- Not supported, refused with the field named: user namespaces (``userns_options``
  mode POD), id-mapped mounts, image volume mounts, recursive read-only mounts
  (kubeling's runtime has no ``rro``), CDI devices.
- Image ``VOLUME``\\ s are not turned into anonymous volumes here (containerd makes a
  host directory per volume under the container's root); the caller adds them as
  CRI mounts if it wants them.
- ``runAsNonRoot`` is a kubelet check the CRI does not carry; ``container_spec`` does
  it when asked (``run_as_non_root=True``), against the resolved uid.

Layout: this module holds the two entry points, the annotations and the skeleton
both specs start from; the rest is by concern: :mod:`.inputs` (the values passed in,
and how a bad request is refused), :mod:`.process` (args, working directory,
environment), :mod:`.mounts` (mounts, propagation, the sandbox's /etc files,
devices), :mod:`.security` (capabilities, seccomp, AppArmor, masked and read-only
paths), :mod:`.resources` (linux resources, cgroup paths), :mod:`.namespaces`
(namespaces, sysctls) and :mod:`.users` (/etc/passwd and /etc/group, the user and
groups, ``runAsNonRoot``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cri.api import api_pb2
from cri.oci_spec.inputs import _SC, DeviceInfo, HostFacts, SandboxInfo, _fail
from cri.oci_spec.mounts import (
    DEV_SHM,
    RESOLV_CONF,
    _container_mounts,
    _default_mounts,
    _devices,
    _writable_sys,
)
from cri.oci_spec.namespaces import (
    HOST,
    _default_namespaces,
    _no_user_namespace,
    _pod_namespaces,
    _sandbox_sysctls,
)
from cri.oci_spec.process import (
    DEFAULT_PATH_ENV,
    _config_env,
    _container_args,
    _image_env,
    _image_name,
    _image_working_dir,
    _merge_env,
    _working_dir,
)
from cri.oci_spec.resources import _cgroup_parent, _cgroups_path, _oom_score_adj, _resources
from cri.oci_spec.security import (
    ALL_CAPABILITIES as ALL_CAPABILITIES,
)
from cri.oci_spec.security import (
    DEFAULT_APPARMOR_PROFILE,
    DEFAULT_CAPABILITIES,
    DEFAULT_MASKED_PATHS,
    DEFAULT_READONLY_PATHS,
    _apparmor,
    _capabilities,
    _paths,
    _seccomp,
    _set_capabilities,
)
from cri.oci_spec.users import (
    GroupEntry,
    PasswdEntry,
    UserDB,
    _check_non_root,
    _container_user,
    _resolve_user,
    _supplemental_groups,
    _user,
    _user_string,
)
from images.metadata import Image

__all__ = [
    "DEFAULT_APPARMOR_PROFILE",
    "DEFAULT_CAPABILITIES",
    "DEFAULT_MASKED_PATHS",
    "DEFAULT_READONLY_PATHS",
    "HOST",
    "DeviceInfo",
    "GroupEntry",
    "HostFacts",
    "PasswdEntry",
    "SandboxInfo",
    "UserDB",
    "container_spec",
    "sandbox_spec",
    "wants_host_devices",
]

OCI_VERSION = "1.2.0"

SANDBOX_OOM_SCORE_ADJ = -998  # kubernetes#47938
SANDBOX_CPU_SHARES = 2

# Annotations (containerd internal/cri/annotations).
ANNOTATION_CONTAINER_TYPE = "io.kubernetes.cri.container-type"
ANNOTATION_SANDBOX_ID = "io.kubernetes.cri.sandbox-id"
ANNOTATION_SANDBOX_NAMESPACE = "io.kubernetes.cri.sandbox-namespace"
ANNOTATION_SANDBOX_UID = "io.kubernetes.cri.sandbox-uid"
ANNOTATION_SANDBOX_NAME = "io.kubernetes.cri.sandbox-name"
ANNOTATION_SANDBOX_LOG_DIR = "io.kubernetes.cri.sandbox-log-directory"
ANNOTATION_SANDBOX_IMAGE_NAME = "io.kubernetes.cri.podsandbox.image-name"
ANNOTATION_CONTAINER_NAME = "io.kubernetes.cri.container-name"
ANNOTATION_IMAGE_NAME = "io.kubernetes.cri.image-name"
ANNOTATION_SANDBOX_CPU_PERIOD = "io.kubernetes.cri.sandbox-cpu-period"
ANNOTATION_SANDBOX_CPU_QUOTA = "io.kubernetes.cri.sandbox-cpu-quota"
ANNOTATION_SANDBOX_CPU_SHARES = "io.kubernetes.cri.sandbox-cpu-shares"
ANNOTATION_SANDBOX_MEMORY = "io.kubernetes.cri.sandbox-memory"


def wants_host_devices(config: api_pb2.ContainerConfig) -> bool:
    """Whether the caller should add every host device to ``linux.devices`` (containerd
    ``WithHostDevices``): privileged containers get them, and their cgroup allows all."""
    return config.linux.security_context.privileged


# ---- container_spec ----------------------------------------------------------------------


def container_spec(
    *,
    container_id: str,
    config: api_pb2.ContainerConfig,
    sandbox: SandboxInfo,
    image: Image,
    rootfs: str,
    users: UserDB,
    stat_device: Callable[[str], DeviceInfo],
    load_seccomp: Callable[[str], dict[str, Any]],
    run_as_non_root: bool = False,
) -> dict[str, Any]:
    """The config.json for a container of ``sandbox`` (containerd ``buildLinuxSpec``
    followed by ``platformSpecOpts``)."""
    _container_metadata(config)
    sc = config.linux.security_context
    privileged = sc.privileged
    if privileged and not sandbox.privileged:
        _fail(f"{_SC}.privileged", "no privileged container allowed in a sandbox that is not")
    if config.CDI_devices:
        _fail("config.CDI_devices", "CDI devices are not supported")
    image_name = _image_name(config, image)
    spec = _base_spec(rootfs)
    process = spec["process"]
    linux = spec["linux"]

    process["args"] = _container_args(config, image, image_name)
    process["noNewPrivileges"] = False  # WithNewPrivileges; no_new_privs decides below
    process["cwd"] = _working_dir(config, image, image_name)
    env = _merge_env([], [DEFAULT_PATH_ENV])
    if config.tty:
        process["terminal"] = True
        env.append("TERM=xterm")
    env = _merge_env(env, [f"HOSTNAME={sandbox.hostname}"])
    process["env"] = _merge_env(env, _image_env(image, image_name) + _config_env(config))

    namespaces = _default_namespaces()
    if sandbox.host.cgroup_v2 and not privileged:
        namespaces.append({"type": "cgroup"})
    spec["mounts"] = _container_mounts(config, sandbox, linux)
    linux["maskedPaths"] = _paths(sc.masked_paths, DEFAULT_MASKED_PATHS, f"{_SC}.masked_paths")
    linux["readonlyPaths"] = _paths(
        sc.readonly_paths, DEFAULT_READONLY_PATHS, f"{_SC}.readonly_paths"
    )
    _devices(config, linux, stat_device)
    caps = _capabilities(sc, sandbox.host.capabilities)
    if privileged:
        caps = list(sandbox.host.capabilities)  # WithPrivileged: after add/drop
        del linux["maskedPaths"], linux["readonlyPaths"]
        _writable_sys(spec["mounts"])
        linux["resources"]["devices"] = [{"allow": True, "access": "rwm"}]
    _set_capabilities(process, caps)
    if sc.no_new_privs:
        process["noNewPrivileges"] = True
    if sc.readonly_rootfs:
        spec["root"]["readonly"] = True
    if config.linux.HasField("resources"):
        _resources(config.linux.resources, linux["resources"], sandbox.host)
        process["oomScoreAdj"] = _oom_score_adj(config.linux.resources.oom_score_adj)
    linux["cgroupsPath"] = _cgroups_path(sandbox.cgroup_parent, container_id)
    linux["namespaces"] = _pod_namespaces(namespaces, sc.namespace_options, sandbox)
    spec["annotations"] = {
        ANNOTATION_SANDBOX_ID: sandbox.id,
        ANNOTATION_SANDBOX_NAMESPACE: sandbox.namespace,
        ANNOTATION_SANDBOX_UID: sandbox.uid,
        ANNOTATION_SANDBOX_NAME: sandbox.name,
        ANNOTATION_CONTAINER_NAME: config.metadata.name,
        ANNOTATION_IMAGE_NAME: image_name,
        ANNOTATION_CONTAINER_TYPE: "container",
    }

    # platformSpecOpts: user and groups, AppArmor, seccomp, applied over the above.
    uid, gid, gids, from_image = _container_user(sc, image, image_name, users)
    process["user"] = _user(uid, gid, gids)
    if run_as_non_root:
        _check_non_root(sc, uid, from_image=from_image)
    if sandbox.host.apparmor:
        profile = _apparmor(sc, privileged=privileged)
        if profile:
            process["apparmorProfile"] = profile
    if not privileged:
        seccomp = _seccomp(sc, _SC, caps, sandbox.host, load_seccomp)
        if seccomp is not None:
            linux["seccomp"] = seccomp
    return spec


def _container_metadata(config: api_pb2.ContainerConfig) -> None:
    if not config.HasField("metadata"):
        _fail("config.metadata", "required")
    if not config.metadata.name:
        _fail("config.metadata.name", "required")


# ---- sandbox_spec ------------------------------------------------------------------------


def sandbox_spec(
    *,
    sandbox_id: str,
    config: api_pb2.PodSandboxConfig,
    image: Image,
    rootfs: str,
    cgroup_parent: str,
    users: UserDB,
    load_seccomp: Callable[[str], dict[str, Any]],
    netns_path: str = "",
    shm_path: str = "",
    resolv_path: str = "",
    image_name: str = "",
    host: HostFacts | None = None,
    unprivileged_ports: bool = True,
    unprivileged_icmp: bool = True,
) -> dict[str, Any]:
    """The config.json of the sandbox's pause container (containerd
    ``sandboxContainerSpec`` then ``sandboxContainerSpecOpts``).

    New network (at ``netns_path`` when given), IPC, UTS, pid and mount namespaces
    unless the pod shares the host's (host network also means the host's UTS), the
    pause image's entrypoint and cmd, the pod's sysctls, a read-only rootfs, the
    default capabilities, oom_score_adj -998 and 2 cpu shares. ``shm_path`` and
    ``resolv_path`` are bind-mounted read-only when given. ``unprivileged_ports`` and
    ``unprivileged_icmp`` are containerd's ``enable_unprivileged_*`` (on by default
    since 2.0): they add their sysctls to pods with their own network.
    """
    host = host or HostFacts()
    _sandbox_metadata(config)
    sc = config.linux.security_context
    options = sc.namespace_options
    name = image_name or next(iter(image.repo_tags), "") or image.id
    spec = _base_spec(rootfs)
    process = spec["process"]
    linux = spec["linux"]

    process["env"] = _merge_env([], _image_env(image, name))
    spec["root"]["readonly"] = True
    process["cwd"] = _image_working_dir(image, name)
    args = list(image.config.entrypoint) + list(image.config.cmd)
    if not args:
        _fail(f"image {name}", "the sandbox image has no entrypoint or cmd")
    if not args[0]:
        _fail(f"image {name}: config.Entrypoint[0]", "must not be empty")
    process["args"] = args
    linux["cgroupsPath"] = _cgroups_path(_cgroup_parent(cgroup_parent), sandbox_id)

    where = "config.linux.security_context.namespace_options"
    host_network = options.network == api_pb2.NODE
    paths = {"network": HOST if host_network else netns_path}
    if host_network:
        paths["uts"] = HOST
    for kind, mode in (("network", options.network), ("pid", options.pid), ("ipc", options.ipc)):
        if mode == api_pb2.NODE:
            paths[kind] = HOST
        elif mode not in (api_pb2.POD, api_pb2.CONTAINER):
            _fail(f"{where}.{kind}", f"unsupported namespace mode {mode}")
    _no_user_namespace(options, where)
    linux["namespaces"] = [
        {"type": ns["type"], "path": paths[ns["type"]]} if paths.get(ns["type"]) else ns
        for ns in _default_namespaces()
        if paths.get(ns["type"]) != HOST
    ]
    if config.hostname and not host_network:
        spec["hostname"] = config.hostname  # without a UTS namespace of its own: none

    shm = DEV_SHM if options.ipc == api_pb2.NODE else shm_path
    mounts = [m for m in _default_mounts() if not (shm and m["destination"] == DEV_SHM)]
    read_only = ["rbind", "ro", "nosuid", "nodev", "noexec"]
    if shm:
        mounts.append(
            {"destination": DEV_SHM, "type": "bind", "source": shm, "options": list(read_only)}
        )
    if resolv_path:
        mounts.append(
            {
                "destination": RESOLV_CONF,
                "type": "bind",
                "source": resolv_path,
                "options": list(read_only),
            }
        )
    spec["mounts"] = mounts

    linux["sysctl"] = _sandbox_sysctls(
        config,
        host_network=host_network,
        host_ipc=options.ipc == api_pb2.NODE,
        unprivileged_ports=unprivileged_ports,
        unprivileged_icmp=unprivileged_icmp,
    )
    if not linux["sysctl"]:
        del linux["sysctl"]
    linux["resources"]["cpu"] = {"shares": SANDBOX_CPU_SHARES}
    process["oomScoreAdj"] = SANDBOX_OOM_SCORE_ADJ
    _set_capabilities(process, list(DEFAULT_CAPABILITIES))
    spec["annotations"] = _sandbox_annotations(sandbox_id, config, name)

    # sandboxContainerSpecOpts: seccomp, then the user (which resets the gid list).
    if not sc.privileged:
        seccomp = _seccomp(sc, _SC, DEFAULT_CAPABILITIES, host, load_seccomp)
        if seccomp is not None:
            linux["seccomp"] = seccomp
    gids = _supplemental_groups(sc.supplemental_groups, f"{_SC}.supplemental_groups")
    userstr, where = _user_string(
        "",
        sc.run_as_user.value if sc.HasField("run_as_user") else None,
        sc.run_as_group.value if sc.HasField("run_as_group") else None,
    )
    if not userstr:
        userstr, where = image.config.user, f"image {name}: config.User"
    uid = gid = 0
    if userstr:
        uid, gid = _resolve_user(userstr, users, where)
        gids = [gid]
    process["user"] = _user(uid, gid, sorted(set(gids)))
    return spec


def _sandbox_metadata(config: api_pb2.PodSandboxConfig) -> None:
    if not config.HasField("metadata"):
        _fail("config.metadata", "required")
    if not config.metadata.name:
        _fail("config.metadata.name", "required")


def _sandbox_annotations(
    sandbox_id: str, config: api_pb2.PodSandboxConfig, image_name: str
) -> dict[str, str]:
    annotations = {}
    if config.linux.HasField("resources"):
        res = config.linux.resources
        annotations.update(
            {
                ANNOTATION_SANDBOX_CPU_PERIOD: str(res.cpu_period),
                ANNOTATION_SANDBOX_CPU_QUOTA: str(res.cpu_quota),
                ANNOTATION_SANDBOX_CPU_SHARES: str(res.cpu_shares),
                ANNOTATION_SANDBOX_MEMORY: str(res.memory_limit_in_bytes),
            }
        )
    annotations.update(
        {
            ANNOTATION_SANDBOX_ID: sandbox_id,
            ANNOTATION_SANDBOX_NAMESPACE: config.metadata.namespace,
            ANNOTATION_SANDBOX_UID: config.metadata.uid,
            ANNOTATION_SANDBOX_NAME: config.metadata.name,
            ANNOTATION_SANDBOX_LOG_DIR: config.log_directory,
            ANNOTATION_SANDBOX_IMAGE_NAME: image_name,
            ANNOTATION_CONTAINER_TYPE: "sandbox",
        }
    )
    return annotations


# ---- shared ------------------------------------------------------------------------------


def _base_spec(rootfs: str) -> dict[str, Any]:
    """pkg/oci ``populateDefaultUnixSpec`` after ``WithoutDefaultSecuritySettings``
    (no rlimits, seccomp or AppArmor) and ``WithoutRunMount``; mounts, namespaces and
    capabilities are filled in by the callers."""
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "user": {"uid": 0, "gid": 0},
            "args": [],
            "env": [],
            "cwd": "/",
            "noNewPrivileges": True,
        },
        "root": {"path": rootfs, "readonly": False},
        "mounts": [],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": _default_namespaces(),
            "maskedPaths": list(DEFAULT_MASKED_PATHS),
            "readonlyPaths": list(DEFAULT_READONLY_PATHS),
        },
    }
