"""OpenAPI for kubectl, and strict field validation, from one set of schemas.

What is served (see the kubectl research notes, section 2):

    /openapi/v3             the index: {"paths": {"api/v1": {"serverRelativeURL":
                            "/openapi/v3/api/v1?hash=<sha256>"}, ...}}, one entry per
                            served group/version; `Cache-Control: no-cache, private`
    /openapi/v3/<gv>        one OpenAPI 3.0 document per group/version: path items for
                            every served kind (collection, named object, status) whose
                            get/put/patch/delete/post operations carry
                            `x-kubernetes-group-version-kind` and declare the
                            `fieldValidation` query parameter inline, and
                            `components.schemas` for the kinds and everything they
                            reference (io.k8s.api.core.v1.Pod style names). With the
                            current `?hash=`: `Cache-Control: public, immutable`.
    /openapi/v2             200, an empty body typed as protobuf: a valid, empty
                            OpenAPI v2 Document (`kind: List` files and the client-side
                            validation fallback then find no schema and pass).

kubectl (1.27+) validates create/apply through v3: a PATCH operation for the object's
GVK that declares `fieldValidation` makes it send `?fieldValidation=Strict` and leave
the checking to the server, which `check_fields` does here. The PATCH request body
does not list `application/strategic-merge-patch+json`: kubectl would then compute
apply patches from these schemas, which carry no patch merge keys; without it, it
uses the exact patch metadata compiled into it.

The schemas are generated at run time from the model classes of the official
`kubernetes` Python client (Apache-2.0, The Kubernetes Authors; pinned to the
served minor, 32.x = Kubernetes 1.32): `openapi_types` and `attribute_map` give the
fields, JSON names and types, the getter docstrings the descriptions, the setters'
"must not be `None`" checks the required fields. What the package does not carry is
filled in from small tables here: which fields are IntOrString (the client says
`object`), Quantity or MicroTime (it says `str` and `datetime`), the API group of
each model (from the kinds that reach it), and descriptions of the kinds and of
their metadata/spec/status fields. The package is imported only when the schemas
are first needed (it is heavy): the first OpenAPI request or field check.

Strict field validation (`unknown_fields`, `check_fields`) walks an object along the
same models: nested models, lists (`containers[0]`) and maps, `metadata` and `status`
included; fields of `object` type (RawExtension, FieldsV1, ...) are not descended.
As the API server does, unknown fields are rejected (Strict, 400), reported as
`Warning: 299` headers (Warn, the default when the parameter is absent) or dropped
silently (Ignore); with Warn and Ignore they are removed from the object, as
decoding into the Go types removes them. Duplicate JSON keys are not detected (the
body is parsed before this runs).
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from control.apiserver.errors import ApiError, Target
from control.apiserver.resources import RESOURCES, ResourceType
from control.apiserver.validation import not_supported

V3_PATH = "/openapi/v3"
V2_PATH = "/openapi/v2"
JSON = "application/json"
# The protobuf OpenAPI v2 Document type, in the form kubectl accepts (`@` is not legal
# in a Content-Type and fails to parse).
V2_CONTENT_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
INFO_VERSION = "v1.32.0-kubeling"

FIELD_VALIDATION_MODES = ("Ignore", "Strict", "Warn")
DEFAULT_FIELD_VALIDATION = "Warn"  # the API server's default without the parameter
MAX_STRICT_ERRORS = 100  # as the API server's decoder keeps at most 100

PATCH_CONTENT_TYPES = ("application/json-patch+json", "application/merge-patch+json")

# -- the types the client package does not describe ------------------------------------

META = "io.k8s.apimachinery.pkg.apis.meta.v1"
TIME = f"{META}.Time"
MICRO_TIME = f"{META}.MicroTime"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"

_SCALARS: dict[str, dict[str, Any]] = {
    TIME: {
        "type": "string",
        "format": "date-time",
        "description": "Time is a timestamp in RFC 3339 form, to the second, in UTC.",
    },
    MICRO_TIME: {
        "type": "string",
        "format": "date-time",
        "description": "MicroTime is a timestamp in RFC 3339 form with microseconds.",
    },
    QUANTITY: {
        "oneOf": [{"type": "string"}, {"type": "number"}],
        "description": "Quantity is a fixed-point number with an optional suffix: a binary "
        "(Ki, Mi, Gi, Ti, Pi, Ei) or decimal (m, k, M, G, T, P, E) multiple, or an "
        'exponent (1e3). Serialized as a string, e.g. "500m", "128Mi", "2".',
    },
    INT_OR_STRING: {
        "format": "int-or-string",
        "oneOf": [{"type": "integer"}, {"type": "string"}],
        "description": "IntOrString holds an int32 or a string, such as a port number or "
        'name, or an absolute number or a percentage ("25%").',
    },
}


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def _fields(text: str) -> frozenset[tuple[str, str]]:
    """The (class, JSON field name) pairs of "Class.field Class.field ..."."""
    return frozenset((c, f) for c, _, f in (w.partition(".") for w in _words(text)))


# The IntOrString fields: the client types them `object`.
_INT_OR_STRING_FIELDS = _fields("""
    V1HTTPGetAction.port V1TCPSocketAction.port V1ServicePort.targetPort
    V1NetworkPolicyPort.port V1RollingUpdateDeployment.maxSurge
    V1RollingUpdateDeployment.maxUnavailable V1RollingUpdateDaemonSet.maxSurge
    V1RollingUpdateDaemonSet.maxUnavailable V1RollingUpdateStatefulSetStrategy.maxUnavailable
    V1PodDisruptionBudgetSpec.maxUnavailable V1PodDisruptionBudgetSpec.minAvailable
