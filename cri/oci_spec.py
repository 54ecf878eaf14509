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
"""

from __future__ import annotations

import platform
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn

from cri import seccomp_default
from cri.api import api_pb2
from cri.errors import InvalidArgument
from images.metadata import Image
from runtime.capabilities import CAPABILITY_NAMES, CAPABILITY_NUMBERS

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
HOST = "host"  # a SandboxInfo namespace that is the host's: the spec leaves it out
DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_CGROUP_PARENT = "/k8s.io"  # containerd's namespace, when the client gives none
SANDBOX_OOM_SCORE_ADJ = -998  # kubernetes#47938
SANDBOX_CPU_SHARES = 2
DEFAULT_APPARMOR_PROFILE = "cri-containerd.apparmor.d"  # RuntimeDefault; the caller loads it
MAX_ID = 2**31 - 1  # runc (and containerd) refuse uids and gids above MaxInt32

DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
    "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)  # fmt: skip
ALL_CAPABILITIES: tuple[str, ...] = CAPABILITY_NAMES
DEFAULT_MASKED_PATHS: tuple[str, ...] = (
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
    "/sys/devices/virtual/powercap", "/proc/scsi",
)  # fmt: skip
DEFAULT_READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
)  # fmt: skip

ETC_HOSTNAME = "/etc/hostname"
ETC_HOSTS = "/etc/hosts"
RESOLV_CONF = "/etc/resolv.conf"
DEV_SHM = "/dev/shm"

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

# Namespaced sysctls outside net.*: IPC (plus fs.mqueue.*) and UTS, as runc allows them.
_IPC_SYSCTLS = frozenset(
    {
        "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
        "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
    }
)  # fmt: skip
_UTS_SYSCTLS = frozenset({"kernel.hostname", "kernel.domainname"})

_SC = "config.linux.security_context"  # field prefix, for both kinds of config
_PROFILE_PREFIX = "localhost/"
_INT = re.compile(r"[+-]?[0-9]+")


# ---- inputs ------------------------------------------------------------------------------


def _running_kernel() -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", platform.release())
    return (int(match[1]), int(match[2])) if match else (0, 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class HostFacts:
    """What the spec depends on about the node, found out by the caller.

    ``cgroup_v2``: a unified hierarchy (unprivileged containers get a cgroup namespace).
    ``swap``: the memory controller limits swap (``memory.swap.max`` or ``memsw``).
    ``hugetlb``: the hugetlb controller exists (else hugepage limits are dropped, as
    containerd does with its default ``tolerate_missing_hugetlb_controller``).
    ``apparmor``: AppArmor is enabled; without it apparmor profiles are ignored.
    """

    machine: str = field(default_factory=platform.machine)
    kernel: tuple[int, int] = field(default_factory=_running_kernel)
    cgroup_v2: bool = True
    swap: bool = True
    hugetlb: bool = True
    apparmor: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SandboxInfo:
    """The sandbox a container joins, as the CRI server knows it.

    Namespace fields hold the path of the sandbox's namespace (an nsfs file or
    ``/proc/<pid>/ns/<kind>``) or :data:`HOST` when the pod shares the host's.
    ``hostname`` is the effective one (the pod's, else the node's): it becomes the
    container's ``HOSTNAME``. File paths left empty are not mounted (containerd skips
    the ones that do not exist). ``container_pid_ns`` maps the ids of the sandbox's
    containers to their pid namespaces, for ``namespace_options.pid = TARGET``.
    """

    id: str
    network_ns: str
    ipc_ns: str
    uts_ns: str
    pid_ns: str
    name: str = ""
    namespace: str = ""
    uid: str = ""
    cgroup_parent: str = ""
    hostname: str = ""
    hostname_path: str = ""
    hosts_path: str = ""
    resolv_path: str = ""
    shm_path: str = ""
    log_directory: str = ""
    privileged: bool = False
    container_pid_ns: Mapping[str, str] = field(default_factory=dict)
    host: HostFacts = field(default_factory=HostFacts)


@dataclass(frozen=True, slots=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int


@dataclass(frozen=True, slots=True)
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UserDB:
    """The rootfs's /etc/passwd and /etc/group; ``None`` when the file is absent."""

    passwd: tuple[PasswdEntry, ...] | None = None
    group: tuple[GroupEntry, ...] | None = None

    @classmethod
    def parse(cls, passwd: str | None, group: str | None) -> UserDB:
        """Parse file contents as runc's user package does: fields split on ``:``,
        surrounding blanks trimmed, blank lines (and here ``#`` comments) skipped, a
        number that does not parse read as 0."""
        users = None
        if passwd is not None:
            users = tuple(
                PasswdEntry(f[0], _number(f[2]), _number(f[3])) for f in _records(passwd, 7)
            )
        groups = None
        if group is not None:
            groups = tuple(
                GroupEntry(f[0], _number(f[2]), tuple(m for m in f[3].split(",") if m))
                for f in _records(group, 4)
            )
        return cls(users, groups)

    def user_by_name(self, name: str) -> PasswdEntry | None:
        return next((u for u in self.passwd or () if u.name == name), None)

    def user_by_uid(self, uid: int) -> PasswdEntry | None:
        return next((u for u in self.passwd or () if u.uid == uid), None)

    def group_by_name(self, name: str) -> GroupEntry | None:
        return next((g for g in self.group or () if g.name == name), None)

    def supplementary_gids(self, username: str) -> list[int]:
        """Groups listing ``username`` as a member, except its namesake group."""
        return [g.gid for g in self.group or () if g.name != username and username in g.members]


