"""The requests on a live container's output, input and terminal: `reopen_log` (after
the kubelet rotated its log), `stdin` (write to it, or close it), `attach` (a client's
copy of its output and a way into its stdin, attach.py) and `resize` (its terminal's
window). The pipes and the terminal are made at create (creation.py) and owned by the
container (container.py); here they are only used.

A re-adopted container's output is no longer captured and it has no stdin pipe
(adoption.py): `reopen_log`, `attach` and `stdin` refuse it. Like every request,
these are handled one at a time on the loop's thread.
"""

from __future__ import annotations

from cri.supervisor.attach import Attachment
from cri.supervisor.containers import ContainerManager
from cri.supervisor.errors import InvalidArgument, InvalidState
from cri.supervisor.protocol import Args, Status
from cri.supervisor.reactor import Reactor
from cri.supervisor.server import Handler, Reply
from runtime.tty import set_window_size


class ContainerStdio:
    """The stdio requests over the containers of one `ContainerManager`."""

    def __init__(self, *, containers: ContainerManager, reactor: Reactor) -> None:
        self.containers = containers
        self.reactor = reactor

    def handlers(self) -> dict[str, Handler]:
        return {
            "reopen_log": self.reopen_log, "stdin": self.write_stdin,
            "attach": self.attach, "resize": self.resize,
        }  # fmt: skip

    def reopen_log(self, args: Args, reply: Reply) -> None:
        container = self.containers.get(args.text("id"), "reopen_log")
        what = f"reopen_log {container.id}"
        if container.record.status is not Status.RUNNING:
            raise InvalidState(f"{what}: container is not running")
        if container.log is None:
            raise InvalidState(f"{what}: output not captured since the supervisor restarted")
        container.log.reopen()
        reply.ok()

    def write_stdin(self, args: Args, reply: Reply) -> None:
        container = self.containers.get(args.text("id"), "stdin")
        what = f"stdin {container.id}"
        data = args.data("data", b"")
        close = args.flag("close", False)
        if container.stdin is None:
            raise InvalidState(f"{what}: container has no stdin")
        if container.record.status is Status.STOPPED:
            raise InvalidState(f"{what}: container is stopped")
        container.stdin.write(data, close=close, what=what)
        reply.ok()

    def attach(self, args: Args, reply: Reply) -> None:
        """Copy the container's output to the client's pipes and its stdin into the
        container's until the container exits or the client leaves (cri.supervisor.attach)."""
        container = self.containers.get(args.text("id"), "attach")
        what = f"attach {container.id}"
        wanted = [args.flag(name, False) for name in ("stdin", "stdout", "stderr")]
        if len(args.fds) != sum(wanted):
            raise InvalidArgument(f"{what}: {sum(wanted)} file descriptors expected")
        if container.record.status is not Status.RUNNING:
            raise InvalidState(f"{what}: container is {container.record.status.value}")
        if container.log is None:
            raise InvalidState(f"{what}: output not captured since the supervisor restarted")
        given = iter(args.fds)
        stdin, stdout, stderr = (next(given) if flag else -1 for flag in wanted)
        if stdin >= 0 and container.stdin is None:
            stdin = -1  # the container has no stdin: the client's is not read
        args.fds = [fd for fd in args.fds if fd != -1 and fd not in (stdin, stdout, stderr)]
        attachment = Attachment(
            reactor=self.reactor, reply=reply, container_stdin=container.stdin,
            stdin=stdin, stdout=stdout, stderr=stderr,
            stdin_once=args.flag("stdin_once", False),
            on_finish=container.attachments.remove,
        )  # fmt: skip
        container.attachments.append(attachment)
        if stdin < 0 and stdout < 0 and stderr < 0:
            attachment.finish()

    def resize(self, args: Args, reply: Reply) -> None:
        """Set the size of the container's terminal (an attached client's window)."""
        container = self.containers.get(args.text("id"), "resize")
        width, height = args.integer("width"), args.integer("height")
        what = f"resize {container.id}"
        if container.terminal < 0:
            raise InvalidState(f"{what}: container has no terminal")
        if not (0 < width < 65536 and 0 < height < 65536):
            raise InvalidArgument(f"{what}: {width}x{height} is not a terminal size")
        set_window_size(container.terminal, width, height)
        reply.ok()
