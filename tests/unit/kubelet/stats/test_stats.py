"""The stats collector, the Summary API and the Prometheus texts, from a fake CRI and
fake /proc and cgroup trees (v1 hybrid and v2 layouts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubelet.stats.cgroups import CgroupLayout, process_cgroup
from kubelet.stats.collector import StatsCollector
from kubelet.stats.prometheus import Family, cadvisor, format_value, render, resource
from kubelet.stats.rates import CpuRates
from kubelet.stats.summary import summary
from kubelet.stats.times import format_time, parse_time_ns
from tests.unit.kubelet.stats.fakes import (
    CONTAINER,
    POD_CGROUP,
    FakeCri,
    cgroup_v1,
    cgroup_v2,
    fake_proc,
    hybrid_root,
    pod,
    write,
)

MiB = 1 << 20


def test_v1_hybrid_layout_reads_memory_and_cpu_from_the_v1_mounts(tmp_path: Path) -> None:
    root = hybrid_root(tmp_path)
    cgroup_v1(root, "/a/b", usage=10 * MiB, inactive=4 * MiB, cpu_ns=123, cache=5 * MiB,
              limit=64 * MiB)  # fmt: skip
    layout = CgroupLayout.detect(root)
    assert layout.unified == root / "unified" and not layout.unified_memory
    usage = layout.read("/a/b")
    assert usage is not None
    assert usage.memory_usage_bytes == 10 * MiB
    assert usage.memory_working_set_bytes == 6 * MiB  # usage - total_inactive_file
    assert usage.memory_cache_bytes == 5 * MiB
    assert usage.memory_rss_bytes == 5 * MiB
    assert usage.memory_limit_bytes == 64 * MiB
    assert (usage.page_faults, usage.major_page_faults) == (11, 2)
    assert usage.cpu_usage_ns == 123
    assert layout.read("/missing") is None
    cgroup_v1(root, "/unlimited", usage=1, inactive=5, cpu_ns=0)
    unlimited = layout.read("unlimited")
    assert unlimited is not None
    assert unlimited.memory_limit_bytes is None
    assert unlimited.memory_working_set_bytes == 0  # never below zero


def test_v2_layout(tmp_path: Path) -> None:
    cgroup_v2(tmp_path, "/kubepods/x", usage=8 * MiB, inactive=3 * MiB, cpu_ns=7_000_000,
              limit=str(32 * MiB), cache=2 * MiB)  # fmt: skip
    layout = CgroupLayout.detect(tmp_path)
    assert layout.unified == tmp_path and layout.unified_memory and layout.unified_cpu
    usage = layout.read("/kubepods/x")
    assert usage is not None
    assert usage.memory_working_set_bytes == 5 * MiB  # memory.current - inactive_file
    assert usage.memory_cache_bytes == 2 * MiB
    assert usage.memory_rss_bytes == 6 * MiB
    assert usage.memory_limit_bytes == 32 * MiB
    assert usage.cpu_usage_ns == 7_000_000
    with pytest.raises(ValueError):
        layout.read("../escape")


def test_process_cgroup_prefers_the_memory_hierarchy(tmp_path: Path) -> None:
    write(tmp_path / "42" / "cgroup", "12:memory:/user.slice\n0::/other\n")
    write(tmp_path / "43" / "cgroup", "0::/pure/v2\n")
    assert process_cgroup(tmp_path, 42) == "/user.slice"
    assert process_cgroup(tmp_path, 43) == "/pure/v2"
    assert process_cgroup(tmp_path, 44) is None


def test_rates_need_two_samples_a_second_apart() -> None:
    rates = CpuRates()
    assert rates.observe("a", 0, 0) is None
    assert rates.observe("a", 200_000_000, 100) is None  # too close: not even kept
    assert rates.observe("a", 2_000_000_000, 1_000_000_000) == 500_000_000
    # The newest sample at least a second old is the base.
    assert rates.observe("a", 3_500_000_000, 2_500_000_000) == 1_000_000_000
    # A counter that went back (a new cgroup) starts over.
    assert rates.observe("a", 5_000_000_000, 10) is None
    rates.retain(set())
    assert rates.observe("a", 10_000_000_000, 10) is None


def test_times() -> None:
    assert parse_time_ns("2023-11-14T22:13:20.123456789Z") == 1_700_000_000_123_456_789
    assert parse_time_ns("2023-11-14T23:13:20+01:00") == 1_700_000_000_000_000_000
    assert format_time(1_700_000_000.9) == "2023-11-14T22:13:20Z"
    for bad in ("yesterday", "2023-11-14", "2023-11-14T22:13:20", "2023-11-14T22:13:20.Z"):
        with pytest.raises(ValueError):
            parse_time_ns(bad)


def collector(tmp_path: Path, layout: str = "v1") -> tuple[StatsCollector, FakeCri, list[float]]:
    cgroups = tmp_path / "cgroup"
    if layout == "v1":
        hybrid_root(cgroups)
        cgroup_v1(cgroups, POD_CGROUP, usage=20 * MiB, inactive=MiB, cpu_ns=5, cache=7 * MiB)
        cgroup_v1(cgroups, f"{POD_CGROUP}/{CONTAINER}", usage=9 * MiB, inactive=MiB, cpu_ns=5,
                  cache=3 * MiB, limit=64 * MiB)  # fmt: skip
        cgroup_v1(cgroups, "/kubepods", usage=30 * MiB, inactive=MiB, cpu_ns=99)
    else:
        cgroup_v2(cgroups, POD_CGROUP, usage=20 * MiB, inactive=MiB, cpu_ns=5000, cache=7 * MiB)
        cgroup_v2(cgroups, f"{POD_CGROUP}/{CONTAINER}", usage=9 * MiB, inactive=MiB,
                  cpu_ns=5000, cache=3 * MiB, limit=str(64 * MiB))  # fmt: skip
        cgroup_v2(cgroups, "/kubepods", usage=30 * MiB, inactive=MiB, cpu_ns=99000)
    logs = tmp_path / "logs"
    write(logs / "main" / "1.log", "2023-11-14T22:15:00.000000000Z stdout F hello\n")
    volume = tmp_path / "root" / "pods" / "uid-1" / "volumes" / "kubernetes.io~empty-dir" / "data"
    write(volume / "file", "x" * 5000)
    cri = FakeCri(logs)
    now = [1_700_000_300.0]
    stats = StatsCollector(
        cri, node_name="node-1", root_dir=tmp_path / "root", pods=lambda: [pod()],
        cgroups=CgroupLayout.detect(cgroups), proc=fake_proc(tmp_path / "proc"),
        sys=tmp_path / "sys", etc=tmp_path / "etc", clock=lambda: now[0],
    )  # fmt: skip
    return stats, cri, now


@pytest.mark.parametrize("layout", ["v1", "v2"])
def test_summary_from_cri_and_cgroups(tmp_path: Path, layout: str) -> None:
    stats, cri, now = collector(tmp_path, layout)
    first = summary(stats.collect())
    container = first["pods"][0]["containers"][0]
    assert "usageNanoCores" not in container["cpu"]  # no rate from one sample
    now[0] += 10
    cri.runtime.cpu_ns += 5_000_000_000  # half a core over 10 s
    fake_proc(tmp_path / "proc", cpu_ticks=2000)  # one core busy: 1000 ticks in 10 s
    result = summary(stats.collect())
    node = result["node"]
    assert node["nodeName"] == "node-1"
    assert node["startTime"] == "2023-11-14T22:13:20Z"
    assert node["cpu"]["usageCoreNanoSeconds"] == 2100 * 10_000_000  # user + system ticks
    assert node["cpu"]["usageNanoCores"] == 1_000_000_000
    memory = node["memory"]
    assert memory["usageBytes"] == 3000 * 1024
    assert memory["workingSetBytes"] == 2500 * 1024
    assert memory["availableBytes"] == 1500 * 1024
    assert (memory["rssBytes"], memory["pageFaults"], memory["majorPageFaults"]) == (
        800 * 1024,
        77,
        3,
    )
    assert node["network"]["name"] == "eth0"  # the default route's interface
    assert [i["name"] for i in node["network"]["interfaces"]] == ["eth0"]
    assert node["network"]["rxBytes"] == 5000 and node["network"]["txErrors"] == 2
    assert node["runtime"]["imageFs"]["usedBytes"] == 1 << 20
    assert node["fs"]["capacityBytes"] > 0
    assert node["rlimit"]["maxpid"] == 32768 and node["rlimit"]["curproc"] == 345
    assert [c["name"] for c in node["systemContainers"]] == ["pods"]
    assert node["systemContainers"][0]["memory"]["workingSetBytes"] == 29 * MiB

    (web,) = result["pods"]
    assert web["podRef"] == {"name": "web", "namespace": "default", "uid": "uid-1"}
    assert web["startTime"] == "2023-11-14T22:15:00Z"  # the pod's status.startTime
    assert web["cpu"]["usageNanoCores"] == 500_000_000
    assert web["memory"]["workingSetBytes"] == 5000
    assert web["network"]["interfaces"][0]["rxBytes"] == 1234
    assert web["process_stats"] == {"process_count": 2}
    (main,) = web["containers"]
    assert main["name"] == "main"
    assert main["startTime"] == "2023-11-14T22:16:40Z"
    assert main["cpu"]["usageNanoCores"] == 500_000_000
    assert main["memory"]["workingSetBytes"] == 3000
    assert main["memory"]["availableBytes"] == 64 * MiB - 3000  # the cgroup's limit
    assert main["rootfs"]["usedBytes"] == 8192 and main["rootfs"]["inodesUsed"] == 4
    assert main["logs"]["usedBytes"] > 0
    (volume,) = web["volume"]
    assert volume["name"] == "data" and volume["usedBytes"] >= 5000
    ephemeral = web["ephemeral-storage"]
    assert ephemeral["usedBytes"] >= 8192 + 5000 + main["logs"]["usedBytes"]

    only = summary(stats.collect(), only_cpu_and_memory=True)
    assert set(only["node"]) == {"nodeName", "systemContainers", "startTime", "cpu", "memory"}
    assert set(only["pods"][0]["containers"][0]) == {"name", "startTime", "cpu", "memory"}


def test_the_kubelets_own_cgroup_per_hierarchy(tmp_path: Path) -> None:
    stats, _, _ = collector(tmp_path)
    cgroups = tmp_path / "cgroup"
    cgroup_v1(cgroups, "/k-mem", usage=4 * MiB, inactive=MiB, cpu_ns=0)
    cgroup_v1(cgroups, "/k-cpu", usage=0, inactive=0, cpu_ns=42)
    write(tmp_path / "proc" / "self" / "cgroup", "4:cpu,cpuacct:/k-cpu\n5:memory:/k-mem\n0::/\n")
    write(tmp_path / "proc" / "self" / "stat", "1 (python) S " + " ".join(["0"] * 18) + " 500 0\n")
    containers = {c.name: c for c in stats.collect().system_containers}
    kubelet = containers["kubelet"]
    assert kubelet.cgroup == "/k-mem"
    assert kubelet.cpu is not None and kubelet.cpu.usage_core_nano_seconds == 42
    assert kubelet.memory is not None and kubelet.memory.working_set_bytes == 3 * MiB
    assert kubelet.start_time == 1_700_000_005.0  # boot time + 500 ticks
    assert "runtime" not in containers  # no runtime socket to ask


def test_without_pod_sandbox_stats_the_pod_cgroup_is_read(tmp_path: Path) -> None:
    stats, cri, _ = collector(tmp_path)
    cri.runtime.sandbox_stats_implemented = False
    usage = stats.collect()
    (web,) = usage.pods
    assert web.memory is not None and web.memory.working_set_bytes == 19 * MiB
    assert web.memory.cache_bytes == 7 * MiB
    assert [c.name for c in web.containers] == ["main"]
    assert usage.errors == []  # UNIMPLEMENTED is not an error, a fallback


def samples(text: str, name: str) -> list[tuple[dict[str, str], str]]:
    found = []
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            head, _, rest = line.partition("} ") if "{" in line else (line, "", "")
            labels: dict[str, str] = {}
            if "{" in head:
                for pair in head.split("{", 1)[1].split('",'):
                    key, _, value = pair.partition('="')
                    labels[key] = value.rstrip('"')
                value = rest.split()[0]
            else:
                value = line.split()[1]
            found.append((labels, value))
    return found


def test_cadvisor_metrics(tmp_path: Path) -> None:
    stats, _, _ = collector(tmp_path)
    text = cadvisor(stats.collect())
    assert "# TYPE container_cpu_usage_seconds_total counter" in text
    working_set = {
        labels["id"]: (labels, value)
        for labels, value in samples(text, "container_memory_working_set_bytes")
    }
    container_labels, value = working_set[f"{POD_CGROUP}/{CONTAINER}"]
    assert container_labels == {
        "container": "main", "id": f"{POD_CGROUP}/{CONTAINER}", "image": "busybox:latest",
        "name": CONTAINER, "namespace": "default", "pod": "web",
    }  # fmt: skip
    assert value == "3000"
    pod_labels, pod_value = working_set[POD_CGROUP]
    assert pod_labels["container"] == "" and pod_labels["pod"] == "web"
    assert pod_value == "5000"
    assert "/" in working_set  # the node's root cgroup
    cache = {labels["id"]: value for labels, value in samples(text, "container_memory_cache")}
    assert cache[f"{POD_CGROUP}/{CONTAINER}"] == str(3 * MiB)
    limits = {labels["id"]: value
              for labels, value in samples(text, "container_spec_memory_limit_bytes")}  # fmt: skip
    assert limits[f"{POD_CGROUP}/{CONTAINER}"] == str(64 * MiB)
    assert limits[POD_CGROUP] == "0"  # unlimited
    received = samples(text, "container_network_receive_bytes_total")
    assert ({**pod_labels, "interface": "eth0"}, "1234") in received
    cpu = [(labels, value) for labels, value in samples(text, "container_cpu_usage_seconds_total")
           if labels.get("container") == "main"]  # fmt: skip
    assert cpu == [({**container_labels, "cpu": "total"}, "2")]
    assert ("machine_cpu_cores" in text) and samples(text, "machine_cpu_cores")[0][1] == "2"
    assert samples(text, "machine_memory_bytes")[0][1] == str(4000 * 1024)
    assert samples(text, "container_fs_usage_bytes")[0][1] == "8192"
    # Every sample line ends with a timestamp in milliseconds, but machine_*'s.
    for line in text.splitlines():
        if line.startswith("container_"):
            assert line.rsplit(" ", 1)[1] == "1700000300000"


def test_resource_metrics(tmp_path: Path) -> None:
    stats, _, _ = collector(tmp_path)
    text = resource(stats.collect())
    assert "# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by " \
           "the container in core-seconds" in text  # fmt: skip
    assert 'container_cpu_usage_seconds_total{container="main",namespace="default",pod="web"} ' \
           "2 1700000300000" in text  # fmt: skip
    assert 'container_memory_working_set_bytes{container="main",namespace="default",pod="web"} ' \
           "3000 1700000300000" in text  # fmt: skip
    assert 'pod_memory_working_set_bytes{namespace="default",pod="web"} 5000' in text
    assert 'container_start_time_seconds{container="main",namespace="default",pod="web"} ' \
           "1700000200 1700000200000" in text  # fmt: skip
    assert "\nnode_memory_working_set_bytes 2560000 1700000300000\n" in text
    assert "\nresource_scrape_error 0\n" in text and "\nscrape_error 0\n" in text
    names = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert names == sorted(names)


def test_a_failing_rpc_is_a_scrape_error(tmp_path: Path) -> None:
    stats, cri, _ = collector(tmp_path)

    def broken(*_: Any, **__: Any) -> Any:
        import grpc

        from tests.unit.kubelet.stats.fakes import FakeRpcError

        raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, "runtime down")

    cri.runtime.ListPodSandbox = broken  # type: ignore[method-assign]
    usage = stats.collect()
    assert usage.pods == [] and usage.errors
    assert "\nresource_scrape_error 1\n" in resource(usage)


def test_prometheus_text_format() -> None:
    family = Family("x_total", "Help.", "counter")
    family.add({"b": 'q"uo\\te\n', "a": "1"}, 1.5, 42)
    family.add({}, 3)
    assert render([family]) == (
        '# HELP x_total Help.\n# TYPE x_total counter\nx_total{a="1",b="q\\"uo\\\\te\\n"} 1.5 42\n'
        "x_total 3\n"
    )
    assert format_value(float("nan")) == "NaN" and format_value(1e20) == "1e+20"
