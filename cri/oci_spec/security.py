"""Security settings: the capability set (defaults, add/drop, ``ALL``), the seccomp
profile choice (RuntimeDefault from :mod:`cri.seccomp_default`, Localhost through
``load_seccomp``, trimmed to the OCI fields), the AppArmor profile name, and the masked
and read-only paths. The order rule lives with the callers: capabilities are final
before the RuntimeDefault seccomp profile is built from them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cri import seccomp_default
from cri.api import api_pb2
from cri.oci_spec.inputs import _SC, HostFacts, _fail
from runtime.capabilities import CAPABILITY_NAMES, CAPABILITY_NUMBERS

DEFAULT_APPARMOR_PROFILE = "cri-containerd.apparmor.d"  # RuntimeDefault; the caller loads it

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

_PROFILE_PREFIX = "localhost/"


def _paths(requested: Sequence[str], default: Sequence[str], where: str) -> list[str]:
    for i, path in enumerate(requested):
        if not path.startswith("/"):
            _fail(f"{where}[{i}]", "must be absolute")
    return list(requested or default)


def _capabilities(
    sc: api_pb2.LinuxContainerSecurityContext, every: tuple[str, ...] = ALL_CAPABILITIES
) -> list[str]:
    """containerd ``WithCapabilities``: ``ALL`` in add (then drop) replaces the set
    with `every` (what the runtime holds), then single names are added and dropped."""
    caps = list(DEFAULT_CAPABILITIES)
    if not sc.HasField("capabilities"):
        return caps
    add, drop = sc.capabilities.add_capabilities, sc.capabilities.drop_capabilities
    where = f"{_SC}.capabilities"
    if any(c.upper() == "ALL" for c in add):
        caps = list(every)
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
