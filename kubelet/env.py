"""A container's environment, resolved the way the kubelet's makeEnvironmentVariables
does, and the downward API values it shares with the downwardAPI volume.

Order and precedence (the kubelet's):
1. `envFrom` sources in order (configMapRef / secretRef, each key with `prefix`);
   keys that are not valid variable names (the C-identifier-like rule of
   IsEnvVarName: letters, digits, `_`, `-`, `.`, not starting with a digit) are
   skipped and reported through `on_warning("InvalidEnvironmentVariableNames",
   ...)`, as the kubelet's event.
2. `env` in order, each overriding what came before: `value` with `$(VAR)`
   references expanded against the variables declared so far and the service
   variables (`$$` is a literal `$`, an unknown reference stays as written), or
   `valueFrom` (fieldRef, resourceFieldRef, configMapKeyRef, secretKeyRef).
3. Service link variables (`<SVC>_SERVICE_HOST`, docker link variables) the
   container did not set itself: the pod's namespace's services when
   `enableServiceLinks` (default true), and `default/kubernetes` always.

The result is ordered: steps 1 and 2 in declaration order (an override keeps the
first position), then the service variables sorted, so the same pod always gets the
same environment.

resourceFieldRef (here and in the downwardAPI volume): a limit the container does
not set reads as the node's allocatable amount (the kubelet's
defaultPodLimitsForDownwardAPI). The caller passes the allocatable it reports on its
Node; without one, `node_allocatable()` derives it from the machine and the config.
"""

from __future__ import annotations

import base64
import math
import os
import re
from collections.abc import Callable, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

from cri.api import api_pb2
from kubeapi.client import ApiError
from kubeapi.quantity import milli_value, parse_quantity, value
from kubelet.config import KubeletConfig

Object = dict[str, Any]
Warn = Callable[[str, str], None]  # (event reason, message)

_ENV_VAR_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")  # validation.IsEnvVarName
MASTER_SERVICES = ("kubernetes",)


class ApiReader(Protocol):
    """The part of kubeapi.client.Client the kubelet's volumes and environment use."""

    def get(self, path: str, **query: Any) -> Object: ...

    def list(self, path: str, **query: Any) -> Object: ...

    def create(self, path: str, body: Object, **query: Any) -> Object: ...


class ConfigError(Exception):
    """The container cannot be configured (the pod worker reports
    CreateContainerConfigError with this message)."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


# -- $(VAR) expansion ---------------------------------------------------------------------


def expand(text: str, lookup: Callable[[str], str | None]) -> str:
    """Kubernetes' `$(VAR)` expansion: `$(NAME)` becomes lookup(NAME), or stays
    `$(NAME)` when lookup gives None; `$$` is `$`; any other `$` and an unclosed
    `$(` are kept as written."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$" or i + 1 >= len(text):
            out.append(char)
            i += 1
            continue
        following = text[i + 1]
        if following == "$":
            out.append("$")
            i += 2
        elif following == "(":
            close = text.find(")", i + 2)
            if close == -1:
                out.append("$(")
                i += 2
            else:
                name = text[i + 2 : close]
                found = lookup(name)
                out.append(f"$({name})" if found is None else found)
                i = close + 1
        else:
            out.append("$" + following)
            i += 2
    return "".join(out)


# -- downward API: fields -------------------------------------------------------------------


