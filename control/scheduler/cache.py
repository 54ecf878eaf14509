"""The scheduler's view of the cluster: nodes, and what the pods bound to them take,
fed by the pod and node watches; plus pods *assumed* on a node between the decision
and the Binding, so the next decision already counts them (the kube-scheduler's
assume/forget). Pods are keyed by UID. A pod counts on its node until it is deleted
or ends (Succeeded/Failed).

All methods take the cache's lock; `nodes()` hands out the live NodeInfo objects,
so a caller reads them under `lock` (the scheduling loop decides while holding it).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from control.scheduler.model import NodeInfo, Object

FINISHED = ("Succeeded", "Failed")


def uid(pod: Object) -> str:
    meta = pod.get("metadata") or {}
    return str(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}")


def _counts(pod: Object) -> str:
    """The node the pod takes resources on, or ''."""
    if (pod.get("status") or {}).get("phase") in FINISHED:
        return ""
    return str((pod.get("spec") or {}).get("nodeName") or "")


class Cache:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._nodes: dict[str, NodeInfo] = {}
        self._placed: dict[str, tuple[str, Object]] = {}  # uid -> (node, pod)
        self._assumed: set[str] = set()

    def nodes(self) -> list[NodeInfo]:
        with self.lock:
            return list(self._nodes.values())

    def _place(self, pod: Object, node: str) -> None:
        key = uid(pod)
        self._unplace(key)
        if not node:
            return
        self._placed[key] = (node, pod)
        info = self._nodes.get(node)
        if info is not None:
            info.add_pod(pod)

    def _unplace(self, key: str) -> None:
        previous = self._placed.pop(key, None)
        self._assumed.discard(key)
        if previous is not None:
            info = self._nodes.get(previous[0])
            if info is not None:
                info.remove_pod(previous[1])

    # -- nodes ----------------------------------------------------------------------------

    def set_node(self, node: Object) -> None:
        with self.lock:
            info = NodeInfo.of(node)
            for node_name, pod in self._placed.values():
                if node_name == info.name:
                    info.add_pod(pod)
            self._nodes[info.name] = info

    def delete_node(self, node: Object) -> None:
        with self.lock:
            self._nodes.pop(str(node["metadata"]["name"]), None)

    def replace_nodes(self, nodes: Iterable[Object]) -> None:
        with self.lock:
            self._nodes.clear()
            for node in nodes:
                self.set_node(node)

    # -- pods -----------------------------------------------------------------------------

    def set_pod(self, pod: Object) -> None:
        """A pod as the API has it; an assumed pod stays assumed until the API binds it."""
        with self.lock:
            key = uid(pod)
            node = _counts(pod)
            if not node and key in self._assumed:
                return
            self._place(pod, node)

    def delete_pod(self, pod: Object) -> None:
        with self.lock:
            self._unplace(uid(pod))

    def replace_pods(self, pods: Iterable[Object]) -> None:
        with self.lock:
            assumed = {k: self._placed[k] for k in self._assumed if k in self._placed}
            for key in list(self._placed):
                self._unplace(key)
            for pod in pods:
                self._place(pod, _counts(pod))
            for key, (node, pod) in assumed.items():
                if key not in self._placed:
                    self._place(pod, node)
                    self._assumed.add(key)

    def assume(self, pod: Object, node: str) -> None:
        with self.lock:
            self._place(pod, node)
            self._assumed.add(uid(pod))

    def forget(self, pod: Object) -> None:
        """Undo `assume` after a failed Binding."""
        with self.lock:
            key = uid(pod)
            if key in self._assumed:
                self._unplace(key)

    def placed_node(self, pod: Object) -> str:
        """The node the pod is bound or assumed to, or ''."""
        with self.lock:
            found = self._placed.get(uid(pod))
            return found[0] if found else ""