""")
# The Quantity fields (scalars, or the values of maps): the client types them `str`.
_QUANTITY_FIELDS = _fields("""
    V1ResourceRequirements.limits V1ResourceRequirements.requests
    V1VolumeResourceRequirements.limits V1VolumeResourceRequirements.requests
    V1EmptyDirVolumeSource.sizeLimit V1ResourceFieldSelector.divisor V1PodSpec.overhead
    V1ContainerStatus.allocatedResources V1NodeStatus.allocatable V1NodeStatus.capacity
    V1PersistentVolumeSpec.capacity V1PersistentVolumeClaimStatus.allocatedResources
    V1PersistentVolumeClaimStatus.capacity V1ResourceQuotaSpec.hard V1ResourceQuotaStatus.hard
    V1ResourceQuotaStatus.used V1LimitRangeItem.default V1LimitRangeItem.defaultRequest
    V1LimitRangeItem.max V1LimitRangeItem.min V1LimitRangeItem.maxLimitRequestRatio
""")
# The MicroTime fields (the client's other `datetime` fields are Time).
_MICRO_TIME_FIELDS = _fields("CoreV1Event.eventTime V1LeaseSpec.acquireTime V1LeaseSpec.renewTime")

# The kinds of the core group (all of them, served or not): every model they reach is
# io.k8s.api.core.v1.*, even when an apps kind reaches it too (PodTemplateSpec).
_CORE_KINDS = _words("""
    Binding ComponentStatus ConfigMap Endpoints Event LimitRange Namespace Node
    PersistentVolume PersistentVolumeClaim Pod PodTemplate ReplicationController
    ResourceQuota Secret Service ServiceAccount
""")
# The unprefixed model classes of k8s.io/apimachinery's meta/v1.
_META_MODELS = frozenset(
    _words("""
    ObjectMeta ListMeta OwnerReference ManagedFieldsEntry LabelSelector
    LabelSelectorRequirement FieldSelectorRequirement Condition Status StatusDetails
    StatusCause DeleteOptions Preconditions WatchEvent APIResource APIResourceList APIGroup
    APIGroupList APIVersions GroupVersionForDiscovery ServerAddressByClientCIDR
