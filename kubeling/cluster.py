"""What `kubeling up` prepares before it starts anything: where each component keeps
its state, the credentials each one uses, and the images every node has.

Layout (every directory comes from one of four flags, so a test can isolate a whole
cluster):

    <data-dir>/control/    API server: state.db (SQLite), pki/ (CA, serving and client
                           certificates), tokens.csv, policy.json, admin.kubeconfig,
                           <component>.kubeconfig
    <data-dir>/images/     the image store the CRI server uses
    <data-dir>/cri/        the CRI server's records, sandboxes, supervisor, IPAM
    <data-dir>/kubelet/    the kubelet's root dir (pods, kubeconfig, serving cert)
    <run-dir>/             kubeling.sock (CRI), netns/, up.pid and up.lock, pids/
    <log-dir>/             <component>.log, up.log
    <config-dir>/          admin.kubeconfig (the copy users are told about),
                           registries.toml (optional)

Credentials: client certificates signed by the cluster CA, as kubeadm issues them:
the kubelet `system:node:<node>` in `system:nodes`, `system:kube-scheduler`,
`system:kube-controller-manager`; the API server's kubelet client
`kube-apiserver-kubelet-client` in `system:masters` (pki/apiserver-kubelet-client.*,
where the API server looks for it); the kubelet's serving certificate for its node
name and addresses. A policy file lets each of them do what it needs and the admin
everything.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from control.apiserver import certs
from images import errors as image_errors
from images.build import build_image
from images.registries import RegistryConfig
from images.store import ImageStore

# The images every kubeling node has without a registry (examples/ use them with
# imagePullPolicy IfNotPresent): built from busybox-static, as `kubeling images
# build-busybox` builds them.
NODE_IMAGES = {"busybox": "kubeling.local/busybox:latest", "httpd": "kubeling.local/httpd:latest"}

SCHEDULER_USER = "system:kube-scheduler"
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"
NODES_GROUP = "system:nodes"
KUBELET_CLIENT_USER = "kube-apiserver-kubelet-client"
ADMIN_GROUP = "system:masters"

# What a kubelet may touch: its Node and Lease, the pods bound to it (and mirror
# pods), their status and events, and what its pods' volumes and env refer to.
NODE_RESOURCES = (
    "nodes", "nodes/status", "pods", "pods/status", "pods/eviction", "events", "leases",
    "configmaps", "secrets", "services", "endpoints", "namespaces", "serviceaccounts",
    "serviceaccounts/token", "persistentvolumeclaims", "persistentvolumes",
)  # fmt: skip


@dataclass(frozen=True)
class Layout:
    data_dir: Path
    run_dir: Path
    log_dir: Path
    config_dir: Path

    @property
    def control_dir(self) -> Path:
        return self.data_dir / "control"

    @property
    def pki_dir(self) -> Path:
        return self.control_dir / "pki"

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def cri_dir(self) -> Path:
        return self.data_dir / "cri"

    @property
    def kubelet_dir(self) -> Path:
        return self.data_dir / "kubelet"

    @property
    def cri_socket(self) -> Path:
        return self.run_dir / "kubeling.sock"

    @property
    def netns_dir(self) -> Path:
        return self.run_dir / "netns"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "up.pid"

    @property
    def lock_file(self) -> Path:
        return self.run_dir / "up.lock"

    @property
    def ready_file(self) -> Path:
        return self.run_dir / "up.ready"

    @property
    def purge_request(self) -> Path:
        return self.run_dir / "down.purge"

    @property
    def pids_dir(self) -> Path:
        return self.run_dir / "pids"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.config_dir / "admin.kubeconfig"

    @property
    def registries(self) -> Path:
        return self.config_dir / "registries.toml"

    @property
    def policy_file(self) -> Path:
        return self.control_dir / "policy.json"

    def kubeconfig(self, component: str) -> Path:
        return self.control_dir / f"{component}.kubeconfig"

    def log(self, component: str) -> Path:
        return self.log_dir / f"{component}.log"

    def make(self) -> None:
        for directory in (self.data_dir, self.control_dir, self.run_dir, self.pids_dir):
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for directory in (self.log_dir, self.config_dir):
            directory.mkdir(parents=True, exist_ok=True, mode=0o755)


def write_private(path: Path, text: str) -> None:
    """Atomically, readable by root only (kubeconfigs hold keys)."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def certificate_kubeconfig(server: str, ca: Path, pair: certs.KeyPair, user: str) -> str:
    """A kubeconfig (JSON) for `user` authenticating with the client certificate `pair`."""

    def data(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "kubeling",
        "clusters": [{"name": "kubeling", "cluster": {
            "server": server, "certificate-authority-data": data(ca)}}],
        "users": [{"name": user, "user": {
            "client-certificate-data": data(pair.certificate),
            "client-key-data": data(pair.key)}}],
        "contexts": [{"name": "kubeling", "context": {"cluster": "kubeling", "user": user}}],
    }  # fmt: skip
    return json.dumps(config, indent=2) + "\n"


