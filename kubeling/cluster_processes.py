"""The child processes of `kubeling up`: started with their output in a log file,
restarted with back-off when they die, stopped in order with SIGTERM (SIGKILL after a
grace period).

Each child runs in its own session, so a Ctrl-C in the terminal reaches `up` alone,
which then stops the children in the order it chooses. Each child's pid is written to
`<pids-dir>/<name>.pid` while it runs, so a later `up` can find what an `up` killed
with SIGKILL left behind (`stop_leftovers`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 30.0
STABLE_AFTER = 60.0  # a child that ran this long starts again from the initial back-off


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not count)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def command_line(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [part.decode(errors="replace") for part in f.read().split(b"\0") if part]
    except OSError:
        return []


def terminate(
    pid: int, *, timeout: float = 20.0, sleep: Callable[[float], None] = time.sleep
) -> bool:
    """SIGTERM `pid`, SIGKILL it after `timeout` s; whether it had to be killed."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                return False
            return True
        sleep(0.05)
    return False


@dataclass
class Child:
    name: str
    argv: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restarts: int = 0
    backoff: float = INITIAL_BACKOFF
    restart_at: float | None = None  # when a dead child is due to start again
    exits: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Children:
    """The children of one `up`, by name, in start order."""

    def __init__(self, pids_dir: Path, report: Callable[[str], None]) -> None:
        self.pids_dir = pids_dir
        self.report = report
        self.children: dict[str, Child] = {}

    def start(self, name: str, argv: list[str], log: Path) -> Child:
        child = self.children.get(name) or Child(name, argv, log)
        self.children[name] = child
        self._spawn(child)
        return child

    def _spawn(self, child: Child) -> None:
        child.log.parent.mkdir(parents=True, exist_ok=True)
        with open(child.log, "ab") as log:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            log.write(f"--- {stamp} kubeling up starts: {' '.join(child.argv)}\n".encode())
            log.flush()
            child.process = subprocess.Popen(
                child.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        child.started = time.monotonic()
        child.restart_at = None
        (self.pids_dir / f"{child.name}.pid").write_text(f"{child.pid}\n")

    def check(self) -> None:
        """Report children that died and start them again once their back-off passed."""
        now = time.monotonic()
        for child in self.children.values():
            if child.process is None:
                continue
            code = child.process.poll()
            if code is None:
                continue
            if child.restart_at is None:
                if now - child.started >= STABLE_AFTER:
                    child.backoff = INITIAL_BACKOFF
                child.exits.append(code)
                child.restart_at = now + child.backoff
                self.report(
                    f"{child.name} (pid {child.pid}) exited with status {code}; restarting it "
                    f"in {child.backoff:.0f}s (log: {child.log})"
                )
                child.backoff = min(child.backoff * 2, MAX_BACKOFF)
            elif now >= child.restart_at:
                child.restarts += 1
                self._spawn(child)
                self.report(f"restarted {child.name} (pid {child.pid})")

    def stop(self, *names: str, timeout: float = 20.0) -> None:
        """SIGTERM the named children at once, wait for each (SIGKILL after `timeout`)."""
        stopping = []
        for name in names:
            child = self.children.get(name)
            if child is None or child.process is None:
                continue
            if child.running():
                self.report(f"stopping {name} (pid {child.pid})")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGTERM)
            stopping.append(child)
        started = time.monotonic()
        for child in stopping:
            assert child.process is not None
            try:
                child.process.wait(max(timeout - (time.monotonic() - started), 0.1))
            except subprocess.TimeoutExpired:
                self.report(f"{child.name} did not stop within {timeout:.0f}s: killing it")
                child.process.kill()
                child.process.wait()
            (self.pids_dir / f"{child.name}.pid").unlink(missing_ok=True)
            child.process = None


def stop_leftovers(pids_dir: Path, report: Callable[[str], None]) -> None:
    """Stop children an earlier `up` left running (it was killed without its stop
    sequence): each pid file's process, if it still is a kubeling process."""
    if not pids_dir.is_dir():
        return
    for pid_file in sorted(pids_dir.glob("*.pid")):
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            pid = 0
        if pid > 0 and alive(pid) and any("kubeling" in part for part in command_line(pid)):
            report(f"stopping {pid_file.stem} (pid {pid}) left running by an earlier up")
            terminate(pid)
        pid_file.unlink(missing_ok=True)