""")
)
_PACKAGES = {
    "core": "io.k8s.api.core",
    "apiextensions": "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions",
    "apiregistration": "io.k8s.kube-aggregator.pkg.apis.apiregistration",
}

# What `kubectl explain <kind>` prints as DESCRIPTION (the client has no class docs).
_KIND_DESCRIPTIONS = {
    "Namespace": "Namespace is a scope for the names of namespaced objects.",
    "Pod": "Pod is a group of containers that run together on one node, sharing its "
    "network namespace and volumes. Clients create pods; the scheduler binds them to a "
    "node and that node's kubelet runs them.",
    "Node": "Node is a worker machine. Each node runs a kubelet, which registers it and "
    "reports its status.",
    "Service": "Service is a named, stable network endpoint (a virtual IP and ports) for "
    "the pods its selector matches.",
    "Endpoints": "Endpoints lists the addresses and ports that implement a service.",
    "ConfigMap": "ConfigMap holds configuration data, as key/value pairs, for pods to consume.",
    "Secret": "Secret holds sensitive data, such as passwords, tokens or keys, as "
    "base64-encoded values.",
    "Event": "Event is a report of something that happened in the cluster.",
    "ServiceAccount": "ServiceAccount is an identity for the processes that run in pods.",
    "Deployment": "Deployment declares the desired state of a set of identical pods and "
    "rolls it out through ReplicaSets.",
    "ReplicaSet": "ReplicaSet keeps a given number of pods from one template running.",
    "Lease": "Lease is a time-bound claim, used for leader election and node heartbeats.",
}
_SPEC_DESCRIPTION = "Specification of the desired behavior of the {kind}."
_STATUS_DESCRIPTION = (
    "Most recently observed status of the {kind}. Populated by the system. Read-only."
)
_METADATA_DESCRIPTION = "Standard object metadata: name, namespace, labels, annotations, ..."
_LIST_METADATA_DESCRIPTION = "Standard list metadata."
_ITEMS_DESCRIPTION = "The list of {kind} objects."

_CLASS_NAME = re.compile(
    r"^(?P<group>[A-Z][a-z]+)?(?P<version>V\d+(?:(?:alpha|beta)\d+)?)(?P<kind>[A-Z]\w*)$"
)
_PRIMITIVES: dict[str, dict[str, Any]] = {
    "str": {"type": "string"},
    "int": {"type": "integer", "format": "int64"},
    "float": {"type": "number", "format": "double"},
    "bool": {"type": "boolean"},
    "date": {"type": "string", "format": "date"},
    "bytes": {"type": "string", "format": "byte"},
}


# -- model fields ------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldType:
    """A field's type: "model" (name: the client class), "array"/"map" (of `item`),
    "scalar" (schema: its JSON schema, or ref: a component such as Quantity) or "any"
    (arbitrary JSON, not checked)."""

    kind: str
    name: str = ""
    item: FieldType | None = None
    schema: Mapping[str, Any] | None = None
    ref: str = ""


@dataclass(frozen=True)
class Field:
    json_name: str
    type: FieldType
    description: str
    required: bool


_ANY = FieldType("any")


class _Models:
    """The client package's model classes, read lazily and cached (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._module: ModuleType | None = None
        self._fields: dict[str, dict[str, Field]] = {}

    def module(self) -> ModuleType:
        if self._module is None:
            with self._lock:
                if self._module is None:
                    from kubernetes.client import models

                    self._module = models
        return self._module

    def has(self, name: str) -> bool:
        return hasattr(self.module(), name)

    def kind_class(self, group: str, version: str, kind: str) -> str | None:
        """The client class of a kind: V1Pod, CoreV1Event, V1Deployment, ..."""
        v = version[:1].upper() + version[1:]
        prefix = "".join(p.capitalize() for p in (group.split(".")[0] or "core").split("-"))
        for name in (f"{v}{kind}", f"{prefix}{v}{kind}"):
            if self.has(name):
                return name
        return None

    def fields(self, name: str) -> dict[str, Field]:
        """JSON field name -> Field, in the class's order."""
        found = self._fields.get(name)
        if found is None:
            found = self._read(name)
            with self._lock:
                self._fields[name] = found
        return found

    def _read(self, name: str) -> dict[str, Field]:
        cls = getattr(self.module(), name)
        fields: dict[str, Field] = {}
        for attr, type_text in cls.openapi_types.items():
            json_name = cls.attribute_map[attr]
            prop = getattr(cls, attr, None)
            fields[json_name] = Field(
                json_name,
                self._type(type_text, name, json_name),
                _description(getattr(prop, "__doc__", None)),
                _required(prop),
            )
        return fields

    def _type(self, text: str, owner: str, field: str) -> FieldType:
        text = text.strip()
        if text.startswith("list[") and text.endswith("]"):
            return FieldType("array", item=self._type(text[5:-1], owner, field))
        if text.startswith("dict(") and text.endswith(")"):
            value = text[5:-1].split(",", 1)[1]
            return FieldType("map", item=self._type(value, owner, field))
        if (owner, field) in _QUANTITY_FIELDS:
            return FieldType("scalar", ref=QUANTITY)
        if text == "datetime":
            return FieldType(
                "scalar", ref=MICRO_TIME if (owner, field) in _MICRO_TIME_FIELDS else TIME
            )
        if text == "object":
            if (owner, field) in _INT_OR_STRING_FIELDS:
                return FieldType("scalar", ref=INT_OR_STRING)
            return _ANY
        if text in _PRIMITIVES:
            return FieldType("scalar", schema=_PRIMITIVES[text])
        if self.has(text):
            return FieldType("model", name=text)
        return _ANY

    def references(self, name: str) -> Iterable[str]:
        """The model classes the fields of `name` refer to."""
        for field in self.fields(name).values():
            t: FieldType | None = field.type
            while t is not None and t.kind in ("array", "map"):
                t = t.item
            if t is not None and t.kind == "model":
                yield t.name

    def closure(self, roots: Iterable[str]) -> list[str]:
        seen: dict[str, None] = {}
        todo = [r for r in roots if self.has(r)]
        while todo:
            name = todo.pop(0)
            if name in seen:
                continue
            seen[name] = None
            todo.extend(r for r in self.references(name) if r not in seen)
        return list(seen)


