"""The Endpoints controller: for each Service with a selector, an Endpoints object of
the same name listing the pods behind it.

`endpoint_subsets` (pure) does what kube's endpoints controller does: each selected
pod with an IP (not terminating, unless the service publishes not-ready addresses;
not finished for good) becomes an address — ready pods under `addresses`, the
others under `notReadyAddresses` — with the service's ports, a named targetPort
resolved against that pod's container ports. Pods whose ports resolve alike share
a subset (kube's RepackSubsets), so pods that name a port differently land in
different subsets. `sync` writes the result only when it differs from what is
stored, and deletes the Endpoints with its Service. Services without a selector
(such as `kubernetes`, kept by the API server) are someone else's to fill.
"""

from __future__ import annotations

import logging
from typing import Any

from control.controllers.base import (
    Controller,
    Informer,
    Object,
    key_of,
    labels_of,
    split_key,
    terminating,
)  # fmt: skip
from kubeapi.client import ApiError, Client

log = logging.getLogger(__name__)


# -- pure decisions --------------------------------------------------------------------


def selects(selector: dict[str, str] | None, labels: dict[str, str]) -> bool:
    """A service's selector (a plain map): every pair present. Empty selects nothing."""
    if not selector:
        return False
    return all(labels.get(k) == v for k, v in selector.items())


def pod_ready(pod: Object) -> bool:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False


def in_endpoints(pod: Object, *, include_terminating: bool) -> bool:
    """kube's ShouldPodBeInEndpoints."""
    status, spec = pod.get("status") or {}, pod.get("spec") or {}
    if not status.get("podIP"):
        return False
    if terminating(pod) and not include_terminating:
        return False
    phase, policy = status.get("phase"), spec.get("restartPolicy") or "Always"
    if policy == "Never" and phase in ("Succeeded", "Failed"):
        return False
    return not (policy == "OnFailure" and phase == "Succeeded")


def resolve_port(pod: Object, service_port: Object) -> int | None:
    """The pod's port for a service port: a number as it is, a name looked up among
    the containers' ports of that protocol; None when the pod has no such port."""
    target = service_port.get("targetPort", service_port.get("port"))
    protocol = service_port.get("protocol") or "TCP"
    if isinstance(target, int) and not isinstance(target, bool):
        return target
    text = str(target or "")
    if text.isdigit():
        return int(text)
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == text and (port.get("protocol") or "TCP") == protocol:
                number = port.get("containerPort")
                return int(number) if isinstance(number, int) else None
    return None


def _address(pod: Object, service_name: str) -> Object:
    meta, spec = pod["metadata"], pod.get("spec") or {}
    address: Object = {
        "ip": pod["status"]["podIP"],
        "targetRef": {"kind": "Pod", "namespace": meta.get("namespace", ""),
                      "name": meta.get("name", ""), "uid": meta.get("uid", "")},
    }  # fmt: skip
    if spec.get("nodeName"):
        address["nodeName"] = spec["nodeName"]
    if spec.get("hostname") and spec.get("subdomain") == service_name:
        address["hostname"] = spec["hostname"]
    return address


def _address_order(address: Object) -> tuple[str, str]:
    return (str(address.get("ip", "")), str((address.get("targetRef") or {}).get("uid", "")))


def endpoint_subsets(service: Object, pods: list[Object]) -> list[Object]:
    """The subsets of the service's Endpoints for these pods (its namespace)."""
    spec = service.get("spec") or {}
    selector = spec.get("selector")
    publish = bool(spec.get("publishNotReadyAddresses"))
    service_name = str(service["metadata"].get("name", ""))
    service_ports = [p for p in spec.get("ports") or [] if isinstance(p, dict)]
    headless = spec.get("clusterIP") == "None"
    # ports (as a sorted tuple) -> (ready addresses, not-ready addresses)
    grouped: dict[tuple[tuple[str, int, str], ...], tuple[list[Object], list[Object]]] = {}
    for pod in pods:
        if not selects(selector, labels_of(pod)):
            continue
        if not in_endpoints(pod, include_terminating=publish):
            continue
        ports: list[tuple[str, int, str]] = []
        for service_port in service_ports:
            number = resolve_port(pod, service_port)
            if number is not None:
                name, protocol = service_port.get("name") or "", service_port.get("protocol")
                ports.append((str(name), number, str(protocol or "TCP")))
        if not ports and not (headless and not service_ports):
            continue  # no port of the service resolves on this pod
        ready, not_ready = grouped.setdefault(tuple(sorted(ports)), ([], []))
        (ready if publish or pod_ready(pod) else not_ready).append(_address(pod, service_name))
    subsets: list[Object] = []
    for ports_key in sorted(grouped):
        ready, not_ready = grouped[ports_key]
        subset: Object = {}
        if ready:
            subset["addresses"] = sorted(ready, key=_address_order)
        if not_ready:
            subset["notReadyAddresses"] = sorted(not_ready, key=_address_order)
        if ports_key:
            subset["ports"] = [
                {"name": name, "port": number, "protocol": protocol} if name
                else {"port": number, "protocol": protocol}
                for name, number, protocol in ports_key
            ]  # fmt: skip
        subsets.append(subset)
    return subsets


