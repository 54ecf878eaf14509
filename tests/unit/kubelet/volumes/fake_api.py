"""An in-memory stand-in for the API client in the kubelet's volume and environment
tests: GET of stored objects (404 otherwise), the services List of a namespace, and
POSTs recorded (answered 404 unless a handler is set for the path)."""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable
from typing import Any

from kubeapi.client import ApiError

Object = dict[str, Any]


def not_found(method: str, path: str) -> ApiError:
    return ApiError(method, path, 404, {"reason": "NotFound", "message": f"{path} not found"})


class FakeApi:
    def __init__(self) -> None:
        self.objects: dict[str, Object] = {}
        self.gets: list[str] = []
        self.posts: list[tuple[str, Object]] = []
        self.post_handlers: dict[str, Callable[[Object], Object]] = {}

    def put(self, namespace: str, resource: str, obj: Object) -> None:
        self.objects[f"/api/v1/namespaces/{namespace}/{resource}/{obj['metadata']['name']}"] = obj

    def config_map(self, namespace: str, name: str, data: dict[str, str],
                   binary: dict[str, bytes] | None = None) -> None:  # fmt: skip
        obj: Object = {"metadata": {"name": name, "namespace": namespace}, "data": data}
        if binary:
            obj["binaryData"] = {k: base64.b64encode(v).decode() for k, v in binary.items()}
        self.put(namespace, "configmaps", obj)

    def secret(self, namespace: str, name: str, data: dict[str, bytes]) -> None:
        encoded = {k: base64.b64encode(v).decode() for k, v in data.items()}
        self.put(namespace, "secrets", {"metadata": {"name": name}, "data": encoded})

    def service(self, namespace: str, name: str, ip: str, ports: list[Object]) -> None:
        self.put(namespace, "services", {
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterIP": ip, "ports": ports},
        })  # fmt: skip

    def get(self, path: str, **query: Any) -> Object:
        self.gets.append(path)
        if path not in self.objects:
            raise not_found("GET", path)
        return copy.deepcopy(self.objects[path])

    def list(self, path: str, **query: Any) -> Object:
        prefix = path.rstrip("/") + "/"
        items = [copy.deepcopy(o) for p, o in sorted(self.objects.items())
                 if p.startswith(prefix) and "/" not in p[len(prefix):]]  # fmt: skip
        return {"kind": "List", "metadata": {}, "items": items}

    def create(self, path: str, body: Object, **query: Any) -> Object:
        self.posts.append((path, body))
        if path not in self.post_handlers:
            raise not_found("POST", path)
        return self.post_handlers[path](body)