def policy() -> dict[str, Any]:
    """The API server's rules for the admin and the components `up` starts."""
    everything = {"verbs": ["*"], "resources": ["*"]}
    return {"rules": [
        {"groups": [ADMIN_GROUP], **everything},
        {"users": [SCHEDULER_USER, CONTROLLER_MANAGER_USER], **everything},
        {"groups": [NODES_GROUP], "verbs": ["*"], "resources": list(NODE_RESOURCES)},
    ]}  # fmt: skip


@dataclass(frozen=True)
class Credentials:
    ca: Path
    scheduler: Path  # kubeconfigs
    controller_manager: Path
    kubelet: Path
    kubelet_serving: certs.KeyPair


def issue_credentials(
    layout: Layout, *, server: str, node_name: str, node_addresses: tuple[str, ...]
) -> Credentials:
    """The CA (made on first start, as the API server would), every component's
    client certificate and kubeconfig, the kubelet's serving certificate, the API
    server's kubelet-client certificate and the policy file. Idempotent: a later
    start keeps valid certificates."""
    ca = certs.ensure_ca(layout.pki_dir)
    pki = layout.pki_dir

    def client(name: str, user: str, groups: tuple[str, ...] = ()) -> certs.KeyPair:
        pair = certs.KeyPair(pki / f"{name}.crt", pki / f"{name}.key")
        return certs.issue(ca, pair, common_name=user, organizations=groups)

    kubeconfigs: dict[str, Path] = {}
    for component, pair, user in (
        ("scheduler", client("scheduler", SCHEDULER_USER), SCHEDULER_USER),
        ("controller-manager", client("controller-manager", CONTROLLER_MANAGER_USER),
         CONTROLLER_MANAGER_USER),
        ("kubelet", client("kubelet", f"system:node:{node_name}", (NODES_GROUP,)),
         f"system:node:{node_name}"),
    ):  # fmt: skip
        path = layout.kubeconfig(component)
        write_private(path, certificate_kubeconfig(server, ca.certificate, pair, user))
        kubeconfigs[component] = path
    client("apiserver-kubelet-client", KUBELET_CLIENT_USER, (ADMIN_GROUP,))
    ips = tuple(dict.fromkeys(("127.0.0.1", *node_addresses)))
    serving = certs.issue(
        ca, certs.KeyPair(pki / "kubelet-serving.crt", pki / "kubelet-serving.key"),
        common_name=f"system:node:{node_name}", organizations=(NODES_GROUP,),
        dns_names=(node_name, "localhost"), ip_addresses=ips, server=True,
    )  # fmt: skip
    write_private(layout.policy_file, json.dumps(policy(), indent=2) + "\n")
    return Credentials(
        ca=ca.certificate,
        scheduler=kubeconfigs["scheduler"],
        controller_manager=kubeconfigs["controller-manager"],
        kubelet=kubeconfigs["kubelet"],
        kubelet_serving=serving,
    )


def import_node_images(images_dir: Path, registries: Path) -> list[str]:
    """Build and import NODE_IMAGES into the store at `images_dir` when missing; the
    names imported (none when all were there)."""
    imported: list[str] = []
    with ImageStore(images_dir, RegistryConfig.load(registries)) as store:
        for name, reference in NODE_IMAGES.items():
            try:
                store.get(reference)
                continue
            except image_errors.NotFound:
                pass
            with tempfile.TemporaryDirectory(prefix="kubeling-images-") as layout:
                build_image(name, Path(layout), tag=reference)
                store.import_archive(f"oci:{layout}:{reference}")
            imported.append(reference)
    return imported
