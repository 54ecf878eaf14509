"""The usage figures a container's and a sandbox's stats share: CPU usage from
successive cumulative samples (`CpuSamples`) and memory usage from a cgroup sample
(`memory_usage`). Used by container_stats.py and sandbox_stats.py.

Owns the arithmetic only; reading cgroups is runtime.cgroups', choosing which
cgroups to read the callers'. `CpuSamples` is safe from any thread.
"""

from __future__ import annotations

import threading

from cri.api import api_pb2
from runtime.cgroups.stats import CgroupStats


class CpuSamples:
    """The previous CPU sample per key (a container or sandbox id), for
    usage_nano_cores: the usage between two calls over the time between them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._samples: dict[str, tuple[int, int]] = {}  # (timestamp ns, usage ns)

    def usage(self, key: str, timestamp: int, usage: int) -> api_pb2.CpuUsage:
        with self._lock:
            previous = self._samples.get(key)
            self._samples[key] = (timestamp, usage)
        nano_cores = 0
        if previous is not None and timestamp > previous[0] and usage >= previous[1]:
            nano_cores = (usage - previous[1]) * 1_000_000_000 // (timestamp - previous[0])
        return api_pb2.CpuUsage(
            timestamp=timestamp,
            usage_core_nano_seconds=api_pb2.UInt64Value(value=usage),
            usage_nano_cores=api_pb2.UInt64Value(value=nano_cores),
        )

    def forget(self, key: str) -> None:
        with self._lock:
            self._samples.pop(key, None)

    def retain(self, keys: set[str]) -> None:
        """Forget the samples of every key not in `keys` (ids that are gone)."""
        with self._lock:
            for key in self._samples.keys() - keys:
                del self._samples[key]


def memory_usage(timestamp: int, sample: CgroupStats) -> api_pb2.MemoryUsage:
    memory = sample.memory
    usage = api_pb2.MemoryUsage(
        timestamp=timestamp,
        working_set_bytes=api_pb2.UInt64Value(value=memory.working_set_bytes),
        usage_bytes=api_pb2.UInt64Value(value=memory.usage_bytes),
        rss_bytes=api_pb2.UInt64Value(value=memory.rss_bytes),
        page_faults=api_pb2.UInt64Value(value=memory.pgfault),
        major_page_faults=api_pb2.UInt64Value(value=memory.pgmajfault),
    )
    if memory.limit_bytes is not None:
        available = max(memory.limit_bytes - memory.working_set_bytes, 0)
        usage.available_bytes.CopyFrom(api_pb2.UInt64Value(value=available))
    return usage
