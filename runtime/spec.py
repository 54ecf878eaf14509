"""Reading and validating an OCI runtime spec (config.json) before anything is created.

The config stays a plain dict (the JSON as read); this module checks its shape so
later steps can index it without defensive code, and every error names the field:
`config.json: process.args: must be a non-empty array of strings`.
"""

from __future__ import annotations

import os

from runtime import jsonio as json
from runtime.capabilities import CAPABILITY_NUMBERS
from runtime.errors import SpecError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

    Config = dict[str, Any]

NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")
HOOK_KINDS = (
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
)
ROOTFS_PROPAGATIONS = (
    "private",
    "rprivate",
    "slave",
    "rslave",
    "shared",
    "rshared",
    "unbindable",
    "runbindable",
)

# Namespaced sysctls and the namespace each needs (as runc validates them).
_IPC_SYSCTLS = (
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
)


def load_bundle(bundle: str, *, require_process: bool = True) -> Config:
    """Read and validate `<bundle>/config.json`."""
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise SpecError(f"bundle {bundle}: no config.json") from None
    except OSError as e:
        raise SpecError(f"read {path}: {e.strerror}") from None
    try:
        config: Config = json.loads(raw)
    except ValueError as e:
        raise SpecError(f"config.json: invalid JSON: {e}") from None
    validate(config, require_process=require_process)
    return config


def validate(config: object, *, require_process: bool = True) -> None:
    """Raise SpecError naming the first field that is malformed or unsupported."""
    if not isinstance(config, dict):
        _fail("", "must be a JSON object")
    version = config.get("ociVersion")
    if not isinstance(version, str) or not version:
        _fail("ociVersion", "must be a non-empty string")
    if not version.startswith("1."):
        _fail("ociVersion", f"unsupported version {version!r} (need 1.x)")
    root = config.get("root")
    if not isinstance(root, dict):
        _fail("root", "must be an object")
    _string(root, "path", "root.path", required=True)
    _bool(root, "readonly", "root.readonly")
    process = config.get("process")
    if process is None:
        if require_process:
            _fail("process", "is required")
    else:
        validate_process(process, "process")
    _string(config, "hostname", "hostname")
    _string(config, "domainname", "domainname")
    _mounts(config.get("mounts"))
    _hooks(config.get("hooks"))
    _string_map(config.get("annotations"), "annotations")
    linux = config.get("linux")
    if linux is None:
        linux = config["linux"] = {}
    if not isinstance(linux, dict):
        _fail("linux", "must be an object")
    _linux(linux, config)


def validate_process(process: object, where: str) -> None:
    if not isinstance(process, dict):
        _fail(where, "must be an object")
    args = process.get("args")
    if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
        _fail(f"{where}.args", "must be a non-empty array of strings")
    if not args[0]:
        _fail(f"{where}.args[0]", "must not be empty")
    cwd = process.get("cwd")
    if not isinstance(cwd, str) or not cwd.startswith("/"):
        _fail(f"{where}.cwd", "must be an absolute path")
    env = process.get("env", [])
    if not isinstance(env, list) or not all(isinstance(e, str) for e in env):
        _fail(f"{where}.env", "must be an array of strings")
    for i, entry in enumerate(env):
        if "=" not in entry or entry.startswith("="):
            _fail(f"{where}.env[{i}]", f"{entry!r} is not of the form KEY=value")
    _bool(process, "terminal", f"{where}.terminal")
    _bool(process, "noNewPrivileges", f"{where}.noNewPrivileges")
    user = process.get("user", {})
    if not isinstance(user, dict):
        _fail(f"{where}.user", "must be an object")
    for key in ("uid", "gid"):
        _uint32(user, key, f"{where}.user.{key}")
    if "umask" in user:
        _uint32(user, "umask", f"{where}.user.umask")
    groups = user.get("additionalGids", [])
    if not isinstance(groups, list) or not all(_is_uint32(g) for g in groups):
        _fail(f"{where}.user.additionalGids", "must be an array of unsigned integers")
    caps = process.get("capabilities", {})
    if not isinstance(caps, dict):
        _fail(f"{where}.capabilities", "must be an object")
    for kind, names in caps.items():
        if kind not in ("bounding", "effective", "inheritable", "permitted", "ambient"):
            _fail(f"{where}.capabilities.{kind}", "unknown capability set")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            _fail(f"{where}.capabilities.{kind}", "must be an array of strings")
        for i, name in enumerate(names):
            # A name no kernel knows is an error; a real capability that this
            # kernel lacks is only skipped (with a warning) when applied.
            if name not in CAPABILITY_NUMBERS:
                _fail(f"{where}.capabilities.{kind}[{i}]", f"unknown capability {name!r}")
    rlimits = process.get("rlimits", [])
    if not isinstance(rlimits, list):
        _fail(f"{where}.rlimits", "must be an array")
    seen: set[str] = set()
    for i, rlimit in enumerate(rlimits):
        field = f"{where}.rlimits[{i}]"
        if not isinstance(rlimit, dict):
            _fail(field, "must be an object")
        kind = rlimit.get("type")
        if not isinstance(kind, str) or kind not in RLIMITS:
            _fail(f"{field}.type", f"unknown rlimit {kind!r}")
        if kind in seen:
            _fail(f"{field}.type", f"duplicate rlimit {kind}")
        seen.add(kind)
        for key in ("soft", "hard"):
            value = rlimit.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                _fail(f"{field}.{key}", "must be an unsigned integer")
        if rlimit["soft"] > rlimit["hard"]:
            _fail(field, "soft limit is above the hard limit")
    oom = process.get("oomScoreAdj")
    if oom is not None and (
        not isinstance(oom, int) or isinstance(oom, bool) or not -1000 <= oom <= 1000
    ):
        _fail(f"{where}.oomScoreAdj", "must be an integer from -1000 to 1000")
    _string(process, "apparmorProfile", f"{where}.apparmorProfile")
    _string(process, "selinuxLabel", f"{where}.selinuxLabel")
    for key in _UNSUPPORTED_PROCESS:
        if process.get(key) is not None:
            _fail(f"{where}.{key}", "is not supported by kubeling")
    size = process.get("consoleSize")
    if size is not None:
        if not isinstance(size, dict):
            _fail(f"{where}.consoleSize", "must be an object")
        for key in ("height", "width"):
            _uint32(size, key, f"{where}.consoleSize.{key}")


