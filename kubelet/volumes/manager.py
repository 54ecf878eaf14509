"""The kubelet's volume manager: sets up a pod's volumes on the node before its
containers start, turns a container's volumeMounts into CRI mounts, and takes it
all down when the pod is gone.

Layout, as the kubelet's (<root>/pods/<uid>/...):
    volumes/kubernetes.io~empty-dir/<name>      a directory, or a tmpfs (medium Memory)
    volumes/kubernetes.io~configmap/<name>      atomic-writer files, on disk
    volumes/kubernetes.io~secret/<name>         atomic-writer files on a tmpfs
    volumes/kubernetes.io~downward-api/<name>   atomic-writer files on a tmpfs
    volumes/kubernetes.io~projected/<name>      atomic-writer files on a tmpfs
    volume-subpaths/<volume>/<container>/<i>    bind mounts of safe subPaths
    etc-hosts                                   the managed /etc/hosts
hostPath volumes are the node's path itself (checked against their type).

`setup(pod)` is idempotent and is meant to run on every sync of the pod: it fetches
the ConfigMaps and Secrets again and rewrites a volume only when its content
changed, so running containers see updates, atomically, within a sync period.
A tmpfs is sized as the kubelet sizes memory-backed volumes: the smallest of the
node's allocatable memory, the pod's memory limit (when every container has one)
and the emptyDir's sizeLimit. A sizeLimit of an emptyDir on disk is not enforced
here; eviction is where the kubelet enforces it.

Node allocatable (tmpfs sizes, unset limits of resourceFieldRefs): the
`allocatable` callable (the kubelet passes what its Node reports); by default the
machine's, from kubelet.env.node_allocatable.

Concurrency: one lock per pod; different pods are set up in parallel.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cri.api import api_pb2
from kubeapi.quantity import value
from kubelet.config import KubeletConfig
from kubelet.dns import DNSError, host_name_and_domain
from kubelet.env import ApiReader, ConfigError, container_env, expand, node_allocatable
from kubelet.volumes import etc_hosts, host_path, sources, subpath
from kubelet.volumes.atomic_writer import write_payload
from kubelet.volumes.errors import CONFIG_ERROR, FAILED_MOUNT, VolumeError, setup_failed
from kubelet.volumes.mounter import LinuxMounter, Mounter

log = logging.getLogger(__name__)

Object = dict[str, Any]

EMPTY_DIR = "kubernetes.io~empty-dir"
CONFIG_MAP = "kubernetes.io~configmap"
SECRET = "kubernetes.io~secret"
DOWNWARD_API = "kubernetes.io~downward-api"
PROJECTED = "kubernetes.io~projected"
ETC_HOSTS = "/etc/hosts"
EMPTY_DIR_MODE = 0o777
PROPAGATION = {
    None: api_pb2.PROPAGATION_PRIVATE,
    "": api_pb2.PROPAGATION_PRIVATE,
    "None": api_pb2.PROPAGATION_PRIVATE,
    "HostToContainer": api_pb2.PROPAGATION_HOST_TO_CONTAINER,
    "Bidirectional": api_pb2.PROPAGATION_BIDIRECTIONAL,
}
# Volume kinds whose files the kubelet writes: always mounted read-only.
WRITTEN_KINDS = ("configMap", "secret", "downwardAPI", "projected")
SUPPORTED_KINDS = ("emptyDir", "hostPath", *WRITTEN_KINDS)
_VOLUME_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _kind(volume: Object) -> str:
    kinds = [key for key in volume if key != "name"]
    if len(kinds) != 1:
        return ""
    return kinds[0]


def pod_memory_limit(pod: Object) -> int | None:
    """The pod's memory limit in bytes when every container declares one (the
    kubelet's ResourceConfigForPod): the sum over containers, or the largest init
    container's limit when that is larger."""
    spec = pod.get("spec") or {}
    total = 0
    for container in spec.get("containers") or []:
        limit = ((container.get("resources") or {}).get("limits") or {}).get("memory")
        if limit is None:
            return None
        total += value(limit)
    for container in spec.get("initContainers") or []:
        limit = ((container.get("resources") or {}).get("limits") or {}).get("memory")
        if limit is None:
            return None
        total = max(total, value(limit))
    return total


