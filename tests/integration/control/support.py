"""Helpers shared by the control-plane integration tests: free loopback ports,
polling, and stopping a process the test started."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(
    probe: Callable[[], Any], timeout: float = 20.0, *, what: str = "", interval: float = 0.1
) -> Any:
    """`probe()`'s first truthy value, polled every `interval` s for at most `timeout`
    s; the error names `what` is awaited (else the probe)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what or probe}")
        time.sleep(interval)


def stop(process: subprocess.Popen[str], sig: int = signal.SIGTERM) -> None:
    """Signal a process the test started, and reap it (SIGKILL after 15 s)."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
