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
    sync_frequency: float = 10.0  # seconds between resyncs of a pod with nothing new
    pleg_relist_period: float = 1.0  # seconds between relists of the runtime's state
    file_check_frequency: float = 20.0  # static pod manifests
    runtime_request_timeout: float = 120.0
    image_pull_progress_deadline: float = 600.0
    serialize_image_pulls: bool = True
    # Back-off of restarted containers and failed pulls: doubles from initial to max;
    # reset after the container ran max*2 (10 minutes) without failing.
    backoff_initial: float = 10.0
    backoff_max: float = 300.0
    # Eviction thresholds: memory.available and nodefs.available, as the kubelet's
    # --eviction-hard defaults.
    eviction_hard: dict[str, str] = field(
        default_factory=lambda: {"memory.available": "100Mi", "nodefs.available": "10%"}
    )
    # Dead containers kept per pod container (the kubelet keeps 1 plus the running one).
    max_dead_containers_per_container: int = 1
    node_labels: dict[str, str] = field(default_factory=dict)
    register_with_taints: list[dict[str, str]] = field(default_factory=list)

    @property
    def pods_dir(self) -> Path:
        return self.root_dir / "pods"

    def pod_dir(self, pod_uid: str) -> Path:
        return self.pods_dir / pod_uid