def _records(text: str, width: int) -> list[list[str]]:
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            fields = line.split(":")
            out.append(fields + [""] * (width - len(fields)))
    return out


def _number(text: str) -> int:
    return int(text) if _INT.fullmatch(text) else 0


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """A device node on the host, as ``stat_device`` reports it (after following
    symlinks): type ``c``, ``b`` or ``p``, numbers, permission bits and owner.
    ``stat_device`` raises OSError when the path cannot be stat-ed and ValueError
    when it is not a device node."""

    type: Literal["c", "b", "p"]
    major: int
    minor: int
    file_mode: int = 0o666
    uid: int = 0
    gid: int = 0


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
    caps = _capabilities(sc)
    if privileged:
        caps = list(ALL_CAPABILITIES)  # WithPrivileged: after add/drop
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


def _image_name(config: api_pb2.ContainerConfig, image: Image) -> str:
    """containerd: the user-specified image, else the image's first reference."""
    for name in (config.image.user_specified_image, *image.repo_tags, *image.repo_digests):
        if name:
            return name
    return config.image.image or image.id


def _container_args(config: api_pb2.ContainerConfig, image: Image, image_name: str) -> list[str]:
    """containerd ``WithProcessArgs`` (from moby): a command replaces the ENTRYPOINT and
    drops the CMD; args replace the CMD; an ENTRYPOINT of one empty string counts as
    none."""
    command, args = list(config.command), list(config.args)
    command_field, args_field = "config.command", "config.args"
    if not command:
        if not args:
            args, args_field = list(image.config.cmd), f"image {image_name}: config.Cmd"
        entrypoint = list(image.config.entrypoint)
        if entrypoint != [""]:
            command, command_field = entrypoint, f"image {image_name}: config.Entrypoint"
    if not command and not args:
        _fail("config.command", f"no command specified, and image {image_name} has none")
    first = f"{command_field}[0]" if command else f"{args_field}[0]"
    if not (command + args)[0]:
        _fail(first, "must not be empty")
    return command + args


def _working_dir(config: api_pb2.ContainerConfig, image: Image, image_name: str) -> str:
    if config.working_dir:
        if not config.working_dir.startswith("/"):
            _fail("config.working_dir", "must be absolute")
        return config.working_dir
    return _image_working_dir(image, image_name)


