"""Endpoints decisions: which pods are listed, ready or not, named ports resolved per
pod (different resolutions in different subsets), and when a write is needed."""

from __future__ import annotations

from typing import Any, cast

from control.controllers.base import Informer
from control.controllers.endpoints import (
    EndpointsController,
    desired_endpoints,
    endpoint_subsets,
    in_endpoints,
    resolve_port,
    selects,
    up_to_date,
)
from kubeapi.client import Client


def service(ports: list[Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "default", "labels": {"team": "x"}},
            "spec": {"selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http",
                                "protocol": "TCP"}] if ports is None else ports,
                     **spec}}  # fmt: skip


def pod(name: str, ip: str = "10.0.0.1", *, ready: bool = True, http: int = 8080,
        labels: dict[str, str] | None = None, deleting: bool = False, phase: str = "Running",
        restart: str = "Always", node: str = "n1") -> dict[str, Any]:  # fmt: skip
    meta: dict[str, Any] = {"name": name, "namespace": "default", "uid": f"u-{name}",
                            "labels": {"app": "web"} if labels is None else labels}  # fmt: skip
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status: dict[str, Any] = {"phase": phase,
                              "conditions": [{"type": "Ready",
                                              "status": "True" if ready else "False"}]}  # fmt: skip
    if ip:
        status["podIP"] = ip
    return {"metadata": meta, "status": status,
            "spec": {"nodeName": node, "restartPolicy": restart, "containers": [
                {"name": "c", "ports": [{"name": "http", "containerPort": http,
                                         "protocol": "TCP"}]}]}}  # fmt: skip


def ips(subset: dict[str, Any], field: str = "addresses") -> list[str]:
    return [a["ip"] for a in subset.get(field) or []]


def test_selects() -> None:
    assert selects({"app": "web"}, {"app": "web", "x": "y"})
    assert not selects({"app": "web"}, {"app": "db"})
    assert not selects({}, {"app": "web"})
    assert not selects(None, {"app": "web"})


def test_in_endpoints() -> None:
    assert in_endpoints(pod("a"), include_terminating=False)
    assert not in_endpoints(pod("a", ip=""), include_terminating=True)
    assert not in_endpoints(pod("a", deleting=True), include_terminating=False)
    assert in_endpoints(pod("a", deleting=True), include_terminating=True)
    assert not in_endpoints(pod("a", phase="Failed", restart="Never"), include_terminating=False)
    assert not in_endpoints(pod("a", phase="Succeeded", restart="OnFailure"),
                            include_terminating=False)  # fmt: skip
    assert in_endpoints(pod("a", phase="Failed", restart="OnFailure"), include_terminating=False)


def test_resolve_port() -> None:
    p = pod("a", http=8080)
    assert resolve_port(p, {"port": 80, "targetPort": "http"}) == 8080
    assert resolve_port(p, {"port": 80, "targetPort": 9000}) == 9000
    assert resolve_port(p, {"port": 80, "targetPort": "9001"}) == 9001
    assert resolve_port(p, {"port": 80}) == 80
    assert resolve_port(p, {"port": 80, "targetPort": "grpc"}) is None
    assert resolve_port(p, {"port": 80, "targetPort": "http", "protocol": "UDP"}) is None


