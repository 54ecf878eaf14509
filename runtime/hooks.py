"""Running OCI hooks: the hook's path with its args and env, the container state
JSON on stdin, killed after `timeout` seconds.

Which process runs which hook (runtime spec "Lifecycle"). The state on stdin says
"created" for the hooks that run during create, as the runtime-tools validation
suite requires (and crun does; runc says "creating"):
  prestart, createRuntime   the runtime (parent), after namespaces exist, before pivot_root
  createContainer           container init, in its namespaces, before pivot_root
  startContainer            container init, after `start`, just before exec
  poststart                 the runtime, after `start` (a failure is only a warning)
  poststop                  the runtime, on delete (a failure is only a warning)
fork/exec is used rather than `subprocess`, whose import costs more than a hook run.
"""

from __future__ import annotations

import os
import time

from runtime import jsonio as json
from runtime.errors import RuntimeFailure
from runtime.signals import signal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class HookError(RuntimeFailure):
    pass


def run_hooks(hooks: dict[str, Any], kind: str, state: dict[str, Any]) -> None:
    for index, hook in enumerate(hooks.get(kind, [])):
        run_hook(hook, state, f"{kind}[{index}]")


def run_hook(hook: dict[str, Any], state: dict[str, Any], name: str) -> None:
    path = hook["path"]
    args = hook.get("args") or [path]
    env = dict(item.split("=", 1) for item in hook.get("env", []))
    timeout = hook.get("timeout")
    stdin_read, stdin_write = os.pipe()
    err_read, err_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.dup2(stdin_read, 0)
            os.dup2(err_write, 2)
            os.execve(path, args, env)
        except BaseException as e:  # never unwind into the runtime's own stack
            os.write(2, f"exec {path}: {getattr(e, 'strerror', None) or e}".encode())
        os._exit(127)
    os.close(stdin_read)
    os.close(err_write)
    try:
        os.write(stdin_write, json.dumps(state).encode())
    except BrokenPipeError:
        pass
    os.close(stdin_write)
    deadline = None if timeout is None else time.monotonic() + timeout
    status = _wait(pid, deadline)
    if status is None:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    # Not blocking: a process the hook left behind may hold the pipe open forever.
    os.set_blocking(err_read, False)
    try:
        stderr = os.read(err_read, 4096).decode(errors="replace").strip()
    except BlockingIOError:
        stderr = ""
    os.close(err_read)
    if status is None:
        raise HookError(f"hook {name} ({path}) timed out after {timeout}s")
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        detail = f": {stderr}" if stderr else ""
        raise HookError(f"hook {name} ({path}) exited with status {code}{detail}")


def _wait(pid: int, deadline: float | None) -> int | None:
    if deadline is None:
        return os.waitpid(pid, 0)[1]
    delay = 0.001
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() >= deadline:
            return None
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
