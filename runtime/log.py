"""The runtime's log, in runc's shape: `--log FILE` and `--log-format text|json`.

JSON lines are {"level", "msg", "time"} as runc writes them (containerd reads the
last error line from this file when a runtime call fails). Without --log, lines go
to stderr. The `logging` module is not used: its import alone costs more than a
container start's budget allows.
"""

from __future__ import annotations

import os
import sys
import time

from runtime import jsonio as json

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class _Config:
    __slots__ = ("format", "level", "path")

    def __init__(self) -> None:
        self.path = ""
        self.format = "text"
        self.level = _LEVELS["warning"]


_config = _Config()


def configure(*, path: str = "", log_format: str = "text", debug: bool = False) -> None:
    if log_format not in ("text", "json"):
        raise ValueError(f"unknown log format {log_format!r} (text or json)")
    _config.path = path
    _config.format = log_format
    _config.level = _LEVELS["debug" if debug else "warning"]


def _timestamp() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e9):09d}Z"


def emit(level: str, message: str) -> None:
    if _LEVELS[level] < _config.level:
        return
    if _config.format == "json":
        line = json.dumps({"level": level, "msg": message, "time": _timestamp()})
    else:
        line = f'time="{_timestamp()}" level={level} msg="{message}"'
    data = (line + "\n").encode()
    if _config.path:
        try:
            fd = os.open(_config.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        except OSError:
            fd = -1
        if fd >= 0:
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            return
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def has_file() -> bool:
    return bool(_config.path)


def debug(message: str) -> None:
    emit("debug", message)


def warning(message: str) -> None:
    emit("warning", message)


def error(message: str) -> None:
    emit("error", message)