def _image_working_dir(image: Image, image_name: str) -> str:
    cwd = image.config.working_dir
    if not cwd:
        return "/"
    if not cwd.startswith("/"):
        _fail(f"image {image_name}: config.WorkingDir", f"{cwd!r} is not absolute")
    return cwd


def _image_env(image: Image, image_name: str) -> list[str]:
    for i, entry in enumerate(image.config.env):
        if entry.startswith("=") or "\0" in entry:
            _fail(f"image {image_name}: config.Env[{i}]", f"{entry!r} is not KEY=value")
    return list(image.config.env)


def _config_env(config: api_pb2.ContainerConfig) -> list[str]:
    out = []
    for i, kv in enumerate(config.envs):
        where = f"config.envs[{i}]"
        if not kv.key:
            _fail(f"{where}.key", "required")
        if "=" in kv.key or "\0" in kv.key:
            _fail(f"{where}.key", f"{kv.key!r} must not contain '=' or NUL")
        try:
            value = kv.value.decode()
        except UnicodeDecodeError:
            _fail(f"{where}.value", "is not valid UTF-8")
        if "\0" in value:
            _fail(f"{where}.value", "must not contain NUL")
        out.append(f"{kv.key}={value}")
    return out


def _merge_env(defaults: Sequence[str], overrides: Iterable[str]) -> list[str]:
    """containerd ``replaceOrAppendEnvValues``: an override replaces the entry with its
    key in place, or is appended; ``KEY`` without ``=`` unsets a default. Unlike
    containerd, appended keys are indexed too, so a later override replaces them."""
    results: list[str | None] = list(defaults)
    index = {e.partition("=")[0]: i for i, e in enumerate(defaults)}
    for value in overrides:
        key, eq, _ = value.partition("=")
        if not eq:
            if key in index:
                results[index.pop(key)] = None
            continue
        if key in index:
            results[index[key]] = value
        else:
            index[key] = len(results)
            results.append(value)
    return [e for e in results if e is not None]


def _default_namespaces() -> list[dict[str, str]]:
    return [{"type": kind} for kind in ("pid", "ipc", "uts", "mount", "network")]


def _container_mounts(
    config: api_pb2.ContainerConfig, sandbox: SandboxInfo, linux: dict[str, Any]
) -> list[dict[str, Any]]:
    """containerd ``WithMounts``: the default mounts (minus /run, plus a read-only
    cgroup mount) not overridden by a requested one (none under /dev if /dev is
    requested), then the CRI mounts and the sandbox files not already requested,
    sorted by depth (stable)."""
    sc = config.linux.security_context
    requested: list[tuple[str, api_pb2.Mount]] = []
    for i, mount in enumerate(config.mounts):
        requested.append((f"config.mounts[{i}]", mount))
    readonly = sc.readonly_rootfs
    shm = DEV_SHM if sc.namespace_options.ipc == api_pb2.NODE else sandbox.shm_path
    extras = (
        (ETC_HOSTNAME, sandbox.hostname_path, readonly),
        (ETC_HOSTS, sandbox.hosts_path, readonly),
        (RESOLV_CONF, sandbox.resolv_path, readonly),
        (DEV_SHM, shm, False),
    )
    cri_paths = {posixpath.normpath(m.container_path) for _, m in requested if m.container_path}
    for destination, source, ro in extras:
        if source and destination not in cri_paths:
            extra = api_pb2.Mount(container_path=destination, host_path=source, readonly=ro)
            requested.append((f"sandbox {destination}", extra))
    binds = [_bind_mount(where, mount, linux) for where, mount in requested]
    binds.sort(key=lambda m: posixpath.normpath(m["destination"]).count("/"))
    targets = {posixpath.normpath(m["destination"]) for m in binds}
    mounts = []
    for default in [*_default_mounts(), _cgroup_mount()]:
        destination = default["destination"]
        if destination in targets or ("/dev" in targets and destination.startswith("/dev/")):
            continue
        mounts.append(default)
    return mounts + binds


