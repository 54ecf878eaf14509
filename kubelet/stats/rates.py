"""CPU rates from cumulative CPU time, as cAdvisor derives them: usageNanoCores is the
CPU time used between two samples over the wall time between them.

A rate needs two samples at least `MIN_WINDOW` apart, so the sampler records every
cgroup's cumulative usage every ~10 s and a request in between gets the rate since the
newest sample that is old enough. This is independent of the rate a CRI runtime
reports (kubeling's is over the time since its previous call, whoever made it).
Safe from any thread.
"""

from __future__ import annotations

import threading
from collections import deque

MIN_WINDOW_NS = 1_000_000_000
# Samples older than this are dropped (the newest old one is kept as the base).
MAX_AGE_NS = 60_000_000_000
MAX_SAMPLES = 16


class CpuRates:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._samples: dict[str, deque[tuple[int, int]]] = {}

    def observe(self, key: str, timestamp_ns: int, usage_ns: int) -> int | None:
        """Record a sample of `key` (a cgroup, a container id) and return its rate in
        nanocores, or None while there is no sample old enough to compare with."""
        with self._lock:
            samples = self._samples.setdefault(key, deque(maxlen=MAX_SAMPLES))
            if samples and usage_ns < samples[-1][1]:
                samples.clear()  # a counter that went back: a new cgroup of the same name
            base = None
            for sample in reversed(samples):
                if timestamp_ns - sample[0] >= MIN_WINDOW_NS:
                    base = sample
                    break
            if not samples or timestamp_ns - samples[-1][0] >= MIN_WINDOW_NS // 2:
                samples.append((timestamp_ns, usage_ns))
            while len(samples) > 2 and timestamp_ns - samples[1][0] > MAX_AGE_NS:
                samples.popleft()
        if base is None:
            return None
        return (usage_ns - base[1]) * 1_000_000_000 // (timestamp_ns - base[0])

    def retain(self, keys: set[str]) -> None:
        """Forget every key not in `keys` (containers and pods that are gone)."""
        with self._lock:
            for key in self._samples.keys() - keys:
                del self._samples[key]
