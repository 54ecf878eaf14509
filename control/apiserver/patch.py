"""The PATCH verb's three content types, applied to JSON values (what ``json.loads``
returns): JSON Patch (RFC 6902), JSON Merge Patch (RFC 7386) and Kubernetes' strategic
merge patch (k8s.io/apimachinery ``pkg/util/strategicpatch``, server side).

What it owns: parsing a patch body, applying it to one object, the content-type
constants, and the table of list merge keys (LIST_MERGE_KEYS) taken from the
``patchStrategy``/``patchMergeKey`` struct tags of k8s.io/api core/v1 and apps/v1 and
k8s.io/apimachinery meta/v1. What it doesn't: reading or storing objects, the
resourceVersion precondition and retry loop, validation and defaulting of the result
(a merge patch may well turn an object into something that is not one; the caller
checks the result as it checks any update), server-side apply (answered 415 for now).

Everything here is pure: ``apply_patch`` copies the original first and never mutates
its arguments; the result shares no structure with them.

Strategic merge patch, in short (as the API server applies what ``kubectl apply``
and ``kubectl patch`` send):

- Maps merge recursively; ``null`` deletes a key; anything else replaces.
- A list whose path is in LIST_MERGE_KEYS merges: a list of maps by its merge key
  (an item with a new key is added, one with a known key is merged into it), a list
  of primitives as an ordered set. Every other list is replaced whole.
- Directives: ``$patch: replace`` (a map: replace it; an item of a list: replace the
  list), ``$patch: delete`` (a map: delete it; a list item: delete the item with that
  merge key), ``$patch: merge`` (the default, stated), ``$retainKeys: [...]`` (drop the
  map's keys not listed), ``$deleteFromPrimitiveList/<field>: [...]`` and
  ``$setElementOrder/<field>: [...]`` (the order the list must have; items the patch
  does not name keep their place relative to their neighbours in the live list).
- Order without ``$setElementOrder``: as Kubernetes does, items the patch names take
  the patch's order and new items come before the live items that follow them, so a
  new container added by ``kubectl patch`` lands first; ``kubectl apply`` always sends
  ``$setElementOrder`` for merging lists, so its order is the manifest's.
- Within one map the steps run in this order: ``$patch``, ``$retainKeys``, the lists
  named by ``$setElementOrder``, the other keys in patch order, then the
  ``$deleteFromPrimitiveList`` deletions (Kubernetes walks a Go map, in no fixed order;
  deleting last makes "delete" win over "add" in the same patch).

Known, chosen differences from Kubernetes (each also in a test):

- ``$patch: delete`` on a map deletes the key; Kubernetes leaves ``{}`` behind.
- ``$patch: merge`` is accepted (a no-op) in maps and list items; Kubernetes rejects it.
- A map or list that is new to the object is merged into an empty one, so its
  directives work and leave no trace; Kubernetes copies it with every map that
  carries ``$patch`` dropped (a new map under ``$patch: replace`` would vanish).
  ``$patch: replace`` likewise yields the patch with directives and nulls removed.
- Keys starting with ``$`` that are not directives are an error (Kubernetes would
  merge them and drop them when decoding into its Go types).
- Ordering is always against the live list as it was before the patch. When one
  patch both deletes and adds items of a list that also holds items the patch does
  not name, Kubernetes' placement of those items depends on Go slice aliasing
  (deleted slots in the live list's array are overwritten by the added items); here
  an added item goes before the unnamed ones that follow its predecessor. A new list
  of primitives is deduplicated like a merged one.
- JSON Patch: duplicate member names are an error (RFC 6902 A.13); a ``test`` of a
  missing path fails (the evanphx library Kubernetes uses lets ``null`` match a
  missing path). As in Kubernetes, a patch has at most 10,000 operations and
  ``copy`` may copy at most MAX_COPY_BYTES in total.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

JSON_PATCH: Final = "application/json-patch+json"
MERGE_PATCH: Final = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH: Final = "application/strategic-merge-patch+json"
APPLY_PATCH_YAML: Final = "application/apply-patch+yaml"  # server-side apply: not yet
APPLY_PATCH_CBOR: Final = "application/apply-patch+cbor"  # server-side apply: not yet

SUPPORTED_PATCH_TYPES: Final = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH)

MAX_JSON_PATCH_OPERATIONS: Final = 10_000  # apiserver's MaxJSONPatchOperations
MAX_COPY_BYTES: Final = 3 * 1024 * 1024  # apiserver's default maximum request body

JSONObject = dict[str, Any]


class PatchError(Exception):
    """A patch that cannot be applied: bad JSON, the wrong shape, a bad JSON pointer,
    a failed ``test``, an unknown directive. (Kubernetes answers 400 for a body it
    cannot decode and 422 for one it cannot apply.) The message names the place;
    ``path`` repeats it (a dotted field path, or a JSON pointer for JSON Patch), ""
    for the patch as a whole."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.path = path


