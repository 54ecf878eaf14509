"""Writes pod statuses to the API: a merge PATCH of pods/<name>/status, only when the
status differs from the last one written for that pod (the kubelet's status manager).
Conditions keep their lastTransitionTime (status.py), so an unchanged pod compares
equal and costs no request. A top-level field that disappears (podIP of a dead
sandbox) is sent as null, since a merge patch keeps what it does not mention.

Mirror pods get their static pod's status: the caller passes the API object to write
to. Thread-safe; workers call `set` from their own threads.
"""

from __future__ import annotations

import copy
import logging
import threading
from typing import Any

from kubeapi.client import ApiError, Client

log = logging.getLogger(__name__)


class StatusManager:
    def __init__(self, client: Client) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._written: dict[str, dict[str, Any]] = {}  # API uid -> status

    def set(self, target: dict[str, Any], status: dict[str, Any]) -> bool:
        """PATCH `status` onto `target` (a Pod in the API) if it changed; True when a
        request was sent and accepted. API failures are logged: the next sync retries."""
        meta = target.get("metadata") or {}
        uid = str(meta.get("uid", ""))
        with self._lock:
            written = self._written.get(uid)
        previous = written if written is not None else dict(target.get("status") or {})
        if previous == status:
            return False
        body = copy.deepcopy(status)
        # Only fields this kubelet wrote are nulled: others' (nominatedNodeName) stay.
        for key in written or {}:
            if key not in body:
                body[key] = None
        namespace = meta.get("namespace") or "default"
        path = f"/api/v1/namespaces/{namespace}/pods/{meta.get('name')}/status"
        try:
            self.client.patch(path, {"status": body})
        except ApiError as e:
            if e.code == 404:
                self.forget(uid)
                return False
            log.warning("pod %s/%s status: %s", meta.get("namespace"), meta.get("name"), e)
            return False
        except OSError as e:
            log.warning("pod %s/%s status: %s", meta.get("namespace"), meta.get("name"), e)
            return False
        with self._lock:
            self._written[uid] = copy.deepcopy(status)
        return True

    def last(self, uid: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._written.get(uid)
            return copy.deepcopy(found) if found is not None else None

    def forget(self, uid: str) -> None:
        with self._lock:
            self._written.pop(uid, None)