def _bind_mount(where: str, mount: api_pb2.Mount, linux: dict[str, Any]) -> dict[str, Any]:
    if not mount.container_path.startswith("/"):
        _fail(f"{where}.container_path", "must be absolute")
    if mount.HasField("image") and mount.image.image:
        _fail(f"{where}.image", "image volume mounts are not supported")
    if not mount.host_path:
        _fail(f"{where}.host_path", "required")
    if not mount.host_path.startswith("/"):
        _fail(f"{where}.host_path", "must be absolute")
    if mount.uidMappings or mount.gidMappings:
        _fail(f"{where}.uidMappings", "id-mapped mounts are not supported")
    options = ["rbind"]
    propagation = mount.propagation
    if propagation == api_pb2.PROPAGATION_PRIVATE:
        options.append("rprivate")
    elif propagation == api_pb2.PROPAGATION_BIDIRECTIONAL:
        options.append("rshared")
        linux["rootfsPropagation"] = "rshared"
    elif propagation == api_pb2.PROPAGATION_HOST_TO_CONTAINER:
        options.append("rslave")
        if linux.get("rootfsPropagation") not in ("rshared", "rslave"):
            linux["rootfsPropagation"] = "rslave"
    else:
        _fail(f"{where}.propagation", f"unknown propagation {propagation}")
    if mount.recursive_read_only:
        if not mount.readonly:
            _fail(f"{where}.recursive_read_only", "conflicts with a read-write mount")
        _fail(f"{where}.recursive_read_only", "recursive read-only mounts are not supported")
    options.append("ro" if mount.readonly else "rw")
    return {
        "destination": mount.container_path,
        "type": "bind",
        "source": mount.host_path,
        "options": options,
    }


def _default_mounts() -> list[dict[str, Any]]:
    """pkg/oci ``defaultMounts`` without /run (``WithoutRunMount``)."""
    return [
        {
            "destination": "/proc",
            "type": "proc",
            "source": "proc",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": DEV_SHM,
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"],
        },
    ]


def _cgroup_mount() -> dict[str, Any]:
    return {
        "destination": "/sys/fs/cgroup",
        "type": "cgroup",
        "source": "cgroup",
        "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
    }


def _writable_sys(mounts: list[dict[str, Any]]) -> None:
    """``WithWriteableSysfs`` and ``WithWriteableCgroupfs``."""
    for mount in mounts:
        if mount["type"] in ("sysfs", "cgroup"):
            mount["options"] = ["rw" if o == "ro" else o for o in mount["options"]]


def _paths(requested: Sequence[str], default: Sequence[str], where: str) -> list[str]:
    for i, path in enumerate(requested):
        if not path.startswith("/"):
            _fail(f"{where}[{i}]", "must be absolute")
    return list(requested or default)


def _devices(
    config: api_pb2.ContainerConfig,
    linux: dict[str, Any],
    stat_device: Callable[[str], DeviceInfo],
) -> None:
    """containerd ``WithDevices``: each device node and a cgroup rule allowing it."""
    devices: list[dict[str, Any]] = []
    rules = linux["resources"]["devices"]
    for i, device in enumerate(config.devices):
        where = f"config.devices[{i}]"
        host_path = device.host_path
        if not host_path.startswith("/"):
            _fail(f"{where}.host_path", "must be absolute")
        path = device.container_path or host_path
        if not path.startswith("/"):
            _fail(f"{where}.container_path", "must be absolute")
        access = device.permissions
        if not access or set(access) - set("rwm"):
            _fail(f"{where}.permissions", f"{access!r} is not a combination of r, w and m")
        try:
            info = stat_device(host_path)
        except OSError as e:
            _fail(f"{where}.host_path", f"{host_path}: {e.strerror or e}")
        except ValueError:
            _fail(f"{where}.host_path", f"{host_path} is not a device")
        devices.append(
            {
                "path": path,
                "type": info.type,
                "major": info.major,
                "minor": info.minor,
                "fileMode": info.file_mode,
                "uid": info.uid,
                "gid": info.gid,
            }
        )
        rules.append(
            {
                "allow": True,
                "type": info.type,
                "major": info.major,
                "minor": info.minor,
                "access": access,
            }
        )
    if devices:
        linux["devices"] = devices


