"""One run of a probe's handler, with the kubelet's outcomes and messages:

- exec: CRI ExecSync with the probe's timeout; exit 0 is success, anything else a
  failure whose message is the command's output (stdout then stderr, at most 10 KiB);
  a timeout (DEADLINE_EXCEEDED) is a failure `command "<cmd>" timed out`.
- httpGet: 200 ≤ status < 400 is success (a 3xx that ended the redirects, a warning);
  otherwise `HTTP probe failed with statuscode: <n>`; no answer is a failure whose
  message says why.
- tcpSocket: a connection within the timeout is success.
- grpc: grpc.health.v1.Health/Check on the pod IP; SERVING is success. The two
  messages are encoded by hand (one string field out, one enum field in) so no
  generated health stubs are needed.

An ERROR outcome is the probe not being able to run at all (the runtime refused the
exec, a named port that is not declared): the worker does not count it, as the
kubelet throws such results away.
"""

from __future__ import annotations

import enum
import json
import math
import socket
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from cri.api import api_pb2
from kubelet.probes.httpget import (
    MAX_BODY_BYTES,
    PROBE_USER_AGENT,
    HttpGetError,
    build_request,
    http_get,
)
from kubelet.probes.spec import ProbeSpec, expand_command, resolve_port

# How much longer than the command's own timeout the ExecSync call may take before
# the kubelet gives up on the runtime, when the CRI client does not say (CriClient
# has its runtime request timeout).
DEFAULT_RUNTIME_MARGIN = 30.0
HEALTH_CHECK_METHOD = "/grpc.health.v1.Health/Check"
_SERVING_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


class RuntimeExec(Protocol):
    """What probes and hooks need of the CRI runtime service: ExecSync."""

    def ExecSync(  # the CRI's method name
        self, request: api_pb2.ExecSyncRequest, timeout: float | None = ...
    ) -> api_pb2.ExecSyncResponse: ...


class CriLike(Protocol):
    """A CRI client (kubelet.cri_client.CriClient): its runtime service and the
    runtime request timeout."""

    @property
    def runtime(self) -> Any: ...

    @property
    def timeout(self) -> float: ...


def runtime_of(cri: CriLike | RuntimeExec) -> tuple[RuntimeExec, float]:
    """The runtime service to call ExecSync on and the margin to add to a command's
    timeout for the call's deadline (the kubelet adds its runtime request timeout)."""
    if hasattr(cri, "runtime"):
        return cri.runtime, float(getattr(cri, "timeout", DEFAULT_RUNTIME_MARGIN))
    if not hasattr(cri, "ExecSync"):
        raise TypeError(f"{cri!r} is neither a CRI client nor a CRI runtime service")
    return cri, DEFAULT_RUNTIME_MARGIN


class Result(enum.Enum):
    SUCCESS = "success"
    WARNING = "warning"  # a success with something to report (ProbeWarning event)
    FAILURE = "failure"
    ERROR = "error"  # the probe could not run: not counted


@dataclass(frozen=True, slots=True)
class Outcome:
    result: Result
    message: str = ""


def quoted(text: str) -> str:
    """`text` in double quotes with escapes, as Go's %q prints it in the kubelet's
    messages."""
    return json.dumps(text, ensure_ascii=False)


def text_of(data: bytes) -> str:
    return data[:MAX_BODY_BYTES].decode("utf-8", errors="replace")


