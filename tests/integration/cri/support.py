"""Helpers shared by the CRI integration tests: commands, `ip -j` output, a pod CIDR
no route or address of the host overlaps, mounts and processes."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import random
import subprocess
from collections.abc import Callable
from typing import Any

from tests.integration.runtime.support import alive as alive
from tests.integration.runtime.support import wait_for as _wait_for


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: exit {result.returncode}: {result.stderr}")
    return result


def in_netns(netns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run("nsenter", f"--net={netns}", *argv, check=check)


def ip_json(*argv: str, netns: str | None = None) -> list[dict[str, Any]]:
    command = ("ip", "-j", *argv)
    result = in_netns(netns, *command) if netns else run(*command)
    found: list[dict[str, Any]] = json.loads(result.stdout or "[]")
    return found


def free_cidr(second_octet: int) -> str:
    """A /24 of 10.<second_octet>.0.0/16 that no route or address of the host overlaps."""
    taken = []
    for entry in ip_json("-4", "route", "show", "table", "all"):
        dst = str(entry.get("dst", ""))
        if dst and dst != "default":
            with contextlib.suppress(ValueError):
                taken.append(ipaddress.ip_network(dst, strict=False))
    for iface in ip_json("-4", "addr", "show"):
        for info in iface.get("addr_info", []):
            taken.append(ipaddress.ip_network(f"{info['local']}/{info['prefixlen']}", strict=False))
    candidates = [ipaddress.ip_network(f"10.{second_octet}.{n}.0/24") for n in range(256)]
    random.shuffle(candidates)
    for candidate in candidates:
        if not any(candidate.overlaps(other) for other in taken):
            return str(candidate)
    raise AssertionError(f"no free /24 in 10.{second_octet}.0.0/16")


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    return _wait_for(predicate, what, timeout)


def mounted(fragment: str) -> list[str]:
    with open("/proc/self/mountinfo") as mountinfo:
        return [line.split()[4] for line in mountinfo if fragment in line.split()[4]]