def _go_quote(text: str) -> str:
    """Go's %q of a string (strconv.Quote), which the kubelet uses for label and
    annotation values in downward API files."""
    escapes = {'"': '\\"', "\\": "\\\\", "\a": "\\a", "\b": "\\b", "\f": "\\f",
               "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}  # fmt: skip
    out = []
    for char in text:
        if char in escapes:
            out.append(escapes[char])
        elif char.isprintable():
            out.append(char)
        elif ord(char) < 0x80:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


def format_map(values: Mapping[str, str]) -> str:
    """Labels or annotations as the downward API writes them: `key="value"` lines,
    sorted by key, no newline after the last."""
    return "\n".join(f"{key}={_go_quote(values[key])}" for key in sorted(values))


def _split_subscript(path: str) -> tuple[str, str] | None:
    """`metadata.labels['app']` → ("metadata.labels", "app")."""
    if not path.endswith("']"):
        return None
    head, sep, key = path[:-2].partition("['")
    return (head, key) if sep and head else None


def object_field(pod: Object, path: str) -> str:
    """A metadata field of the pod (fieldpath.ExtractFieldPathAsString)."""
    meta = pod.get("metadata") or {}
    subscripted = _split_subscript(path)
    if subscripted is not None:
        head, key = subscripted
        if head == "metadata.labels":
            return str((meta.get("labels") or {}).get(key, ""))
        if head == "metadata.annotations":
            return str((meta.get("annotations") or {}).get(key, ""))
        raise ConfigError(f'fieldPath "{path}" does not support subscript')
    if path == "metadata.labels":
        return format_map(meta.get("labels") or {})
    if path == "metadata.annotations":
        return format_map(meta.get("annotations") or {})
    if path in ("metadata.name", "metadata.namespace", "metadata.uid"):
        return str(meta.get(path.split(".", 1)[1]) or "")
    raise ConfigError(f"unsupported fieldPath: {path}")


def _ips(status: Object, plural: str, singular: str, fallback: str) -> list[str]:
    listed = [str(entry.get("ip")) for entry in status.get(plural) or [] if entry.get("ip")]
    if listed:
        return listed
    one = fallback or str(status.get(singular) or "")
    return [one] if one else []


def pod_field(pod: Object, path: str, *, pod_ip: str, host_ip: str) -> str:
    """A fieldRef of an environment variable (podFieldSelectorRuntimeValue): the
    metadata fields plus spec.nodeName, spec.serviceAccountName and the IPs."""
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    if path == "spec.nodeName":
        return str(spec.get("nodeName") or "")
    if path == "spec.serviceAccountName":
        return str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "")
    if path in ("status.hostIP", "status.hostIPs"):
        host_ips = _ips(status, "hostIPs", "hostIP", host_ip)
        if path == "status.hostIP":
            return host_ips[0] if host_ips else ""
        return ",".join(host_ips)
    if path in ("status.podIP", "status.podIPs"):
        pod_ips = _ips(status, "podIPs", "podIP", pod_ip)
        if pod_ip and pod_ip not in pod_ips:
            pod_ips.insert(0, pod_ip)
        if path == "status.podIP":
            return pod_ip or (pod_ips[0] if pod_ips else "")
        return ",".join(pod_ips)
    return object_field(pod, path)


# -- downward API: resources ----------------------------------------------------------------


def _threshold(text: str, total: int) -> int:
    """An eviction threshold ("100Mi" or "10%") in bytes of `total`."""
    if text.endswith("%"):
        return int(total * Fraction(text[:-1]) / 100)
    return value(text)


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def node_allocatable(
    config: KubeletConfig | None = None, *, meminfo: Path = Path("/proc/meminfo")
) -> dict[str, str]:
    """cpu, memory and ephemeral-storage allocatable of this machine (the kubelet's
    Allocatable): capacity minus the config's system_reserved and kube_reserved, and
    memory and the root directory's filesystem minus the hard eviction thresholds
    (memory.available, nodefs.available). No config: no reservations, the kubelet's
    default thresholds."""
    cpus = len(os.sched_getaffinity(0))
    memory_total = 0
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_total = int(line.split()[1]) * 1024
    config = config if config is not None else KubeletConfig(kubeconfig="")
    disk = os.statvfs(_existing(config.root_dir))
    disk_total = disk.f_blocks * disk.f_frsize
    reserved: list[Mapping[str, str]] = [config.system_reserved, config.kube_reserved]

    def left(name: str, total: int | Fraction) -> Fraction:
        return Fraction(total) - sum(
            (parse_quantity(r.get(name, "0")) for r in reserved), Fraction()
        )

    eviction = config.eviction_hard
    memory = left("memory", memory_total) - _threshold(
        str(eviction.get("memory.available", "0")), memory_total
    )
    storage = left("ephemeral-storage", disk_total) - _threshold(
        str(eviction.get("nodefs.available", "0")), disk_total
    )
    return {
        "cpu": f"{max(math.floor(left('cpu', cpus) * 1000), 0)}m",
        "memory": str(max(math.floor(memory), 0)),
        "ephemeral-storage": str(max(math.floor(storage), 0)),
    }


