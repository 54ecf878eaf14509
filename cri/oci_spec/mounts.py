"""The container's mounts and devices: the default mounts, the CRI bind mounts with
their propagation (and the rootfs propagation it implies), the sandbox's /etc/hostname,
/etc/hosts, /etc/resolv.conf and /dev/shm, sysfs and cgroupfs made writable for
privileged containers, and device nodes with their cgroup rules (containerd
``WithMounts``, ``WithDevices``). It does not create sources, resolve symlinks or
stat devices (``stat_device`` is the caller's).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from typing import Any

from cri.api import api_pb2
from cri.errors import Unimplemented
from cri.oci_spec.inputs import DeviceInfo, SandboxInfo, _fail

ETC_HOSTNAME = "/etc/hostname"
ETC_HOSTS = "/etc/hosts"
RESOLV_CONF = "/etc/resolv.conf"
DEV_SHM = "/dev/shm"


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
        # UNIMPLEMENTED, not INVALID_ARGUMENT: the request is valid, the feature is
        # absent (CRI clients such as critest skip on that code).
        raise Unimplemented(f"{where}.image: image volume mounts are not supported")
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