@dataclass(frozen=True, slots=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes

    @property
    def output(self) -> str:
        return text_of(self.stdout + self.stderr)


class ExecTimedOut(Exception):
    """The command outlived its timeout (the runtime killed it, or gave up on it)."""


def exec_sync(
    cri: CriLike | RuntimeExec, container_id: str, command: list[str], timeout: float
) -> ExecResult:
    """Run `command` in the container, killed after `timeout` seconds (rounded up: the
    CRI counts whole seconds). ExecTimedOut on a timeout; grpc.RpcError when the
    runtime cannot run it."""
    runtime, margin = runtime_of(cri)
    seconds = max(1, math.ceil(timeout))
    request = api_pb2.ExecSyncRequest(container_id=container_id, cmd=command, timeout=seconds)
    try:
        response = runtime.ExecSync(request, timeout=seconds + margin)
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            raise ExecTimedOut(f"command {quoted(' '.join(command))} timed out") from e
        raise
    return ExecResult(response.exit_code, response.stdout, response.stderr)


def probe_exec(
    cri: CriLike | RuntimeExec, spec: ProbeSpec, container: dict[str, Any], container_id: str
) -> Outcome:
    command = expand_command(list(spec.action["command"]), container.get("env") or [])
    try:
        result = exec_sync(cri, container_id, command, spec.timeout)
    except ExecTimedOut as e:
        return Outcome(Result.FAILURE, str(e))
    except grpc.RpcError as e:
        details = e.details() if hasattr(e, "details") else str(e)
        return Outcome(Result.ERROR, f"exec {command}: {details}")
    if result.exit_code == 0:
        return Outcome(Result.SUCCESS, result.output)
    return Outcome(Result.FAILURE, result.output)


def probe_http(spec: ProbeSpec, container: dict[str, Any], pod_ip: str) -> Outcome:
    try:
        request = build_request(spec.action, container, pod_ip, user_agent=PROBE_USER_AGENT)
    except ValueError as e:
        return Outcome(Result.ERROR, str(e))
    try:
        response = http_get(request, spec.timeout)
    except HttpGetError as e:
        return Outcome(Result.FAILURE, str(e))
    body = text_of(response.body)
    if 200 <= response.status < 300:
        return Outcome(Result.SUCCESS, body)
    if 300 <= response.status < 400:
        return Outcome(Result.WARNING, f"Probe terminated redirects, Response body: {body}")
    return Outcome(Result.FAILURE, f"HTTP probe failed with statuscode: {response.status}")


def probe_tcp(spec: ProbeSpec, container: dict[str, Any], pod_ip: str) -> Outcome:
    host = str(spec.action.get("host") or pod_ip)
    try:
        port = resolve_port(spec.action.get("port"), container)
    except ValueError as e:
        return Outcome(Result.ERROR, str(e))
    if not host:
        return Outcome(Result.ERROR, "no host: the probe sets none and the pod has no IP yet")
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        with socket.create_connection((host, port), timeout=spec.timeout):
            return Outcome(Result.SUCCESS)
    except TimeoutError:
        return Outcome(Result.FAILURE, f"dial tcp {address}: i/o timeout")
    except OSError as e:
        reason = (e.strerror or str(e)).lower()
        return Outcome(Result.FAILURE, f"dial tcp {address}: connect: {reason}")


def _health_request(service: str) -> bytes:
    """grpc.health.v1.HealthCheckRequest{service}: field 1, length-delimited."""
    data = service.encode()
    if not data:
        return b""
    length = bytearray()
    size = len(data)
    while True:
        byte, size = size & 0x7F, size >> 7
        length.append(byte | (0x80 if size else 0))
        if not size:
            break
    return b"\x0a" + bytes(length) + data


def _health_status(data: bytes) -> int:
    """HealthCheckResponse.status (field 1, varint); 0 (UNKNOWN) when absent. Other
    fields are skipped, so a newer server's additions do not break the probe."""
    i, status = 0, 0
    while i < len(data):
        key, i = _varint(data, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(data, i)
            if field == 1:
                status = value
        elif wire == 2:
            size, i = _varint(data, i)
            i += size
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"HealthCheckResponse: wire type {wire}")
    return status


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if i >= len(data):
            raise ValueError("HealthCheckResponse: truncated")
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def probe_grpc(spec: ProbeSpec, pod_ip: str) -> Outcome:
    if not pod_ip:
        return Outcome(Result.ERROR, "no pod IP yet for the grpc probe")
    port = int(spec.action["port"])
    service = str(spec.action.get("service") or "")
    target = f"[{pod_ip}]:{port}" if ":" in pod_ip else f"{pod_ip}:{port}"
    options = [("grpc.primary_user_agent", PROBE_USER_AGENT)]
    with grpc.insecure_channel(target, options=options) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=spec.timeout)
        except grpc.FutureTimeoutError:
            return Outcome(
                Result.FAILURE,
                f"timeout: failed to connect service {quoted(target)} within {spec.timeout:g}s",
            )
        check: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            HEALTH_CHECK_METHOD, request_serializer=None, response_deserializer=None
        )
        try:
            answer = check(_health_request(service), timeout=spec.timeout)
        except grpc.RpcError as e:
            code = e.code()
            details = e.details()
            if code == grpc.StatusCode.UNIMPLEMENTED:
                return Outcome(
                    Result.FAILURE,
                    "this server does not implement the grpc health protocol "
                    f"(grpc.health.v1.Health): {details}",
                )
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                return Outcome(
                    Result.FAILURE,
                    f"timeout: health rpc did not complete within {spec.timeout:g}s",
                )
            failed = f"error: health rpc probe failed: {code.name}: {details}"
            return Outcome(Result.FAILURE, failed)
    try:
        status = _health_status(bytes(answer))
    except ValueError as e:
        return Outcome(Result.FAILURE, f"error: health rpc probe failed: {e}")
    if status == 1:
        return Outcome(Result.SUCCESS)
    name = _SERVING_STATUS.get(status, str(status))
    return Outcome(Result.FAILURE, f"service unhealthy (responded with {quoted(name)})")


def run_probe(
    cri: CriLike | RuntimeExec,
    spec: ProbeSpec,
    *,
    container: dict[str, Any],
    container_id: str,
    pod_ip: str,
) -> Outcome:
    """One run of `spec`'s handler against the container."""
    if spec.kind == "exec":
        return probe_exec(cri, spec, container, container_id)
    if spec.kind == "httpGet":
        return probe_http(spec, container, pod_ip)
    if spec.kind == "tcpSocket":
        return probe_tcp(spec, container, pod_ip)
    if spec.kind == "grpc":
        return probe_grpc(spec, pod_ip)
    raise AssertionError(f"unknown probe handler {spec.kind}")  # parse_probe checked it