def _find_container(pod: Object, name: str) -> Object:
    spec = pod.get("spec") or {}
    for field in ("containers", "initContainers", "ephemeralContainers"):
        for container in spec.get(field) or []:
            if container.get("name") == name:
                return dict(container)
    raise ConfigError(f"container {name} not found")


def resource_value(
    selector: Object, pod: Object, container: Object | None, allocatable: Mapping[str, str]
) -> str:
    """A resourceFieldRef's value (ExtractContainerResourceValue): the container's
    limit or request divided by the divisor and rounded up; an unset cpu, memory or
    ephemeral-storage limit is the node's allocatable amount."""
    name = selector.get("containerName") or ""
    if name:
        container = _find_container(pod, name)
    if container is None:
        raise ConfigError("resourceFieldRef: containerName is required")
    resource = str(selector.get("resource") or "")
    kind, _, resource_name = resource.partition(".")
    supported = resource_name in ("cpu", "memory", "ephemeral-storage") or (
        resource_name.startswith("hugepages-")
    )
    if kind not in ("limits", "requests") or not supported:
        raise ConfigError(f"unsupported container resource : {resource}")
    resources = container.get("resources") or {}
    amounts: Mapping[str, Any] = resources.get(kind) or {}
    amount = amounts.get(resource_name)
    if amount is None and kind == "limits":
        amount = allocatable.get(resource_name)
    amount = amount if amount is not None else "0"
    divisor = selector.get("divisor") or "1"
    try:
        if parse_quantity(divisor) == 0:
            divisor = "1"
        if resource_name == "cpu":
            result = math.ceil(Fraction(milli_value(amount), milli_value(divisor)))
        else:
            result = math.ceil(Fraction(value(amount), value(divisor)))
    except ValueError as e:
        raise ConfigError(f"resourceFieldRef {resource}: {e}") from None
    return str(result)


# -- API objects ------------------------------------------------------------------------------


def get_config_map(client: ApiReader, namespace: str, name: str) -> Object | None:
    """The ConfigMap, or None when it does not exist."""
    return _get(client, f"/api/v1/namespaces/{namespace}/configmaps/{name}")


def get_secret(client: ApiReader, namespace: str, name: str) -> Object | None:
    """The Secret, or None when it does not exist."""
    return _get(client, f"/api/v1/namespaces/{namespace}/secrets/{name}")


def _get(client: ApiReader, path: str) -> Object | None:
    try:
        return client.get(path)
    except ApiError as e:
        if e.code == 404:
            return None
        raise


def secret_data(secret: Object) -> dict[str, bytes]:
    """A Secret's data, base64-decoded (stringData too, when a server kept it)."""
    decoded = {key: base64.b64decode(text) for key, text in (secret.get("data") or {}).items()}
    for key, text in (secret.get("stringData") or {}).items():
        decoded[key] = str(text).encode()
    return decoded


# -- the environment --------------------------------------------------------------------------


