"""The ServiceAccount controller: a `default` ServiceAccount in every active namespace
(created again if deleted)."""

from __future__ import annotations

import logging

from control.controllers.base import Controller, Informer, Object, terminating
from kubeapi.client import ApiError, Client

log = logging.getLogger(__name__)

DEFAULT = "default"


def needs_default(namespace: Object | None, accounts: set[str]) -> bool:
    """Pure: should the default account be created in this namespace?"""
    if namespace is None or terminating(namespace):
        return False
    if (namespace.get("status") or {}).get("phase") == "Terminating":
        return False
    return DEFAULT not in accounts


class ServiceAccountController(Controller):
    name = "serviceaccount"

    def __init__(
        self, client: Client, namespaces: Informer, accounts: Informer, *, workers: int = 1
    ) -> None:
        super().__init__(client, workers=workers)
        self.namespaces = namespaces
        self.accounts = accounts
        namespaces.add_handler(lambda old, new: self.enqueue(new or old))
        accounts.add_handler(self._on_account)

    def _on_account(self, old: Object | None, new: Object | None) -> None:
        if new is None and old is not None:
            self.queue.add(str(old["metadata"].get("namespace", "")))

    def sync(self, key: str) -> float | None:
        names = {str(a["metadata"].get("name")) for a in self.accounts.list(key)}
        if not needs_default(self.namespaces.get(key), names):
            return None
        try:
            self.client.create(f"/api/v1/namespaces/{key}/serviceaccounts", {
                "apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": DEFAULT, "namespace": key},
            })  # fmt: skip
            log.info("created serviceaccount %s/%s", key, DEFAULT)
        except ApiError as e:
            if e.code != 409:
                raise
        return None
