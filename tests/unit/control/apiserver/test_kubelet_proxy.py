"""The kubelet proxy's and the metrics API's pure parts: which container a request
means, the kubelet URLs, node addresses, Prometheus text, cpu rates, the metrics
objects, and the byte splice under upgraded connections."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from control.apiserver import certs
from control.apiserver.auth import ADMIN_GROUP, Authenticator, User
from control.apiserver.errors import ApiError, Target
from control.apiserver.kubelet_proxy import (
    Endpoint,
    KubeletClient,
    KubeletClientConfig,
    KubeletError,
    ProxyTarget,
    choose_container,
    error_from_body,
    log_path,
    node_endpoint,
    parse_address_types,
    parse_target,
    splice,
    stream_path,
)
from control.apiserver.main import duration, kubelet_client_config
from control.apiserver.metrics import (
    MetricsApi,
    NodeHistory,
    Point,
    Scrape,
    go_duration,
    memory_quantity,
    parse_metrics_path,
    parse_prometheus,
    rate,
    scrape_from_samples,
)
from control.apiserver.objects import Registry
from control.apiserver.resources import lookup
from control.storage import MemoryBackend


def pod(*containers: str, init: tuple[str, ...] = (), node: str = "n1") -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "default", "labels": {"app": "p"}},
        "spec": {"nodeName": node, "containers": [{"name": c} for c in containers],
                 "initContainers": [{"name": c} for c in init]},
    }  # fmt: skip


# -- the container a request means --------------------------------------------------------


def test_the_only_container_is_the_default() -> None:
    assert choose_container(pod("web"), "") == "web"
    assert choose_container(pod("web", "side"), "side") == "side"
    assert choose_container(pod("web", init=("setup",)), "setup") == "setup"


def test_several_containers_need_a_name_as_kubernetes_words_it() -> None:
    with pytest.raises(ApiError) as raised:
        choose_container(pod("a", "b", init=("i",)), "")
    assert (raised.value.code, raised.value.reason) == (400, "BadRequest")
    assert (
        raised.value.message
        == "a container name must be specified for pod p, choose one of: [i a b]"
    )
    with pytest.raises(ApiError) as unknown:
        choose_container(pod("a"), "nope")
    assert unknown.value.message == "container nope is not valid for pod p"
    with pytest.raises(ApiError) as empty:
        choose_container(pod(), "")
    assert empty.value.message == "a container name must be specified for pod p"


# -- kubelet URLs -------------------------------------------------------------------------


def test_log_path_carries_the_options_the_kubelet_reads() -> None:
    query = {"follow": ["1"], "tailLines": ["10"], "timestamps": ["true"], "previous": ["false"],
             "limitBytes": ["500"], "container": ["web"], "sinceSeconds": ["60"]}  # fmt: skip
    assert log_path("ns", "p", "web", query) == (
        "/containerLogs/ns/p/web?follow=true&timestamps=true&sinceSeconds=60&tailLines=10"
        "&limitBytes=500"
    )
    assert log_path("ns", "p", "web", {}) == "/containerLogs/ns/p/web"
    since = log_path("ns", "p", "web", {"sinceTime": ["2026-01-02T03:04:05Z"]})
    assert since == "/containerLogs/ns/p/web?sinceTime=2026-01-02T03%3A04%3A05Z"


@pytest.mark.parametrize(
    ("query", "code", "text"),
    [
        ({"tailLines": ["-1"]}, 422, "tailLines: must be greater than or equal to 0"),
        ({"limitBytes": ["0"]}, 422, "limitBytes: must be greater than 0"),
        ({"sinceSeconds": ["5"], "sinceTime": ["2026-01-02T03:04:05Z"]}, 422, "at most one of"),
        ({"tailLines": ["ten"]}, 400, 'tailLines: invalid value "ten"'),
        ({"follow": ["maybe"]}, 400, 'follow: invalid value "maybe": not a boolean'),
        ({"sinceTime": ["yesterday"]}, 400, "not an RFC 3339 time"),
    ],
)
def test_bad_log_options_are_refused(query: dict[str, list[str]], code: int, text: str) -> None:
    with pytest.raises(ApiError) as raised:
        log_path("ns", "p", "web", query)
    assert raised.value.code == code
    assert text in raised.value.message


def test_exec_path_repeats_commands_and_sends_the_stream_flags() -> None:
    query = {"command": ["sh", "-c", "echo a b"], "stdin": ["true"], "stdout": ["true"],
             "tty": ["true"], "container": ["web"]}  # fmt: skip
    assert stream_path("exec", "ns", "p", "web", query) == (
        "/exec/ns/p/web?command=sh&command=-c&command=echo+a+b&input=1&stdin=1&output=1"
        "&stdout=1&tty=1"
    )
    attach = stream_path("attach", "ns", "p", "web", {"stdout": ["1"], "stderr": ["1"]})
    assert attach == "/attach/ns/p/web?output=1&stdout=1&error=1&stderr=1"
    forward = stream_path("portforward", "ns", "p", "", {"ports": ["80", "8080"]})
    assert forward == "/portForward/ns/p?ports=80&ports=8080"
    assert stream_path("exec", "a b", "p/q", "c", {"command": ["x"], "stdout": ["1"]}).startswith(
        "/exec/a%20b/p%2Fq/c?"
    )


def test_exec_needs_a_command_and_a_stream() -> None:
    with pytest.raises(ApiError, match="at least one command"):
        stream_path("exec", "ns", "p", "web", {"stdout": ["true"]})
    with pytest.raises(ApiError, match="at least 1 of stdin, stdout, stderr"):
        stream_path("exec", "ns", "p", "web", {"command": ["ls"]})


def test_targets_from_paths() -> None:
    assert parse_target("/api/v1/namespaces/ns/pods/p/log") == ProxyTarget("log", "ns", "p")
    assert parse_target("/api/v1/namespaces/ns/pods/p/exec") == ProxyTarget("exec", "ns", "p")
    assert parse_target("/api/v1/nodes/n1/proxy") == ProxyTarget("proxy", "", "n1", "/")
    assert parse_target("/api/v1/nodes/n1/proxy/stats/summary") == ProxyTarget(
        "proxy", "", "n1", "/stats/summary"
    )
    assert parse_target("/api/v1/nodes/n1/proxy/a%2Fb/") == ProxyTarget(
        "proxy", "", "n1", "/a%2Fb/"
    )
    for other in ("/api/v1/namespaces/ns/pods/p", "/api/v1/namespaces/ns/pods/p/status",
                  "/api/v1/nodes/n1", "/apis/apps/v1/namespaces/ns/pods/p/log"):  # fmt: skip
        assert parse_target(other) is None


# -- node addresses -----------------------------------------------------------------------


def node(addresses: list[tuple[str, str]], port: Any = 10250, labels: Any = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "n1", "labels": labels or {}},
        "status": {"addresses": [{"type": t, "address": a} for t, a in addresses],
                   "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}},
    }  # fmt: skip


def test_the_first_preferred_address_type_wins() -> None:
    both = node([("Hostname", "box"), ("InternalIP", "10.0.0.5")], 10255)
    assert node_endpoint(both, ("InternalIP", "Hostname")) == Endpoint("n1", "10.0.0.5", 10255)
    assert node_endpoint(both, ("Hostname", "InternalIP")).host == "box"
    six = node_endpoint(node([("InternalIP", "fd00::5")]), ("InternalIP",))
    assert six.url("/healthz") == "https://[fd00::5]:10250/healthz"


def test_missing_port_means_10250_and_hostname_label_stands_in() -> None:
    labelled = node([], port=0, labels={"kubernetes.io/hostname": "box"})
    assert node_endpoint(labelled, ("InternalIP", "Hostname")) == Endpoint("n1", "box", 10250)
    with pytest.raises(ApiError) as raised:
        node_endpoint(node([("ExternalIP", "1.2.3.4")]), ("InternalIP",))
    assert "no preferred addresses found; known addresses: [{ExternalIP 1.2.3.4}]" in str(
        raised.value
    )


def test_address_types_flag() -> None:
    assert parse_address_types("InternalIP, Hostname") == ("InternalIP", "Hostname")
    with pytest.raises(ValueError, match="unknown address type 'Internal'"):
        parse_address_types("Internal")
    with pytest.raises(ValueError):
        parse_address_types(" , ")


def test_duration_flag() -> None:
    assert duration("5s") == 5.0
    assert duration("1m30s") == 90.0
    assert duration("250ms") == 0.25
    assert duration("2") == 2.0
    with pytest.raises(Exception, match="expected a duration"):
        duration("5 seconds")


def test_kubelet_errors_become_statuses() -> None:
    target = Target("pods", "p")
    plain = error_from_body(404, b"container not found\n", target)
    assert (plain.code, plain.reason, plain.message) == (404, "NotFound", "container not found")
    relayed = error_from_body(
        500, b'{"kind":"Status","code":403,"reason":"Forbidden","message":"no"}', target
    )
    assert (relayed.code, relayed.reason, relayed.message) == (403, "Forbidden", "no")
    assert error_from_body(502, b"", target).reason == "InternalError"


def test_the_kubelet_client_certificate_is_issued_once(tmp_path: Path) -> None:
    ca = certs.ensure_ca(tmp_path)
    config = kubelet_client_config(tmp_path, ca, KubeletClientConfig())
    assert config.certificate == tmp_path / "apiserver-kubelet-client.crt"
    first = config.certificate.read_bytes()
    from cryptography import x509

    subject = x509.load_pem_x509_certificate(first).subject.rfc4514_string()
    assert subject == f"O={ADMIN_GROUP},CN=kube-apiserver-kubelet-client"
    again = kubelet_client_config(tmp_path, ca, KubeletClientConfig())
    assert again.certificate is not None and again.certificate.read_bytes() == first
    own = KubeletClientConfig(certificate=tmp_path / "own.crt", key=tmp_path / "own.key")
    assert kubelet_client_config(tmp_path, ca, own) is own
    KubeletClient(config)  # the pair loads


# -- Prometheus text and rates ------------------------------------------------------------

TEXT = """\
# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="web",namespace="default",pod="p"} 2.5 1700000001000
container_memory_working_set_bytes{container="web",namespace="default",pod="p"} 4e+06 1700000001000
container_memory_working_set_bytes{container="side",namespace="default",pod="p"} 8192 1700000001000
node_cpu_usage_seconds_total 120.75 1700000001000
node_memory_working_set_bytes 1.073741824e+09 1700000001000
container_start_time_seconds{container="web",namespace="default",pod="p"} 1.7e+09 1700000001000
odd_metric{path="a\\"b\\\\c\\nd",empty=""} NaN
scrape_error 0
"""


def test_prometheus_text_is_parsed() -> None:
    samples = parse_prometheus(TEXT)
    assert len(samples) == 8
    assert samples[0].name == "container_cpu_usage_seconds_total"
    assert samples[0].labels == {"container": "web", "namespace": "default", "pod": "p"}
    assert (samples[0].value, samples[0].timestamp_ms) == (2.5, 1700000001000)
    odd = samples[6]
    assert odd.labels == {"path": 'a"b\\c\nd', "empty": ""}
    assert odd.value != odd.value and odd.timestamp_ms is None  # NaN, no timestamp
    for bad in ("metric{a=b} 1", "metric 1 2 3", "1metric 2", 'm{a="x"'):
        with pytest.raises(ValueError, match="line 1"):
            parse_prometheus(bad)


def test_a_scrape_keeps_complete_readings() -> None:
    scrape = scrape_from_samples(parse_prometheus(TEXT), 5.0)
    assert scrape.node == Point(120.75, 1073741824.0, 1700000001.0)
    # side has memory but no cpu counter: no reading.
    assert dict(scrape.containers) == {("default", "p", "web"): Point(2.5, 4000000.0, 1700000001.0)}
    untimed = scrape_from_samples(
        parse_prometheus("node_cpu_usage_seconds_total 1\nnode_memory_working_set_bytes 2\n"), 9.0
    )
    assert untimed.node == Point(1.0, 2.0, 9.0)


def test_rate_is_cpu_seconds_per_second_in_nanocores() -> None:
    usage = rate(Point(10.0, 1.0, 100.0), Point(13.0, 4096.0, 115.0))
    assert usage is not None
    assert (usage.cpu_nanocores, usage.memory_bytes, usage.window) == (200_000_000, 4096, 15.0)
    assert rate(Point(10.0, 1.0, 100.0), Point(1.0, 1.0, 115.0)) is None  # restarted
    assert rate(Point(10.0, 1.0, 100.0), Point(11.0, 1.0, 100.0)) is None  # no time between


def test_history_keeps_the_last_two_distinct_readings() -> None:
    history = NodeHistory()
    key = ("default", "p", "web")

    def add(cpu: float, when: float) -> None:
        history.add(Scrape(when, Point(cpu, 2048, when), {key: Point(cpu / 10, 1024, when)}))

    add(1.0, 10.0)
    assert history.usage(None) is None  # one reading: no rate yet
    add(2.0, 12.0)
    add(2.0, 12.0)  # the kubelet's stats did not refresh: same reading again
    node_usage, container_usage = history.usage(None), history.usage(key)
    assert node_usage is not None and container_usage is not None
    assert node_usage.cpu_nanocores == 500_000_000 and node_usage.window == 2.0
    assert container_usage.cpu_nanocores == 50_000_000
    history.add(Scrape(13.0, Point(3.0, 2048, 13.0), {}))
    assert not history.has(key)  # the container went away


def test_quantities_and_windows_as_metrics_server_prints_them() -> None:
    assert memory_quantity(10 * 2**20) == "10240Ki"
    assert memory_quantity(1000) == "1000"
    assert go_duration(15.0) == "15s"
    assert go_duration(10.071) == "10.071s"
    assert go_duration(90.5) == "1m30.5s"
    assert go_duration(0.25) == "250ms"
    assert go_duration(0) == "0s"


def test_metrics_paths() -> None:
    nodes = parse_metrics_path("/apis/metrics.k8s.io/v1beta1/nodes/n1")
    assert nodes is not None and (nodes.resource.kind, nodes.name) == ("NodeMetrics", "n1")
    pods = parse_metrics_path("/apis/metrics.k8s.io/v1beta1/namespaces/ns/pods")
    assert pods is not None and (pods.resource.kind, pods.namespace) == ("PodMetrics", "ns")
    every = parse_metrics_path("/apis/metrics.k8s.io/v1beta1/pods")
    assert every is not None and every.namespace == ""
    for other in ("/apis/metrics.k8s.io/v1beta1/pods/p", "/apis/metrics.k8s.io/v1beta1/things",
                  "/apis/metrics.k8s.io/v1beta1/namespaces/ns/nodes",
                  "/apis/metrics.k8s.io/v1beta1/nodes/a/b"):  # fmt: skip
        assert parse_metrics_path(other) is None


# -- the metrics API over a registry and a scripted kubelet -------------------------------


class ScriptedKubelet(KubeletClient):
    """Answers /metrics/resource with the next text, or fails."""

    def __init__(self, texts: list[str]) -> None:
        super().__init__(KubeletClientConfig(timeout=1.0))
        self.texts = texts
        self.asked: list[str] = []

    def get(self, endpoint: Endpoint, path: str) -> bytes:
        self.asked.append(endpoint.url(path))
        if not self.texts:
            raise KubeletError("connection refused")
        return self.texts.pop(0).encode()


def reading(n: int) -> str:
    ts = 1700000000000 + n * 2000
    return (
        f"node_cpu_usage_seconds_total {n * 1.0} {ts}\n"
        f"node_memory_working_set_bytes {2**30} {ts}\n"
        f'container_cpu_usage_seconds_total{{container="web",namespace="default",pod="p"}} '
        f"{n * 0.1} {ts}\n"
        f'container_memory_working_set_bytes{{container="web",namespace="default",pod="p"}} '
        f"{2**20} {ts}\n"
    )


def metrics_api(texts: list[str]) -> tuple[MetricsApi, ScriptedKubelet, Registry]:
    registry = Registry(MemoryBackend(), clock=lambda: 1700000010.0)
    nodes, pods, namespaces = (lookup("", "v1", r) for r in ("nodes", "pods", "namespaces"))
    assert nodes is not None and pods is not None and namespaces is not None
    registry.create(namespaces, "", {"metadata": {"name": "default"}})
    registry.create(nodes, "", {
        "metadata": {"name": "n1", "labels": {"zone": "a"}},
        "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.5"}]},
    })  # fmt: skip
    registry.create(pods, "default", {
        "metadata": {"name": "p", "labels": {"app": "p"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "web", "image": "busybox"}]},
    })  # fmt: skip
    kubelet = ScriptedKubelet(texts)
    api = MetricsApi(registry, Authenticator(), kubelet, resolution=3600.0)
    return api, kubelet, registry


ADMIN = User("admin", "", (ADMIN_GROUP,))


def test_first_request_scrapes_twice_and_reports_rates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("control.apiserver.metrics.FIRST_RATE_GAP", 0.0)
    api, kubelet, _ = metrics_api([reading(1), reading(2)])
    try:
        listed = api.get("/apis/metrics.k8s.io/v1beta1/nodes", {}, ADMIN)
        assert kubelet.asked == ["https://10.0.0.5:10250/metrics/resource"] * 2
        (item,) = listed["items"]
        assert item["usage"] == {"cpu": "500000000n", "memory": "1048576Ki"}
        assert item["window"] == "2s" and item["metadata"]["labels"] == {"zone": "a"}
        assert item["timestamp"] == "2023-11-14T22:13:24Z"
        one = api.get("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/p", {}, ADMIN)
        assert one["kind"] == "PodMetrics" and one["metadata"]["namespace"] == "default"
        assert one["containers"] == [{"name": "web", "usage": {"cpu": "50000000n",
                                                              "memory": "1024Ki"}}]  # fmt: skip
        assert len(kubelet.asked) == 2  # fresh enough: no more scrapes
        none = api.get("/apis/metrics.k8s.io/v1beta1/pods", {"labelSelector": "app=q"}, ADMIN)
        assert none == {"kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1",
                        "metadata": {}, "items": []}  # fmt: skip
        with pytest.raises(ApiError) as missing:
            api.get("/apis/metrics.k8s.io/v1beta1/nodes/n2", {}, ADMIN)
        assert missing.value.message == 'nodemetrics.metrics.k8s.io "n2" not found'
    finally:
        api.stop()


def test_an_unreachable_kubelet_means_no_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("control.apiserver.metrics.FIRST_RATE_GAP", 0.0)
    api, kubelet, _ = metrics_api([])
    try:
        assert api.get("/apis/metrics.k8s.io/v1beta1/nodes", {}, ADMIN)["items"] == []
        with pytest.raises(ApiError) as missing:
            api.get("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/p", {}, ADMIN)
        assert missing.value.message == 'podmetrics.metrics.k8s.io "default/p" not found'
        assert len(kubelet.asked) == 1  # a failed node is not asked again at once
        with pytest.raises(ApiError) as forbidden:
            api.get("/apis/metrics.k8s.io/v1beta1/nodes", {}, User("someone"))
        assert forbidden.value.code == 403
    finally:
        api.stop()


# -- the splice ---------------------------------------------------------------------------


def test_splice_copies_both_ways_until_one_side_closes() -> None:
    client, proxy_client = socket.socketpair()
    proxy_kubelet, kubelet = socket.socketpair()
    joined = threading.Thread(target=splice, args=(proxy_client, proxy_kubelet))
    joined.start()
    try:
        client.sendall(b"to the kubelet")
        assert kubelet.recv(100) == b"to the kubelet"
        big = b"y" * 1_000_000
        sender = threading.Thread(target=kubelet.sendall, args=(big,))
        sender.start()
        received = b""
        while len(received) < len(big):
            received += client.recv(1 << 16)
        sender.join()
        assert received == big
        kubelet.close()
        joined.join(5)
        assert not joined.is_alive()
    finally:
        for sock in (client, proxy_client, proxy_kubelet, kubelet):
            sock.close()
