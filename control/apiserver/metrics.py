"""metrics.k8s.io/v1beta1, served by the API server itself: what metrics-server
behind the kube-aggregator serves in a real cluster, so `kubectl top` works.

    GET /apis/metrics.k8s.io/v1beta1/nodes[/<name>]                   NodeMetrics
    GET /apis/metrics.k8s.io/v1beta1/namespaces/<ns>/pods[/<name>]    PodMetrics
    GET /apis/metrics.k8s.io/v1beta1/pods                             every namespace

The figures come from each node's kubelet `/metrics/resource` (Prometheus text:
node_cpu_usage_seconds_total, node_memory_working_set_bytes,
container_cpu_usage_seconds_total and container_memory_working_set_bytes with
container, namespace and pod labels). A scraper asks every node each resolution
period (15 s by default), keeps its last two scrapes and, as metrics-server does,
reports cpu as the rate of the cumulative counter between them (nanocores, over the
window between the two samples' timestamps) and memory as the latest working set.
A node or container with only one sample has no rate yet; the first request for a
node without two scrapes scrapes it on the spot, twice a second apart, so `kubectl
top` answers right after start instead of saying "metrics not available yet".
"""

from __future__ import annotations

import concurrent.futures
import datetime
import logging
import math
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from control.apiserver import errors
from control.apiserver.auth import Authenticator, User
from control.apiserver.errors import ApiError, Target
from control.apiserver.kubelet_proxy import KubeletClient, KubeletError, node_endpoint
from control.apiserver.objects import Registry, Selectors
from control.apiserver.resources import METRICS_RESOURCES, ResourceType, lookup
from control.apiserver.selectors import SelectorError, parse_field_selector, parse_label_selector

log = logging.getLogger(__name__)

GROUP = "metrics.k8s.io"
VERSION = "v1beta1"
PREFIX = f"/apis/{GROUP}/{VERSION}"
RESOURCE_PATH = "/metrics/resource"
DEFAULT_RESOLUTION = 15.0
# A scrape older than this many resolution periods is no longer reported: the node
# stopped answering, and stale figures would look current.
STALE_PERIODS = 3
# Between the two scrapes of a node seen for the first time.
FIRST_RATE_GAP = 1.0


# -- Prometheus text ------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float
    timestamp_ms: int | None = None


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{(.*)\})?\s+(\S+)(?:\s+(-?\d+))?\s*$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def _labels(text: str, number: int) -> dict[str, str]:
    labels: dict[str, str] = {}
    position = 0
    text = text.strip()
    while position < len(text):
        found = _LABEL.match(text, position)
        if found is None:
            raise ValueError(f"line {number}: malformed labels {{{text}}}")
        value = re.sub(r"\\[\\\"n]", lambda m: _ESCAPES[m.group(0)], found.group(2))
        labels[found.group(1)] = value
        position = found.end()
    return labels


def _value(text: str, number: int) -> float:
    special = {"+Inf": math.inf, "Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}
    if text in special:
        return special[text]
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"line {number}: {text!r} is not a sample value") from None


def parse_prometheus(text: str) -> list[Sample]:
    """The samples of a Prometheus text exposition (version 0.0.4); ValueError naming
    the line of a malformed one."""
    samples = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        found = _SAMPLE.match(stripped)
        if found is None:
            raise ValueError(f"line {number}: not a sample: {stripped[:80]!r}")
        name, labels, value, timestamp = found.groups()
        samples.append(Sample(
            name, _labels(labels or "", number), _value(value, number),
            int(timestamp) if timestamp is not None else None,
        ))  # fmt: skip
    return samples


# -- scrapes and rates ----------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One reading: cumulative cpu seconds, working-set bytes, when (seconds)."""

    cpu_seconds: float
    memory_bytes: float
    timestamp: float


ContainerKey = tuple[str, str, str]  # namespace, pod, container