def _capabilities(sc: api_pb2.LinuxContainerSecurityContext) -> list[str]:
    """containerd ``WithCapabilities``: ``ALL`` in add (then drop) replaces the set,
    then single names are added and dropped."""
    caps = list(DEFAULT_CAPABILITIES)
    if not sc.HasField("capabilities"):
        return caps
    add, drop = sc.capabilities.add_capabilities, sc.capabilities.drop_capabilities
    where = f"{_SC}.capabilities"
    if any(c.upper() == "ALL" for c in add):
        caps = list(ALL_CAPABILITIES)
    if any(c.upper() == "ALL" for c in drop):
        caps = []
    for i, name in enumerate(add):
        if name.upper() != "ALL":
            cap = _cap_name(name, f"{where}.add_capabilities[{i}]")
            if cap not in caps:
                caps.append(cap)
    for i, name in enumerate(drop):
        if name.upper() != "ALL":
            cap = _cap_name(name, f"{where}.drop_capabilities[{i}]")
            caps = [c for c in caps if c != cap]
    return caps


def _cap_name(name: str, where: str) -> str:
    upper = name.upper()
    cap = upper if upper.startswith("CAP_") else "CAP_" + upper
    if cap not in CAPABILITY_NUMBERS:
        _fail(where, f"unknown capability {name!r}")
    return cap


def _set_capabilities(process: dict[str, Any], caps: list[str]) -> None:
    """Bounding, effective and permitted alike; no inheritable or ambient
    (``WithoutAmbientCaps``); empty sets left out, as Go's omitempty does."""
    if caps:
        process["capabilities"] = {k: list(caps) for k in ("bounding", "effective", "permitted")}
    else:
        process["capabilities"] = {}


def _resources(
    resources: api_pb2.LinuxContainerResources, out: dict[str, Any], host: HostFacts
) -> None:
    """containerd ``WithResources``: zero means unset; the swap limit follows the memory
    limit unless given, where the kernel can limit swap."""
    where = "config.linux.resources"
    cpu: dict[str, Any] = {}
    memory: dict[str, Any] = {}
    if resources.cpu_period:
        cpu["period"] = _at_least(resources.cpu_period, 0, f"{where}.cpu_period")
    if resources.cpu_quota:
        cpu["quota"] = _at_least(resources.cpu_quota, -1, f"{where}.cpu_quota")
    if resources.cpu_shares:
        cpu["shares"] = _at_least(resources.cpu_shares, 0, f"{where}.cpu_shares")
    if resources.cpuset_cpus:
        cpu["cpus"] = resources.cpuset_cpus
    if resources.cpuset_mems:
        cpu["mems"] = resources.cpuset_mems
    limit = resources.memory_limit_in_bytes
    swap = resources.memory_swap_limit_in_bytes
    if limit:
        memory["limit"] = _at_least(limit, -1, f"{where}.memory_limit_in_bytes")
        if not swap and host.swap:
            memory["swap"] = limit
    if swap and host.swap:
        memory["swap"] = _at_least(swap, -1, f"{where}.memory_swap_limit_in_bytes")
    if cpu:
        out["cpu"] = cpu
    if memory:
        out["memory"] = memory
    hugepages = []
    for i, hugepage in enumerate(resources.hugepage_limits):
        if not hugepage.page_size:
            _fail(f"{where}.hugepage_limits[{i}].page_size", "required")
        hugepages.append({"pageSize": hugepage.page_size, "limit": hugepage.limit})
    if hugepages and host.hugetlb:
        out["hugepageLimits"] = hugepages
    if resources.unified:
        for key in resources.unified:
            if not key or "/" in key:
                _fail(f"{where}.unified", f"{key!r} is not a cgroup file name")
        out["unified"] = dict(resources.unified)


