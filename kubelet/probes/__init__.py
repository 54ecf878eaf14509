"""Container probes (liveness, readiness, startup) as the kubelet runs them.

    probes = ProbeManager(cri, events, on_change)         # on_change(pod_uid)
    probes.add(pod, container, container_id, pod_ip)      # after StartContainer
    probes.ready(container_id), probes.started(container_id)
    probes.liveness_failed(container_id)                  # -> kill + restart reason
    probes.remove(container_id) / probes.remove_pod(uid)

Modules: spec (reading and checking a probe), handlers (one run of exec, httpGet,
tcpSocket, grpc), httpget (the HTTP client, shared with lifecycle hooks), manager
(workers and results).
"""

from kubelet.probes.handlers import Outcome, Result, run_probe
from kubelet.probes.manager import EventSink, ProbeManager
from kubelet.probes.spec import ProbeSpec, ProbeSpecError, ProbeType, parse_probe

__all__ = [
    "EventSink",
    "Outcome",
    "ProbeManager",
    "ProbeSpec",
    "ProbeSpecError",
    "ProbeType",
    "Result",
    "parse_probe",
    "run_probe",
]