def test_ready_and_not_ready_addresses_share_a_subset() -> None:
    subsets = endpoint_subsets(service(), [
        pod("b", "10.0.0.2"), pod("a", "10.0.0.1"), pod("c", "10.0.0.3", ready=False),
        pod("other", "10.0.0.9", labels={"app": "db"}), pod("noip", ip=""),
        pod("going", "10.0.0.4", deleting=True),
    ])  # fmt: skip
    assert len(subsets) == 1
    (subset,) = subsets
    assert ips(subset) == ["10.0.0.1", "10.0.0.2"]  # sorted
    assert ips(subset, "notReadyAddresses") == ["10.0.0.3"]
    assert subset["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    first = subset["addresses"][0]
    assert first["nodeName"] == "n1"
    assert first["targetRef"] == {"kind": "Pod", "namespace": "default", "name": "a",
                                  "uid": "u-a"}  # fmt: skip


def test_pods_resolving_a_named_port_differently_are_in_different_subsets() -> None:
    ports = [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
             {"name": "metrics", "port": 9100, "targetPort": 9100, "protocol": "TCP"}]  # fmt: skip
    subsets = endpoint_subsets(service(ports), [
        pod("a", "10.0.0.1", http=8080), pod("b", "10.0.0.2", http=9090),
        pod("c", "10.0.0.3", http=8080),
    ])  # fmt: skip
    by_http = {next(p["port"] for p in s["ports"] if p["name"] == "http"): s for s in subsets}
    assert set(by_http) == {8080, 9090}
    assert ips(by_http[8080]) == ["10.0.0.1", "10.0.0.3"]
    assert ips(by_http[9090]) == ["10.0.0.2"]
    for subset in subsets:
        assert {"name": "metrics", "port": 9100, "protocol": "TCP"} in subset["ports"]


def test_pod_without_the_named_port_is_left_out() -> None:
    ports = [{"name": "grpc", "port": 81, "targetPort": "grpc", "protocol": "TCP"}]
    assert endpoint_subsets(service(ports), [pod("a")]) == []


def test_publish_not_ready_addresses() -> None:
    subsets = endpoint_subsets(service(publishNotReadyAddresses=True), [
        pod("a", "10.0.0.1", ready=False), pod("b", "10.0.0.2", deleting=True),
    ])  # fmt: skip
    assert ips(subsets[0]) == ["10.0.0.1", "10.0.0.2"]
    assert "notReadyAddresses" not in subsets[0]


def test_headless_service_without_ports() -> None:
    subsets = endpoint_subsets(service([], clusterIP="None"), [pod("a")])
    assert subsets == [
        {
            "addresses": [
                {
                    "ip": "10.0.0.1",
                    "nodeName": "n1",
                    "targetRef": {"kind": "Pod", "namespace": "default", "name": "a", "uid": "u-a"},
                }
            ]
        }
    ]


def test_hostname_when_the_subdomain_is_the_service() -> None:
    named = pod("a")
    named["spec"].update(hostname="web-0", subdomain="web")
    assert endpoint_subsets(service(), [named])[0]["addresses"][0]["hostname"] == "web-0"


def test_desired_endpoints_and_up_to_date() -> None:
    wanted = desired_endpoints(service(), [pod("a")])
    assert wanted["metadata"] == {"name": "web", "namespace": "default",
                                  "labels": {"team": "x"}}  # fmt: skip
    stored = {**wanted, "metadata": {**wanted["metadata"], "resourceVersion": "7", "uid": "e"}}
    assert up_to_date(stored, wanted)
    assert not up_to_date({**stored, "subsets": []}, wanted)
    assert not up_to_date({**stored, "metadata": {"name": "web"}}, wanted)  # labels differ
    empty = desired_endpoints(service(), [])
    assert up_to_date({"metadata": {"labels": {"team": "x"}}}, empty)  # no subsets == []


# -- the acting layer --------------------------------------------------------------------


class RecordingClient:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("create", path))
        return body

    def update(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("update", path))
        return body

    def delete(self, path: str) -> dict[str, Any]:
        self.calls.append(("delete", path))
        return {}


def informer(*objects: dict[str, Any]) -> Informer:
    fed = Informer(cast(Client, None), "/unused")
    fed._apply({"type": "RELISTED", "object": {"items": list(objects)}})
    return fed


def test_sync_writes_only_changes_and_deletes_with_the_service() -> None:
    client = RecordingClient()
    services, pods = informer(service()), informer(pod("a"))
    endpoints = informer()
    controller = EndpointsController(cast(Client, client), services, pods, endpoints)
    controller.sync("default/web")
    assert client.calls == [("create", "/api/v1/namespaces/default/endpoints")]
    stored = desired_endpoints(service(), [pod("a")])
    stored["metadata"]["resourceVersion"] = "5"
    endpoints._apply({"type": "ADDED", "object": stored})
    controller.sync("default/web")
    assert len(client.calls) == 1  # nothing changed: no write
    pods._apply({"type": "ADDED", "object": pod("b", "10.0.0.2")})
    controller.sync("default/web")
    assert client.calls[-1] == ("update", "/api/v1/namespaces/default/endpoints/web")
    services._apply({"type": "DELETED", "object": service()})
    controller.sync("default/web")
    assert client.calls[-1] == ("delete", "/api/v1/namespaces/default/endpoints/web")


def test_services_without_a_selector_are_left_alone() -> None:
    client = RecordingClient()
    manual = service()
    del manual["spec"]["selector"]
    controller = EndpointsController(
        cast(Client, client), informer(manual), informer(pod("a")), informer()
    )
    controller.sync("default/web")
    assert client.calls == []