@dataclass(frozen=True)
class Scrape:
    scraped_at: float
    node: Point | None
    containers: Mapping[ContainerKey, Point]


def scrape_from_samples(samples: list[Sample], scraped_at: float) -> Scrape:
    """The node's and each container's reading in one /metrics/resource answer.
    A sample without a timestamp counts as taken at `scraped_at`."""
    cpu: dict[ContainerKey | None, tuple[float, float]] = {}
    memory: dict[ContainerKey | None, tuple[float, float]] = {}
    for sample in samples:
        when = sample.timestamp_ms / 1000 if sample.timestamp_ms is not None else scraped_at
        key: ContainerKey | None
        if sample.name.startswith("node_"):
            key = None
        elif sample.name.startswith("container_"):
            labels = sample.labels
            if not (labels.get("namespace") and labels.get("pod") and labels.get("container")):
                continue
            key = (labels["namespace"], labels["pod"], labels["container"])
        else:
            continue
        if sample.name.endswith("_cpu_usage_seconds_total"):
            cpu[key] = (sample.value, when)
        elif sample.name.endswith("_memory_working_set_bytes"):
            memory[key] = (sample.value, when)
    points: dict[ContainerKey | None, Point] = {}
    for key, (seconds, when) in cpu.items():
        if key in memory and math.isfinite(seconds) and math.isfinite(memory[key][0]):
            points[key] = Point(seconds, memory[key][0], when)
    node = points.pop(None, None)
    containers = {key: point for key, point in points.items() if key is not None}
    return Scrape(scraped_at, node, containers)


@dataclass(frozen=True)
class Usage:
    cpu_nanocores: int
    memory_bytes: int
    timestamp: float
    window: float


def rate(previous: Point, latest: Point) -> Usage | None:
    """Usage between two readings; None when there is no rate: no time between
    them, or the counter went back (the container restarted)."""
    window = latest.timestamp - previous.timestamp
    if window <= 0 or latest.cpu_seconds < previous.cpu_seconds:
        return None
    nanocores = round((latest.cpu_seconds - previous.cpu_seconds) / window * 1e9)
    return Usage(nanocores, max(0, int(latest.memory_bytes)), latest.timestamp, window)


def cpu_quantity(nanocores: int) -> str:
    return f"{nanocores}n"


def memory_quantity(size: int) -> str:
    """Bytes in Ki when whole kibibytes (working sets are whole pages), else bytes."""
    return f"{size // 1024}Ki" if size % 1024 == 0 else str(size)


