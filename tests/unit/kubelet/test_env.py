"""kubelet.env: $(VAR) expansion, envFrom/env precedence, valueFrom sources, the
downward API fields and resources, service link variables, and the errors of
missing ConfigMaps, Secrets and keys."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from kubeapi.client import ApiError
from kubelet.config import KubeletConfig
from kubelet.env import (
    ConfigError,
    container_env,
    expand,
    format_map,
    node_allocatable,
    pod_field,
    resource_value,
)
from tests.unit.kubelet.volumes.fake_api import FakeApi

Object = dict[str, Any]


def make_pod(container: Object, **spec: Any) -> Object:
    return {
        "metadata": {"name": "web", "namespace": "shop", "uid": "u-1",
                     "labels": {"app": "web", "tier": "front"},
                     "annotations": {"note": 'say "hi"\n'}},
        "spec": {"nodeName": "node-a", "serviceAccountName": "builder",
                 "containers": [container], **spec},
        "status": {"hostIP": "192.0.2.1", "podIP": "10.1.0.5",
                   "podIPs": [{"ip": "10.1.0.5"}, {"ip": "fd00::5"}]},
    }  # fmt: skip


def env_of(api: FakeApi, container: Object, **kwargs: Any) -> dict[str, str]:
    pod = make_pod(container, **kwargs.pop("spec", {}))
    result = container_env(api, pod, container, pod_ip="10.1.0.5", host_ip="192.0.2.1", **kwargs)
    return {kv.key: kv.value.decode() for kv in result}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(A)-$(B)", "1-2"),
        ("$$(A)", "$(A)"),
        ("$$", "$"),
        ("$(MISSING)", "$(MISSING)"),
        ("$(A", "$(A"),
        ("a$b", "a$b"),
        ("$", "$"),
        ("x$", "x$"),
        ("$()", "$()"),
        ("$($(A))", "$($(A))"),  # the name is "$(A": unknown, kept
        ("pre$(A)post$$$(B)", "pre1post$2"),
    ],
)
def test_expand_follows_the_kubernetes_rules(text: str, expected: str) -> None:
    values = {"A": "1", "B": "2"}
    assert expand(text, values.get) == expected


def test_format_map_quotes_values_like_go_and_sorts_keys() -> None:
    assert format_map({"b": "2", "a": 'x"y\\z\n\t\x01é'}) == 'a="x\\"y\\\\z\\n\\t\\x01é"\nb="2"'
    assert format_map({}) == ""


def test_env_from_then_env_overrides_and_expands_in_order() -> None:
    api = FakeApi()
    api.config_map("shop", "settings", {"MODE": "prod", "LEVEL": "3", "bad key": "x", "1st": "y"})
    api.secret("shop", "creds", {"PASSWORD": b"s3cr3t"})
    warnings: list[tuple[str, str]] = []
    container = {
        "name": "app",
        "envFrom": [{"configMapRef": {"name": "settings"}},
                    {"secretRef": {"name": "creds"}, "prefix": "DB_"}],
        "env": [
            {"name": "LEVEL", "value": "level-$(LEVEL)-$(MODE)"},
            {"name": "URL", "value": "$(DB_PASSWORD)@$(LATER) $$(MODE)"},
            {"name": "LATER", "value": "late"},
            {"name": "EMPTY"},
        ],
    }  # fmt: skip
    env = env_of(api, container, on_warning=lambda r, m: warnings.append((r, m)))
    assert list(env) == ["MODE", "LEVEL", "DB_PASSWORD", "URL", "LATER", "EMPTY"]
    assert env["LEVEL"] == "level-3-prod"
    assert env["URL"] == "s3cr3t@$(LATER) $(MODE)"  # LATER is declared after URL
    assert env["EMPTY"] == ""
    assert warnings == [(
        "InvalidEnvironmentVariableNames",
        "Keys [1st, bad key] from the EnvFrom configMap shop/settings were skipped since "
        "they are considered invalid environment variable names.",
    )]  # fmt: skip


def test_value_from_config_maps_and_secrets_with_optional() -> None:
    api = FakeApi()
    api.config_map("shop", "settings", {"color": "blue"})
    api.secret("shop", "creds", {"token": b"\xff\x00raw"})
    container = {"name": "app", "env": [
        {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "color"}}},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        {"name": "GONE", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k",
                                                             "optional": True}}},
        {"name": "NOKEY", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "k",
                                                          "optional": True}}},
    ]}  # fmt: skip
    pod = make_pod(container)
    result = container_env(api, pod, container, pod_ip="10.1.0.5", host_ip="192.0.2.1")
    values = {kv.key: kv.value for kv in result}
    assert values == {"COLOR": b"blue", "TOKEN": b"\xff\x00raw"}  # bytes carried unchanged


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"configMapKeyRef": {"name": "nope", "key": "k"}}, 'configmap "nope" not found'),
        ({"configMapKeyRef": {"name": "settings", "key": "k"}},
         "couldn't find key k in ConfigMap shop/settings"),
        ({"secretKeyRef": {"name": "nope", "key": "k"}}, 'secret "nope" not found'),
        ({"secretKeyRef": {"name": "creds", "key": "k"}},
         "couldn't find key k in Secret shop/creds"),
        ({"fieldRef": {"fieldPath": "spec.schedulerName"}},
         "unsupported fieldPath: spec.schedulerName"),
        ({"resourceFieldRef": {"resource": "limits.gpu"}},
         "unsupported container resource : limits.gpu"),
    ],
)  # fmt: skip
def test_missing_sources_are_config_errors(source: Object, message: str) -> None:
    api = FakeApi()
    api.config_map("shop", "settings", {"color": "blue"})
    api.secret("shop", "creds", {"token": b"t"})
    with pytest.raises(ConfigError) as error:
        env_of(api, {"name": "app", "env": [{"name": "X", "valueFrom": source}]})
    assert error.value.message == message


def test_missing_env_from_source_fails_unless_optional() -> None:
    api = FakeApi()
    optional = {"name": "app", "envFrom": [{"configMapRef": {"name": "x", "optional": True}}]}
    assert env_of(api, optional) == {}
    with pytest.raises(ConfigError, match='^secret "x" not found$'):
        env_of(api, {"name": "app", "envFrom": [{"secretRef": {"name": "x"}}]})


def test_field_refs() -> None:
    pod = make_pod({"name": "app"})
    expected = {
        "metadata.name": "web", "metadata.namespace": "shop", "metadata.uid": "u-1",
        "metadata.labels['app']": "web", "metadata.labels['none']": "",
        "metadata.annotations['note']": 'say "hi"\n',
        "metadata.labels": 'app="web"\ntier="front"',
        "spec.nodeName": "node-a", "spec.serviceAccountName": "builder",
        "status.hostIP": "192.0.2.1", "status.hostIPs": "192.0.2.1",
        "status.podIP": "10.1.0.5", "status.podIPs": "10.1.0.5,fd00::5",
    }  # fmt: skip
    for path, value in expected.items():
        assert pod_field(pod, path, pod_ip="10.1.0.5", host_ip="192.0.2.1") == value, path


def test_pod_ip_argument_wins_over_a_stale_status() -> None:
    pod = make_pod({"name": "app"})
    pod["status"] = {}
    assert pod_field(pod, "status.podIP", pod_ip="10.9.9.9", host_ip="") == "10.9.9.9"
    assert pod_field(pod, "status.podIPs", pod_ip="10.9.9.9", host_ip="") == "10.9.9.9"
    assert pod_field(pod, "status.hostIPs", pod_ip="", host_ip="192.0.2.7") == "192.0.2.7"


def test_resource_field_refs_round_up_and_default_limits_to_allocatable() -> None:
    container = {
        "name": "app",
        "resources": {"limits": {"cpu": "1500m"}, "requests": {"cpu": "250m", "memory": "100Mi"}},
    }
    pod = make_pod(container)
    node = {"cpu": "4", "memory": "8Gi"}

    def ref(resource: str, divisor: str = "") -> str:
        selector = {"resource": resource, **({"divisor": divisor} if divisor else {})}
        return resource_value(selector, pod, container, node)

    assert ref("limits.cpu") == "2"  # 1.5 cores, rounded up
    assert ref("limits.cpu", "1m") == "1500"
    assert ref("requests.cpu", "1m") == "250"
    assert ref("requests.cpu") == "1"
    assert ref("requests.memory") == str(100 * 2**20)
    assert ref("requests.memory", "1Mi") == "100"
    assert ref("requests.memory", "1Gi") == "1"
    assert ref("limits.memory", "1Gi") == "8"  # unset: the node's allocatable
    assert ref("requests.ephemeral-storage") == "0"
    by_name = {"resource": "limits.cpu", "containerName": "app", "divisor": "1m"}
    assert resource_value(by_name, pod, None, node) == "1500"
    with pytest.raises(ConfigError, match="container other not found"):
        resource_value({"resource": "limits.cpu", "containerName": "other"}, pod, None, node)


def test_node_allocatable_subtracts_reservations_and_eviction(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:        8388608 kB\nMemFree:  1 kB\n")
    config = KubeletConfig(kubeconfig="k", system_reserved={"memory": "1Gi", "cpu": "100m"},
                           kube_reserved={"memory": "512Mi"},
                           eviction_hard={"memory.available": "100Mi",
                                          "nodefs.available": "10%"})  # fmt: skip
    config.root_dir = tmp_path / "not-yet"  # measured on the filesystem it will be on
    config.kube_reserved["ephemeral-storage"] = "1Mi"
    result = node_allocatable(config, meminfo=meminfo)
    assert int(result["memory"]) == 8 * 2**30 - 2**30 - 512 * 2**20 - 100 * 2**20
    assert result["cpu"] == f"{len(os.sched_getaffinity(0)) * 1000 - 100}m"
    disk = os.statvfs(tmp_path)
    total = disk.f_blocks * disk.f_frsize
    assert int(result["ephemeral-storage"]) == max(total - 2**20 - total // 10, 0)


def test_service_links_and_the_master_service() -> None:
    api = FakeApi()
    api.service("shop", "redis-main", "10.96.0.20", [
        {"port": 6379, "protocol": "TCP"},
        {"name": "metrics-port", "port": 9121, "protocol": "TCP"},
    ])  # fmt: skip
    api.service("shop", "headless", "None", [{"port": 80}])
    api.service("other", "elsewhere", "10.96.0.30", [{"port": 80}])
    api.service("default", "kubernetes", "10.96.0.1", [{"name": "https", "port": 443}])
    env = env_of(
        api,
        {
            "name": "app",
            "env": [
                {"name": "R", "value": "$(REDIS_MAIN_SERVICE_HOST)"},
                {"name": "KUBERNETES_SERVICE_PORT", "value": "1"},
            ],
        },
    )
    assert env["R"] == "10.96.0.20"
    assert env["REDIS_MAIN_SERVICE_HOST"] == "10.96.0.20"
    assert env["REDIS_MAIN_SERVICE_PORT"] == "6379"
    assert env["REDIS_MAIN_SERVICE_PORT_METRICS_PORT"] == "9121"
    assert env["REDIS_MAIN_PORT"] == "tcp://10.96.0.20:6379"
    assert env["REDIS_MAIN_PORT_9121_TCP"] == "tcp://10.96.0.20:9121"
    assert env["REDIS_MAIN_PORT_9121_TCP_PROTO"] == "tcp"
    assert env["REDIS_MAIN_PORT_9121_TCP_PORT"] == "9121"
    assert env["REDIS_MAIN_PORT_9121_TCP_ADDR"] == "10.96.0.20"
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert env["KUBERNETES_SERVICE_PORT"] == "1"  # the container's own value wins
    assert env["KUBERNETES_PORT_443_TCP"] == "tcp://10.96.0.1:443"
    assert not any(k.startswith(("HEADLESS_", "ELSEWHERE_")) for k in env)

    no_links = env_of(api, {"name": "app"}, spec={"enableServiceLinks": False})
    assert "REDIS_MAIN_SERVICE_HOST" not in no_links
    assert no_links["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert no_links["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"


def test_api_failures_other_than_not_found_are_config_errors() -> None:
    class Forbidden(FakeApi):
        def get(self, path: str, **query: Any) -> Object:
            if "/secrets/" in path:
                raise ApiError("GET", path, 403, {"reason": "Forbidden", "message": "no"})
            return super().get(path, **query)

    api = Forbidden()
    container = {"name": "app", "envFrom": [{"secretRef": {"name": "creds", "optional": True}}]}
    with pytest.raises(ConfigError, match="^couldn't get secret shop/creds: GET .* 403 Forbidden"):
        env_of(api, container)
