"""RFC 3339 times as the Kubernetes API writes them (metav1.Time: seconds, UTC, "Z")
and reads them (with or without fractional seconds, to the nanosecond, or an offset)."""

from __future__ import annotations

import datetime


def format_time(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(int(seconds), tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time_ns(text: str) -> int:
    """Unix nanoseconds of an RFC 3339 time; ValueError if it is not one."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    head, dot, rest = value.partition(".")
    nanos = 0
    if dot:
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        if not digits:
            raise ValueError(f"time {text!r}: no digits after the point")
        nanos = int((digits + "000000000")[:9])
        value = head + rest
    moment = datetime.datetime.fromisoformat(value)
    if moment.tzinfo is None or "T" not in value.upper():
        raise ValueError(f"time {text!r}: not an RFC 3339 time")
    return int(moment.timestamp()) * 1_000_000_000 + nanos


def parse_time(text: str) -> float:
    return parse_time_ns(text) / 1e9