def _description(doc: str | None) -> str:
    """The field description in a getter docstring (between the summary line and
    `:return:`; model-typed fields have none)."""
    parts = [p.strip() for p in (doc or "").split("\n\n")]
    for part in parts[1:]:
        if part and not part.startswith((":return:", ":rtype:")):
            return part.replace("# noqa: E501", "").strip()
    return ""


def _required(prop: Any) -> bool:
    """Whether the setter refuses None, as the generator writes it for required fields."""
    code = getattr(getattr(prop, "fset", None), "__code__", None)
    consts = code.co_consts if code is not None else ()
    return any(isinstance(c, str) and "must not be `None`" in c for c in consts)


MODELS = _Models()


# -- schemas and documents --------------------------------------------------------------


def _package(group: str) -> str:
    """The Go package prefix of an API group's types: "apps" -> io.k8s.api.apps."""
    short = group.split(".")[0] or "core"
    return _PACKAGES.get(short, f"io.k8s.api.{short}")


class _Names:
    """Component names of model classes, e.g. V1PodSpec -> io.k8s.api.core.v1.PodSpec.
    The client's classes carry no API group: a class is in the group of the kinds that
    reach it, the core group first; meta/v1's are named so; prefixed classes
    (CoreV1Event, AppsV1...) name their group."""

    def __init__(self, resources: Iterable[ResourceType]) -> None:
        self._owner: dict[str, str] = {}
        core_roots = [MODELS.kind_class("", "v1", k) or "" for k in _CORE_KINDS]
        self._claim(core_roots, _package(""))
        for resource in resources:
            cls = MODELS.kind_class(resource.group, resource.version, resource.kind)
            if cls:
                self._claim([cls], _package(resource.group))

    def _claim(self, roots: list[str], package: str) -> None:
        for name in MODELS.closure(r for r in roots if r):
            self._owner.setdefault(name, package)

    def name(self, cls: str) -> str:
        match = _CLASS_NAME.match(cls)
        if match is None:
            return f"io.k8s.kubeling.{cls}"
        version, kind = match["version"].lower(), match["kind"]
        if match["group"]:
            return f"{_package(match['group'].lower())}.{version}.{kind}"
        if kind in _META_MODELS:
            return f"{META}.{kind}"
        return f"{self._owner.get(cls, _package(''))}.{version}.{kind}"


def _kind_name(cls: str) -> str:
    match = _CLASS_NAME.match(cls)
    return match["kind"] if match else cls


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