class UnsupportedPatchType(Exception):
    """A Content-Type that is not one of SUPPORTED_PATCH_TYPES: 415."""

    def __init__(self, content_type: str) -> None:
        supported = ", ".join(SUPPORTED_PATCH_TYPES)
        super().__init__(f"unsupported patch type {content_type!r}: use one of {supported}")
        self.content_type = content_type


def media_type(content_type: str) -> str:
    """The media type of a Content-Type header: parameters dropped, lower case."""
    return content_type.split(";", 1)[0].strip().lower()


def apply_patch(original: Any, patch: bytes | str, content_type: str) -> Any:
    """Apply ``patch`` (the request body) of ``content_type`` (the Content-Type
    header; parameters such as charset are ignored) to ``original`` and return the
    new value. Raises UnsupportedPatchType before looking at the body, PatchError if
    the body is not a patch of that type or cannot be applied."""
    kind = media_type(content_type)
    apply: Callable[[Any, Any], Any]
    if kind == JSON_PATCH:
        what, apply = "json patch", _json_patch
    elif kind == MERGE_PATCH:
        what, apply = "merge patch", _merge_patch
    elif kind == STRATEGIC_MERGE_PATCH:
        what, apply = "strategic merge patch", _strategic_merge_patch
    else:
        raise UnsupportedPatchType(content_type)
    document = _load(patch, what, reject_duplicates=kind == JSON_PATCH)
    try:
        return apply(_copy(original), document)
    except RecursionError:  # deeper than any object; the server also limits body size
        raise PatchError(f"{what}: nested too deeply") from None


# JSON values ----------------------------------------------------------------------


