"""A container with process.terminal: the pty master arrives over --console-socket
(SCM_RIGHTS, as runc sends it) and the container's stdio is the pty slave."""

from __future__ import annotations

import array
import os
import select
import socket
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.root


def receive_fd(server: socket.socket) -> tuple[int, str]:
    connection, _ = server.accept()
    with connection:
        fds = array.array("i")
        message, ancillary, _, _ = connection.recvmsg(1024, socket.CMSG_SPACE(fds.itemsize))
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    assert len(fds) == 1
    return fds[0], message.decode()


def read_until_eof(fd: int, timeout: float = 10) -> str:
    output = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO once the slave side is closed
            break
        if not chunk:
            break
        output += chunk
    return output.decode(errors="replace")


def test_terminal_over_console_socket(tmp_path: Path, make_bundle: Any, runtime_cli: Any) -> None:
    script = "tty; [ -c /dev/console ] && echo console-ok; stty size"

    def edit(config: dict[str, Any]) -> None:
        config["process"]["terminal"] = True
        config["process"]["consoleSize"] = {"height": 24, "width": 100}

    bundle, cid = make_bundle(["sh", "-c", script], edit=edit)
    socket_path = tmp_path / "console.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(socket_path))
    server.listen(1)
    server.settimeout(10)
    with server:
        create = runtime_cli.popen(
            "create", "--bundle", str(bundle), "--console-socket", str(socket_path), cid
        )
        master, name = receive_fd(server)
        _, stderr = create.communicate(timeout=30)
        assert create.returncode == 0, stderr
    try:
        assert name.startswith("/dev/pts/")
        runtime_cli("start", cid)
        output = read_until_eof(master)
    finally:
        os.close(master)
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    assert lines[0].startswith("/dev/pts/"), output
    assert "console-ok" in lines
    assert "24 100" in lines


def test_terminal_without_console_socket_is_refused(make_bundle: Any, runtime_cli: Any) -> None:
    bundle, cid = make_bundle(["true"], edit=lambda config: config["process"].update(terminal=True))
    result = runtime_cli("create", "--bundle", str(bundle), cid, check=False)
    assert result.returncode == 1
    assert "console-socket" in result.stderr
    assert runtime_cli("state", cid, check=False).returncode == 1
