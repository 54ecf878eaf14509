"""The pure steps of sandbox stats: adding up several cgroups' figures
(cri/runtime_service/sandbox_stats.py) and CPU rates from successive samples
(usage.py CpuSamples); the RPCs are in tests/integration/cri/test_sandbox_stats.py."""

from __future__ import annotations

from cri.runtime_service.sandbox_stats import sum_stats
from cri.runtime_service.usage import CpuSamples
from runtime.cgroups.stats import CgroupStats, CpuStats, MemoryStats, PidsStats


def test_one_sample_is_kept_as_it_is() -> None:
    sample = CgroupStats(memory=MemoryStats(usage_bytes=5, limit_bytes=10), pids=PidsStats(3))
    assert sum_stats([sample]) is sample


def test_samples_add_up_without_a_limit() -> None:
    a = CgroupStats(
        cpu=CpuStats(usage_total_ns=10, usage_user_ns=4),
        memory=MemoryStats(usage_bytes=100, working_set_bytes=80, pgfault=1, limit_bytes=1000),
    )
    b = CgroupStats(
        cpu=CpuStats(usage_total_ns=5, throttled_periods=2),
        memory=MemoryStats(usage_bytes=50, working_set_bytes=40, rss_bytes=7, limit_bytes=500),
    )
    total = sum_stats(iter([a, b]))
    assert total.cpu == CpuStats(usage_total_ns=15, usage_user_ns=4, throttled_periods=2)
    assert total.memory == MemoryStats(
        usage_bytes=150, working_set_bytes=120, rss_bytes=7, pgfault=1, limit_bytes=None
    )
    assert sum_stats([]) == CgroupStats()


def test_cpu_rate_from_successive_samples() -> None:
    samples = CpuSamples()
    first = samples.usage("a", 1_000_000_000, 100)
    assert first.usage_core_nano_seconds.value == 100
    assert first.usage_nano_cores.value == 0  # nothing to compare with yet
    half = samples.usage("a", 2_000_000_000, 500_000_100)
    assert half.usage_nano_cores.value == 500_000_000  # half a core over one second
    assert samples.usage("b", 2_000_000_000, 7).usage_nano_cores.value == 0  # per key
    assert samples.usage("a", 2_000_000_000, 600_000_000).usage_nano_cores.value == 0  # no time
    assert samples.usage("a", 3_000_000_000, 10).usage_nano_cores.value == 0  # counter reset
    samples.retain({"b"})
    assert samples.usage("a", 4_000_000_000, 20).usage_nano_cores.value == 0  # forgotten
    samples.forget("b")
    assert samples.usage("b", 5_000_000_000, 9).usage_nano_cores.value == 0
