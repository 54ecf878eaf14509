"""Pull credentials from docker config secrets, and termination messages (file, or the
log tail under FallbackToLogsOnError)."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path

from kubelet.pods.images import auth_for, docker_auths, image_registry
from kubelet.pods.messages import log_tail, termination_message
from kubelet.pods.runtime import ContainerState
from tests.unit.kubelet.pods.factories import container


def _secret(kind: str, key: str, document: object) -> dict[str, object]:
    encoded = base64.b64encode(json.dumps(document).encode()).decode()
    return {"type": kind, "data": {key: encoded}}


def test_image_registry() -> None:
    assert image_registry("busybox") == "docker.io"
    assert image_registry("library/busybox:1") == "docker.io"
    assert image_registry("127.0.0.1:5000/x/busybox") == "127.0.0.1:5000"
    assert image_registry("localhost/busybox") == "localhost"
    assert image_registry("ghcr.io/org/app@sha256:00") == "ghcr.io"


def test_auth_from_dockerconfigjson_and_dockercfg() -> None:
    token = base64.b64encode(b"bob:s3cret").decode()
    json_secret = _secret(
        "kubernetes.io/dockerconfigjson",
        ".dockerconfigjson",
        {"auths": {"https://registry.local:5000": {"auth": token}}},
    )
    old_secret = _secret(
        "kubernetes.io/dockercfg",
        ".dockercfg",
        {"https://index.docker.io/v1/": {"username": "u", "password": "p"}},
    )
    auth = auth_for("registry.local:5000/app:1", [old_secret, json_secret])
    assert auth is not None and (auth.username, auth.password) == ("bob", "s3cret")
    assert auth.server_address == "https://registry.local:5000"
    hub = auth_for("nginx", [json_secret, old_secret])
    assert hub is not None and (hub.username, hub.password) == ("u", "p")
    assert auth_for("quay.io/x", [json_secret, old_secret]) is None


def test_bad_secrets_are_skipped() -> None:
    assert docker_auths({"type": "Opaque", "data": {"x": "eA=="}}) == {}
    assert (
        docker_auths(
            {
                "type": "kubernetes.io/dockerconfigjson",
                "data": {".dockerconfigjson": "not base64 json!"},
            }
        )
        == {}
    )


def _log(path: Path, *records: str) -> Path:
    path.write_text("".join(f"2024-01-01T00:00:00.000000000Z stdout {r}\n" for r in records))
    return path


def test_log_tail_joins_partial_lines_and_limits(tmp_path: Path) -> None:
    log = _log(tmp_path / "0.log", "F one", "P tw", "F o", "F three")
    assert log_tail(log) == "one\ntwo\nthree\n"
    assert log_tail(log, lines=2) == "two\nthree\n"
    assert log_tail(log, limit=6) == "three\n"
    assert log_tail(tmp_path / "missing.log") == ""


def test_termination_message_file_then_log_fallback(tmp_path: Path) -> None:
    message = tmp_path / "msg"
    message.write_text("written by the container")
    log = _log(tmp_path / "0.log", "F last words")
    exited = dataclasses.replace(
        container("a", ContainerState.EXITED, exit_code=1),
        termination_message_path=str(message),
        log_path=str(log),
        termination_message_policy="FallbackToLogsOnError",
    )
    assert termination_message(exited) == "written by the container"
    message.write_text("")
    assert termination_message(exited) == "last words\n"
    succeeded = dataclasses.replace(exited, exit_code=0)
    assert termination_message(succeeded) == ""  # the fallback is for failures only
    file_policy = dataclasses.replace(exited, termination_message_policy="File")
    assert termination_message(file_policy) == ""
    running = dataclasses.replace(exited, state=ContainerState.RUNNING)
    assert termination_message(running) == ""
    message.write_text("x" * 10_000)
    assert len(termination_message(exited)) == 4096