def _at_least(value: int, minimum: int, where: str) -> int:
    if value < minimum:
        _fail(where, f"{value} is below {minimum}")
    return value


def _oom_score_adj(value: int) -> int:
    if not -1000 <= value <= 1000:
        _fail("config.linux.resources.oom_score_adj", f"{value} is not in -1000..1000")
    return value


def _cgroups_path(parent: str, id_: str) -> str:
    return posixpath.normpath(posixpath.join(parent or DEFAULT_CGROUP_PARENT, id_))


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


# ---- users -------------------------------------------------------------------------------


def _container_user(
    sc: api_pb2.LinuxContainerSecurityContext, image: Image, image_name: str, users: UserDB
) -> tuple[int, int, list[int], bool]:
    """uid, gid, additional gids, and whether the user came from the image.

    containerd: ``WithUser`` on the request's user (``run_as_username`` or
    ``run_as_user``, with ``run_as_group``), else the image's USER; then, with the
    Merge policy, ``WithAdditionalGIDs`` (the groups of /etc/group listing the user)
    and the supplemental groups; with Strict, only the latter.
    """
    supplemental = _supplemental_groups(sc.supplemental_groups, f"{_SC}.supplemental_groups")
    userstr, where = _user_string(
        sc.run_as_username,
        sc.run_as_user.value if sc.HasField("run_as_user") else None,
        sc.run_as_group.value if sc.HasField("run_as_group") else None,
    )
    from_image = not userstr
    if from_image:
        userstr, where = image.config.user, f"image {image_name}: config.User"
    uid = gid = 0
    gids: set[int] = set()
    if userstr:
        uid, gid = _resolve_user(userstr, users, where)
        gids.add(gid)
    policy = sc.supplemental_groups_policy
    if policy == api_pb2.Merge:
        if sc.run_as_username:
            name = sc.run_as_username
        elif sc.HasField("run_as_user"):
            name = str(sc.run_as_user.value)
        else:
            name = image.config.user.partition(":")[0] or "0"
        gids.add(gid)
        gids.update(_image_groups(name, users))
    elif policy != api_pb2.Strict:
        _fail(f"{_SC}.supplemental_groups_policy", f"unknown policy {policy}")
    gids.update(supplemental)
    return uid, gid, sorted(gids), from_image


def _user_string(username: str, uid: int | None, gid: int | None) -> tuple[str, str]:
    """containerd ``GenerateUserString``: ``user[:group]`` from the request, and the
    field it came from."""
    user, where = "", ""
    if uid is not None:
        user, where = str(uid), f"{_SC}.run_as_user"
    if username:
        user, where = username, f"{_SC}.run_as_username"
    if not user:
        if gid is not None:
            _fail(f"{_SC}.run_as_group", f"group {gid} is specified without a user")
        return "", ""
    if gid is not None:
        return f"{user}:{gid}", where
    return user, where


def _resolve_user(userstr: str, users: UserDB, where: str) -> tuple[int, int]:
    """containerd ``WithUser``: ``uid`` (gid from /etc/passwd, else 0), ``name`` (uid
    and gid from /etc/passwd), ``uid:gid`` as given, ``name:group`` and the mixed forms
    looked up by name."""
    parts = userstr.split(":")
    if len(parts) == 1:
        uid = _id(parts[0], userstr, "uid", where)
        if uid is None:
            entry = _passwd_entry(users, userstr, where)
            return entry.uid, entry.gid
        found = users.user_by_uid(uid)
        return uid, found.gid if found else 0
    if len(parts) != 2:
        _fail(where, f"invalid user {userstr!r}")
    uid = _id(parts[0], userstr, "uid", where)
    gid = _id(parts[1], userstr, "gid", where)
    if uid is None and parts[0]:
        uid = _passwd_entry(users, parts[0], where).uid
    if gid is None and parts[1]:
        if users.group is None:
            _fail(where, f"group {parts[1]!r}: the image has no /etc/group")
        group = users.group_by_name(parts[1])
        if group is None:
            _fail(where, f"group {parts[1]!r} not found in the image's /etc/group")
        gid = group.gid
    return uid or 0, gid or 0


