"""The kubelet's settings: one dataclass shared by its components, filled from the
command line (kubelet/main.py) with the real kubelet's flag names and defaults where
kubeling has the same setting."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

from kubelet.cri_client import DEFAULT_ENDPOINT

DEFAULT_ROOT_DIR = "/var/lib/kubeling/kubelet"
DEFAULT_PORT = 10250


@dataclass
class KubeletConfig:
    kubeconfig: str
    node_name: str = field(default_factory=lambda: socket.gethostname().lower())
    container_runtime_endpoint: str = DEFAULT_ENDPOINT
    # Pod directories (volumes, the managed /etc/hosts), the serving certificate,
    # checkpoints: <root_dir>/pods/<uid>/..., like /var/lib/kubelet.
    root_dir: Path = Path(DEFAULT_ROOT_DIR)
    # Container logs, <dir>/<namespace>_<name>_<uid>/<container>/<n>.log, as
    # /var/log/pods. None: <root_dir>/pod-logs (follows root_dir when that is set later).
    pod_logs_dir: Path | None = None
    pod_manifest_path: Path | None = None  # static pods; None: no static pods
    # The node HTTP API (HTTPS). Port 0 picks a free port (tests); the bound port is
    # what the Node's status.daemonEndpoints.kubeletEndpoint.port reports.
    address: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    tls_cert_file: Path | None = None  # None: a self-signed certificate under root_dir/pki
    tls_private_key_file: Path | None = None
    client_ca_file: Path | None = None  # clients presenting a certificate it signed are let in
    node_ip: str = ""  # "": the address of the interface of the default route, else 127.0.0.1
    pod_cidr: str = ""  # reported in spec.podCIDR; the runtime's own --pod-cidr assigns IPs
    max_pods: int = 110
    cluster_dns: list[str] = field(default_factory=list)  # nameservers for ClusterFirst pods
    cluster_domain: str = "cluster.local"
    resolv_conf: Path = Path("/etc/resolv.conf")  # Default dnsPolicy, and ClusterFirst w/o DNS
    # Reserved for the system and kube daemons: capacity minus these is allocatable.
    system_reserved: dict[str, str] = field(default_factory=dict)  # {"cpu": "100m", ...}
    kube_reserved: dict[str, str] = field(default_factory=dict)
    # Pod cgroups: <cgroup_root>/kubepods/{burstable,besteffort,pod<uid>} (cgroupfs
    # paths, as the kubelet's cgroupfs driver lays them out).
    cgroup_root: str = "/"
    node_status_update_frequency: float = 10.0
    node_lease_duration_seconds: int = 40
    # Seconds between resyncs of a pod with nothing new (the PLEG and watches wake a
    # pod's worker on every change); 1 min, as the kubelet's default.
    sync_frequency: float = 60.0
    pleg_relist_period: float = 1.0  # seconds between relists of the runtime's state
    file_check_frequency: float = 20.0  # static pod manifests
    runtime_request_timeout: float = 120.0
    image_pull_progress_deadline: float = 600.0
    serialize_image_pulls: bool = True
    # Events written per second after a burst, by a thread of their own (0: no limit).
    event_qps: float = 50.0
    event_burst: int = 100
    # Back-off of restarted containers and failed pulls: doubles from initial to max;
    # reset after the container ran max*2 (10 minutes) without failing.
    backoff_initial: float = 10.0
    backoff_max: float = 300.0
    # Eviction thresholds: memory.available and nodefs.available, as the kubelet's
    # --eviction-hard defaults.
    eviction_hard: dict[str, str] = field(
        default_factory=lambda: {"memory.available": "100Mi", "nodefs.available": "10%"}
    )
    # Soft thresholds act once met for their grace period (seconds, per signal); a met
    # threshold holds until the signal is above it by its minimum reclaim.
    eviction_soft: dict[str, str] = field(default_factory=dict)
    eviction_soft_grace_period: dict[str, float] = field(default_factory=dict)
    eviction_minimum_reclaim: dict[str, str] = field(default_factory=dict)
    eviction_max_pod_grace_period: int = 0  # soft evictions; negative: the pod's own
    eviction_pressure_transition_period: float = 300.0  # a pressure condition holds so long
    eviction_monitoring_interval: float = 10.0  # seconds between eviction passes
    # Image GC: at image_gc_high_threshold percent of the image filesystem used, unused
    # images go until image_gc_low_threshold; none younger than the minimum age.
    image_gc_high_threshold: int = 85
    image_gc_low_threshold: int = 80
    image_minimum_gc_age: float = 120.0
    image_gc_period: float = 300.0
    # The sandbox image: never collected (also learned from the runtime's sandboxes).
    pod_infra_container_image: str = "kubeling.local/pause:latest"
    # Dead containers kept per pod container (the kubelet keeps 1 plus the running one).
    max_dead_containers_per_container: int = 1
    node_labels: dict[str, str] = field(default_factory=dict)
    register_with_taints: list[dict[str, str]] = field(default_factory=list)

    @property
    def pods_dir(self) -> Path:
        return self.root_dir / "pods"

    def pod_dir(self, pod_uid: str) -> Path:
        return self.pods_dir / pod_uid

    @property
    def pod_logs_root(self) -> Path:
        """Where the pods' log directories are: pod_logs_dir or <root_dir>/pod-logs."""
        return self.pod_logs_dir if self.pod_logs_dir is not None else self.root_dir / "pod-logs"
