"""Container lifecycle hooks: postStart and preStop handlers (exec, httpGet, sleep),
with the kubelet's error messages, and the grace-period budget around preStop.

How the pod worker uses them:

- postStart, right after StartContainer: `error = run_post_start(...)`. On an error
  (already recorded as a Warning `FailedPostStartHook` event) the kubelet kills the
  container (reason FailedPostStartHook) and restarts it per restartPolicy with
  back-off, as for a crash.
- stopping a container: `grace = termination_grace_period(pod, container,
  failed_probe=probes.failed_probe(container_id))` — the pod's
  metadata.deletionGracePeriodSeconds while it is deleted, else the failed liveness or
  startup probe's own terminationGracePeriodSeconds when killing for that, else
  spec.terminationGracePeriodSeconds (default 30); then
  `remaining = run_pre_stop(..., grace_period=grace)` and
  `StopContainer(timeout=remaining)`. The grace period counts from before the hook:
  run_pre_stop runs it for at most `grace` seconds and returns what is left, but never
  less than 2 s (MINIMUM_GRACE_PERIOD), so a container always gets a short window to
  handle SIGTERM before SIGKILL, as the kubelet's killContainer does.

run_handler runs in the caller's thread (the pod worker's); run_pre_stop runs it in a
thread of its own so it can stop waiting at the deadline. Exec goes
through CRI ExecSync with the handler's timeout, httpGet through the probes' HTTP
client (no certificate checks, same-host redirects, `User-Agent:
kube-lifecycle/<major.minor>`), failing on no answer or a status ≥ 400.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import grpc

from kubelet.probes.handlers import CriLike, ExecTimedOut, RuntimeExec, exec_sync, quoted
from kubelet.probes.httpget import LIFECYCLE_USER_AGENT, HttpGetError, build_request, http_get
from kubelet.probes.manager import WARNING, EventSink, field_path
from kubelet.probes.spec import ProbeSpecError, ProbeType, handler_kind

log = logging.getLogger(__name__)

LIFECYCLE_HANDLER_KINDS = ("exec", "httpGet", "sleep")
MINIMUM_GRACE_PERIOD = 2.0  # seconds StopContainer always gets after preStop
DEFAULT_GRACE_PERIOD = 30.0


def termination_grace_period(
    pod: dict[str, Any], container: dict[str, Any], *, failed_probe: ProbeType | None = None
) -> float:
    """Seconds a container gets to stop, preStop included, chosen as the kubelet does:
    a deleted pod's deletionGracePeriodSeconds wins; killing for a failed liveness or
    startup probe uses that probe's terminationGracePeriodSeconds when it sets one;
    else the pod's spec.terminationGracePeriodSeconds (the API's default, 30)."""
    deleting = (pod.get("metadata") or {}).get("deletionGracePeriodSeconds")
    if deleting is not None:
        return float(deleting)
    if failed_probe in (ProbeType.LIVENESS, ProbeType.STARTUP):
        assert failed_probe is not None
        own = (container.get(failed_probe.field) or {}).get("terminationGracePeriodSeconds")
        if own is not None:
            return float(own)
    pod_grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
    return DEFAULT_GRACE_PERIOD if pod_grace is None else float(pod_grace)


def pod_description(pod: dict[str, Any]) -> str:
    """`name_namespace(uid)`, how the kubelet names a pod in messages."""
    meta = pod.get("metadata") or {}
    return f"{meta.get('name', '')}_{meta.get('namespace', '')}({meta.get('uid', '')})"


def _go_list(items: list[str]) -> str:
    return "[" + " ".join(items) + "]"


def run_handler(
    cri: CriLike | RuntimeExec,
    handler: dict[str, Any],
    pod: dict[str, Any],
    container: dict[str, Any],
    container_id: str,
    pod_ip: str,
    timeout: float,
    *,
    cancel: threading.Event | None = None,
) -> str | None:
    """Run one lifecycle handler against the container within `timeout` seconds. None
    on success, else the kubelet's message (`Exec lifecycle hook ([cmd]) for Container
    "c" in Pod "p_ns(uid)" failed - error: …`). A sleep handler sleeps its seconds,
    at most `timeout`, and fails only when `cancel` is set meanwhile (the container
    is being killed)."""
    if timeout <= 0:
        raise ValueError(f"lifecycle handler timeout must be positive, not {timeout}")
    name = str(container.get("name", ""))
    subject = f"for Container {quoted(name)} in Pod {quoted(pod_description(pod))}"
    try:
        kind = handler_kind(handler, "lifecycle handler", LIFECYCLE_HANDLER_KINDS)
    except ProbeSpecError as e:
        return f"Cannot run handler: invalid handler: {e}"
    action = handler[kind]
    if kind == "exec":
        command = [str(arg) for arg in action["command"]]
        error = _exec_error(cri, container_id, command, timeout)
        if error is None:
            return None
        return f"Exec lifecycle hook ({_go_list(command)}) {subject} failed - error: {error}"
    if kind == "httpGet":
        error = _http_error(action, container, pod_ip, timeout)
        if error is None:
            return None
        path = action.get("path") or ""
        return f"HTTP lifecycle hook ({path}) {subject} failed - error: {error}"
    seconds = action.get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        return f"Cannot run handler: invalid handler: sleep.seconds must be >= 0, not {seconds!r}"
    if (cancel or threading.Event()).wait(min(float(seconds), timeout)):
        return (
            f"Sleep lifecycle hook ({seconds}) {subject} failed - error: "
            "container terminated before sleep hook finished"
        )
    return None


def _exec_error(
    cri: CriLike | RuntimeExec, container_id: str, command: list[str], timeout: float
) -> str | None:
    try:
        result = exec_sync(cri, container_id, command, timeout)
    except ExecTimedOut as e:
        return str(e)
    except grpc.RpcError as e:
        return str(e.details() if hasattr(e, "details") else e)
    if result.exit_code == 0:
        return None
    stderr = result.stderr.decode("utf-8", errors="replace")
    error = f"command '{' '.join(command)}' exited with {result.exit_code}: {stderr}"
    return f"{error}, message: {quoted(result.output)}"


def _http_error(
    action: dict[str, Any], container: dict[str, Any], pod_ip: str, timeout: float
) -> str | None:
    try:
        request = build_request(action, container, pod_ip, user_agent=LIFECYCLE_USER_AGENT)
        response = http_get(request, timeout)
    except (ValueError, HttpGetError) as e:
        return str(e)
    if response.status >= 400:
        return f'Get "{response.url}": HTTP status {response.status}'
    return None


def _hook(container: dict[str, Any], which: str) -> dict[str, Any] | None:
    lifecycle = container.get("lifecycle") or {}
    handler = lifecycle.get(which)
    return handler if handler else None


def run_post_start(
    cri: CriLike | RuntimeExec,
    events: EventSink | None,
    pod: dict[str, Any],
    container: dict[str, Any],
    container_id: str,
    pod_ip: str,
    *,
    timeout: float,
) -> str | None:
    """The container's postStart hook, if it has one: None on success (or no hook),
    else the error message, also recorded as a Warning FailedPostStartHook event. The
    kubelet gives postStart no deadline of its own; `timeout` keeps a hung hook from
    holding the pod worker forever (the runtime request timeout is a fair value)."""
    handler = _hook(container, "postStart")
    if handler is None:
        return None
    message = run_handler(cri, handler, pod, container, container_id, pod_ip, timeout)
    if message is not None:
        _record(events, pod, container, "FailedPostStartHook", message)
    return message


def run_pre_stop(
    cri: CriLike | RuntimeExec,
    events: EventSink | None,
    pod: dict[str, Any],
    container: dict[str, Any],
    container_id: str,
    pod_ip: str,
    *,
    grace_period: float,
    cancel: threading.Event | None = None,
) -> float:
    """Run the container's preStop hook for at most `grace_period` seconds and return
    the grace period left for StopContainer: `grace_period` minus the time the hook
    took, at least MINIMUM_GRACE_PERIOD. A failed hook is recorded as a Warning
    FailedPreStopHook event; stopping goes on either way. A hook still running at the
    deadline is abandoned (its exec has the same timeout, so the runtime kills it)."""
    handler = _hook(container, "preStop")
    if handler is None or grace_period <= 0:
        return max(grace_period, MINIMUM_GRACE_PERIOD)
    started = time.monotonic()
    outcome: list[str | None] = []

    def hook() -> None:
        outcome.append(
            run_handler(
                cri, handler, pod, container, container_id, pod_ip, grace_period, cancel=cancel
            )
        )

    name = str(container.get("name", ""))
    runner = threading.Thread(target=hook, name=f"prestop-{name}-{container_id[:12]}", daemon=True)
    runner.start()
    runner.join(grace_period)
    if runner.is_alive():
        log.info("prestop hook of %s not done within the grace period", name,
                 extra={"container_id": container_id})  # fmt: skip
    elif outcome and outcome[0] is not None:
        _record(events, pod, container, "FailedPreStopHook", outcome[0])
    return max(grace_period - (time.monotonic() - started), MINIMUM_GRACE_PERIOD)


def _record(
    events: EventSink | None, pod: dict[str, Any], container: dict[str, Any], reason: str,
    message: str,
) -> None:  # fmt: skip
    log.info("%s: %s", reason, message)
    if events is None:
        return
    name = str(container.get("name", ""))
    try:
        events.record(pod, WARNING, reason, message, field_path=field_path(pod, name))
    except Exception:  # events are best effort
        log.exception("recording %s of %s", reason, name)
