"""How `create` has the runtime make a container, and with what stdio: three pipes
(`create_with_pipes`), or a terminal when the bundle's process asks for one
(`wants_terminal`, `create_with_terminal`: the runtime sends the pty master to a
console socket of ours). ContainerManager.create (containers.py) saves the record
first, then copies what arrives on our ends to the container's log.

Both call `Runtime.create(monitor=False)`, after which init is our child (we are
its subreaper), blocked until `start`. The container's ends are closed here once the
runtime has them; ours are the caller's to close if anything after fails
(`create_with_pipes` appends them to `ours` as it makes them, so that a failure half
way leaks none).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile

from cri.supervisor.errors import SupervisorError
from runtime import state as runtime_state
from runtime.container import Runtime
from runtime.tty import receive_console

CONSOLE_WAIT_SECONDS = 5.0


def wants_terminal(bundle: str) -> bool:
    """Whether the bundle's process asks for a terminal (config.json process.terminal);
    an unreadable config is left for the runtime to report."""
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            config = json.load(f)
        return bool((config.get("process") or {}).get("terminal"))
    except (OSError, ValueError, AttributeError):
        return False


def create_with_pipes(
    runtime: Runtime, container_id: str, *, bundle: str, with_stdin: bool, ours: list[int]
) -> tuple[runtime_state.ContainerState, int, int, int]:
    """Create with three pipes as stdio; (created, stdout and stderr read ends,
    stdin write end or -1). Our ends are appended to `ours` as they are made."""
    out_read, out_write = os.pipe()
    ours.append(out_read)
    err_read, err_write = os.pipe()
    ours.append(err_read)
    in_write = -1
    if with_stdin:
        in_read, in_write = os.pipe()
        ours.append(in_write)
    else:
        in_read = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        created = runtime.create(
            container_id, bundle, monitor=False, stdio=(in_read, out_write, err_write)
        )
    finally:
        for fd in (in_read, out_write, err_write):
            os.close(fd)
    return created, out_read, err_read, in_write


def create_with_terminal(
    runtime: Runtime, container_id: str, bundle: str
) -> tuple[runtime_state.ContainerState, int]:
    """Create a container whose process has a terminal: the runtime sends the pty
    master to a console socket of ours. (created, the master)."""
    directory = tempfile.mkdtemp(prefix="kubeling-console-")
    path = os.path.join(directory, "console.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        listener.bind(path)
        listener.listen(1)
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        try:
            created = runtime.create(
                container_id, bundle, monitor=False, console_socket=path,
                stdio=(null, null, null),
            )  # fmt: skip
        finally:
            os.close(null)
        try:
            # The runtime connected before it forked and init has sent the
            # master by the time create returns: no waiting here.
            master = receive_console(listener, CONSOLE_WAIT_SECONDS)
        except OSError as e:
            runtime.delete(container_id, force=True)
            raise SupervisorError(f"create {container_id}: no terminal: {e}") from None
    finally:
        listener.close()
        shutil.rmtree(directory, ignore_errors=True)
    return created, master
