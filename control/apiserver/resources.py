"""The resource types the API server serves: what discovery lists and how a URL
maps to a type and a storage key.

Keys follow the kube-apiserver's layout under `/registry/`: the core group's
resources at `/registry/<resource>/<namespace>/<name>` (cluster-scoped ones without
the namespace), other groups' at `/registry/<group>/<resource>/...`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    # Subresources served besides the object itself (status, scale, binding, ...).
    subresources: tuple[str, ...] = ()
    list_kind: str = field(default="")

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    def list_kind_name(self) -> str:
        return self.list_kind or f"{self.kind}List"

    def key(self, namespace: str, name: str) -> str:
        return self.prefix(namespace) + name

    def prefix(self, namespace: str = "") -> str:
        """The key prefix of every object (of one namespace, if given)."""
        base = (
            f"/registry/{self.group}/{self.plural}/" if self.group else f"/registry/{self.plural}/"
        )
        if self.namespaced and namespace:
            return f"{base}{namespace}/"
        return base


_CORE = [
    ResourceType(
        "", "v1", "Namespace", "namespaces", False, ("ns",), subresources=("status", "finalize")
    ),
    ResourceType(
        "",
        "v1",
        "Pod",
        "pods",
        True,
        ("po",),
        ("all",),
        subresources=("status", "binding", "log", "exec", "attach", "portforward", "eviction"),
    ),
    ResourceType("", "v1", "Node", "nodes", False, ("no",), subresources=("status", "proxy")),
    ResourceType(
        "", "v1", "Service", "services", True, ("svc",), ("all",), subresources=("status",)
    ),
    ResourceType("", "v1", "Endpoints", "endpoints", True, ("ep",), list_kind="EndpointsList"),
    ResourceType("", "v1", "ConfigMap", "configmaps", True, ("cm",)),
    ResourceType("", "v1", "Secret", "secrets", True),
    ResourceType("", "v1", "Event", "events", True, ("ev",)),
    ResourceType("", "v1", "ServiceAccount", "serviceaccounts", True, ("sa",)),
]
_APPS = [
    ResourceType(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        True,
        ("deploy",),
        ("all",),
        subresources=("status", "scale"),
    ),
    ResourceType(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        True,
        ("rs",),
        ("all",),
        subresources=("status", "scale"),
    ),
]
_COORDINATION = [
    ResourceType("coordination.k8s.io", "v1", "Lease", "leases", True),
]  # fmt: skip

RESOURCES: tuple[ResourceType, ...] = (*_CORE, *_APPS, *_COORDINATION)

# metrics.k8s.io: computed from the kubelets' figures (metrics.py), never stored, so
# not in RESOURCES; discovery lists them as metrics-server registers them.
METRICS_RESOURCES: tuple[ResourceType, ResourceType] = (
    ResourceType("metrics.k8s.io", "v1beta1", "NodeMetrics", "nodes", False, verbs=("get", "list")),
    ResourceType("metrics.k8s.io", "v1beta1", "PodMetrics", "pods", True, verbs=("get", "list")),
)


def groups() -> dict[str, list[ResourceType]]:
    """Group/version ("v1", "apps/v1", ...) -> its resource types, in a stable order."""
    found: dict[str, list[ResourceType]] = {}
    for resource in RESOURCES:
        found.setdefault(resource.group_version, []).append(resource)
    return found


def lookup(group: str, version: str, plural: str) -> ResourceType | None:
    for resource in RESOURCES:
        if (resource.group, resource.version, resource.plural) == (group, version, plural):
            return resource
    return None


def by_kind(api_version: str, kind: str) -> ResourceType | None:
    for resource in RESOURCES:
        if resource.api_version == api_version and resource.kind == kind:
            return resource
    return None
