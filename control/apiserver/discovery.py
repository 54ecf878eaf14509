"""Discovery documents: `/api` (APIVersions), `/apis` (APIGroupList),
`/apis/<group>` (APIGroup) and `/api/v1`, `/apis/<group>/<version>`
(APIResourceList with verbs, short names and categories), built from the resource
table (resources.py). These are the legacy (unaggregated) documents: kubectl asks for
aggregated discovery first and uses these when a server answers with them.
"""

from __future__ import annotations

from typing import Any

from control.apiserver.resources import METRICS_RESOURCES, ResourceType, groups


def _served() -> dict[str, list[ResourceType]]:
    """Group/version -> resource types: the stored ones and metrics.k8s.io."""
    served = groups()
    for resource in METRICS_RESOURCES:
        served.setdefault(resource.group_version, []).append(resource)
    return served


def _group_versions() -> dict[str, list[str]]:
    """Group -> its versions (the core group is "")."""
    found: dict[str, list[str]] = {}
    for group_version in _served():
        group, _, version = group_version.rpartition("/")
        found.setdefault(group, [])
        if version not in found[group]:
            found[group].append(version)
    return found


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {
        "kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": entries,
        "preferredVersion": entries[0],
    }  # fmt: skip


# As the kube-apiserver lists them (exec, attach and portforward: create and get).
_SUBRESOURCE_VERBS = {
    "status": ["get", "patch", "update"], "scale": ["get", "patch", "update"],
    "binding": ["create"], "eviction": ["create"], "log": ["get"],
    "proxy": ["create", "delete", "get", "patch", "update"], "finalize": ["update"],
}  # fmt: skip


def _resources(group_version: str, types: list[ResourceType]) -> dict[str, Any]:
    listed: list[dict[str, Any]] = []
    for resource in types:
        entry: dict[str, Any] = {
            "name": resource.plural, "singularName": resource.singular,
            "namespaced": resource.namespaced, "kind": resource.kind,
            "verbs": list(resource.verbs),
        }  # fmt: skip
        if resource.short_names:
            entry["shortNames"] = list(resource.short_names)
        if resource.categories:
            entry["categories"] = list(resource.categories)
        listed.append(entry)
        for sub in resource.subresources:
            verbs = _SUBRESOURCE_VERBS.get(sub, ["create", "get"])
            sub_entry = {
                "name": f"{resource.plural}/{sub}", "singularName": "",
                "namespaced": resource.namespaced, "kind": resource.kind, "verbs": verbs,
            }  # fmt: skip
            if sub == "scale":
                sub_entry.update(group="autoscaling", version="v1", kind="Scale")
            elif sub == "eviction":  # kubectl drain evicts only when it sees this
                sub_entry.update(group="policy", version="v1", kind="Eviction")
            listed.append(sub_entry)
    return {
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
        "resources": listed,
    }  # fmt: skip


def document(path: str) -> dict[str, Any] | None:
    """The discovery document at `path`, None if `path` is not a discovery path."""
    parts = [p for p in path.strip("/").split("/") if p]
    by_group = _group_versions()
    if parts == ["api"]:
        return {
            "kind": "APIVersions", "versions": by_group.get("", []),
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
        }  # fmt: skip
    if parts == ["apis"]:
        named = [_group(g, v) for g, v in by_group.items() if g]
        for group in named:
            del group["kind"], group["apiVersion"]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": named}
    if len(parts) == 2 and parts[0] == "api" and parts[1] in by_group.get("", []):
        return _resources(parts[1], _served()[parts[1]])
    if len(parts) == 2 and parts[0] == "apis" and parts[1] in by_group and parts[1]:
        return _group(parts[1], by_group[parts[1]])
    if len(parts) == 3 and parts[0] == "apis":
        group_version = f"{parts[1]}/{parts[2]}"
        served = _served()
        if group_version in served:
            return _resources(group_version, served[group_version])
    return None
