"""Static pods: pod manifests in a directory (YAML or JSON, one pod per file) that the
kubelet runs without the API server, and the mirror pods it creates in the API so
the cluster sees them.

A static pod is the manifest with the kubelet's defaults (no API server defaults it),
named <name>-<nodeName>, bound to the node, with uid = a hash of the manifest and
the node name (so an unchanged file keeps its pod across kubelet restarts, and an
edit is a new pod), and annotations kubernetes.io/config.source=file,
kubernetes.io/config.hash=<uid>. Its mirror pod carries kubernetes.io/config.mirror
=<uid> and an ownerReference to the Node; a mirror pod whose hash is not that of a
static pod of this node is stale and gets replaced.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CONFIG_SOURCE_ANNOTATION = "kubernetes.io/config.source"
CONFIG_HASH_ANNOTATION = "kubernetes.io/config.hash"
CONFIG_MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
CONFIG_SEEN_ANNOTATION = "kubernetes.io/config.seen"
FILE_SOURCE = "file"

# PyYAML comes with the kubernetes dependency and has no type stubs here.
yaml: Any = importlib.import_module("yaml")

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


class ManifestError(ValueError):
    """A manifest file that is not one valid Pod."""


def default_pull_policy(image: str) -> str:
    """Always for :latest or an untagged image, else IfNotPresent (the API's default)."""
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return "IfNotPresent"
    if ":" not in last or last.endswith(":latest"):
        return "Always"
    return "IfNotPresent"


def apply_pod_defaults(pod: dict[str, Any]) -> None:
    """The defaults the API server would fill in (pods from files skip it)."""
    spec = pod.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    for key in ("initContainers", "containers"):
        for container in spec.get(key) or []:
            container.setdefault("imagePullPolicy",
                                 default_pull_policy(str(container.get("image", ""))))  # fmt: skip
            container.setdefault("terminationMessagePath", "/dev/termination-log")
            container.setdefault("terminationMessagePolicy", "File")
            for port in container.get("ports") or []:
                port.setdefault("protocol", "TCP")


def parse_manifest(text: str, source: str) -> dict[str, Any]:
    try:
        document = yaml.safe_load(text) if not source.endswith(".json") else json.loads(text)
    except (yaml.YAMLError, ValueError) as e:
        raise ManifestError(f"static pod {source}: {e}") from e
    if not isinstance(document, dict):
        raise ManifestError(f"static pod {source}: not a mapping")
    if document.get("kind", "Pod") != "Pod":
        raise ManifestError(f"static pod {source}: kind {document.get('kind')!r} is not Pod")
    meta = document.get("metadata") or {}
    if not meta.get("name"):
        raise ManifestError(f"static pod {source}: metadata.name is missing")
    containers = (document.get("spec") or {}).get("containers")
    if not containers or not isinstance(containers, list):
        raise ManifestError(f"static pod {source}: spec.containers is missing")
    for index, container in enumerate(containers):
        if (
            not isinstance(container, dict)
            or not container.get("name")
            or not container.get("image")
        ):
            raise ManifestError(
                f"static pod {source}: spec.containers[{index}] needs a name and an image"
            )
    return document


def static_pod(manifest: dict[str, Any], node_name: str) -> dict[str, Any]:
    """The pod the kubelet runs for `manifest` on `node_name` (see the module docstring)."""
    pod = copy.deepcopy(manifest)
    pod["apiVersion"] = "v1"
    pod["kind"] = "Pod"
    meta = pod.setdefault("metadata", {})
    meta.setdefault("namespace", "default")
    for owned in ("uid", "resourceVersion", "creationTimestamp", "selfLink"):
        meta.pop(owned, None)
    apply_pod_defaults(pod)
    pod["spec"]["nodeName"] = node_name
    canonical = json.dumps(pod, sort_keys=True, separators=(",", ":"))
    uid = hashlib.md5(f"{canonical}{node_name}".encode(), usedforsecurity=False).hexdigest()
    meta["name"] = f"{meta['name']}-{node_name}"
    meta["uid"] = uid
    meta["annotations"] = {
        **(meta.get("annotations") or {}),
        CONFIG_SOURCE_ANNOTATION: FILE_SOURCE,
        CONFIG_HASH_ANNOTATION: uid,
    }
    pod["status"] = {"phase": "Pending"}
    return pod


def read_static_pods(directory: Path, node_name: str) -> dict[str, dict[str, Any]]:
    """The static pods of the manifests in `directory` by uid. A file that does not
    parse is logged and skipped; hidden files and other suffixes are ignored, as the
    kubelet ignores them."""
    pods: dict[str, dict[str, Any]] = {}
    try:
        entries = sorted(directory.iterdir())
    except FileNotFoundError:
        return pods
    except OSError as e:
        log.warning("static pods: read %s: %s", directory, e)
        return pods
    seen_names: set[tuple[str, str]] = set()
    for path in entries:
        if path.name.startswith(".") or path.suffix not in MANIFEST_SUFFIXES or not path.is_file():
            continue
        try:
            pod = static_pod(parse_manifest(path.read_text(), str(path)), node_name)
        except (ManifestError, OSError) as e:
            log.warning("%s", e)
            continue
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        if key in seen_names:
            log.warning("static pod %s: a pod %s/%s is already defined", path, *key)
            continue
        seen_names.add(key)
        pods[pod["metadata"]["uid"]] = pod
    return pods


def is_static(pod: dict[str, Any]) -> bool:
    """A pod the kubelet read from a file (not its mirror in the API)."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    return annotations.get(CONFIG_SOURCE_ANNOTATION) == FILE_SOURCE and not is_mirror(pod)


def is_mirror(pod: dict[str, Any]) -> bool:
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    return CONFIG_MIRROR_ANNOTATION in annotations


def mirror_hash(pod: dict[str, Any]) -> str:
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(CONFIG_MIRROR_ANNOTATION, ""))


def mirror_pod(static: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """The body to POST for the mirror pod of `static`, owned by `node`."""
    meta = static["metadata"]
    # As the real kubelet's mirror pods: the static pod's annotations (source "file",
    # its hash) plus the mirror mark.
    annotations = {**(meta.get("annotations") or {}), CONFIG_MIRROR_ANNOTATION: meta["uid"]}
    node_meta = node.get("metadata") or {}
    body_meta: dict[str, Any] = {
        "name": meta["name"], "namespace": meta["namespace"],
        "labels": dict(meta.get("labels") or {}), "annotations": annotations,
        "ownerReferences": [{"apiVersion": "v1", "kind": "Node",
                             "name": node_meta.get("name"), "uid": node_meta.get("uid"),
                             "controller": True}],
    }  # fmt: skip
    return {"apiVersion": "v1", "kind": "Pod", "metadata": body_meta,
            "spec": copy.deepcopy(static["spec"])}  # fmt: skip