def _id(text: str, userstr: str, kind: str, where: str) -> int | None:
    """A numeric id (Go ``strconv.Atoi``), None for a name; out of range is an error."""
    if not _INT.fullmatch(text):
        return None
    value = int(text)
    if not 0 <= value <= MAX_ID:
        _fail(where, f"invalid user {userstr!r}: {kind} out of range")
    return value


def _passwd_entry(users: UserDB, name: str, where: str) -> PasswdEntry:
    if users.passwd is None:
        _fail(where, f"user {name!r}: the image has no /etc/passwd")
    entry = users.user_by_name(name)
    if entry is None:
        _fail(where, f"user {name!r} not found in the image's /etc/passwd")
    return entry


def _image_groups(user: str, users: UserDB) -> list[int]:
    """oci ``WithAdditionalGIDs``: a numeric user is named through /etc/passwd (none
    found: no groups); then the groups of /etc/group that list that name."""
    if _INT.fullmatch(user):
        entry = users.user_by_uid(int(user))
        if entry is None:
            return []
        user = entry.name
    return users.supplementary_gids(user)


def _supplemental_groups(groups: Sequence[int], where: str) -> list[int]:
    for i, gid in enumerate(groups):
        if not 0 <= gid < 2**32:
            _fail(f"{where}[{i}]", f"gid {gid} out of range")
    return list(groups)


def _user(uid: int, gid: int, gids: Sequence[int]) -> dict[str, Any]:
    user: dict[str, Any] = {"uid": uid, "gid": gid}
    if gids:
        user["additionalGids"] = list(gids)
    return user


def _check_non_root(
    sc: api_pb2.LinuxContainerSecurityContext, uid: int, *, from_image: bool
) -> None:
    """The kubelet's ``verifyRunAsNonRoot``, on the resolved uid."""
    if uid != 0:
        return
    if from_image:
        _fail("run_as_non_root", "image will run as root")
    if sc.run_as_username:
        _fail("run_as_non_root", f"run_as_username {sc.run_as_username!r} runs as root")
    _fail("run_as_non_root", "run_as_user 0 breaks the non-root policy")


# ---- security profiles -------------------------------------------------------------------


def _seccomp(
    sc: api_pb2.LinuxContainerSecurityContext | api_pb2.LinuxSandboxSecurityContext,
    prefix: str,
    caps: Sequence[str],
    host: HostFacts,
    load_seccomp: Callable[[str], dict[str, Any]],
) -> dict[str, Any] | None:
    """containerd ``GenerateSeccompSpecOpts`` (the caller skips privileged ones): the
    ``seccomp`` profile, else the deprecated ``seccomp_profile_path``, else none."""
    where = f"{prefix}.seccomp"
    kind: int
    if sc.HasField("seccomp"):
        kind, ref = sc.seccomp.profile_type, sc.seccomp.localhost_ref
    elif sc.seccomp_profile_path:
        where = f"{prefix}.seccomp_profile_path"
        kind, ref = _profile_from_path(sc.seccomp_profile_path, where)
    else:
        return None
    if kind != api_pb2.SecurityProfile.Localhost and ref:
        _fail(f"{where}.localhost_ref", "must only be set when profile_type is Localhost")
    if kind == api_pb2.SecurityProfile.Unconfined:
        return None
    if kind == api_pb2.SecurityProfile.RuntimeDefault:
        return seccomp_default.default_profile(caps, machine=host.machine, kernel=host.kernel)
    if kind != api_pb2.SecurityProfile.Localhost:
        _fail(f"{where}.profile_type", f"unknown profile type {kind}")
    path = ref.removeprefix(_PROFILE_PREFIX)
    if not path.startswith("/"):
        _fail(f"{where}.localhost_ref", f"{ref!r} is not an absolute path")
    try:
        profile = load_seccomp(path)
    except OSError as e:
        _fail(f"{where}.localhost_ref", f"cannot load seccomp profile {path}: {e.strerror or e}")
    except ValueError as e:
        _fail(f"{where}.localhost_ref", f"decoding seccomp profile {path} failed: {e}")
    if not isinstance(profile, dict):
        _fail(f"{where}.localhost_ref", f"seccomp profile {path} is not a JSON object")
    return _oci_seccomp(profile)


