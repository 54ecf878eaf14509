"""A container's probe, read from the pod's API object into a checked, defaulted value,
plus the lookups its handlers need: the port (a number or the name of one of the
container's ports) and the static `$(VAR)` expansion of an exec command.

Defaults are the API's (periodSeconds 10, timeoutSeconds 1, successThreshold 1,
failureThreshold 3, initialDelaySeconds 0); a 0 or missing field takes the default,
as the API server's defaulting would have filled it. Fractions of seconds are
accepted for the durations (the API allows only integers; tests use them to stay
fast). A spec the API would reject raises `ProbeSpecError` naming the field.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any

from kubelet.env import expand

HANDLER_KINDS = ("exec", "httpGet", "tcpSocket", "grpc")
DEFAULT_PERIOD = 10.0
DEFAULT_TIMEOUT = 1.0
DEFAULT_SUCCESS_THRESHOLD = 1
DEFAULT_FAILURE_THRESHOLD = 3
# IANA service names, which is what a named container port must be.
_PORT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$")


class ProbeSpecError(ValueError):
    """A probe or handler the API would have rejected; the message names the field."""


class ProbeType(enum.Enum):
    # The values are how the kubelet spells them in events ("Liveness probe failed: …").
    LIVENESS = "Liveness"
    READINESS = "Readiness"
    STARTUP = "Startup"

    @property
    def field(self) -> str:
        return {"Liveness": "livenessProbe", "Readiness": "readinessProbe",
                "Startup": "startupProbe"}[self.value]  # fmt: skip


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    probe_type: ProbeType
    kind: str  # one of HANDLER_KINDS
    action: dict[str, Any]  # the handler's own fields (command, path, port, ...)
    initial_delay: float
    period: float
    timeout: float
    success_threshold: int
    failure_threshold: int


def _seconds(probe: dict[str, Any], name: str, default: float, where: str) -> float:
    value = probe.get(name)
    if value is None or value == 0:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ProbeSpecError(f"{where}.{name}: must be a non-negative number, not {value!r}")
    return float(value)


def _count(probe: dict[str, Any], name: str, default: int, where: str) -> int:
    value = probe.get(name)
    if value is None or value == 0:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ProbeSpecError(f"{where}.{name}: must be a positive integer, not {value!r}")
    return value


def handler_kind(handler: dict[str, Any], where: str, kinds: tuple[str, ...]) -> str:
    """The one handler `handler` sets among `kinds`, checked (a probe or a lifecycle
    handler must set exactly one)."""
    if not isinstance(handler, dict):
        raise ProbeSpecError(f"{where}: must be an object, not {handler!r}")
    present = [kind for kind in kinds if handler.get(kind) is not None]
    if len(present) != 1:
        listed = ", ".join(kinds)
        found = ", ".join(present) or "none"
        raise ProbeSpecError(f"{where}: must set exactly one handler of {listed} (found {found})")
    kind = present[0]
    action = handler[kind]
    if not isinstance(action, dict):
        raise ProbeSpecError(f"{where}.{kind}: must be an object")
    if kind == "exec":
        command = action.get("command")
        if not command or not all(isinstance(arg, str) for arg in command):
            raise ProbeSpecError(f"{where}.exec.command: must be a non-empty list of strings")
    elif kind in ("httpGet", "tcpSocket", "grpc") and action.get("port") in (None, ""):
        raise ProbeSpecError(f"{where}.{kind}.port: required")
    if kind == "httpGet":
        scheme = str(action.get("scheme") or "HTTP").upper()
        if scheme not in ("HTTP", "HTTPS"):
            raise ProbeSpecError(f"{where}.httpGet.scheme: must be HTTP or HTTPS, not {scheme}")
    return kind


def parse_probe(probe: dict[str, Any], probe_type: ProbeType, container_name: str) -> ProbeSpec:
    """The checked and defaulted probe of `probe_type` of container `container_name`."""
    where = f"spec.containers[{container_name}].{probe_type.field}"
    kind = handler_kind(probe, where, HANDLER_KINDS)
    success = _count(probe, "successThreshold", DEFAULT_SUCCESS_THRESHOLD, where)
    if probe_type is not ProbeType.READINESS and success != 1:
        raise ProbeSpecError(f"{where}.successThreshold: must be 1, not {success}")
    spec = ProbeSpec(
        probe_type=probe_type,
        kind=kind,
        action=dict(probe[kind]),
        initial_delay=_seconds(probe, "initialDelaySeconds", 0.0, where),
        period=_seconds(probe, "periodSeconds", DEFAULT_PERIOD, where),
        timeout=_seconds(probe, "timeoutSeconds", DEFAULT_TIMEOUT, where),
        success_threshold=success,
        failure_threshold=_count(probe, "failureThreshold", DEFAULT_FAILURE_THRESHOLD, where),
    )
    if kind == "grpc":
        port = spec.action.get("port")
        if isinstance(port, bool) or not isinstance(port, int):
            raise ProbeSpecError(f"{where}.grpc.port: must be a port number, not {port!r}")
    return spec


def container_probes(container: dict[str, Any]) -> list[ProbeSpec]:
    """Every probe `container` declares, each checked; ProbeSpecError for the first bad
    one (so none of them starts)."""
    name = str(container.get("name", ""))
    return [
        parse_probe(container[probe_type.field], probe_type, name)
        for probe_type in ProbeType
        if container.get(probe_type.field)
    ]


def resolve_port(port: Any, container: dict[str, Any]) -> int:
    """A probe's or hook's `port` (a number, or the name of one of the container's
    ports) as a number in 1..65535. ValueError naming the port otherwise."""
    number: int | None = None
    if isinstance(port, int) and not isinstance(port, bool):
        number = port
    elif isinstance(port, str) and port.isdigit():
        number = int(port)  # a quoted number: what the author meant is plain
    elif isinstance(port, str) and _PORT_NAME.match(port):
        for declared in container.get("ports") or []:
            if declared.get("name") == port:
                number = int(declared.get("containerPort", 0))
                break
        else:
            raise ValueError(f"couldn't find port {port!r} in container {container.get('name')!r}")
    else:
        raise ValueError(f"invalid port {port!r}")
    if not 0 < number < 65536:
        raise ValueError(f"invalid port number: {number}")
    return number


def expand_command(command: list[str], env: list[dict[str, Any]]) -> list[str]:
    """`command` with `$(NAME)` replaced by the value of the container's env var NAME
    when it is a literal `value` (valueFrom is not known here, as in the kubelet's
    probes); `$$` is a literal `$`; an unknown or unclosed reference stays as written
    (kubelet.env.expand, the containers' own expansion)."""
    values = {str(e["name"]): str(e["value"]) for e in env if "name" in e and "value" in e}
    return [expand(arg, values.get) for arg in command]