def _load(body: bytes | str, what: str, *, reject_duplicates: bool = False) -> Any:
    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    def unique(pairs: list[tuple[str, Any]]) -> JSONObject:
        result: JSONObject = {}
        for key, value in pairs:
            if key in result:
                raise ValueError(f"duplicate member {key!r}")
            result[key] = value
        return result

    hook = unique if reject_duplicates else None
    try:
        return json.loads(body, parse_constant=no_constants, object_pairs_hook=hook)
    except RecursionError:
        raise PatchError(f"{what}: nested too deeply") from None
    except (ValueError, TypeError) as e:  # JSONDecodeError, UnicodeDecodeError
        raise PatchError(f"{what}: invalid json: {e}") from None


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value (1 == 1.0), booleans are not numbers, object
    members in any order, arrays in order."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _identity(value: Any) -> Hashable:
    """A hashable stand-in for a JSON value, equal exactly when _equal is."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", value)
    if isinstance(value, str):
        return ("string", value)
    if value is None:
        return ("null",)
    if isinstance(value, dict):
        return ("object", frozenset((k, _identity(v)) for k, v in value.items()))
    return ("array", tuple(_identity(v) for v in value))


def _type_name(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


# JSON Patch (RFC 6902) ------------------------------------------------------------

_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")
_BAD_ESCAPE = re.compile(r"~(?![01])")
_MISSING: Final = object()


def _json_patch(document: Any, patch: Any) -> Any:
    if not isinstance(patch, list):
        raise PatchError(f"json patch: must be an array of operations, not {_type_name(patch)}")
    if len(patch) > MAX_JSON_PATCH_OPERATIONS:
        raise PatchError(
            f"json patch: {len(patch)} operations, at most {MAX_JSON_PATCH_OPERATIONS} allowed"
        )
    copied = [0]  # bytes copied by "copy" so far
    for number, operation in enumerate(patch):
        document = _json_patch_operation(document, operation, number, copied)
    return document


def _json_patch_operation(document: Any, operation: Any, number: int, copied: list[int]) -> Any:
    where = f"json patch operation {number}"
    if not isinstance(operation, dict):
        raise PatchError(f"{where}: must be an object, not {_type_name(operation)}")
    op = operation.get("op")
    if op not in ("add", "remove", "replace", "move", "copy", "test"):
        raise PatchError(f'{where}: unknown or missing "op": {op!r}')
    path = _member(operation, "path", where)
    where = f"{where} ({op} {path})"
    tokens = _pointer(path, where)
    if op in ("add", "replace", "test") and "value" not in operation:
        raise PatchError(f'{where}: missing "value"', path)
    if op == "add":
        return _add(document, tokens, operation["value"], where, path)
    if op == "remove":
        return _remove(document, tokens, where, path)[0]
    if op == "replace":
        if not tokens:
            return operation["value"]
        document, _ = _remove(document, tokens, where, path)
        return _add(document, tokens, operation["value"], where, path)
    if op == "test":
        actual = _get(document, tokens, where, path)
        if not _equal(actual, operation["value"]):
            raise PatchError(f"{where}: test failed: the value is {json.dumps(actual)}", path)
        return document
    source = _member(operation, "from", where)
    from_tokens = _pointer(source, where)
    if op == "copy":
        value = _copy(_get(document, from_tokens, where, source))
        copied[0] += len(json.dumps(value))
        if copied[0] > MAX_COPY_BYTES:
            raise PatchError(f"{where}: copies more than {MAX_COPY_BYTES} bytes in total", path)
        return _add(document, tokens, value, where, path)
    if from_tokens == tokens:  # move onto itself: a no-op once "from" exists
        _get(document, from_tokens, where, source)
        return document
    if tokens[: len(from_tokens)] == from_tokens:
        raise PatchError(f"{where}: cannot move {source} into its own child", path)
    document, value = _remove(document, from_tokens, where, source)
    return _add(document, tokens, value, where, path)


def _member(operation: JSONObject, name: str, where: str) -> str:
    value = operation.get(name)
    if not isinstance(value, str):
        raise PatchError(f'{where}: "{name}" must be a JSON pointer string')
    return value


def _pointer(pointer: str, where: str) -> list[str]:
    """RFC 6901: "" is the whole document, else "/"-separated tokens with "~1" for "/"
    and "~0" for "~" (decoded in that order)."""
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f"{where}: bad json pointer {pointer!r}: must start with /", pointer)
    tokens = pointer[1:].split("/")
    for token in tokens:
        if _BAD_ESCAPE.search(token):
            raise PatchError(f"{where}: bad json pointer {pointer!r}: ~ must be ~0 or ~1", pointer)
    return [t.replace("~1", "/").replace("~0", "~") for t in tokens]


def _index(array: list[Any], token: str, where: str, path: str, *, end: bool) -> int:
    """The array index ``token`` names; ``end`` allows len(array) (add's insert)."""
    if token == "-" and end:
        return len(array)
    if not _ARRAY_INDEX.fullmatch(token):
        raise PatchError(f"{where}: {token!r} is not an array index", path)
    index = int(token)
    if index > len(array) or (index == len(array) and not end):
        raise PatchError(f"{where}: index {index} out of range (length {len(array)})", path)
    return index


def _get(document: Any, tokens: list[str], where: str, path: str) -> Any:
    node = document
    for token in tokens:
        if isinstance(node, dict):
            node = node.get(token, _MISSING)
            if node is _MISSING:
                raise PatchError(f"{where}: path not found", path)
        elif isinstance(node, list):
            node = node[_index(node, token, where, path, end=False)]
        else:
            raise PatchError(f"{where}: path not found: {_type_name(node)} has no members", path)
    return node


def _add(document: Any, tokens: list[str], value: Any, where: str, path: str) -> Any:
    if not tokens:
        return value
    parent = _get(document, tokens[:-1], where, path)
    if isinstance(parent, dict):
        parent[tokens[-1]] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, tokens[-1], where, path, end=True), value)
    else:
        raise PatchError(f"{where}: parent is {_type_name(parent)}, not a container", path)
    return document