class _Schemas:
    """Collects the component schemas of one document."""

    def __init__(self, names: _Names) -> None:
        self.names = names
        self.schemas: dict[str, dict[str, Any]] = {}

    def add_model(self, cls: str) -> str:
        name = self.names.name(cls)
        if name not in self.schemas:
            self.schemas[name] = {}  # placeholder: breaks cycles
            self.schemas[name] = self._model(cls)
        return name

    def _type(self, t: FieldType) -> dict[str, Any]:
        if t.kind == "array":
            assert t.item is not None
            return {"type": "array", "items": self._type(t.item)}
        if t.kind == "map":
            assert t.item is not None
            return {"type": "object", "additionalProperties": self._type(t.item)}
        if t.kind == "model":
            return _ref(self.add_model(t.name))
        if t.ref:
            self.schemas.setdefault(t.ref, dict(_SCALARS[t.ref]))
            return _ref(t.ref)
        if t.schema is not None:
            return dict(t.schema)
        return {"x-kubernetes-preserve-unknown-fields": True}

    def _model(self, cls: str) -> dict[str, Any]:
        kind = _kind_name(cls)
        properties: dict[str, Any] = {}
        required: list[str] = []
        for field in MODELS.fields(cls).values():
            schema = self._type(field.type)
            description = field.description or _field_description(kind, field)
            if "$ref" in schema:
                schema = {"allOf": [schema]}
            if description:
                schema["description"] = description
            properties[field.json_name] = schema
            if field.required:
                required.append(field.json_name)
        out: dict[str, Any] = {"type": "object", "properties": properties}
        if kind in _KIND_DESCRIPTIONS and "metadata" in properties:
            out["description"] = _KIND_DESCRIPTIONS[kind]
        elif kind.endswith("List") and "items" in properties:
            out["description"] = f"{kind} is a list of {kind[:-4]} objects."
        if required:
            out["required"] = required
        return out


def _field_description(kind: str, field: Field) -> str:
    """Descriptions of the model-typed fields the client has none for."""
    if field.json_name == "metadata":
        return _LIST_METADATA_DESCRIPTION if kind.endswith("List") else _METADATA_DESCRIPTION
    if kind in _KIND_DESCRIPTIONS:
        if field.json_name == "spec":
            return _SPEC_DESCRIPTION.format(kind=kind)
        if field.json_name == "status":
            return _STATUS_DESCRIPTION.format(kind=kind)
    if field.json_name == "items" and kind.endswith("List"):
        return _ITEMS_DESCRIPTION.format(kind=kind[:-4])
    return ""


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _param(name: str, where: str, description: str, kind: str = "string") -> dict[str, Any]:
    param: dict[str, Any] = {
        "name": name,
        "in": where,
        "description": description,
        "schema": {"type": kind},
    }
    if where == "path":
        param["required"] = True
    else:
        param["uniqueItems"] = True
    return param


# Only the parameters the server honours (fieldManager is accepted and not used yet).
_NAME = _param("name", "path", "The name of the object.")
_NAMESPACE = _param("namespace", "path", "The namespace of the object.")
_FIELD_MANAGER = _param("fieldManager", "query", "Who makes the change.")
_FIELD_VALIDATION = _param(
    "fieldValidation",
    "query",
    "How the server treats unknown fields in the request's object: Ignore (drop them), "
    "Warn (drop them and send one Warning header each; the default) or Strict (fail "
    "with a BadRequest).",
)
_LIST_PARAMS = [
    _param("allowWatchBookmarks", "query", "Send watch events of type BOOKMARK.", "boolean"),
    _param("continue", "query", "The continue token of the previous page of a list."),
    _param("fieldSelector", "query", "Select objects by their fields."),
    _param("labelSelector", "query", "Select objects by their labels."),
    _param("limit", "query", "The most objects to return in one page.", "integer"),
    _param("resourceVersion", "query", "The resourceVersion the list or watch is from."),
    _param("timeoutSeconds", "query", "End the call after this many seconds.", "integer"),
    _param("watch", "query", "Watch for changes instead of listing.", "boolean"),
]
_DELETE_PARAMS = [
    _param("gracePeriodSeconds", "query", "Seconds before the object is deleted.", "integer"),
    _param("propagationPolicy", "query", "Orphan, Background or Foreground."),
]
_WRITE_PARAMS = [_FIELD_MANAGER, _FIELD_VALIDATION]


_ACTIONS = {
    "list": "list",
    "listAll": "list",
    "read": "get",
    "create": "post",
    "replace": "put",
    "patch": "patch",
    "delete": "delete",
    "deleteCollection": "deletecollection",
}
_RESPONSES = {"200": "OK", "201": "Created", "202": "Accepted"}