def desired_endpoints(service: Object, pods: list[Object]) -> Object:
    meta = service["metadata"]
    endpoints: Object = {
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": meta["name"], "namespace": meta.get("namespace", "")},
        "subsets": endpoint_subsets(service, pods),
    }  # fmt: skip
    if meta.get("labels"):
        endpoints["metadata"]["labels"] = dict(meta["labels"])
    return endpoints


def up_to_date(current: Object, wanted: Object) -> bool:
    """Whether the stored Endpoints already say what `wanted` says."""
    labels = (current.get("metadata") or {}).get("labels") or {}
    return bool(
        (current.get("subsets") or []) == wanted["subsets"]
        and labels == (wanted["metadata"].get("labels") or {})
    )


# -- acting ----------------------------------------------------------------------------


def _endpoints_path(namespace: str, name: str = "") -> str:
    base = f"/api/v1/namespaces/{namespace}/endpoints"
    return f"{base}/{name}" if name else base


class EndpointsController(Controller):
    name = "endpoint"  # as kube-controller-manager --controllers names it

    def __init__(
        self, client: Client, services: Informer, pods: Informer, endpoints: Informer, *,
        workers: int = 2,
    ) -> None:  # fmt: skip
        super().__init__(client, workers=workers)
        self.services = services
        self.pods = pods
        self.endpoints = endpoints
        services.add_handler(lambda old, new: self.enqueue(new or old))
        pods.add_handler(self._on_pod)
        endpoints.add_handler(self._on_endpoints)

    def _on_pod(self, old: Object | None, new: Object | None) -> None:
        keys: set[str] = set()
        for pod in (old, new):
            if pod is None:
                continue
            namespace = pod["metadata"].get("namespace", "")
            for service in self.services.list(namespace):
                if selects((service.get("spec") or {}).get("selector"), labels_of(pod)):
                    keys.add(key_of(service))
        for key in keys:
            self.queue.add(key)

    def _on_endpoints(self, old: Object | None, new: Object | None) -> None:
        # A change made by someone else (or a deletion) is put right again.
        endpoints = new or old
        if endpoints is not None and self.services.get(key_of(endpoints)) is not None:
            self.queue.add(key_of(endpoints))

    def sync(self, key: str) -> float | None:
        namespace, name = split_key(key)
        service = self.services.get(key)
        current = self.endpoints.get(key)
        if service is None:
            if current is not None:
                try:
                    self.client.delete(_endpoints_path(namespace, name))
                    log.info("deleted endpoints %s", key)
                except ApiError as e:
                    if e.code != 404:
                        raise
            return None
        if not (service.get("spec") or {}).get("selector"):
            return None  # not ours: filled by whoever made the service
        wanted = desired_endpoints(service, self.pods.list(namespace))
        if current is not None and up_to_date(current, wanted):
            return None
        if current is None:
            try:
                self.client.create(_endpoints_path(namespace), wanted)
                log.info("created endpoints %s", key)
                return None
            except ApiError as e:
                if e.code != 409:
                    raise
                current = self.client.get(_endpoints_path(namespace, name))
                if up_to_date(current, wanted):
                    return None
        body: dict[str, Any] = {**current, "subsets": wanted["subsets"]}
        body["metadata"] = {**current["metadata"], "labels": wanted["metadata"].get("labels", {})}
        self.client.update(_endpoints_path(namespace, name), body)
        log.debug("updated endpoints %s", key)
        return None
