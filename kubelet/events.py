"""Events the kubelet reports about pods and its node (`kubectl describe` shows them):
Pulling/Pulled/Created/Started/Killing, BackOff, Unhealthy, FailedMount, NodeReady …

Repeats of the same (object, reason, message) within a pod's life are folded into one
Event whose `count` and `lastTimestamp` go up, as the kubelet's event correlator does,
so a crash-looping container does not write a new object every back-off.
"""

from __future__ import annotations

import datetime
import logging
import threading
import uuid
from typing import Any

from kubeapi.client import ApiError, Client

log = logging.getLogger(__name__)

NORMAL = "Normal"
WARNING = "Warning"
COMPONENT = "kubelet"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    """Writes core/v1 Events for `node_name`'s kubelet. Never raises: an event that
    cannot be written is logged and dropped (events are best effort, as in the
    kubelet)."""

    def __init__(self, client: Client, node_name: str) -> None:
        self.client = client
        self.node_name = node_name
        self._lock = threading.Lock()
        # (namespace, uid, reason, message) -> (event name, count)
        self._seen: dict[tuple[str, str, str, str], tuple[str, int]] = {}

    def record(
        self, obj: dict[str, Any], event_type: str, reason: str, message: str,
        *, field_path: str = "",
    ) -> None:  # fmt: skip
        """An event about `obj` (a Pod or the Node). `field_path` names the container
        (`spec.containers{web}`), as the kubelet's events do."""
        meta = obj.get("metadata") or {}
        kind = obj.get("kind") or ("Node" if "namespace" not in meta else "Pod")
        namespace = meta.get("namespace") or "default"
        uid = meta.get("uid") or meta.get("name", "")
        key = (namespace, f"{uid}/{field_path}", reason, message)
        now = _now()
        with self._lock:
            previous = self._seen.get(key)
        try:
            if previous is not None:
                name, count = previous
                self.client.patch(
                    f"/api/v1/namespaces/{namespace}/events/{name}",
                    {"count": count + 1, "lastTimestamp": now},
                )
                with self._lock:
                    self._seen[key] = (name, count + 1)
                return
            name = f"{meta.get('name', 'unknown')}.{uuid.uuid4().hex[:16]}"
            involved = {
                "apiVersion": obj.get("apiVersion") or "v1", "kind": kind,
                "name": meta.get("name"), "uid": meta.get("uid"),
            }  # fmt: skip
            if kind != "Node":
                involved["namespace"] = namespace
            if field_path:
                involved["fieldPath"] = field_path
            self.client.create(f"/api/v1/namespaces/{namespace}/events", {
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": involved, "reason": reason, "message": message,
                "type": event_type, "count": 1, "firstTimestamp": now, "lastTimestamp": now,
                "source": {"component": COMPONENT, "host": self.node_name},
                "reportingComponent": COMPONENT, "reportingInstance": self.node_name,
            })  # fmt: skip
            with self._lock:
                self._seen[key] = (name, 1)
        except ApiError as e:
            if previous is not None and e.code == 404:
                with self._lock:  # expired or deleted: the next repeat starts a new one
                    self._seen.pop(key, None)
            log.warning("event %s %s on %s: %s", reason, message, meta.get("name"), e)
        except OSError as e:
            log.warning("event %s %s on %s: %s", reason, message, meta.get("name"), e)

    def forget(self, pod_uid: str) -> None:
        """Drops the fold state of a pod that is gone."""
        with self._lock:
            for key in [k for k in self._seen if k[1].startswith(f"{pod_uid}/")]:
                del self._seen[key]