@dataclass(frozen=True)
class _Operations:
    """Makes the operations of one kind, named as the API server names them
    (readCoreV1NamespacedPod, listAppsV1DeploymentForAllNamespaces, ...)."""

    resource: ResourceType
    op_group: str  # CoreV1, AppsV1, ...
    tag: str  # core_v1, apps_v1, ...

    def __call__(
        self,
        verb: str,
        params: list[dict[str, Any]],
        response: dict[str, Any],
        body: dict[str, Any] | None = None,
        *,
        codes: tuple[str, ...] = ("200",),
        subresource: str = "",
    ) -> dict[str, Any]:
        resource = self.resource
        all_namespaces = verb == "listAll"
        scope = "Namespaced" if resource.namespaced and not all_namespaces else ""
        name = (
            resource.kind
            + ("ForAllNamespaces" if all_namespaces else "")
            + subresource.capitalize()
        )
        content = {JSON: {"schema": response}}
        responses: dict[str, Any] = {
            c: {"description": _RESPONSES[c], "content": content} for c in codes
        }
        responses["401"] = {"description": "Unauthorized"}
        what = f"{subresource} of " if subresource else ""
        operation: dict[str, Any] = {
            "tags": [self.tag],
            "description": f"{_ACTIONS[verb]} {what}{resource.kind}",
            "operationId": f"{'list' if all_namespaces else verb}{self.op_group}{scope}{name}",
            "responses": responses,
            "x-kubernetes-action": _ACTIONS[verb],
            "x-kubernetes-group-version-kind": {
                "group": resource.group,
                "version": resource.version,
                "kind": resource.kind,
            },
        }
        if params:
            operation["parameters"] = list(params)
        if body is not None:
            operation["requestBody"] = body
        return operation


def _document(group: str, version: str, types: list[ResourceType], names: _Names) -> dict[str, Any]:
    schemas = _Schemas(names)
    paths: dict[str, Any] = {}
    prefix = "/" + _gv_path(group, version)
    short = group.split(".")[0] or "core"
    op_group = "".join(p.capitalize() for p in short.split("-")) + version.capitalize()
    patch_body = {
        "content": {t: {"schema": {"type": "object"}} for t in PATCH_CONTENT_TYPES},
        "required": True,
    }
    patch_params = _WRITE_PARAMS
    status_ref = _ref(schemas.add_model("V1Status"))
    for resource in types:
        op = _Operations(resource, op_group, f"{short}_{version}")
        list_kind = resource.list_kind_name()
        ref = _ref(_kind_component(schemas, group, version, resource.kind))
        list_ref = _ref(_kind_component(schemas, group, version, list_kind))
        body = {"content": {JSON: {"schema": ref}}, "required": True}
        if resource.namespaced:
            base = f"{prefix}/namespaces/{{namespace}}/{resource.plural}"
            scope_params = [_NAMESPACE]
        else:
            base = f"{prefix}/{resource.plural}"
            scope_params = []
        paths[base] = {
            "get": op("list", _LIST_PARAMS, list_ref),
            "post": op("create", _WRITE_PARAMS, ref, body, codes=("200", "201", "202")),
            "delete": op("deleteCollection", _DELETE_PARAMS + _LIST_PARAMS, status_ref),
        }
        if scope_params:
            paths[base]["parameters"] = scope_params
        item_params = [_NAME, *scope_params]
        paths[f"{base}/{{name}}"] = {
            "get": op("read", [], ref),
            "put": op("replace", _WRITE_PARAMS, ref, body, codes=("200", "201")),
            "patch": op("patch", patch_params, ref, patch_body, codes=("200", "201")),
            "delete": op("delete", _DELETE_PARAMS, ref, codes=("200", "202")),
            "parameters": item_params,
        }
        if "status" in resource.subresources:
            paths[f"{base}/{{name}}/status"] = {
                "get": op("read", [], ref, subresource="status"),
                "put": op(
                    "replace", _WRITE_PARAMS, ref, body, codes=("200", "201"), subresource="status"
                ),
                "patch": op(
                    "patch",
                    patch_params,
                    ref,
                    patch_body,
                    codes=("200", "201"),
                    subresource="status",
                ),
                "parameters": item_params,
            }
        if resource.namespaced:
            paths[f"{prefix}/{resource.plural}"] = {"get": op("listAll", _LIST_PARAMS, list_ref)}
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": INFO_VERSION},
        "paths": paths,
        "components": {"schemas": schemas.schemas},
    }


