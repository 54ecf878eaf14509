"""The values the specs are built from, as the caller finds them out
(:class:`HostFacts`, :class:`SandboxInfo`, :class:`DeviceInfo`; the rootfs's users are
:class:`cri.oci_spec.users.UserDB`), and how a bad request is refused: ``_fail`` raises
:class:`cri.errors.InvalidArgument` naming the CRI field path (``_SC`` is the
security-context prefix both kinds of config share). No I/O: ``HostFacts()`` only
reads ``uname`` for its defaults.
"""

from __future__ import annotations

import platform
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, NoReturn

from cri.errors import InvalidArgument
from runtime.capabilities import CAPABILITY_NAMES

_SC = "config.linux.security_context"  # field prefix, for both kinds of config


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
    ``capabilities``: what "ALL" and privileged mean here: the capabilities the
    runtime holds (its bounding set), as containerd takes the current process's.
    """

    machine: str = field(default_factory=platform.machine)
    kernel: tuple[int, int] = field(default_factory=_running_kernel)
    cgroup_v2: bool = True
    swap: bool = True
    hugetlb: bool = True
    apparmor: bool = False
    capabilities: tuple[str, ...] = CAPABILITY_NAMES


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


def _fail(where: str, message: str) -> NoReturn:
    raise InvalidArgument(f"{where}: {message}")
