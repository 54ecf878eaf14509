"""The files of configMap, secret, downwardAPI and projected volumes: each builds a
payload (relative path → data and mode) for the atomic writer from API objects and
the pod, as the kubelet's MakePayload / CollectData functions do.

Errors are VolumeSourceError with the detail the kubelet puts after
`MountVolume.SetUp failed for volume "x" : `; the manager adds that prefix.
A projected volume collects every source and reports all failures at once.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import Any

from kubeapi.client import ApiError
from kubelet.env import (
    ApiReader,
    ConfigError,
    get_config_map,
    get_secret,
    object_field,
    resource_value,
    secret_data,
)
from kubelet.volumes.atomic_writer import FileProjection

Object = dict[str, Any]
Payload = dict[str, FileProjection]
DEFAULT_MODE = 0o644
DEFAULT_TOKEN_EXPIRATION = 3600


class VolumeSourceError(Exception):
    pass


def _key_payload(
    values: Mapping[str, bytes],
    items: list[Object],
    default_mode: int,
    *,
    optional: bool,
    what: str,
) -> Payload:
    """All keys with `default_mode`, or only `items` (key → path, mode)."""
    if not items:
        return {key: FileProjection(data, default_mode) for key, data in values.items()}
    payload: Payload = {}
    for item in items:
        key = str(item.get("key") or "")
        if key not in values:
            if optional:
                continue
            # The kubelet's wording: "configmap ... config key", "secret ... secret key".
            noun = "config" if what == "configmap" else what
            raise VolumeSourceError(f"{what} references non-existent {noun} key: {key}")
        mode = item.get("mode")
        payload[str(item["path"])] = FileProjection(
            values[key], int(mode) if mode is not None else default_mode
        )
    return payload


def _fetch(getter: Callable[[], Object | None], kind: str, name: str) -> Object | None:
    try:
        return getter()
    except (ApiError, OSError) as e:
        raise VolumeSourceError(f"couldn't get {kind} {name}: {e}") from None


def config_map_payload(
    client: ApiReader, namespace: str, source: Object, default_mode: int
) -> Payload:
    """A configMap volume or projected source: data and binaryData keys."""
    name = str(source.get("name") or "")
    optional = bool(source.get("optional"))
    found = _fetch(lambda: get_config_map(client, namespace, name), "configmap", name)
    if found is None:
        if optional:
            return {}
        raise VolumeSourceError(f'configmap "{name}" not found')
    values = {key: str(text).encode() for key, text in (found.get("data") or {}).items()}
    for key, text in (found.get("binaryData") or {}).items():
        values[key] = base64.b64decode(text)
    return _key_payload(
        values, source.get("items") or [], default_mode, optional=optional, what="configmap"
    )


def secret_payload(
    client: ApiReader, namespace: str, source: Object, default_mode: int, *, name_field: str
) -> Payload:
    """A secret volume (`secretName`) or projected source (`name`), data decoded."""
    name = str(source.get(name_field) or "")
    optional = bool(source.get("optional"))
    found = _fetch(lambda: get_secret(client, namespace, name), "secret", name)
    if found is None:
        if optional:
            return {}
        raise VolumeSourceError(f'secret "{name}" not found')
    return _key_payload(
        secret_data(found), source.get("items") or [], default_mode,
        optional=optional, what="secret",
    )  # fmt: skip


def downward_payload(
    pod: Object,
    items: list[Object],
    default_mode: int,
    allocatable: Callable[[], Mapping[str, str]],
) -> Payload:
    """A downwardAPI volume or projected source: fieldRef and resourceFieldRef files."""
    payload: Payload = {}
    errors: list[str] = []
    for item in items:
        mode = item.get("mode")
        file_mode = int(mode) if mode is not None else default_mode
        try:
            if item.get("fieldRef"):
                data = object_field(pod, str(item["fieldRef"].get("fieldPath") or ""))
            elif item.get("resourceFieldRef"):
                data = resource_value(item["resourceFieldRef"], pod, None, allocatable())
            else:
                path = item.get("path")
                raise ConfigError(f"{path}: one of fieldRef and resourceFieldRef is required")
        except ConfigError as e:
            errors.append(e.message)
            continue
        payload[str(item["path"])] = FileProjection(data.encode(), file_mode)
    if errors:
        raise VolumeSourceError(_aggregate(errors))
    return payload


def _aggregate(errors: list[str]) -> str:
    return errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"


def service_account_token(client: ApiReader, pod: Object, source: Object, mode: int) -> Payload:
    """A serviceAccountToken source: a token bound to the pod from the API server's
    TokenRequest (serviceaccounts/<name>/token). A server without that API fails the
    volume: there is no token to write then."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    namespace = str(meta.get("namespace") or "default")
    account = str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")
    request: Object = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "audiences": [source["audience"]] if source.get("audience") else [],
            "expirationSeconds": int(source.get("expirationSeconds") or DEFAULT_TOKEN_EXPIRATION),
            "boundObjectRef": {
                "apiVersion": "v1", "kind": "Pod",
                "name": meta.get("name"), "uid": meta.get("uid"),
            },
        },
    }  # fmt: skip
    path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token"
    try:
        answer = client.create(path, request)
    except (ApiError, OSError) as e:
        raise VolumeSourceError(f"failed to fetch token: {e}") from None
    token = str((answer.get("status") or {}).get("token") or "")
    if not token:
        raise VolumeSourceError("failed to fetch token: the TokenRequest answer has no token")
    return {str(source.get("path") or "token"): FileProjection(token.encode(), mode)}


def projected_payload(
    client: ApiReader,
    pod: Object,
    volume: Object,
    allocatable: Callable[[], Mapping[str, str]],
    *,
    fs_group: int | None,
) -> Payload:
    """A projected volume: the union of its sources' payloads."""
    namespace = str((pod.get("metadata") or {}).get("namespace") or "default")
    default_mode = int(volume.get("defaultMode", DEFAULT_MODE))
    payload: Payload = {}
    errors: list[str] = []
    for source in volume.get("sources") or []:
        try:
            if source.get("configMap") is not None:
                part = config_map_payload(client, namespace, source["configMap"], default_mode)
            elif source.get("secret") is not None:
                part = secret_payload(
                    client, namespace, source["secret"], default_mode, name_field="name"
                )
            elif source.get("downwardAPI") is not None:
                items = source["downwardAPI"].get("items") or []
                part = downward_payload(pod, items, default_mode, allocatable)
            elif source.get("serviceAccountToken") is not None:
                # With an fsGroup the token is 0600 and the group bit comes from it.
                mode = 0o600 if fs_group is not None else default_mode
                part = service_account_token(client, pod, source["serviceAccountToken"], mode)
            else:
                raise VolumeSourceError(f"unsupported projected source {sorted(source)}")
        except VolumeSourceError as e:
            errors.append(str(e))
            continue
        payload.update(part)
    if errors:
        raise VolumeSourceError(_aggregate(errors))
    return payload
