"""The kubelet's resource usage figures (what cAdvisor gives the real kubelet):

collector.py   StatsCollector: one NodeUsage from CRI stats, cgroups and /proc,
               and the sampler that keeps CPU rates fresh
cgroups.py     cgroup v1/v2 (and hybrid) files of one cgroup
machine.py     the node's /proc and statvfs figures
rates.py       usageNanoCores from cumulative CPU samples
snapshot.py    the value types of one reading
summary.py     the Summary API JSON (/stats/summary)
prometheus.py  /metrics/cadvisor and /metrics/resource text
"""

from kubelet.stats.collector import StatsCollector

__all__ = ["StatsCollector"]
