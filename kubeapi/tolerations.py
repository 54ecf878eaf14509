"""Whether a pod's toleration tolerates a node's taint, as core/v1's ToleratesTaint
decides it: shared by the scheduler's filters and scores, the node lifecycle
controller's evictions and the kubelet's admission under pressure."""

from __future__ import annotations

from typing import Any


def tolerates(toleration: dict[str, Any], taint: dict[str, Any]) -> bool:
    """The toleration's effect (empty: any), key (empty, with Exists: any) and value
    (operator Equal, the default) match the taint's."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    operator = toleration.get("operator") or "Equal"
    if key and key != taint.get("key"):
        return False
    if operator == "Exists":
        return True
    if not key:  # an empty key matches every key only with Exists
        return False
    return operator == "Equal" and (toleration.get("value") or "") == (taint.get("value") or "")


def tolerated(tolerations: list[dict[str, Any]], taint: dict[str, Any]) -> bool:
    """Whether any of `tolerations` tolerates `taint`."""
    return any(tolerates(t, taint) for t in tolerations if isinstance(t, dict))
