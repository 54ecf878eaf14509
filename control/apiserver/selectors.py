"""Label and field selectors, as the `labelSelector` and `fieldSelector` query
parameters give them (k8s.io/apimachinery's labels and fields packages), and the
structured `metav1.LabelSelector` of Deployments, ReplicaSets and Services.

Label selectors: comma-separated requirements, all of which must hold:
`k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k` (exists), `!k` (does not
exist). `!=` and `notin` also match objects without the label, as upstream.
Field selectors: `f=v`, `f==v`, `f!=v`; each kind supports a fixed set of fields
(`fields_of`), and a selector on another field is refused as the real API does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                  r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")  # fmt: skip
_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


class SelectorError(ValueError):
    """A selector that does not parse; the message is the API's 400 message."""


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # "=", "!=", "in", "notin", "exists", "!"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "exists":
            return present
        if self.operator == "!":
            return not present
        if self.operator in ("=", "in"):
            return present and labels[self.key] in self.values
        return not present or labels[self.key] not in self.values  # "!=", "notin"


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements


def _check_key(key: str, text: str) -> str:
    if not key or len(key.split("/")[-1]) > 63 or not _KEY.match(key):
        raise SelectorError(f"unable to parse requirement: invalid label key {key!r} in {text!r}")
    return key


def _check_value(value: str, text: str) -> str:
    if len(value) > 63 or not _VALUE.match(value):
        raise SelectorError(
            f"unable to parse requirement: invalid label value {value!r} in {text!r}"
        )
    return value


def _split_requirements(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError(f"unable to parse requirement: unbalanced ')' in {text!r}")
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth:
        raise SelectorError(f"unable to parse requirement: unbalanced '(' in {text!r}")
    parts.append("".join(current))
    return [p.strip() for p in parts]


_SET = re.compile(r"^(\S+)\s+(in|notin)\s*\((.*)\)$")


def parse_label_selector(text: str) -> LabelSelector:
    requirements = []
    if not text.strip():
        return LabelSelector()
    for part in _split_requirements(text):
        if not part:
            raise SelectorError(f"unable to parse requirement: empty requirement in {text!r}")
        found = _SET.match(part)
        if found:
            key, operator, values = found.group(1), found.group(2), found.group(3)
            items = [v.strip() for v in values.split(",")] if values.strip() else []
            if not items:
                raise SelectorError(
                    f"unable to parse requirement: {operator} needs values in {text!r}"
                )
            requirements.append(Requirement(
                _check_key(key, text), operator,
                frozenset(_check_value(v, text) for v in items),
            ))  # fmt: skip
            continue
        for symbol, operator in (("!=", "!="), ("==", "="), ("=", "=")):
            if symbol in part:
                key, _, value = part.partition(symbol)
                requirements.append(Requirement(
                    _check_key(key.strip(), text), operator,
                    frozenset({_check_value(value.strip(), text)}),
                ))  # fmt: skip
                break
        else:
            if part.startswith("!"):
                requirements.append(Requirement(_check_key(part[1:].strip(), text), "!"))
            else:
                requirements.append(Requirement(_check_key(part, text), "exists"))
    return LabelSelector(tuple(requirements))


def from_label_selector(selector: Any, where: str = "selector") -> LabelSelector:
    """A metav1.LabelSelector object (matchLabels, matchExpressions)."""
    if selector is None:
        return LabelSelector()
    if not isinstance(selector, dict):
        raise SelectorError(f"{where}: must be an object")
    requirements = []
    for key, value in sorted((selector.get("matchLabels") or {}).items()):
        requirements.append(Requirement(_check_key(str(key), where), "=",
                                        frozenset({_check_value(str(value), where)})))  # fmt: skip
    operators = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for index, expression in enumerate(selector.get("matchExpressions") or []):
        path = f"{where}.matchExpressions[{index}]"
        if not isinstance(expression, dict):
            raise SelectorError(f"{path}: must be an object")
        operator = operators.get(str(expression.get("operator")))
        if operator is None:
            raise SelectorError(
                f'{path}.operator: Unsupported value: "{expression.get("operator")}"'
            )
        values = [str(v) for v in expression.get("values") or []]
        if operator in ("in", "notin") and not values:
            raise SelectorError(
                f"{path}.values: Required value: must be specified when `operator` is 'In' or "
                "'NotIn'"
            )
        if operator in ("exists", "!") and values:
            raise SelectorError(
                f"{path}.values: Forbidden: may not be specified when `operator` is 'Exists' or "
                "'DoesNotExist'"
            )
        requirements.append(Requirement(
            _check_key(str(expression.get("key", "")), path), operator,
            frozenset(_check_value(v, path) for v in values),
        ))  # fmt: skip
    return LabelSelector(tuple(requirements))


# -- fields ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    equal: bool
    value: str


@dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, fields: Mapping[str, str]) -> bool:
        return all((fields.get(r.field, "") == r.value) == r.equal for r in self.requirements)


# The selectable fields per kind besides metadata.name and metadata.namespace.
_FIELDS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
            "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP",
            "status.nominatedNodeName"),
    "Node": ("spec.unschedulable",),
    "Event": ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
              "involvedObject.uid", "involvedObject.apiVersion",
              "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason",
              "reportingComponent", "source", "type"),
    "Secret": ("type",),
    "Namespace": ("status.phase",),
    "ReplicaSet": ("status.replicas",),
}  # fmt: skip


# Booleans and counts that the real API selects on by their Go zero value when unset.
_UNSET = {"spec.hostNetwork": "false", "spec.unschedulable": "false", "status.replicas": "0"}


def _lookup(obj: Any, path: str) -> str:
    value = obj
    for part in path.split("."):
        if not isinstance(value, dict):
            return ""
        value = value.get(part)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if path == "source" and isinstance(value, dict):
        return str(value.get("component", ""))
    return str(value)


def fields_of(kind: str, obj: Mapping[str, Any]) -> dict[str, str]:
    """The selectable fields of an object of `kind` and their values."""
    names = ("metadata.name", "metadata.namespace", *_FIELDS.get(kind, ()))
    fields = {name: _lookup(obj, name) for name in names}
    for name, unset in _UNSET.items():  # what the real API reports for an unset field
        if name in fields and not fields[name]:
            fields[name] = unset
    return fields


def parse_field_selector(text: str, kind: str = "") -> FieldSelector:
    """Parse; with `kind`, refuse fields that kind cannot be selected by."""
    requirements = []
    allowed = {"metadata.name", "metadata.namespace", *_FIELDS.get(kind, ())}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        for symbol in ("!=", "==", "="):
            if symbol in part:
                field, _, value = part.partition(symbol)
                field, equal = field.strip(), symbol != "!="
                break
        else:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
        if kind and field not in allowed:
            raise SelectorError(f"field label not supported: {field}")
        requirements.append(FieldRequirement(field, equal, value.strip()))
    return FieldSelector(tuple(requirements))