class VolumeManager:
    """Sets up, mounts and tears down pod volumes (see the module docstring)."""

    def __init__(
        self,
        client: ApiReader,
        config: KubeletConfig,
        *,
        mounter: Mounter | None = None,
        allocatable: Callable[[], Mapping[str, str]] | None = None,
        node_hosts_file: Path = Path("/etc/hosts"),
    ) -> None:
        self.client = client
        self.config = config
        self.mounter: Mounter = mounter if mounter is not None else LinuxMounter()
        self._allocatable = allocatable or (lambda: node_allocatable(config))
        self.node_hosts_file = node_hosts_file
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _lock(self, pod_uid: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(pod_uid, threading.Lock())

    @staticmethod
    def _uid(pod: Object) -> str:
        uid = str((pod.get("metadata") or {}).get("uid") or "")
        if not uid or "/" in uid or uid in (".", ".."):
            raise VolumeError(FAILED_MOUNT, f"pod has no usable metadata.uid: {uid!r}")
        return uid

    def volume_dir(self, pod_uid: str, plugin: str, name: str) -> Path:
        return self.config.pod_dir(pod_uid) / "volumes" / plugin / name

    # -- setup --------------------------------------------------------------------------------

    def setup(self, pod: Object) -> dict[str, Path]:
        """Sets up (or refreshes) every volume of the pod; volume name → host path.
        VolumeError (FailedMount) for the first volume that fails; the others that
        could be set up stay set up for the next try."""
        uid = self._uid(pod)
        with self._lock(uid):
            paths: dict[str, Path] = {}
            failures: list[VolumeError] = []
            for volume in (pod.get("spec") or {}).get("volumes") or []:
                name = str(volume.get("name") or "")
                try:
                    paths[name] = self._setup_volume(pod, uid, volume)
                except VolumeError as e:
                    failures.append(e)
            if failures:
                raise failures[0]
            return paths

    def _setup_volume(self, pod: Object, uid: str, volume: Object) -> Path:
        name = str(volume.get("name") or "")
        if not _VOLUME_NAME.match(name):
            raise setup_failed(name, f"invalid volume name {name!r}: must be a DNS label")
        kind = _kind(volume)
        source = volume.get(kind)
        if kind not in SUPPORTED_KINDS:
            raise setup_failed(name, f"volume type {kind or '(none)'} is not supported")
        if not isinstance(source, dict):
            raise setup_failed(name, f"{kind}: expected an object")
        fs_group = ((pod.get("spec") or {}).get("securityContext") or {}).get("fsGroup")
        fs_group = int(fs_group) if fs_group is not None else None
        namespace = str((pod.get("metadata") or {}).get("namespace") or "default")
        try:
            if kind == "hostPath":
                path = Path(str(source.get("path") or ""))
                host_path.check_type(path, str(source.get("type") or ""))
                return path
            if kind == "emptyDir":
                return self._empty_dir(pod, uid, name, source, fs_group)
            # The content first: a volume whose source is missing mounts nothing.
            mode = int(source.get("defaultMode", sources.DEFAULT_MODE))
            if kind == "configMap":
                payload = sources.config_map_payload(self.client, namespace, source, mode)
                target = self.volume_dir(uid, CONFIG_MAP, name)
            elif kind == "secret":
                payload = sources.secret_payload(
                    self.client, namespace, source, mode, name_field="secretName"
                )
                target = self._tmpfs(self.volume_dir(uid, SECRET, name), pod, None)
            elif kind == "downwardAPI":
                payload = sources.downward_payload(
                    pod, source.get("items") or [], mode, self._allocatable
                )
                target = self._tmpfs(self.volume_dir(uid, DOWNWARD_API, name), pod, None)
            else:
                payload = sources.projected_payload(
                    self.client, pod, source, self._allocatable, fs_group=fs_group
                )
                target = self._tmpfs(self.volume_dir(uid, PROJECTED, name), pod, None)
            write_payload(target, payload, fs_group=fs_group)
            return target
        except (sources.VolumeSourceError, OSError, ValueError, TypeError) as e:
            # HostPathError, PayloadError and bad quantities are ValueErrors.
            raise setup_failed(name, str(e)) from None

    def _empty_dir(
        self, pod: Object, uid: str, name: str, source: Object, fs_group: int | None
    ) -> Path:
        target = self.volume_dir(uid, EMPTY_DIR, name)
        medium = str(source.get("medium") or "")
        if medium not in ("", "Memory"):
            raise setup_failed(name, f"emptyDir medium {medium} is not supported")
        created = not target.exists()
        target.mkdir(parents=True, exist_ok=True)
        if created:
            os.chmod(target, EMPTY_DIR_MODE)  # whatever the umask
        fresh_tmpfs = medium == "Memory" and not self.mounter.is_mount_point(target)
        if fresh_tmpfs:
            limit = source.get("sizeLimit")
            self._tmpfs(target, pod, value(limit) if limit is not None else None)
            os.chmod(target, EMPTY_DIR_MODE)  # a new tmpfs's root is 1777
        if fs_group is not None and (created or fresh_tmpfs):
            os.chown(target, -1, fs_group)
            os.chmod(target, EMPTY_DIR_MODE | 0o2000)
        return target

    def _tmpfs(self, target: Path, pod: Object, size_limit: int | None) -> Path:
        """`target`, a tmpfs sized as the module docstring says (mounted once)."""
        if self.mounter.is_mount_point(target):
            return target
        target.mkdir(parents=True, exist_ok=True)
        sizes = [limit for limit in (pod_memory_limit(pod), size_limit) if limit]
        try:
            node_memory = self._allocatable().get("memory")
        except OSError as e:
            log.warning("node allocatable memory: %s", e)
            node_memory = None
        if node_memory:
            sizes.append(value(node_memory))
        self.mounter.mount_tmpfs(target, size_bytes=min(sizes) if sizes else None)
        return target

    # -- mounts -------------------------------------------------------------------------------

    def mounts(
        self,
        pod: Object,
        container: Object,
        volumes: Mapping[str, Path],
        *,
        env: Sequence[api_pb2.KeyValue] | None = None,
        pod_ip: str = "",
    ) -> list[api_pb2.Mount]:
        """The CRI mounts of the container's volumeMounts, plus the managed
        /etc/hosts (written now, for `pod_ip` or else the pod's status.podIPs /
        podIP) unless a volumeMount takes /etc/hosts. `volumes` is what setup()
        returned. subPathExpr expands `$(VAR)` from `env` (the container's
        environment; resolved here when not given). VolumeError
        (CreateContainerConfigError) for a mount that cannot be made."""
        uid = self._uid(pod)
        container_name = str(container.get("name") or "")
        kinds = {str(v.get("name")): _kind(v) for v in (pod.get("spec") or {}).get("volumes") or []}
        environment: dict[str, str] | None = None
        result: list[api_pb2.Mount] = []
        take_hosts = True
        with self._lock(uid):
            for index, mount in enumerate(container.get("volumeMounts") or []):
                name = str(mount.get("name") or "")
                container_path = str(mount.get("mountPath") or "")
                if name not in volumes:
                    raise VolumeError(
                        CONFIG_ERROR,
                        f'cannot find volume "{name}" to mount into container "{container_name}"',
                    )
                if os.path.normpath(container_path) == ETC_HOSTS:
                    take_hosts = False
                host = volumes[name]
                sub = str(mount.get("subPath") or "")
                if mount.get("subPathExpr"):
                    if environment is None:
                        environment = self._environment(pod, container, env, pod_ip)
                    sub = _expand_subpath(str(mount["subPathExpr"]), environment)
                if sub:
                    host = self._subpath(uid, name, container_name, index, host, sub)
                propagation = mount.get("mountPropagation")
                if propagation not in PROPAGATION:
                    raise VolumeError(
                        CONFIG_ERROR, f'invalid MountPropagation mode: "{propagation}"'
                    )
                if mount.get("recursiveReadOnly") == "Enabled":
                    raise VolumeError(
                        CONFIG_ERROR,
                        f'volumeMount "{name}": recursiveReadOnly Enabled is not supported',
                    )
                result.append(
                    api_pb2.Mount(
                        container_path=container_path,
                        host_path=str(host),
                        readonly=bool(mount.get("readOnly")) or kinds.get(name) in WRITTEN_KINDS,
                        propagation=PROPAGATION[propagation],
                    )
                )
            if take_hosts:
                hosts = self._etc_hosts(pod, uid, pod_ip)
                if hosts is not None:
                    result.append(api_pb2.Mount(container_path=ETC_HOSTS, host_path=str(hosts)))
        return result

    def _environment(
        self, pod: Object, container: Object, env: Sequence[api_pb2.KeyValue] | None, pod_ip: str
    ) -> dict[str, str]:
        if env is None:
            status = pod.get("status") or {}
            try:
                env = container_env(
                    self.client, pod, container,
                    pod_ip=pod_ip or str(status.get("podIP") or ""),
                    host_ip=str(status.get("hostIP") or self.config.node_ip),
                    allocatable=self._allocatable, node_config=self.config,
                )  # fmt: skip
            except ConfigError as e:
                raise VolumeError(CONFIG_ERROR, e.message) from None
        return {kv.key: kv.value.decode(errors="surrogateescape") for kv in env}

    def _subpath(
        self, uid: str, volume: str, container: str, index: int, host: Path, sub: str
    ) -> Path:
        try:
            cleaned = subpath.validate(sub)
        except subpath.SubPathError as e:
            raise VolumeError(CONFIG_ERROR, str(e)) from None
        try:
            if not os.path.lexists(host / cleaned):
                subpath.make_dirs(host, cleaned, os.stat(host).st_mode & 0o7777)
        except OSError as e:
            log.warning("subPath %s of volume %s: %s", sub, volume, e, extra={"pod": uid})
            raise VolumeError(
                CONFIG_ERROR,
                f'failed to create subPath directory for volumeMount "{volume}" of '
                f'container "{container}"',
            ) from None
        target = self.config.pod_dir(uid) / "volume-subpaths" / volume / container / str(index)
        try:
            return subpath.bind_subpath(host, cleaned, target, self.mounter)
        except (subpath.SubPathError, OSError) as e:
            raise VolumeError(
                CONFIG_ERROR, f'error preparing subPath "{sub}" for volume "{volume}": {e}'
            ) from None

    def _etc_hosts(self, pod: Object, uid: str, pod_ip: str) -> Path | None:
        spec = pod.get("spec") or {}
        status = pod.get("status") or {}
        pod_ips = [str(e["ip"]) for e in status.get("podIPs") or [] if e.get("ip")]
        if not pod_ips and status.get("podIP"):
            pod_ips = [str(status["podIP"])]
        if pod_ip and (not pod_ips or pod_ips[0] != pod_ip):
            pod_ips = [pod_ip]  # the sandbox's address: the status may be older
        aliases = spec.get("hostAliases") or []
        if spec.get("hostNetwork"):
            try:
                node_hosts = self.node_hosts_file.read_text()
            except OSError as e:
                raise VolumeError(CONFIG_ERROR, f"read {self.node_hosts_file}: {e}") from None
            text = etc_hosts.host_network_hosts(node_hosts, aliases)
        elif not pod_ips:
            return None  # no IP yet: the runtime's copy of the node's file stays
        else:
            try:
                name, domain = host_name_and_domain(pod, self.config.cluster_domain)
            except DNSError as e:
                raise VolumeError(CONFIG_ERROR, str(e)) from None
            text = etc_hosts.managed_hosts(pod_ips, name, domain, aliases)
        path = self.config.pod_dir(uid) / "etc-hosts"
        try:
            if not path.is_file() or path.read_bytes() != text.encode():
                _write_file(path, text.encode(), 0o644)
        except OSError as e:
            raise VolumeError(CONFIG_ERROR, f"write {path}: {e}") from None
        return path

    # -- teardown -----------------------------------------------------------------------------

    def teardown(self, pod_uid: str) -> None:
        """Unmounts every tmpfs and bind mount under the pod's directory and removes
        its volumes, subPath mounts and managed hosts file. OSError when a mount
        cannot be removed (then nothing below it is deleted)."""
        pod_dir = self.config.pod_dir(pod_uid)
        with self._lock(pod_uid):
            for point in self.mounter.mount_points(pod_dir):
                self.mounter.unmount(point)
            remaining = self.mounter.mount_points(pod_dir)
            if remaining:
                raise OSError(f"pod {pod_uid}: still mounted: {', '.join(map(str, remaining))}")
            for name in ("volumes", "volume-subpaths"):
                shutil.rmtree(pod_dir / name, ignore_errors=True)
            (pod_dir / "etc-hosts").unlink(missing_ok=True)
        with self._locks_guard:
            self._locks.pop(pod_uid, None)

    def cleanup_orphans(self, active_uids: set[str]) -> list[str]:
        """Tears down and removes the directory of every pod under pods_dir not in
        `active_uids`; the uids removed. A pod whose mounts cannot be removed is
        logged and kept for the next call. Call it as the kubelet's housekeeping does:
        once every pod source has been seen, with the uids of all pods that are known
        or could still have containers (removing a running pod's volumes empties
        them under its containers)."""
        removed = []
        try:
            entries = list(os.scandir(self.config.pods_dir))
        except FileNotFoundError:
            return []
        for entry in entries:
            if entry.name in active_uids or not entry.is_dir(follow_symlinks=False):
                continue
            try:
                self.teardown(entry.name)
                shutil.rmtree(entry.path)
            except OSError as e:
                log.warning("orphaned pod %s: %s", entry.name, e, extra={"pod": entry.name})
                continue
            removed.append(entry.name)
        return removed


def _expand_subpath(expression: str, environment: Mapping[str, str]) -> str:
    """subPathExpr: every `$(VAR)` must name a non-empty variable (the kubelet's
    ExpandContainerVolumeMounts)."""
    missing: set[str] = set()

    def lookup(name: str) -> str:
        found = environment.get(name, "")
        if not found:
            missing.add(name)
        return found

    expanded = expand(expression, lookup)
    if missing:
        raise VolumeError(CONFIG_ERROR, f"missing value for {', '.join(sorted(missing))}")
    return expanded


def _write_file(path: Path, data: bytes, mode: int) -> None:
    """tmp in the same directory, fsync, rename: a reader sees old or new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, mode)
        os.rename(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
