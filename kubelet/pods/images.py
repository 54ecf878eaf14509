"""Image pulls for containers, per imagePullPolicy (Always, IfNotPresent, Never), with
credentials from the pod's imagePullSecrets (kubernetes.io/dockerconfigjson and the
older kubernetes.io/dockercfg) and a back-off per (pod, image) after a failure, as the
kubelet's image manager:

- Never and absent: ErrImageNeverPull.
- A failed pull: ErrImagePull; until its back-off passes: ImagePullBackOff.

Pulls are serialized (one at a time, the kubelet's --serialize-image-pulls default)
when asked to; events Pulling/Pulled/Failed/BackOff go on the pod.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc

from cri.api import api_pb2
from kubeapi.client import ApiError, Client
from kubelet.cri_client import CriClient
from kubelet.pods.backoff import Backoff
from kubelet.pods.dependencies import Events, SyncError
from kubelet.pods.static import default_pull_policy

log = logging.getLogger(__name__)

DOCKER_HUB = "docker.io"
DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io",
                   "registry-1.docker.io")  # fmt: skip


def image_registry(image: str) -> str:
    """The registry host of an image reference (docker.io when it names none)."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return DOCKER_HUB


def _registry_of_key(key: str) -> str:
    key = key.removeprefix("https://").removeprefix("http://")
    host = key.split("/", 1)[0]
    if host in ("index.docker.io", "registry-1.docker.io"):
        return DOCKER_HUB
    return host


def _auth_entry(entry: dict[str, Any]) -> api_pb2.AuthConfig:
    username = str(entry.get("username") or "")
    password = str(entry.get("password") or "")
    if not username and entry.get("auth"):
        try:
            decoded = base64.b64decode(str(entry["auth"])).decode()
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        username, _, password = decoded.partition(":")
    return api_pb2.AuthConfig(
        username=username,
        password=password,
        auth=str(entry.get("auth") or ""),
        identity_token=str(entry.get("identitytoken") or ""),
        registry_token=str(entry.get("registrytoken") or ""),
    )


def docker_auths(secret: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The registry -> credentials map of a docker config secret ({} for other types
    or bad data, which the kubelet also skips)."""
    data = secret.get("data") or {}
    kind = secret.get("type", "")
    key = ".dockerconfigjson" if kind == "kubernetes.io/dockerconfigjson" else ".dockercfg"
    if key not in data:
        return {}
    try:
        document = json.loads(base64.b64decode(str(data[key])))
    except (binascii.Error, ValueError):
        return {}
    if not isinstance(document, dict):
        return {}
    auths = document.get("auths") if key == ".dockerconfigjson" else document
    return {str(k): v for k, v in (auths or {}).items() if isinstance(v, dict)}


def auth_for(image: str, secrets: list[dict[str, Any]]) -> api_pb2.AuthConfig | None:
    """The first credentials of `secrets` for the image's registry."""
    registry = image_registry(image)
    for secret in secrets:
        for key, entry in docker_auths(secret).items():
            if _registry_of_key(key) == registry:
                auth = _auth_entry(entry)
                auth.server_address = key
                return auth
    return None


class ImagePuller:
    def __init__(
        self,
        cri: CriClient,
        client: Client,
        events: Events,
        backoff: Backoff,
        *,
        serialize: bool,
        timeout: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cri = cri
        self.client = client
        self.events = events
        self.backoff = backoff
        self.timeout = timeout
        self.clock = clock
        self._serial = threading.Lock() if serialize else None

    def _present(self, image: str) -> str:
        """The image's id when the runtime has it, else ""."""
        try:
            response = self.cri.images.ImageStatus(
                api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=image)),
                timeout=self.cri.timeout,
            )
        except grpc.RpcError as e:
            raise SyncError("ErrImagePull", f"image status of {image}: {e.details()}") from e
        return str(response.image.id) if response.HasField("image") and response.image.id else ""

    def _secrets(self, pod: dict[str, Any]) -> list[dict[str, Any]]:
        namespace = (pod.get("metadata") or {}).get("namespace") or "default"
        found = []
        for ref in (pod.get("spec") or {}).get("imagePullSecrets") or []:
            name = ref.get("name") if isinstance(ref, dict) else None
            if not name:
                continue
            try:
                found.append(self.client.get(f"/api/v1/namespaces/{namespace}/secrets/{name}"))
            except (ApiError, OSError) as e:
                # As the kubelet: a missing pull secret is a warning, the pull goes on.
                log.warning("pull secret %s/%s: %s", namespace, name, e)
        return found

    def retry_in(self, pod: dict[str, Any], container: dict[str, Any]) -> float:
        """Seconds until the image's pull back-off ends (0 when it is not backing off)."""
        uid = str((pod.get("metadata") or {}).get("uid", ""))
        return self.backoff.remaining_since_update(f"{uid}/{container.get('image', '')}")

    def ensure(self, pod: dict[str, Any], container: dict[str, Any], field_path: str) -> str:
        """The image to run for `container`, pulled if its policy says so. SyncError
        ErrImageNeverPull, ImagePullBackOff or ErrImagePull otherwise."""
        image = str(container.get("image") or "")
        if not image:
            raise SyncError("InvalidImageName", "container image is empty")
        policy = str(container.get("imagePullPolicy") or default_pull_policy(image))
        uid = str((pod.get("metadata") or {}).get("uid", ""))
        present = self._present(image) if policy != "Always" else ""
        if policy == "Never":
            if present:
                return image
            message = f'Container image "{image}" is not present with pull policy of Never'
            self.events.record(pod, "Warning", "ErrImageNeverPull", message, field_path=field_path)
            raise SyncError("ErrImageNeverPull", message)
        if policy == "IfNotPresent" and present:
            self.events.record(pod, "Normal", "Pulled",
                               f'Container image "{image}" already present on machine',
                               field_path=field_path)  # fmt: skip
            return image
        key = f"{uid}/{image}"
        if self.backoff.in_backoff_since_update(key):
            message = f'Back-off pulling image "{image}"'
            self.events.record(pod, "Normal", "BackOff", message, field_path=field_path)
            raise SyncError("ImagePullBackOff", message)
        self.events.record(pod, "Normal", "Pulling", f'Pulling image "{image}"',
                           field_path=field_path)  # fmt: skip
        request = api_pb2.PullImageRequest(
            image=api_pb2.ImageSpec(image=image), auth=auth_for(image, self._secrets(pod))
        )
        started = time.monotonic()
        try:
            if self._serial is not None:
                with self._serial:
                    self.cri.images.PullImage(request, timeout=self.timeout)
            else:
                self.cri.images.PullImage(request, timeout=self.timeout)
        except grpc.RpcError as e:
            self.backoff.next(key, self.clock())
            message = f'Failed to pull image "{image}": {e.details()}'
            self.events.record(pod, "Warning", "Failed", message, field_path=field_path)
            raise SyncError("ErrImagePull", message) from e
        self.backoff.reset(key)
        elapsed = time.monotonic() - started
        self.events.record(pod, "Normal", "Pulled",
                           f'Successfully pulled image "{image}" in {elapsed:.3f}s',
                           field_path=field_path)  # fmt: skip
        return image