def go_duration(seconds: float) -> str:
    """A window as Go's time.Duration prints it: "15.003s", "1m0.5s", "0s"."""
    total_ns = round(seconds * 1e9)
    if total_ns == 0:
        return "0s"
    sign = "-" if total_ns < 0 else ""
    total_ns = abs(total_ns)
    if total_ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if total_ns >= size:
                text = f"{total_ns / size:.9f}".rstrip("0").rstrip(".")
                return f"{sign}{text}{unit}"
    hours, rest = divmod(total_ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    secs = f"{rest / 1e9:.9f}".rstrip("0").rstrip(".")
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{sign}{minutes}m{secs}s"
    return f"{sign}{secs}s"


def _rfc3339(moment: float) -> str:
    return datetime.datetime.fromtimestamp(int(moment), tz=datetime.UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


@dataclass
class NodeHistory:
    """The last two distinct readings of the node and of each of its containers.
    A reading repeated with the same timestamp (the kubelet's stats were not
    refreshed between two scrapes) does not replace the earlier one."""

    pairs: dict[ContainerKey | None, tuple[Point | None, Point]] = field(default_factory=dict)
    scrapes: int = 0
    scraped_at: float = 0.0
    failed_at: float = 0.0

    def add(self, scrape: Scrape) -> None:
        readings: list[tuple[ContainerKey | None, Point | None]] = [(None, scrape.node)]
        readings += list(scrape.containers.items())
        pairs: dict[ContainerKey | None, tuple[Point | None, Point]] = {}
        for key, point in readings:
            if point is None:
                continue
            known = self.pairs.get(key)
            if known is None:
                pairs[key] = (None, point)
            elif point.timestamp > known[1].timestamp:
                pairs[key] = (known[1], point)
            else:
                pairs[key] = known
        self.pairs = pairs  # containers no longer reported are gone
        self.scrapes += 1
        self.scraped_at = scrape.scraped_at
        self.failed_at = 0.0

    def has(self, key: ContainerKey | None) -> bool:
        return key in self.pairs

    def usage(self, key: ContainerKey | None) -> Usage | None:
        """The node's usage (key None) or a container's; None without a rate yet."""
        pair = self.pairs.get(key)
        if pair is None or pair[0] is None:
            return None
        return rate(pair[0], pair[1])


# -- the API --------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricsPath:
    resource: ResourceType
    namespace: str
    name: str


def parse_metrics_path(path: str) -> MetricsPath | None:
    """The metrics resource a path under PREFIX names; None for any other path."""
    if not path.startswith(PREFIX + "/"):
        return None
    parts = [urllib.parse.unquote(p) for p in path[len(PREFIX) :].strip("/").split("/") if p]
    nodes, pods = METRICS_RESOURCES
    namespace = ""
    if len(parts) >= 3 and parts[0] == "namespaces" and parts[1]:
        namespace, parts = parts[1], parts[2:]
        if parts[0] != "pods":
            return None
    if not parts or len(parts) > 2:
        return None
    chosen = {"nodes": nodes, "pods": pods}.get(parts[0])
    if chosen is None or (namespace and not chosen.namespaced):
        return None
    name = parts[1] if len(parts) == 2 else ""
    if chosen.namespaced and name and not namespace:
        return None
    return MetricsPath(chosen, namespace, name)


class MetricsApi:
    """NodeMetrics and PodMetrics from the kubelets, and the scraper behind them."""

    def __init__(
        self,
        registry: Registry,
        authenticator: Authenticator,
        kubelet: KubeletClient,
        *,
        resolution: float = DEFAULT_RESOLUTION,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if resolution <= 0:
            raise ValueError(f"metric resolution {resolution}: must be positive")
        self.registry = registry
        self.authenticator = authenticator
        self.kubelet = kubelet
        self.resolution = resolution
        self.clock = clock
        self._histories: dict[str, NodeHistory] = {}
        self._lock = threading.Lock()
        self._scrape_lock = threading.Lock()  # one on-demand round at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        nodes, pods = lookup("", "v1", "nodes"), lookup("", "v1", "pods")
        assert nodes is not None and pods is not None
        self._nodes, self._pods = nodes, pods

    # -- scraping -----------------------------------------------------------------------

    def start(self) -> None:
        """The background scraper (started on the first metrics request)."""
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(
                target=self._run, name="kubeling-metrics-scraper", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=self.kubelet.timeout + 5)

    def _run(self) -> None:
        while not self._stop.wait(self.resolution):
            try:
                self.scrape_all(self._node_objects())
            except Exception:  # the scraper must outlive one bad round
                log.exception("scraping the kubelets failed")

    def _node_objects(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.registry.list(self._nodes, "", selectors=Selectors())[
            "items"
        ]
        return items

    def history(self, node: str) -> NodeHistory:
        with self._lock:
            return self._histories.setdefault(node, NodeHistory())

    def scrape(self, node: Mapping[str, Any]) -> bool:
        """Scrape one node's kubelet into its history; False if that failed."""
        name = str((node.get("metadata") or {}).get("name", ""))
        history = self.history(name)
        try:
            endpoint = node_endpoint(node, self.kubelet.config.preferred_address_types)
            text = self.kubelet.get(endpoint, RESOURCE_PATH).decode(errors="replace")
            scrape = scrape_from_samples(parse_prometheus(text), self.clock())
        except (ApiError, KubeletError, ValueError) as e:
            log.warning("scraping node %s: %s", name, e)
            with self._lock:
                history.failed_at = self.clock()
            return False
        with self._lock:
            history.add(scrape)
        return True

    def scrape_all(self, nodes: list[dict[str, Any]]) -> None:
        """One round over every node (in parallel); histories of deleted nodes go."""
        self._scrape_each(nodes)
        self._forget_deleted(nodes)

    def _scrape_each(self, nodes: list[dict[str, Any]]) -> None:
        if not nodes:
            return
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(nodes))) as pool:
            list(pool.map(self.scrape, nodes))

    def _forget_deleted(self, nodes: list[dict[str, Any]]) -> None:
        names = {str(n["metadata"]["name"]) for n in nodes}
        with self._lock:
            for gone in set(self._histories) - names:
                del self._histories[gone]

    def _fresh(self, history: NodeHistory) -> bool:
        return (
            history.scrapes >= 2
            and self.clock() - history.scraped_at <= STALE_PERIODS * self.resolution
        )

    def ensure_fresh(self, nodes: list[dict[str, Any]]) -> None:
        """Scrape now the nodes without two recent scrapes (not those that failed
        within the last period: an unreachable kubelet must not slow every request)."""
        self.start()
        with self._scrape_lock:
            now = self.clock()

            def wanted() -> list[dict[str, Any]]:
                chosen = []
                for node in nodes:
                    history = self.history(str(node["metadata"]["name"]))
                    if self._fresh(history):
                        continue
                    if history.failed_at and now - history.failed_at < self.resolution:
                        continue
                    chosen.append(node)
                return chosen

            stale = wanted()
            self._scrape_each(stale)
            # A node seen for the first time has one scrape: a second gives its rate.
            again = [n for n in wanted() if not self.history(n["metadata"]["name"]).failed_at]
            if again:
                time.sleep(FIRST_RATE_GAP)
                self._scrape_each(again)

    # -- serving ------------------------------------------------------------------------

    def get(self, path: str, query: Mapping[str, str], user: User) -> dict[str, Any]:
        """The answer to GET `path` (NodeMetrics[List] or PodMetrics[List])."""
        target = parse_metrics_path(path)
        if target is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        verb = "get" if target.name else "list"
        if query.get("watch", "").lower() in ("1", "true"):
            raise errors.method_not_allowed()
        self.authenticator.authorize(user, verb, target.resource, target.namespace, target.name)
        selectors = _selectors(query, target.resource.kind)
        if target.resource.kind == "NodeMetrics":
            return self._nodes_answer(target, selectors)
        return self._pods_answer(target, selectors)

    def _nodes_answer(self, target: MetricsPath, selectors: Selectors) -> dict[str, Any]:
        nodes = self._node_objects()
        if target.name:
            nodes = [n for n in nodes if n["metadata"]["name"] == target.name]
        nodes = [n for n in nodes if selectors.match(self._nodes, n)]
        self.ensure_fresh(nodes)
        items = []
        for node in nodes:
            history = self.history(node["metadata"]["name"])
            usage = history.usage(None) if self._fresh(history) else None
            if usage is not None:
                items.append(self._node_metrics(node, usage))
        if target.name:
            if not items:
                raise errors.not_found(Target("nodemetrics", target.name, GROUP))
            return items[0]
        return _list("NodeMetricsList", items)

    def _node_metrics(self, node: Mapping[str, Any], usage: Usage) -> dict[str, Any]:
        meta = node["metadata"]
        return {
            "kind": "NodeMetrics", "apiVersion": f"{GROUP}/{VERSION}",
            "metadata": _metadata(meta, self.clock(), namespaced=False),
            "timestamp": _rfc3339(usage.timestamp), "window": go_duration(usage.window),
            "usage": {"cpu": cpu_quantity(usage.cpu_nanocores),
                      "memory": memory_quantity(usage.memory_bytes)},
        }  # fmt: skip

    def _pods_answer(self, target: MetricsPath, selectors: Selectors) -> dict[str, Any]:
        pods: list[dict[str, Any]]
        if target.name:
            try:
                pods = [self.registry.get(self._pods, target.namespace, target.name)]
            except ApiError as e:
                if e.code != 404:
                    raise
                pods = []
        else:
            pods = self.registry.list(self._pods, target.namespace, selectors=Selectors())["items"]
        pods = [p for p in pods if selectors.match(self._pods, p) and
                (p.get("spec") or {}).get("nodeName")]  # fmt: skip
        wanted = {str(p["spec"]["nodeName"]) for p in pods}
        nodes = [n for n in self._node_objects() if n["metadata"]["name"] in wanted]
        self.ensure_fresh(nodes)
        items = [m for m in (self._pod_metrics(p) for p in pods) if m is not None]
        if target.name:
            if not items:
                raise errors.not_found(
                    Target("podmetrics", f"{target.namespace}/{target.name}", GROUP)
                )
            return items[0]
        return _list("PodMetricsList", items)

    def _pod_metrics(self, pod: Mapping[str, Any]) -> dict[str, Any] | None:
        """A pod's metrics, None until each of its containers with figures has a rate
        (as metrics-server leaves out a pod it cannot report whole)."""
        meta = pod["metadata"]
        history = self.history(str(pod["spec"]["nodeName"]))
        if not self._fresh(history):
            return None
        containers, usages = [], []
        for container in (pod.get("spec") or {}).get("containers") or []:
            key = (meta.get("namespace", ""), meta["name"], str(container.get("name")))
            if not history.has(key):
                continue  # not running (yet): no figures, as the kubelet reports none
            usage = history.usage(key)
            if usage is None:
                return None
            usages.append(usage)
            containers.append({"name": key[2], "usage": {
                "cpu": cpu_quantity(usage.cpu_nanocores),
                "memory": memory_quantity(usage.memory_bytes)}})  # fmt: skip
        if not usages:
            return None
        latest = max(usages, key=lambda u: u.timestamp)
        return {
            "kind": "PodMetrics", "apiVersion": f"{GROUP}/{VERSION}",
            "metadata": _metadata(meta, self.clock(), namespaced=True),
            "timestamp": _rfc3339(latest.timestamp), "window": go_duration(latest.window),
            "containers": containers,
        }  # fmt: skip


def _metadata(meta: Mapping[str, Any], now: float, *, namespaced: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"name": meta["name"], "creationTimestamp": _rfc3339(now)}
    if namespaced:
        result["namespace"] = meta.get("namespace", "")
    if meta.get("labels"):
        result["labels"] = dict(meta["labels"])
    return result


def _list(kind: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"kind": kind, "apiVersion": f"{GROUP}/{VERSION}", "metadata": {}, "items": items}


def _selectors(query: Mapping[str, str], kind: str) -> Selectors:
    """Label selectors match the node's or pod's labels; field selectors its
    metadata.name and metadata.namespace."""
    try:
        labels = (
            parse_label_selector(query["labelSelector"]) if query.get("labelSelector") else None
        )
        fields = (
            parse_field_selector(query["fieldSelector"], "Node" if kind == "NodeMetrics" else "Pod")
            if query.get("fieldSelector")
            else None
        )
    except SelectorError as e:
        raise errors.bad_request(str(e)) from None
    return Selectors(labels, fields)


__all__ = [
    "DEFAULT_RESOLUTION",
    "PREFIX",
    "MetricsApi",
    "NodeHistory",
    "Point",
    "Sample",
    "Scrape",
    "Usage",
    "cpu_quantity",
    "go_duration",
    "memory_quantity",
    "parse_metrics_path",
    "parse_prometheus",
    "rate",
    "scrape_from_samples",
]
