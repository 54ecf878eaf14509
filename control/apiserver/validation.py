"""Validation of API objects: each rule returns `Cause`s (metav1.StatusCause: the
reason, the message, the JSON path of the field), which the server answers as one
422 Invalid. Messages are worded as the real API words them, so that what kubectl
prints (`The Pod "x" is invalid: spec.containers[0].image: Required value`) reads
the same.

Covered: object metadata (names as DNS-1123 subdomains or labels, generateName,
labels and annotations), pods (containers, names, images, ports, env names, volume
mounts, restartPolicy; the spec is immutable on update but for images,
activeDeadlineSeconds, terminationGracePeriodSeconds and added tolerations),
namespaces, nodes, services (ports, type), configmaps and secrets (keys, size),
deployments and replicasets (the selector must match the template's labels and is
immutable).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from control.apiserver.selectors import SelectorError, from_label_selector

REQUIRED = "FieldValueRequired"
INVALID = "FieldValueInvalid"
NOT_SUPPORTED = "FieldValueNotSupported"
DUPLICATE = "FieldValueDuplicate"
TOO_LONG = "FieldValueTooLong"
FORBIDDEN = "FieldValueForbidden"


@dataclass(frozen=True)
class Cause:
    type: str
    message: str
    field: str


Object = dict[str, Any]

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL = re.compile(f"^{_LABEL}$")
_DNS1123_SUBDOMAIN = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")

SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
    "'-' or '.', and must start and end with an alphanumeric character (e.g. "
    "'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MESSAGE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or "
    "'123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
DNS1035_MESSAGE = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start "
    "with an alphabetic character, and end with an alphanumeric character (e.g. "
    "'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
MAX_ANNOTATIONS = 256 * 1024
MAX_CONFIG_BYTES = 1024 * 1024


def _value(value: Any) -> str:
    """A value as the real API quotes it: strings quoted, the rest as JSON (null, true)."""
    if isinstance(value, str):
        return f'"{value}"'
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return str(value)


def required(field: str) -> Cause:
    return Cause(REQUIRED, "Required value", field)


def invalid(field: str, value: Any, why: str) -> Cause:
    return Cause(INVALID, f"Invalid value: {_value(value)}: {why}", field)


def not_supported(field: str, value: Any, supported: tuple[str, ...]) -> Cause:
    choices = ", ".join(f'"{s}"' for s in supported)
    return Cause(
        NOT_SUPPORTED, f"Unsupported value: {_value(value)}: supported values: {choices}", field
    )


def dns1123_subdomain(value: str, field: str) -> list[Cause]:
    causes = []
    if len(value) > 253:
        causes.append(invalid(field, value, "must be no more than 253 characters"))
    if not _DNS1123_SUBDOMAIN.match(value):
        causes.append(invalid(field, value, SUBDOMAIN_MESSAGE))
    return causes


def dns1123_label(value: str, field: str) -> list[Cause]:
    causes = []
    if len(value) > 63:
        causes.append(invalid(field, value, "must be no more than 63 characters"))
    if not _DNS1123_LABEL.match(value):
        causes.append(invalid(field, value, LABEL_MESSAGE))
    return causes


def dns1035_label(value: str, field: str) -> list[Cause]:
    causes = []
    if len(value) > 63:
        causes.append(invalid(field, value, "must be no more than 63 characters"))
    if not _DNS1035_LABEL.match(value):
        causes.append(invalid(field, value, DNS1035_MESSAGE))
    return causes


def qualified_name(key: str, field: str) -> list[Cause]:
    """A label or annotation key: an optional DNS subdomain prefix and a name."""
    prefix, _, name = key.rpartition("/")
    causes = []
    if prefix:
        # As the real API: the whole key is the value, the message names the prefix part.
        causes += [invalid(field, key, "prefix part " + _why(c, prefix))
                   for c in dns1123_subdomain(prefix, field)]  # fmt: skip
    if not name or len(name) > 63 or not _QUALIFIED_NAME.match(name):
        causes.append(invalid(field, key, "name part must consist of alphanumeric characters, "
                              "'-', '_' or '.', and must start and end with an alphanumeric "
                              "character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
                              "used for validation is "
                              "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"))  # fmt: skip
    return causes


def _why(cause: Cause, value: Any) -> str:
    """The explanation of an `invalid` cause about `value`, without its prefix."""
    return cause.message.removeprefix(f"Invalid value: {_value(value)}: ")


def _map(value: Any, field: str) -> tuple[dict[str, Any], list[Cause]]:
    if value is None:
        return {}, []
    if not isinstance(value, dict):
        return {}, [invalid(field, value, "must be an object")]
    return value, []


def validate_labels(labels: Any, field: str) -> list[Cause]:
    values, causes = _map(labels, field)
    for key, value in values.items():
        causes += qualified_name(str(key), field)
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            causes.append(invalid(f"{field}", value, "a valid label must be an empty string or "
                                  "consist of alphanumeric characters, '-', '_' or '.', and must "
                                  "start and end with an alphanumeric character"))  # fmt: skip
    return causes


def validate_object_meta(
    meta: Any, *, namespaced: bool, name_rule: str = "subdomain"
) -> list[Cause]:
    if not isinstance(meta, dict):
        return [required("metadata")]
    causes: list[Cause] = []
    name = meta.get("name")
    if not name:
        if not meta.get("generateName"):
            causes.append(
                Cause(REQUIRED, "Required value: name or generateName is required", "metadata.name")
            )
    elif not isinstance(name, str):
        causes.append(invalid("metadata.name", name, "must be a string"))
    else:
        rule = {"subdomain": dns1123_subdomain, "label": dns1123_label, "dns1035": dns1035_label}[
            name_rule
        ]
        causes += rule(name, "metadata.name")
    generate = meta.get("generateName")
    if generate and isinstance(generate, str):
        # Checked (even when a name is given, as the real API does) as a prefix: a
        # trailing dash is fine, the random suffix follows it.
        rule = {"subdomain": dns1123_subdomain, "label": dns1123_label, "dns1035": dns1035_label}[
            name_rule
        ]
        made = generate[:-1] + "a" if len(generate) > 1 and generate.endswith("-") else generate
        causes += [invalid("metadata.generateName", generate, _why(c, made))
                   for c in rule(made, "metadata.generateName")]  # fmt: skip
    causes += validate_labels(meta.get("labels"), "metadata.labels")
    annotations, more = _map(meta.get("annotations"), "metadata.annotations")
    causes += more
    size = 0
    for key, value in annotations.items():
        causes += qualified_name(str(key), "metadata.annotations")
        size += len(str(key)) + len(str(value))
    if size > MAX_ANNOTATIONS:
        causes.append(
            Cause(
                TOO_LONG,
                f"Too long: must have at most {MAX_ANNOTATIONS} bytes",
                "metadata.annotations",
            )
        )
    return causes


# -- pods --------------------------------------------------------------------------------


def _list(value: Any, field: str) -> tuple[list[Any], list[Cause]]:
    if value is None:
        return [], []
    if not isinstance(value, list):
        return [], [invalid(field, value, "must be a list")]
    return value, []


def _port(value: Any, field: str) -> list[Cause]:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
        return [invalid(field, value, "must be between 1 and 65535, inclusive")]
    return []


def _containers(
    spec: dict[str, Any], field: str, path: str, volumes: set[str], seen: set[str]
) -> list[Cause]:
    containers, causes = _list(spec.get(field), f"{path}.{field}")
    for index, container in enumerate(containers):
        where = f"{path}.{field}[{index}]"
        if not isinstance(container, dict):
            causes.append(invalid(where, container, "must be an object"))
            continue
        name = container.get("name")
        if not name:
            causes.append(required(f"{where}.name"))
        elif isinstance(name, str):
            causes += dns1123_label(name, f"{where}.name")
            if name in seen:
                causes.append(Cause(DUPLICATE, f'Duplicate value: "{name}"', f"{where}.name"))
            seen.add(name)
        if not container.get("image"):
            causes.append(required(f"{where}.image"))
        ports, more = _list(container.get("ports"), f"{where}.ports")
        causes += more
        for p, port in enumerate(ports):
            if isinstance(port, dict):
                if not port.get("containerPort"):
                    causes.append(required(f"{where}.ports[{p}].containerPort"))
                else:
                    causes += _port(port["containerPort"], f"{where}.ports[{p}].containerPort")
                protocol = port.get("protocol", "TCP")
                if protocol not in ("TCP", "UDP", "SCTP"):
                    causes.append(
                        not_supported(
                            f"{where}.ports[{p}].protocol", protocol, ("SCTP", "TCP", "UDP")
                        )
                    )
        env, more = _list(container.get("env"), f"{where}.env")
        causes += more
        for e, variable in enumerate(env):
            name = variable.get("name") if isinstance(variable, dict) else None
            if not name:
                causes.append(required(f"{where}.env[{e}].name"))
            elif not isinstance(name, str) or not _ENV_NAME.match(name):
                causes.append(
                    invalid(
                        f"{where}.env[{e}].name",
                        name,
                        "a valid environment variable name must consist of alphabetic "
                        "characters, digits, '_', '-', or '.', and must not start with a digit",
                    )
                )
        mounts, more = _list(container.get("volumeMounts"), f"{where}.volumeMounts")
        causes += more
        for m, mount in enumerate(mounts):
            if not isinstance(mount, dict):
                continue
            if not mount.get("name"):
                causes.append(required(f"{where}.volumeMounts[{m}].name"))
            elif mount["name"] not in volumes:
                causes.append(
                    Cause(
                        "FieldValueNotFound",
                        f'Not found: "{mount["name"]}"',
                        f"{where}.volumeMounts[{m}].name",
                    )
                )
            if not mount.get("mountPath"):
                causes.append(required(f"{where}.volumeMounts[{m}].mountPath"))
    return causes


def validate_pod_spec(spec: Any, path: str) -> list[Cause]:
    if not isinstance(spec, dict):
        return [required(path)]
    causes: list[Cause] = []
    volumes, more = _list(spec.get("volumes"), f"{path}.volumes")
    causes += more
    names: set[str] = set()
    for index, volume in enumerate(volumes):
        name = volume.get("name") if isinstance(volume, dict) else None
        if not name:
            causes.append(required(f"{path}.volumes[{index}].name"))
            continue
        causes += dns1123_label(str(name), f"{path}.volumes[{index}].name")
        if name in names:
            causes.append(
                Cause(DUPLICATE, f'Duplicate value: "{name}"', f"{path}.volumes[{index}].name")
            )
        names.add(name)
    if not spec.get("containers"):
        causes.append(required(f"{path}.containers"))
    seen: set[str] = set()
    causes += _containers(spec, "initContainers", path, names, seen)
    causes += _containers(spec, "containers", path, names, seen)
    restart = spec.get("restartPolicy", "Always")
    if restart not in ("Always", "OnFailure", "Never"):
        causes.append(
            not_supported(f"{path}.restartPolicy", restart, ("Always", "Never", "OnFailure"))
        )
    dns = spec.get("dnsPolicy", "ClusterFirst")
    if dns not in ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"):
        causes.append(
            not_supported(
                f"{path}.dnsPolicy",
                dns,
                ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"),
            )
        )
    grace = spec.get("terminationGracePeriodSeconds")
    if grace is not None and (not isinstance(grace, int) or grace < 0):
        causes.append(
            invalid(
                f"{path}.terminationGracePeriodSeconds", grace, "must be greater than or equal to 0"
            )
        )
    return causes


def validate_pod(pod: Object) -> list[Cause]:
    return validate_object_meta(pod.get("metadata"), namespaced=True) + validate_pod_spec(
        pod.get("spec"), "spec"
    )


_POD_MUTABLE = ("activeDeadlineSeconds", "terminationGracePeriodSeconds", "tolerations")


def _pod_spec_shape(spec: Any) -> Any:
    """The spec without what an update may change (container images, and more)."""
    if not isinstance(spec, dict):
        return spec
    shape = {k: v for k, v in spec.items() if k not in _POD_MUTABLE}
    for field in ("containers", "initContainers"):
        if isinstance(shape.get(field), list):
            shape[field] = [
                {k: v for k, v in c.items() if k != "image"} if isinstance(c, dict) else c
                for c in shape[field]
            ]
    return shape


def validate_pod_update(old: Object, new: Object) -> list[Cause]:
    causes = []
    old_spec, new_spec = old.get("spec"), new.get("spec")
    old_nodename = (old_spec or {}).get("nodeName") if isinstance(old_spec, dict) else None
    if (
        isinstance(new_spec, dict) and old_nodename and new_spec.get("nodeName") != old_nodename
    ) or (
        _pod_spec_shape(old_spec) != _pod_spec_shape(new_spec)
        and not (
            not old_nodename
            and _pod_spec_shape({**(old_spec or {}), "nodeName": None})
            == _pod_spec_shape({**(new_spec or {}), "nodeName": None})
        )
    ):
        causes.append(Cause(FORBIDDEN, "Forbidden: pod updates may not change fields other than "
                            "`spec.containers[*].image`, `spec.initContainers[*].image`, "
                            "`spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to "
                            "existing tolerations) or `spec.terminationGracePeriodSeconds`",
                            "spec"))  # fmt: skip
    return causes


# -- other kinds ---------------------------------------------------------------------------


def validate_namespace(namespace: Object) -> list[Cause]:
    return validate_object_meta(namespace.get("metadata"), namespaced=False, name_rule="label")


def validate_node(node: Object) -> list[Cause]:
    return validate_object_meta(node.get("metadata"), namespaced=False)


def validate_generic(obj: Object, namespaced: bool) -> list[Cause]:
    return validate_object_meta(obj.get("metadata"), namespaced=namespaced)


def _config_data(obj: Object) -> list[Cause]:
    causes: list[Cause] = []
    size = 0
    for field in ("data", "binaryData", "stringData"):
        values, more = _map(obj.get(field), field)
        causes += more
        for key, value in values.items():
            if len(key) > 253 or not _CONFIG_KEY.match(key):
                causes.append(
                    invalid(
                        f"{field}[{key}]",
                        key,
                        "a valid config key must consist of alphanumeric characters, '-', '_' or "
                        "'.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for "
                        "validation is '[-._a-zA-Z0-9]+')",
                    )
                )
            elif key in (".", "..") or key.startswith(".."):
                # `..data` and friends are what a configMap volume's atomic writer uses.
                why = f"must not be '{key}'" if key in (".", "..") else "must not start with '..'"
                causes.append(invalid(f"{field}[{key}]", key, why))
            elif field == "binaryData" and key in (obj.get("data") or {}):
                causes.append(invalid(f"{field}[{key}]", key, "duplicate of key present in data"))
            size += len(str(value))
    if size > MAX_CONFIG_BYTES:
        causes.append(Cause(TOO_LONG, f"Too long: must have at most {MAX_CONFIG_BYTES} bytes", ""))
    return causes


def validate_configmap(configmap: Object) -> list[Cause]:
    return validate_object_meta(configmap.get("metadata"), namespaced=True) + _config_data(
        configmap
    )


def validate_secret(secret: Object) -> list[Cause]:
    return validate_object_meta(secret.get("metadata"), namespaced=True) + _config_data(secret)


def validate_service(service: Object) -> list[Cause]:
    causes = validate_object_meta(service.get("metadata"), namespaced=True, name_rule="dns1035")
    spec = service.get("spec")
    if not isinstance(spec, dict):
        return [*causes, required("spec")]
    kind = spec.get("type", "ClusterIP")
    if kind not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        causes.append(
            not_supported(
                "spec.type", kind, ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
            )
        )
    ports, more = _list(spec.get("ports"), "spec.ports")
    causes += more
    if not ports and kind != "ExternalName" and spec.get("clusterIP") != "None":  # not headless
        causes.append(required("spec.ports"))
    names: set[str] = set()
    for index, port in enumerate(ports):
        if not isinstance(port, dict):
            continue
        causes += _port(port.get("port"), f"spec.ports[{index}].port")
        name = port.get("name", "")
        if len(ports) > 1 and not name:
            causes.append(required(f"spec.ports[{index}].name"))
        if name:
            if name in names:
                causes.append(
                    Cause(DUPLICATE, f'Duplicate value: "{name}"', f"spec.ports[{index}].name")
                )
            names.add(name)
    causes += validate_labels(spec.get("selector"), "spec.selector")
    return causes


def _workload(obj: Object) -> list[Cause]:
    causes = validate_object_meta(obj.get("metadata"), namespaced=True)
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [*causes, required("spec")]
    replicas = spec.get("replicas", 1)
    if not isinstance(replicas, int) or replicas < 0:
        causes.append(invalid("spec.replicas", replicas, "must be greater than or equal to 0"))
    selector = spec.get("selector")
    template: dict[str, Any] = spec["template"] if isinstance(spec.get("template"), dict) else {}
    labels = ((template.get("metadata") or {}).get("labels")) or {}
    if not selector:
        causes.append(required("spec.selector"))
    else:
        try:
            parsed = from_label_selector(selector, "spec.selector")
        except SelectorError as e:
            causes.append(Cause(INVALID, str(e), "spec.selector"))
        else:
            if parsed.empty:
                causes.append(
                    invalid("spec.selector", selector, "empty selector is invalid for deployment")
                )
            elif not parsed.matches(labels):
                causes.append(
                    invalid(
                        "spec.template.metadata.labels",
                        labels,
                        "`selector` does not match template `labels`",
                    )
                )
    causes += validate_labels(labels, "spec.template.metadata.labels")
    causes += validate_pod_spec(template.get("spec"), "spec.template.spec")
    restart = (template.get("spec") or {}).get("restartPolicy", "Always")
    if isinstance(template.get("spec"), dict) and restart in ("OnFailure", "Never"):
        # The controllers' pods run for ever; the other values are refused above.
        causes.append(not_supported("spec.template.spec.restartPolicy", restart, ("Always",)))
    return causes


def _selector_immutable(old: Object, new: Object) -> list[Cause]:
    if (old.get("spec") or {}).get("selector") != (new.get("spec") or {}).get("selector"):
        return [
            invalid("spec.selector", (new.get("spec") or {}).get("selector"), "field is immutable")
        ]
    return []


def validate_deployment(deployment: Object) -> list[Cause]:
    causes = _workload(deployment)
    strategy = (
        ((deployment.get("spec") or {}).get("strategy") or {})
        if isinstance(deployment.get("spec"), dict)
        else {}
    )
    kind = strategy.get("type", "RollingUpdate")
    if kind not in ("RollingUpdate", "Recreate"):
        causes.append(not_supported("spec.strategy.type", kind, ("Recreate", "RollingUpdate")))
    if kind == "Recreate" and strategy.get("rollingUpdate"):
        causes.append(
            Cause(
                FORBIDDEN,
                "Forbidden: may not be specified when strategy `type` is 'Recreate'",
                "spec.strategy.rollingUpdate",
            )
        )
    return causes


def validate_deployment_update(old: Object, new: Object) -> list[Cause]:
    return _selector_immutable(old, new)


def validate_replicaset(replicaset: Object) -> list[Cause]:
    return _workload(replicaset)


def validate_replicaset_update(old: Object, new: Object) -> list[Cause]:
    return _selector_immutable(old, new)
