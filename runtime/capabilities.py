"""Linux capabilities: names from config.json to bit sets, and applying them.

Order matters and is the caller's (see `runtime.process`): drop the bounding set
while still privileged, keep permitted caps across the uid change (KEEPCAPS), then
capset and raise ambient caps.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runtime.syscalls import Syscalls

# Index = capability number (linux/capability.h).
CAPABILITY_NAMES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)  # fmt: skip
CAPABILITY_NUMBERS = {name: number for number, name in enumerate(CAPABILITY_NAMES)}
SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")


def last_capability(proc: str = "/proc") -> int:
    """The highest capability number this kernel knows."""
    try:
        with open(f"{proc}/sys/kernel/cap_last_cap", "rb") as f:
            return int(f.read())
    except OSError:
        return len(CAPABILITY_NAMES) - 1


class CapabilitySets:
    """The five sets as bit masks, plus names this kernel does not know."""

    __slots__ = ("ambient", "bounding", "effective", "inheritable", "permitted", "unknown")

    def __init__(self, masks: dict[str, int], unknown: list[str]) -> None:
        self.bounding = masks["bounding"]
        self.effective = masks["effective"]
        self.permitted = masks["permitted"]
        self.inheritable = masks["inheritable"]
        self.ambient = masks["ambient"]
        self.unknown = unknown


def parse(capabilities: dict[str, Any], last_cap: int) -> CapabilitySets:
    """Unknown names are collected, not fatal: runc ignores them with a warning so a
    config written for a newer kernel still runs."""
    masks = {}
    unknown: list[str] = []
    for kind in SETS:
        mask = 0
        for name in capabilities.get(kind, []):
            number = CAPABILITY_NUMBERS.get(name)
            if number is None or number > last_cap:
                if name not in unknown:
                    unknown.append(name)
                continue
            mask |= 1 << number
        masks[kind] = mask
    return CapabilitySets(masks, unknown)


def names(mask: int) -> list[str]:
    return [name for number, name in enumerate(CAPABILITY_NAMES) if mask >> number & 1]


def drop_bounding(syscalls: Syscalls, sets: CapabilitySets, last_cap: int) -> None:
    for cap in range(last_cap + 1):
        if not sets.bounding >> cap & 1:
            syscalls.drop_bounding_cap(cap)


def apply(syscalls: Syscalls, sets: CapabilitySets, last_cap: int) -> None:
    """Set effective/permitted/inheritable, then ambient (which must be a subset of
    permitted and inheritable, or the kernel refuses)."""
    syscalls.capset(sets.effective, sets.permitted, sets.inheritable)
    syscalls.clear_ambient_caps()
    for cap in range(last_cap + 1):
        if sets.ambient >> cap & 1:
            syscalls.raise_ambient_cap(cap)
