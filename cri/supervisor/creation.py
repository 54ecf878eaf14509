"""How `create` has the runtime make a container, and with what stdio: three pipes
(`PipedCreation`, step by step on the supervisor's loop), or a terminal when the
bundle's process asks for one (`wants_terminal`, `create_with_terminal`, at once:
the runtime sends the pty master to a console socket of ours, and terminals are
rare enough not to be worth the steps). ContainerManager.create (containers.py)
saves the record first, then copies what arrives on our ends to the container's log.

Both have the runtime create with monitor=False, after which init is our child (we
are its subreaper), blocked until `start`. The container's ends are closed here
once the runtime has forked; ours are the caller's to close if anything after fails.
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


class PipedCreation:
    """A create with three pipes as stdio, run a step at a time by the supervisor's
    loop so that other requests (other creates among them) go on while init sets
    itself up. `advance` runs it until it waits (the fd to wait for) or is done
    (None; `created` is set); an error it raises ends it. Our ends (`ours`: stdout
    and stderr read ends, the stdin write end or -1) are the caller's to close if
    it fails; the container's ends are closed once the runtime has forked."""

    def __init__(
        self, runtime: Runtime, container_id: str, *, bundle: str, with_stdin: bool
    ) -> None:
        self.ours: list[int] = []
        theirs: list[int] = []
        try:
            out_read, out_write = os.pipe()
            self.ours.append(out_read)
            theirs.append(out_write)
            err_read, err_write = os.pipe()
            self.ours.append(err_read)
            theirs.append(err_write)
            if with_stdin:
                in_read, self.in_write = os.pipe()
                self.ours.append(self.in_write)
            else:
                in_read, self.in_write = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), -1
            theirs.append(in_read)
        except OSError:
            for fd in self.ours + theirs:
                os.close(fd)
            raise
        self.out_read, self.err_read = out_read, err_read
        self._theirs = theirs
        self._steps = runtime.create_steps(
            container_id, bundle, monitor=False, stdio=(in_read, out_write, err_write),
            caller_reaps=True,
        )  # fmt: skip
        self.created: runtime_state.ContainerState | None = None

    def advance(self) -> int | None:
        try:
            wait = next(self._steps)
        except StopIteration as done:
            self.created = done.value
            return None
        finally:
            self._close_theirs()  # after the first step the child has its copies
        return wait.fd

    def abandon(self) -> None:
        """Undo a create that is not done (the supervisor is going away)."""
        self._steps.close()
        self._close_theirs()

    def _close_theirs(self) -> None:
        for fd in self._theirs:
            os.close(fd)
        self._theirs = []


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