def _service_variables(service: Object) -> dict[str, str]:
    """envvars.FromServices for one service."""
    spec = service.get("spec") or {}
    ip = str(spec.get("clusterIP") or "")
    prefix = str(service["metadata"]["name"]).replace("-", "_").upper()
    result = {f"{prefix}_SERVICE_HOST": ip}
    ports = spec.get("ports") or []
    if not ports:
        return result
    result[f"{prefix}_SERVICE_PORT"] = str(ports[0].get("port"))
    for port in ports:
        if port.get("name"):
            port_name = str(port["name"]).replace("-", "_").upper()
            result[f"{prefix}_SERVICE_PORT_{port_name}"] = str(port.get("port"))
    host = f"[{ip}]" if ":" in ip else ip
    for i, port in enumerate(ports):
        protocol = str(port.get("protocol") or "TCP")
        number = port.get("port")
        url = f"{protocol.lower()}://{host}:{number}"
        if i == 0:
            result[f"{prefix}_PORT"] = url
        port_prefix = f"{prefix}_PORT_{number}_{protocol.upper()}"
        result[port_prefix] = url
        result[f"{port_prefix}_PROTO"] = protocol.lower()
        result[f"{port_prefix}_PORT"] = str(number)
        result[f"{port_prefix}_ADDR"] = ip
    return result


def service_env(client: ApiReader, namespace: str, *, enable_service_links: bool) -> dict[str, str]:
    """The service variables of a pod in `namespace` (getServiceEnvVarMap)."""
    chosen: dict[str, Object] = {}
    if enable_service_links:
        for service in client.list(f"/api/v1/namespaces/{namespace}/services").get("items") or []:
            chosen[service["metadata"]["name"]] = service
    if namespace != "default" or not enable_service_links:
        for name in MASTER_SERVICES:
            master = _get(client, f"/api/v1/namespaces/default/services/{name}")
            if master is not None and name not in chosen:
                chosen[name] = master
    result: dict[str, str] = {}
    for name in sorted(chosen):
        ip = (chosen[name].get("spec") or {}).get("clusterIP")
        if ip and ip != "None":  # headless and ExternalName services have none
            result.update(_service_variables(chosen[name]))
    return result


def container_env(
    client: ApiReader,
    pod: Object,
    container: Object,
    *,
    pod_ip: str,
    host_ip: str,
    allocatable: Mapping[str, str] | Callable[[], Mapping[str, str]] | None = None,
    on_warning: Warn | None = None,
    node_config: KubeletConfig | None = None,
) -> list[api_pb2.KeyValue]:
    """The container's environment (see the module docstring). ConfigError when a
    required ConfigMap, Secret or key is missing or a reference is unsupported.
    `allocatable` (a mapping or a callable giving one; without it,
    `node_allocatable(node_config)`) backs unset limits of resourceFieldRefs; it is
    read only when one needs it."""
    namespace = str((pod.get("metadata") or {}).get("namespace") or "default")
    spec = pod.get("spec") or {}
    config_maps: dict[str, Object | None] = {}
    secrets: dict[str, Object | None] = {}

    def config_map(name: str) -> Object | None:
        if name not in config_maps:
            try:
                config_maps[name] = get_config_map(client, namespace, name)
            except (ApiError, OSError) as e:
                raise ConfigError(f"couldn't get configMap {namespace}/{name}: {e}") from None
        return config_maps[name]

    def secret(name: str) -> Object | None:
        if name not in secrets:
            try:
                found = get_secret(client, namespace, name)
                if found is not None:
                    secret_data(found)  # undecodable data fails here, once
                secrets[name] = found
            except (ApiError, OSError, ValueError) as e:
                raise ConfigError(f"couldn't get secret {namespace}/{name}: {e}") from None
        return secrets[name]

    def node_amounts() -> Mapping[str, str]:
        try:
            if callable(allocatable):
                return allocatable()
            if allocatable is not None:
                return allocatable
            return node_allocatable(node_config)
        except OSError as e:
            raise ConfigError(f"node allocatable: {e}") from None

    try:
        services = service_env(
            client,
            namespace,
            enable_service_links=spec.get("enableServiceLinks", True) is not False,
        )
    except (ApiError, OSError) as e:
        raise ConfigError(f"failed to list services when setting up env vars: {e}") from None

    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = str(source.get("prefix") or "")
        if "configMapRef" in source:
            ref, kind = source["configMapRef"], "configMap"
            found = config_map(ref["name"])
            values = {k: str(v) for k, v in ((found or {}).get("data") or {}).items()}
        elif "secretRef" in source:
            ref, kind = source["secretRef"], "secret"
            found = secret(ref["name"])
            values = {
                k: v.decode(errors="surrogateescape") for k, v in secret_data(found or {}).items()
            }
        else:
            raise ConfigError("envFrom: exactly one of configMapRef and secretRef is required")
        if found is None:
            if ref.get("optional"):
                continue
            raise ConfigError(f'{kind.lower()} "{ref["name"]}" not found')
        invalid = []
        for key, text in values.items():
            if not _ENV_VAR_NAME.match(prefix + key):
                invalid.append(prefix + key)
                continue
            env[prefix + key] = text
        if invalid and on_warning is not None:
            on_warning(
                "InvalidEnvironmentVariableNames",
                f"Keys [{', '.join(sorted(invalid))}] from the EnvFrom {kind} "
                f"{namespace}/{ref['name']} were skipped since they are considered invalid "
                "environment variable names.",
            )

    def lookup(name: str) -> str | None:
        if name in env:
            return env[name]
        return services.get(name)

    for variable in container.get("env") or []:
        name = str(variable["name"])
        text = str(variable.get("value") or "")
        if text:
            env[name] = expand(text, lookup)
            continue
        source = variable.get("valueFrom")
        if not source:
            env[name] = ""
            continue
        resolved = _value_from(
            source, pod, container, namespace,
            config_map=config_map, secret=secret, node_amounts=node_amounts,
            pod_ip=pod_ip, host_ip=host_ip,
        )  # fmt: skip
        if resolved is not None:
            env[name] = resolved

    # Secret values may be any bytes: surrogateescape carries them through str.
    ordered = [*env.items(), *((k, v) for k, v in sorted(services.items()) if k not in env)]
    return [api_pb2.KeyValue(key=k, value=v.encode(errors="surrogateescape")) for k, v in ordered]