_SECCOMP_KEYS = (
    "defaultAction", "defaultErrnoRet", "architectures", "flags", "listenerPath",
    "listenerMetadata", "syscalls",
)  # fmt: skip
_SYSCALL_KEYS = ("names", "action", "errnoRet", "args")


def _oci_seccomp(profile: Mapping[str, Any]) -> dict[str, Any]:
    """What Go's json.Unmarshal into ``specs.LinuxSeccomp`` keeps: the OCI fields,
    nothing else (a docker-format profile loses its includes and excludes)."""
    out = {k: profile[k] for k in _SECCOMP_KEYS if k in profile}
    syscalls = out.get("syscalls")
    if isinstance(syscalls, list):
        out["syscalls"] = [
            {k: s[k] for k in _SYSCALL_KEYS if k in s} if isinstance(s, dict) else s
            for s in syscalls
        ]
    return out


def _profile_from_path(path: str, where: str) -> tuple[int, str]:
    """containerd ``generateSecurityProfile`` for the deprecated string fields."""
    if path in ("runtime/default", "docker/default"):
        return api_pb2.SecurityProfile.RuntimeDefault, ""
    if path == "unconfined":
        return api_pb2.SecurityProfile.Unconfined, ""
    if not path.startswith(_PROFILE_PREFIX):
        _fail(where, f"invalid profile {path!r}")
    return api_pb2.SecurityProfile.Localhost, path.removeprefix(_PROFILE_PREFIX)


def _apparmor(sc: api_pb2.LinuxContainerSecurityContext, *, privileged: bool) -> str:
    """containerd ``GenerateApparmorSpecOpts`` where AppArmor is enabled: the profile
    name, or "" for none."""
    where = f"{_SC}.apparmor"
    kind: int
    if sc.HasField("apparmor"):
        kind, ref = sc.apparmor.profile_type, sc.apparmor.localhost_ref
    elif sc.apparmor_profile:
        where = f"{_SC}.apparmor_profile"
        kind, ref = _profile_from_path(sc.apparmor_profile, where)
    else:
        kind, ref = api_pb2.SecurityProfile.RuntimeDefault, ""  # kubernetes#51746
    if kind != api_pb2.SecurityProfile.Localhost and ref:
        _fail(f"{where}.localhost_ref", "must only be set when profile_type is Localhost")
    if kind == api_pb2.SecurityProfile.Unconfined:
        return ""
    if kind == api_pb2.SecurityProfile.RuntimeDefault:
        return "" if privileged else DEFAULT_APPARMOR_PROFILE
    if kind != api_pb2.SecurityProfile.Localhost:
        _fail(f"{where}.profile_type", f"unknown profile type {kind}")
    name = ref.removeprefix(_PROFILE_PREFIX)
    if not name:
        _fail(f"{where}.localhost_ref", "required for a Localhost profile")
    return name


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


def _cgroup_parent(parent: str) -> str:
    if parent and (".." in parent.split("/") or "\0" in parent):
        _fail("config.linux.cgroup_parent", f"{parent!r} is not a cgroup path")
    return parent


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


def _fail(where: str, message: str) -> NoReturn:
    raise InvalidArgument(f"{where}: {message}")