# RLIMIT_* names to resource numbers (Linux, all architectures kubeling runs on).
RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3,
    "RLIMIT_CORE": 4, "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7,
    "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11,
    "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}  # fmt: skip


def _mounts(mounts: object) -> None:
    if mounts is None:
        return
    if not isinstance(mounts, list):
        _fail("mounts", "must be an array")
    for i, mount in enumerate(mounts):
        field = f"mounts[{i}]"
        if not isinstance(mount, dict):
            _fail(field, "must be an object")
        dest = mount.get("destination")
        if not isinstance(dest, str) or not dest.startswith("/"):
            _fail(f"{field}.destination", "must be an absolute path")
        _string(mount, "type", f"{field}.type")
        _string(mount, "source", f"{field}.source")
        options = mount.get("options", [])
        if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
            _fail(f"{field}.options", "must be an array of strings")


def _hooks(hooks: object) -> None:
    if hooks is None:
        return
    if not isinstance(hooks, dict):
        _fail("hooks", "must be an object")
    for kind, entries in hooks.items():
        if kind not in HOOK_KINDS:
            _fail(f"hooks.{kind}", "unknown hook kind")
        if not isinstance(entries, list):
            _fail(f"hooks.{kind}", "must be an array")
        for i, hook in enumerate(entries):
            field = f"hooks.{kind}[{i}]"
            if not isinstance(hook, dict):
                _fail(field, "must be an object")
            path = hook.get("path")
            if not isinstance(path, str) or not path.startswith("/"):
                _fail(f"{field}.path", "must be an absolute path")
            for key in ("args", "env"):
                value = hook.get(key, [])
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    _fail(f"{field}.{key}", "must be an array of strings")
            timeout = hook.get("timeout")
            if timeout is not None and (
                not isinstance(timeout, int) or isinstance(timeout, bool) or timeout <= 0
            ):
                _fail(f"{field}.timeout", "must be a positive integer")


# Known settings kubeling cannot honour: refused rather than silently ignored
# (unknown properties, by contrast, must be ignored).
_UNSUPPORTED_PROCESS = ("scheduler", "ioPriority", "execCPUAffinity")
_UNSUPPORTED_LINUX = ("intelRdt", "personality", "timeOffsets", "memoryPolicy", "netDevices")


