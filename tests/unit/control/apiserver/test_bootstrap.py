"""What `kubeling apiserver` creates at every start: the system namespaces and the
`kubernetes` Service with Endpoints of the server's own address, kept current."""

from __future__ import annotations

from control.apiserver.main import SYSTEM_NAMESPACES, bootstrap
from control.apiserver.objects import Registry, Selectors
from control.apiserver.resources import ResourceType, lookup
from control.storage import MemoryBackend


def resource(plural: str) -> ResourceType:
    found = lookup("", "v1", plural)
    assert found is not None
    return found


def test_bootstrap_is_idempotent_and_follows_the_port() -> None:
    services, endpoints = resource("services"), resource("endpoints")
    with MemoryBackend() as backend:
        registry = Registry(backend, clock=lambda: 1_700_000_000.0)
        bootstrap(registry, address="127.0.0.1", port=6443)
        bootstrap(registry, address="127.0.0.1", port=6443)
        listed = registry.list(resource("namespaces"), "", selectors=Selectors())
        assert sorted(n["metadata"]["name"] for n in listed["items"]) == sorted(SYSTEM_NAMESPACES)
        service = registry.get(services, "default", "kubernetes")
        assert service["metadata"]["labels"] == {"component": "apiserver", "provider": "kubernetes"}
        assert service["spec"]["ports"] == [
            {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}
        ]
        assert "selector" not in service["spec"]  # its endpoints are the server's to keep
        first = registry.get(endpoints, "default", "kubernetes")
        assert first["subsets"] == [{"addresses": [{"ip": "127.0.0.1"}],
                                     "ports": [{"name": "https", "port": 6443,
                                                "protocol": "TCP"}]}]  # fmt: skip
        bootstrap(registry, address="127.0.0.1", port=6443)
        same = registry.get(endpoints, "default", "kubernetes")
        assert same["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
        bootstrap(registry, address="10.0.0.5", port=7443)
        moved = registry.get(endpoints, "default", "kubernetes")
        assert moved["subsets"][0]["addresses"] == [{"ip": "10.0.0.5"}]
        assert moved["subsets"][0]["ports"][0]["port"] == 7443
        assert registry.get(services, "default", "kubernetes")["spec"]["ports"][0][
            "targetPort"] == 7443  # fmt: skip


def test_bootstrap_without_an_address_makes_only_namespaces() -> None:
    with MemoryBackend() as backend:
        registry = Registry(backend, clock=lambda: 1_700_000_000.0)
        bootstrap(registry)
        assert registry.list(resource("services"), "default", selectors=Selectors())["items"] == []