def _value_from(
    source: Object,
    pod: Object,
    container: Object,
    namespace: str,
    *,
    config_map: Callable[[str], Object | None],
    secret: Callable[[str], Object | None],
    node_amounts: Callable[[], Mapping[str, str]],
    pod_ip: str,
    host_ip: str,
) -> str | None:
    """One valueFrom; None when an optional source or key is missing (the variable
    is then left out, as the kubelet does)."""
    if "fieldRef" in source:
        path = str(source["fieldRef"].get("fieldPath") or "")
        return pod_field(pod, path, pod_ip=pod_ip, host_ip=host_ip)
    if "resourceFieldRef" in source:
        return resource_value(source["resourceFieldRef"], pod, container, node_amounts())
    if "configMapKeyRef" in source:
        return _key_ref(source["configMapKeyRef"], "ConfigMap", namespace, config_map,
                        _config_map_values)  # fmt: skip
    if "secretKeyRef" in source:
        return _key_ref(source["secretKeyRef"], "Secret", namespace, secret, _secret_values)
    raise ConfigError(f"valueFrom: unsupported source {sorted(source)}")


def _config_map_values(config_map: Object) -> dict[str, str]:
    return {k: str(v) for k, v in (config_map.get("data") or {}).items()}


def _secret_values(secret: Object) -> dict[str, str]:
    return {k: v.decode(errors="surrogateescape") for k, v in secret_data(secret).items()}


def _key_ref(
    ref: Object,
    kind: str,
    namespace: str,
    fetch: Callable[[str], Object | None],
    values: Callable[[Object], Mapping[str, str]],
) -> str | None:
    """A configMapKeyRef or secretKeyRef: the key's value; None when the object or
    the key is missing and the ref is optional, else ConfigError."""
    found = fetch(ref["name"])
    if found is None:
        if ref.get("optional"):
            return None
        raise ConfigError(f'{kind.lower()} "{ref["name"]}" not found')
    data = values(found)
    if ref["key"] not in data:
        if ref.get("optional"):
            return None
        raise ConfigError(f"couldn't find key {ref['key']} in {kind} {namespace}/{ref['name']}")
    return data[ref["key"]]
