"""Termination messages: what a container wrote to its terminationMessagePath (the
host file the kubelet mounted there), or, under FallbackToLogsOnError, the tail of its
log when it failed and wrote nothing, with the kubelet's size limits."""

from __future__ import annotations

from pathlib import Path

from kubelet.pods.runtime import ContainerInfo, ContainerState

MAX_MESSAGE_BYTES = 4096  # of the message file
MAX_LOG_LINES = 80  # of the log fallback
MAX_LOG_BYTES = 2048


def _read_tail(path: Path, limit: int) -> bytes:
    with open(path, "rb") as file:
        file.seek(0, 2)
        size = file.tell()
        file.seek(max(0, size - limit))
        return file.read(limit)


def log_tail(path: Path, *, lines: int = MAX_LOG_LINES, limit: int = MAX_LOG_BYTES) -> str:
    """The last `lines` lines (at most `limit` bytes) of a CRI log file's content:
    `<timestamp> <stream> <F|P> <content>` records, partial (P) ones joined."""
    try:
        raw = _read_tail(path, 64 * 1024)
    except OSError:
        return ""
    text: list[str] = []
    partial = ""
    for record in raw.decode(errors="replace").splitlines():
        fields = record.split(" ", 3)
        if len(fields) < 3:
            continue
        content = fields[3] if len(fields) == 4 else ""
        if fields[2] == "P":
            partial += content
            continue
        text.append(partial + content)
        partial = ""
    if partial:
        text.append(partial)
    tail = "\n".join(text[-lines:])
    if text:
        tail += "\n"
    encoded = tail.encode()
    return encoded[-limit:].decode(errors="ignore")


def termination_message(info: ContainerInfo) -> str:
    if info.state is not ContainerState.EXITED:
        return ""
    message = ""
    if info.termination_message_path:
        try:
            message = _read_tail(Path(info.termination_message_path), MAX_MESSAGE_BYTES).decode(
                errors="replace"
            )
        except OSError:
            message = ""
        if len(message.encode()) > MAX_MESSAGE_BYTES:
            message = message.encode()[:MAX_MESSAGE_BYTES].decode(errors="ignore")
    if (
        not message
        and info.termination_message_policy == "FallbackToLogsOnError"
        and info.exit_code != 0
        and info.log_path
    ):
        message = log_tail(Path(info.log_path))
    return message