def _kind_component(schemas: _Schemas, group: str, version: str, kind: str) -> str:
    """Add a kind's schema, tagged with its GVK (a list, as kubectl explain wants)."""
    gvk = {"group": group, "version": version, "kind": kind}
    cls = MODELS.kind_class(group, version, kind)
    if cls is None:  # a kind the client has no model of: an open object
        name = f"{_package(group)}.{version}.{kind}"
        schemas.schemas[name] = {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
            "x-kubernetes-group-version-kind": [gvk],
        }
        return name
    name = schemas.add_model(cls)
    tagged = schemas.schemas[name].setdefault("x-kubernetes-group-version-kind", [])
    if gvk not in tagged:
        tagged.append(gvk)
    return name


@dataclass(frozen=True)
class _Built:
    index: bytes
    documents: dict[str, tuple[bytes, str]]  # "api/v1" -> (JSON, hash)
    seconds: float


class OpenApi:
    """The OpenAPI documents of the served resource types, built on first use, once."""

    def __init__(self, resources: Iterable[ResourceType] = RESOURCES) -> None:
        self.resources = tuple(resources)
        self._built: _Built | None = None
        self._lock = threading.Lock()

    def _build(self) -> _Built:
        built = self._built
        if built is not None:
            return built
        with self._lock:
            if self._built is None:
                started = time.monotonic()
                names = _Names(self.resources)
                by_gv: dict[tuple[str, str], list[ResourceType]] = {}
                for resource in self.resources:
                    by_gv.setdefault((resource.group, resource.version), []).append(resource)
                documents: dict[str, tuple[bytes, str]] = {}
                for (group, version), types in by_gv.items():
                    data = _dumps(_document(group, version, types, names))
                    documents[_gv_path(group, version)] = (
                        data,
                        hashlib.sha256(data).hexdigest().upper(),
                    )
                index = {
                    "paths": {
                        gv: {"serverRelativeURL": f"{V3_PATH}/{gv}?hash={digest}"}
                        for gv, (_data, digest) in documents.items()
                    }
                }
                self._built = _Built(_dumps(index), documents, time.monotonic() - started)
            return self._built

    @property
    def build_seconds(self) -> float:
        return self._build().seconds

    def index(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self._build().index)
        return result

    def group_version(self, gv: str) -> dict[str, Any] | None:
        """The document of "api/v1", "apis/apps/v1", ... (parsed), or None."""
        found = self._build().documents.get(gv.strip("/"))
        return None if found is None else dict(json.loads(found[0]))

    def document(
        self, path: str, query: Mapping[str, str]
    ) -> tuple[bytes, str, dict[str, str]] | None:
        """(body, Content-Type, headers) for an /openapi/... path; None if it names none."""
        if path == V2_PATH:
            return b"", V2_CONTENT_TYPE, {"Cache-Control": "no-cache, private"}
        if path.rstrip("/") == V3_PATH:
            built = self._build()
            etag = hashlib.sha256(built.index).hexdigest().upper()
            return built.index, JSON, {"Cache-Control": "no-cache, private", "Etag": f'"{etag}"'}
        if not path.startswith(V3_PATH + "/"):
            return None
        found = self._build().documents.get(path[len(V3_PATH) + 1 :].strip("/"))
        if found is None:
            return None
        data, digest = found
        headers = {"Etag": f'"{digest}"'}
        if query.get("hash") == digest:
            headers["Cache-Control"] = "public, immutable"
            headers["Expires"] = email.utils.formatdate(time.time() + 365 * 86400, usegmt=True)
        else:  # no hash, or an outdated one: the current document, not to be kept
            headers["Cache-Control"] = "no-cache, private"
        return data, JSON, headers


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


# -- strict field validation ----------------------------------------------------------


def unknown_fields(api_version: str, kind: str, obj: Mapping[str, Any]) -> list[str]:
    """The paths of the fields of `obj` its kind's schema does not have, in document
    order: `spec.foo`, `spec.containers[0].imagePullPolicyy`, `metadata.labelz`. An
    unknown kind (no model in the client) has none."""
    group, _, version = api_version.rpartition("/")
    cls = MODELS.kind_class(group, version, kind)
    found: list[str] = []
    if cls is not None and isinstance(obj, Mapping):
        _walk(cls, obj, "", found, prune=False)
    return found


def _walk(cls: str, obj: Mapping[str, Any], path: str, found: list[str], *, prune: bool) -> None:
    fields = MODELS.fields(cls)
    unknown = []
    for key, value in obj.items():
        where = f"{path}.{key}" if path else key
        field = fields.get(key)
        if field is None:
            found.append(where)
            unknown.append(key)
        else:
            _walk_value(field.type, value, where, found, prune=prune)
    if prune and unknown and isinstance(obj, dict):
        for key in unknown:
            del obj[key]