def _linux(linux: dict[str, Any], config: Config) -> None:
    for key in _UNSUPPORTED_LINUX:
        if linux.get(key) is not None:
            _fail(f"linux.{key}", "is not supported by kubeling")
    namespaces = linux.get("namespaces", [])
    if not isinstance(namespaces, list):
        _fail("linux.namespaces", "must be an array")
    kinds: dict[str, bool] = {}
    for i, namespace in enumerate(namespaces):
        field = f"linux.namespaces[{i}]"
        if not isinstance(namespace, dict):
            _fail(field, "must be an object")
        kind = namespace.get("type")
        if kind not in NAMESPACE_TYPES:
            _fail(f"{field}.type", f"unknown namespace type {kind!r}")
        if kind in kinds:
            _fail(f"{field}.type", f"duplicate namespace {kind}")
        _string(namespace, "path", f"{field}.path")
        path = namespace.get("path")
        if path:
            if not path.startswith("/"):
                _fail(f"{field}.path", "must be an absolute path")
            if not os.path.exists(path):
                _fail(f"{field}.path", f"{path} does not exist")
        kinds[kind] = not path
    if kinds.get("time") is not None:
        _fail("linux.namespaces", "time namespaces are not supported")
    for key in ("uidMappings", "gidMappings"):
        mappings = linux.get(key, [])
        if not isinstance(mappings, list):
            _fail(f"linux.{key}", "must be an array")
        for i, mapping in enumerate(mappings):
            field = f"linux.{key}[{i}]"
            if not isinstance(mapping, dict):
                _fail(field, "must be an object")
            for part in ("containerID", "hostID", "size"):
                _uint32(mapping, part, f"{field}.{part}")
    if kinds.get("user"):
        if not linux.get("uidMappings") or not linux.get("gidMappings"):
            _fail("linux.uidMappings", "a new user namespace needs uid and gid mappings")
    elif linux.get("uidMappings") or linux.get("gidMappings"):
        _fail("linux.uidMappings", "mappings are given but no new user namespace")
    _string(linux, "cgroupsPath", "linux.cgroupsPath")
    resources = linux.get("resources", {})
    if not isinstance(resources, dict):
        _fail("linux.resources", "must be an object")
    sysctl = linux.get("sysctl", {})
    _string_map(sysctl, "linux.sysctl")
    for key in sysctl:
        _sysctl(key, kinds)
    propagation = linux.get("rootfsPropagation")
    if propagation is not None and propagation not in ROOTFS_PROPAGATIONS:
        _fail("linux.rootfsPropagation", f"unknown propagation {propagation!r}")
    for key in ("maskedPaths", "readonlyPaths"):
        paths = linux.get(key, [])
        if not isinstance(paths, list) or not all(
            isinstance(p, str) and p.startswith("/") for p in paths
        ):
            _fail(f"linux.{key}", "must be an array of absolute paths")
    devices = linux.get("devices", [])
    if not isinstance(devices, list):
        _fail("linux.devices", "must be an array")
    for i, device in enumerate(devices):
        field = f"linux.devices[{i}]"
        if not isinstance(device, dict):
            _fail(field, "must be an object")
        path = device.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            _fail(f"{field}.path", "must be an absolute path")
        if device.get("type") not in ("c", "b", "u", "p"):
            _fail(f"{field}.type", "must be one of c, b, u, p")
        if device["type"] != "p":
            for part in ("major", "minor"):
                value = device.get(part)
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    _fail(f"{field}.{part}", "must be an unsigned integer")
    seccomp = linux.get("seccomp")
    if seccomp is not None and not isinstance(seccomp, dict):
        _fail("linux.seccomp", "must be an object")
    hostname = config.get("hostname")
    if hostname and "uts" in kinds and not kinds["uts"]:
        pass  # joining a UTS namespace by path and setting its hostname: allowed
    elif hostname and "uts" not in kinds:
        _fail("hostname", "setting a hostname needs a UTS namespace")


def _sysctl(key: str, kinds: dict[str, bool]) -> None:
    field = f"linux.sysctl.{key}"
    if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
        if "ipc" not in kinds:
            _fail(field, "needs an IPC namespace")
    elif key.startswith("net."):
        if "network" not in kinds:
            _fail(field, "needs a network namespace")
    elif key in ("kernel.hostname", "kernel.domainname"):
        if "uts" not in kinds:
            _fail(field, "needs a UTS namespace")
    else:
        _fail(field, "is not a namespaced sysctl")


def _fail(field: str, message: str) -> NoReturn:
    prefix = f"config.json: {field}: " if field else "config.json: "
    raise SpecError(prefix + message)


def _string(obj: dict[str, Any], key: str, field: str, *, required: bool = False) -> None:
    value = obj.get(key)
    if value is None:
        if required:
            _fail(field, "is required")
        return
    if not isinstance(value, str):
        _fail(field, "must be a string")
    if required and not value:
        _fail(field, "must not be empty")


def _bool(obj: dict[str, Any], key: str, field: str) -> None:
    if key in obj and not isinstance(obj[key], bool):
        _fail(field, "must be a boolean")


def _is_uint32(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32


def _uint32(obj: dict[str, Any], key: str, field: str) -> None:
    if not _is_uint32(obj.get(key)):
        _fail(field, "must be an unsigned 32-bit integer")


def _string_map(value: object, field: str) -> None:
    if value is None:
        return
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        _fail(field, "must be an object of strings")


def namespace_map(config: Config) -> dict[str, str]:
    """Namespace type -> path to join ("" for a new namespace)."""
    return {ns["type"]: ns.get("path") or "" for ns in config["linux"].get("namespaces", [])}
