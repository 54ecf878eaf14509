"""The resources an API server serves, from its discovery documents (`/api`,
`/api/<v>`, `/apis`, `/apis/<group>/<preferred version>`), as the namespace
controller and the garbage collector need them: every kind they may have to list,
watch or delete, with no list of kinds written into the controllers. Subresources
(`pods/status`, ...) are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubeapi.client import Client

Object = dict[str, Any]


@dataclass(frozen=True)
class ApiResource:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool
    verbs: frozenset[str]

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str = "", name: str = "") -> str:
        """The collection (of one namespace, if given) or, with `name`, one object."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base

    def can(self, *verbs: str) -> bool:
        return all(v in self.verbs for v in verbs)


def resources_of(group: str, version: str, document: Object) -> list[ApiResource]:
    """The resources of one APIResourceList (pure)."""
    found: list[ApiResource] = []
    for entry in document.get("resources") or []:
        name = str(entry.get("name") or "")
        if not name or "/" in name:
            continue
        found.append(ApiResource(
            group=group, version=version, plural=name, kind=str(entry.get("kind") or ""),
            namespaced=bool(entry.get("namespaced")),
            verbs=frozenset(str(v) for v in entry.get("verbs") or []),
        ))  # fmt: skip
    return found


def discover(client: Client) -> list[ApiResource]:
    """Every resource the server serves, in the preferred version of each group."""
    found: list[ApiResource] = []
    for version in client.get("/api").get("versions") or []:
        found.extend(resources_of("", str(version), client.get(f"/api/{version}")))
    for group in client.get("/apis").get("groups") or []:
        preferred = group.get("preferredVersion") or (group.get("versions") or [{}])[0]
        version = str(preferred.get("version") or "")
        if not version:
            continue
        name = str(group.get("name") or "")
        found.extend(resources_of(name, version, client.get(f"/apis/{name}/{version}")))
    return found