def _remove(document: Any, tokens: list[str], where: str, path: str) -> tuple[Any, Any]:
    """Remove what ``tokens`` names; return the document and the removed value."""
    if not tokens:
        raise PatchError(f"{where}: cannot remove the whole document", path)
    parent = _get(document, tokens[:-1], where, path)
    if isinstance(parent, dict):
        if tokens[-1] not in parent:
            raise PatchError(f"{where}: path not found", path)
        return document, parent.pop(tokens[-1])
    if isinstance(parent, list):
        return document, parent.pop(_index(parent, tokens[-1], where, path, end=False))
    raise PatchError(f"{where}: path not found: {_type_name(parent)} has no members", path)


# JSON Merge Patch (RFC 7386) ------------------------------------------------------


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 section 2, on a private copy of the target."""
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    for name, value in patch.items():
        if value is None:
            target.pop(name, None)
        else:
            target[name] = _merge_patch(target.get(name), value)
    return target


# Strategic merge patch: the merge keys --------------------------------------------


def _with_prefixes(
    prefixes: tuple[str, ...], fields: Mapping[str, str | None]
) -> dict[str, str | None]:
    return {f"{prefix}.{field}": key for prefix in prefixes for field, key in fields.items()}


# PodSpec's merging lists (core/v1 PodSpec). Tolerations, readinessGates, resourceClaims'
# claims, dnsConfig's lists, affinity terms and securityContext lists are atomic:
# they carry no patchStrategy tag and are replaced. Alpha fields (evictionResponders)
# are left out.
_POD_SPEC: Final[Mapping[str, str | None]] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",  # patchStrategy merge,retainKeys
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "schedulingGates": "name",
    "resourceClaims": "name",  # merge,retainKeys
}

# Container and EphemeralContainerCommon. args, command, envFrom, resizePolicy,
# restartPolicyRules and resources.claims are atomic. Kubernetes merges ports by
# containerPort alone (its listMapKey is containerPort+protocol; SMP uses one key).
_CONTAINER: Final[Mapping[str, str | None]] = {
    "ports": "containerPort",
    "env": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
}

# meta/v1 ObjectMeta: finalizers merge as a set of strings.
_OBJECT_META: Final[Mapping[str, str | None]] = {
    "ownerReferences": "uid",
    "finalizers": None,
}

# Where a PodSpec and its ObjectMeta live: Pod; PodTemplate; Deployment, ReplicaSet,
# ReplicationController, StatefulSet, DaemonSet, Job; CronJob.
_POD_SPEC_AT: Final = (
    "spec",
    "template.spec",
    "spec.template.spec",
    "spec.jobTemplate.spec.template.spec",
)
_META_AT: Final = (
    "metadata",
    "template.metadata",
    "spec.template.metadata",
    "spec.jobTemplate.metadata",
    "spec.jobTemplate.spec.template.metadata",
)
_CONTAINERS_AT: Final = tuple(
    f"{spec}.{field}[]"
    for spec in _POD_SPEC_AT
    for field in ("containers", "initContainers", "ephemeralContainers")
)

LIST_MERGE_KEYS: Final[Mapping[str, str | None]] = MappingProxyType(
    {
        **_with_prefixes(_META_AT, _OBJECT_META),
        **_with_prefixes(_POD_SPEC_AT, _POD_SPEC),
        **_with_prefixes(_CONTAINERS_AT, _CONTAINER),
        # Status of Pod, Node, Deployment, ReplicaSet, ReplicationController,
        # StatefulSet, DaemonSet, Job, Namespace, Service (metav1.Condition),
        # PersistentVolumeClaim: every conditions list merges by type.
        "status.conditions": "type",
        # PodStatus. containerStatuses and its siblings are atomic.
        "status.podIPs": "ip",
        "status.hostIPs": "ip",
        "status.resourceClaimStatuses": "name",  # merge,retainKeys
        # NodeStatus (images, volumesInUse, volumesAttached are atomic) and NodeSpec
        # (taints is atomic).
        "status.addresses": "type",
        "spec.podCIDRs": None,
        # ServiceSpec (merge key port alone, as for container ports).
        "spec.ports": "port",
        # ServiceAccount.
        "secrets": "name",
    }
)
"""Object path -> merge key of every list that strategic merge patch merges; None for
a list of primitives merged as a set. "[]" stands for "any item of the list". Paths do
not depend on the kind: "spec.ports" is a Service's, "spec.containers" a Pod's. A list
not listed here is replaced whole. ConfigMap and Secret hold only maps, which always
merge. ``$retainKeys`` (kubectl sends it for spec.strategy of a Deployment and for
volumes) needs no entry: the server honours it wherever it appears."""


def _split_path(path: str) -> tuple[str, ...]:
    return tuple(path.replace("[]", ".[]").split("."))


_MERGE_KEYS: Final[Mapping[tuple[str, ...], str | None]] = {
    _split_path(path): key for path, key in LIST_MERGE_KEYS.items()
}


# Strategic merge patch: applying --------------------------------------------------

_DIRECTIVE: Final = "$patch"
_RETAIN_KEYS: Final = "$retainKeys"
_SET_ORDER: Final = "$setElementOrder/"
_DELETE_FROM: Final = "$deleteFromPrimitiveList/"


@dataclass(frozen=True, slots=True)
class _Where:
    """Where in the object the merge is: ``schema`` looks up LIST_MERGE_KEYS ("[]" for
    a list item), ``shown`` names it in errors (the patch's item index)."""

    schema: tuple[str, ...] = ()
    shown: str = ""

    def field(self, name: str) -> _Where:
        return _Where((*self.schema, name), f"{self.shown}.{name}" if self.shown else name)

    def item(self, index: int) -> _Where:
        return _Where((*self.schema, "[]"), f"{self.shown}[{index}]")

    def merge_key(self) -> tuple[bool, str | None]:
        """(whether this list merges, its merge key)."""
        return self.schema in _MERGE_KEYS, _MERGE_KEYS.get(self.schema)

    def error(self, problem: str) -> PatchError:
        return PatchError(f"strategic merge patch: {self.shown or '<root>'}: {problem}", self.shown)


def _strategic_merge_patch(original: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        raise PatchError(f"strategic merge patch: must be an object, not {_type_name(patch)}")
    if not isinstance(original, dict):
        raise PatchError(f"strategic merge patch: cannot patch {_type_name(original)}")
    merged = _merge_map(original, patch, _Where())
    return {} if merged is None else merged


def _directive(value: Any, where: _Where) -> str:
    if value not in ("replace", "delete", "merge"):
        raise where.error(f"unknown $patch directive {value!r}")
    return str(value)


def _merge_map(original: JSONObject, patch: JSONObject, where: _Where) -> JSONObject | None:
    """Merge ``patch`` into ``original`` (a private copy, changed in place). None means
    "delete this map" ($patch: delete)."""
    patch = dict(patch)
    if _DIRECTIVE in patch:
        directive = _directive(patch.pop(_DIRECTIVE), where)
        if directive == "delete":
            return None
        if directive == "replace":
            original = {}

    if _RETAIN_KEYS in patch:
        retained = _retain_keys(patch.pop(_RETAIN_KEYS), patch, where)
        original = {k: v for k, v in original.items() if k in retained}

    for key in [k for k in patch if k.startswith(_SET_ORDER)]:
        name = _directive_field(key, _SET_ORDER, where)
        _ordered_list(original, patch, name, patch.pop(key), where.field(name))

    deletions: list[tuple[str, Any]] = []
    for key, value in patch.items():
        if key.startswith(_DELETE_FROM):
            deletions.append((_directive_field(key, _DELETE_FROM, where), value))
        elif key.startswith("$"):
            raise where.error(f"unknown directive {key!r}")
        else:
            _merge_field(original, key, value, where.field(key))

    for name, value in deletions:
        _delete_from_primitive_list(original, name, value, where.field(name))
    return original


def _directive_field(key: str, prefix: str, where: _Where) -> str:
    name = key[len(prefix) :]
    if not name or name.startswith("$"):
        raise where.error(f"directive {key!r} names no field")
    return name


def _retain_keys(value: Any, patch: JSONObject, where: _Where) -> set[str]:
    if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
        raise where.error("$retainKeys must be a list of field names")
    retained = set(value)
    for key, patch_value in patch.items():
        if patch_value is None or key.startswith("$"):
            continue
        if key not in retained:
            raise where.error(f"{key!r} is in the patch but not in $retainKeys")
    return retained


def _merge_field(original: JSONObject, key: str, value: Any, where: _Where) -> None:
    if value is None:
        original.pop(key, None)
        return
    current = original.get(key, _MISSING)
    if isinstance(current, dict) and isinstance(value, dict):
        merged: Any = _merge_map(current, value, where)
    elif isinstance(current, list) and isinstance(value, list):
        merged = _merge_list(current, value, where)
    else:  # new, or of another type, or a primitive: the patch's value, cleaned
        merged = _new_value(value, where)
    if merged is None:  # $patch: delete
        original.pop(key, None)
    else:
        original[key] = merged


def _new_value(value: Any, where: _Where) -> Any:
    """A patch value with nothing to merge into: merged into an empty one, which
    applies (and removes) its directives and drops its nulls."""
    if isinstance(value, dict):
        return _merge_map({}, value, where)
    if isinstance(value, list):
        return _merge_list([], value, where)
    return value


def _merge_list(original: list[Any], patch: list[Any], where: _Where) -> list[Any]:
    merges, merge_key = where.merge_key()
    if not merges:
        return _replace_list(patch, where)
    if not original and not patch:
        return original
    if _element_kind(original, patch, where) == "map":
        if merge_key is None:
            raise where.error("cannot merge a list of objects without a merge key")
        return _merge_maps_list(original, patch, merge_key, where)
    seen: set[Hashable] = set()
    merged = []
    for item in original + patch:
        identity = _identity(item)
        if identity not in seen:
            seen.add(identity)
            merged.append(item)
    return _in_order(merged, [_identity(v) for v in patch], original, None)


def _replace_list(patch: list[Any], where: _Where) -> list[Any]:
    """A list that does not merge: the patch's, without directive items (as
    Kubernetes drops them) and cleaned."""
    result = []
    for index, item in enumerate(patch):
        if isinstance(item, dict) and _DIRECTIVE in item:
            _directive(item[_DIRECTIVE], where.item(index))
            continue
        result.append(_new_value(item, where.item(index)))
    return result


def _element_kind(original: list[Any], patch: list[Any], where: _Where) -> str:
    kinds = set()
    for item in original + patch:
        if isinstance(item, list):
            raise where.error("cannot merge a list of lists")
        kinds.add("map" if isinstance(item, dict) else "primitive")
    if len(kinds) > 1:
        raise where.error("cannot merge a list that mixes objects and primitives")
    return kinds.pop()


def _key_of(item: Any, merge_key: str | None, where: _Where) -> Hashable:
    """The identity of a patch's list item: its merge key's value, or itself."""
    if merge_key is None:
        return _identity(item)
    if not isinstance(item, dict) or merge_key not in item:
        raise where.error(f"list item has no merge key {merge_key!r}")
    return _identity(item[merge_key])


def _live_key(item: Any, merge_key: str | None) -> Hashable:
    """The identity of a live list's item (lenient: stored data is not checked)."""
    if merge_key is not None and isinstance(item, dict):
        return _identity(item.get(merge_key))
    return _identity(item)


def _merge_maps_list(
    original: list[Any], patch: list[Any], merge_key: str, where: _Where
) -> list[Any]:
    # Directive items first: deletions by merge key, a replace marker.
    items: list[tuple[int, JSONObject]] = []
    replace = False
    for index, item in enumerate(patch):
        if _DIRECTIVE not in item:
            items.append((index, item))
            continue
        directive = _directive(item[_DIRECTIVE], where.item(index))
        if directive == "delete":
            doomed = _key_of(item, merge_key, where.item(index))
            original = [o for o in original if _live_key(o, merge_key) != doomed]
        elif directive == "replace":
            replace = True
        elif set(item) != {_DIRECTIVE}:  # merge: an ordinary item, stated
            items.append((index, {k: v for k, v in item.items() if k != _DIRECTIVE}))
    if replace:
        return [_new_value(item, where.item(index)) for index, item in items]

    merged = list(original)
    positions: dict[Hashable, int] = {}
    for position, live_item in enumerate(merged):
        positions.setdefault(_live_key(live_item, merge_key), position)
    named = []
    for index, item in items:
        identity = _key_of(item, merge_key, where.item(index))
        named.append(identity)
        if identity in positions:
            at = positions[identity]
            merged[at] = _merge_map(merged[at], item, where.item(index))
        else:
            positions[identity] = len(merged)
            merged.append(_new_value(item, where.item(index)))
    return _in_order(merged, named, original, merge_key)


def _in_order(
    merged: list[Any], named: list[Hashable], live: list[Any], merge_key: str | None
) -> list[Any]:
    """Reorder ``merged``: the items ``named`` names in that order, the others in
    the order of ``live`` (the live list), interleaved as Kubernetes does
    (strategicpatch ``normalizeElementOrder`` and ``mergeSortedSlice``): a named item
    goes before the next unnamed one unless that one came before it in the live
    list."""
    wanted: dict[Hashable, int] = {}
    for position, identity in enumerate(named):
        wanted.setdefault(identity, position)
    live_at: dict[Hashable, int] = {}
    for position, item in enumerate(live):
        live_at.setdefault(_live_key(item, merge_key), position)

    keyed = [(_live_key(item, merge_key), item) for item in merged]
    chosen = sorted((kv for kv in keyed if kv[0] in wanted), key=lambda kv: wanted[kv[0]])
    others = sorted(
        (kv for kv in keyed if kv[0] not in wanted),
        key=lambda kv: live_at.get(kv[0], len(live_at)),
    )
    result = []
    i = j = 0
    while i < len(others) or j < len(chosen):
        if j < len(chosen) and i < len(others):
            left, right = live_at.get(others[i][0]), live_at.get(chosen[j][0])
            take_other = left is not None and right is not None and left < right
        else:
            take_other = j == len(chosen)
        if take_other:
            result.append(others[i][1])
            i += 1
        else:
            result.append(chosen[j][1])
            j += 1
    return result


def _ordered_list(
    original: JSONObject, patch: JSONObject, name: str, order: Any, where: _Where
) -> None:
    """``$setElementOrder/<name>``: merge the field ``name`` (if the patch has it) and
    put the result in ``order``; the patch's list is consumed."""
    directive = f"$setElementOrder/{name}"
    if not isinstance(order, list):
        raise where.error(f"{directive} must be a list")
    _, merge_key = where.merge_key()
    if merge_key is None and any(isinstance(item, dict | list) for item in order):
        raise where.error(f"{directive}: the list has no merge key, so it must list values")
    wanted = [_key_of(item, merge_key, where.item(i)) for i, item in enumerate(order)]
    live: list[Any] = []
    if name in original:
        live = original[name]
        if not isinstance(live, list):
            raise where.error(f"{directive} names {_type_name(live)}, not a list")
    if name in patch:
        value = patch.pop(name)
        if not isinstance(value, list):
            raise where.error(f"{directive} goes with {_type_name(value)}, not a list")
        _check_order(value, wanted, merge_key, where)
        merged = _merge_list(live, value, where) if name in original else _new_value(value, where)
    elif name in original:
        merged = live
    else:
        return
    original[name] = _in_order(merged, wanted, live, merge_key)


def _check_order(
    patch: list[Any], wanted: list[Hashable], merge_key: str | None, where: _Where
) -> None:
    """The patch's items (directive items aside) must come in the order
    ``$setElementOrder`` gives, and be among them."""
    position = 0
    for index, item in enumerate(patch):
        if isinstance(item, dict) and _DIRECTIVE in item:
            continue
        identity = _key_of(item, merge_key, where.item(index))
        while position < len(wanted) and wanted[position] != identity:
            position += 1
        if position == len(wanted):
            raise where.item(index).error("not in the order $setElementOrder gives")
        position += 1


def _delete_from_primitive_list(original: JSONObject, name: str, value: Any, where: _Where) -> None:
    if not isinstance(value, list) or any(isinstance(v, dict | list) for v in value):
        raise where.error(f"$deleteFromPrimitiveList/{name} must be a list of primitives")
    current = original.get(name)
    if not isinstance(current, list):
        return  # nothing to delete from
    doomed = {_identity(v) for v in value}
    original[name] = [item for item in current if _identity(item) not in doomed]