def _walk_value(t: FieldType, value: Any, path: str, found: list[str], *, prune: bool) -> None:
    # A value of the wrong type is not an unknown field: validation reports it.
    if t.kind == "model" and isinstance(value, Mapping):
        _walk(t.name, value, path, found, prune=prune)
        return
    item = t.item
    if item is None or item.kind not in ("model", "array", "map"):
        return  # scalars, and lists and maps of them, have no fields
    if t.kind == "array" and isinstance(value, list):
        for i, element in enumerate(value):
            _walk_value(item, element, f"{path}[{i}]", found, prune=prune)
    elif t.kind == "map" and isinstance(value, Mapping):
        for key, element in value.items():
            _walk_value(item, element, f"{path}.{key}", found, prune=prune)


_OPTIONS_KINDS = {"create": "CreateOptions", "update": "UpdateOptions", "patch": "PatchOptions"}


def check_fields(
    mode: str, resource: ResourceType, obj: dict[str, Any], *, verb: str = "create"
) -> list[str]:
    """Apply `?fieldValidation=<mode>` to an object about to be created, updated or
    (the result of a patch) stored; return the warnings to send (Warn).

    "" means Warn, the API server's default. Strict: an ApiError 400 BadRequest
    naming every unknown field. Warn: the unknown fields are removed from `obj` and
    each gives a warning `unknown field "spec.foo"`. Ignore: they are removed,
    silently. Any other mode (the names are case-sensitive) is a 422 Invalid on the
    request's options, before the object is looked at, as the API server answers:
    `CreateOptions.meta.k8s.io "" is invalid: fieldValidation: Unsupported value: ...`.
    """
    mode = mode or DEFAULT_FIELD_VALIDATION
    if mode not in FIELD_VALIDATION_MODES:
        options = _OPTIONS_KINDS.get(verb, "CreateOptions")
        cause = not_supported("fieldValidation", mode, ("", *FIELD_VALIDATION_MODES))
        message = f'{options}.meta.k8s.io "" is invalid: {cause.field}: {cause.message}'
        raise ApiError(422, "Invalid", message, Target(options, "", "meta.k8s.io"), [cause])
    group, version = resource.group, resource.version
    cls = MODELS.kind_class(group, version, resource.kind)
    if cls is None or not isinstance(obj, dict):
        return []
    found: list[str] = []
    _walk(cls, obj, "", found, prune=mode != "Strict")
    messages = [f"unknown field {go_quote(path)}" for path in found[:MAX_STRICT_ERRORS]]
    if mode == "Strict" and messages:
        kind = resource.kind
        raise ApiError(
            400,
            "BadRequest",
            f'{kind} in version "{version}" cannot be handled as a {kind}: strict decoding '
            f"error: {', '.join(messages)}",
        )
    return messages if mode == "Warn" else []


def go_quote(text: str) -> str:
    """`text` quoted as Go's %q does: \\ and " escaped, control characters as escapes."""
    out = ['"']
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif c in _GO_ESCAPES:
            out.append(_GO_ESCAPES[c])
        elif c.isprintable():
            out.append(c)
        elif ord(c) < 0x80:
            out.append(f"\\x{ord(c):02x}")
        elif ord(c) <= 0xFFFF:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(f"\\U{ord(c):08x}")
    out.append('"')
    return "".join(out)


_GO_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def warning_header(text: str) -> str:
    """The value of a `Warning` response header for `text`: `299 - "<text>"` with \\ and
    " escaped (RFC 7234, as the API server writes them), as a str http.server can send:
    the UTF-8 bytes, one character each. Control characters (which the API server
    refuses in warnings) become U+FFFD, so no text can end the header."""
    text = "".join(c if c.isprintable() else "\ufffd" for c in text)
    quoted = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'299 - "{quoted}"'.encode().decode("latin-1")


__all__ = [
    "DEFAULT_FIELD_VALIDATION",
    "FIELD_VALIDATION_MODES",
    "MODELS",
    "V2_CONTENT_TYPE",
    "OpenApi",
    "check_fields",
    "go_quote",
    "unknown_fields",
    "warning_header",
]
