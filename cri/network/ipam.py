"""Pod IP allocation, persisted as one file per address (the host-local model).

Layout of the allocator's directory (one per pod CIDR):

    <dir>/<ip>             reservation: the owner (sandbox id) and a newline
    <dir>/last_reserved    the address handed out last, to continue round-robin
    <dir>/lock             flock(2)ed around every operation

Rules a reader must know:
- A reservation is made by writing a temporary file with the owner and hard-linking
  it to <dir>/<ip>: link(2) fails if the name exists, so an address is never handed
  out twice, even across processes, and a crashed process leaves either no file or
  a complete one. Temporary files found under the lock belong to a crashed writer
  and are removed. Nothing is fsynced: a crash of the machine ends every pod the
  addresses belong to, and a file it leaves empty still counts as in use (next
  rule); three fsyncs per pod, under the lock, were most of a pod's network setup.
- A file that names an address but cannot be read or is empty still counts as in
  use: when in doubt, an address is never reused.
- Allocation is round-robin from the last address handed out, so a pod that crash-
  loops does not get the address its predecessor just released (another pod may
  still be talking to it); the gateway (.1), the network and broadcast addresses and
  any `reserved` ones are never handed out.
- `allocate` is idempotent per owner: asking again returns the same address.

Concurrency: a threading lock for threads of this process, flock for other
processes; both held for the whole operation. Each operation reads the directory
once at most; `lookup` of an owner seen before reads only its file (a reservation
this process made or read, checked against the disk, so another process's changes
are never missed).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cri.network.errors import AddressesExhausted, NetworkError
from runtime.state import atomic_write

log = logging.getLogger(__name__)

LAST_RESERVED = "last_reserved"
LOCK = "lock"


class Allocator:
    """Hands out addresses of `network` to owners, persisted under `directory`."""

    def __init__(
        self,
        directory: Path,
        network: ipaddress.IPv4Network,
        *,
        reserved: Iterable[ipaddress.IPv4Address] = (),
    ) -> None:
        self.directory = directory
        self.network = network
        self.reserved = frozenset(reserved) | {network.network_address + 1}
        self._lock = threading.Lock()
        # owner -> the address last seen reserved for it; a hint, checked on use.
        self._seen: dict[str, ipaddress.IPv4Address] = {}
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    # -- queries ---------------------------------------------------------------

    def allocations(self) -> dict[ipaddress.IPv4Address, str]:
        """Every reservation on disk: address -> owner ("" if unreadable)."""
        with self._locked():
            return dict(self._scan())

    def lookup(self, owner: str) -> ipaddress.IPv4Address | None:
        """The address reserved for `owner`, if any."""
        with self._locked():
            seen = self._seen.get(owner)
            if seen is not None and self._holder(seen) == owner:
                return seen
            return self._find(owner, self._scan())

    # -- changes ---------------------------------------------------------------

    def allocate(self, owner: str) -> ipaddress.IPv4Address:
        """Reserve an address for `owner` (or return the one it has already)."""
        return self.reserve(owner)[0]

    def reserve(self, owner: str) -> tuple[ipaddress.IPv4Address, bool]:
        """`allocate`, and whether `owner` had the address already."""
        if not owner or "\n" in owner:
            raise NetworkError(f"allocate address: invalid owner {owner!r}")
        with self._locked():
            found = self._scan()
            existing = self._find(owner, found)
            if existing is not None:
                return existing, True
            used = {ip for ip, _ in found}
            for candidate in self._candidates():
                if candidate in used or candidate in self.reserved:
                    continue
                if self._reserve(candidate, owner):
                    atomic_write(
                        str(self.directory / LAST_RESERVED), f"{candidate}\n".encode(),
                        sync=False,
                    )  # fmt: skip
                    self._seen[owner] = candidate
                    log.debug("reserved %s", candidate, extra={"owner": owner})
                    return candidate, False
        raise AddressesExhausted(f"allocate address for {owner}: no free address in {self.network}")

    def release(self, owner: str) -> ipaddress.IPv4Address | None:
        """Drop every reservation of `owner`; return the address released, None if it
        had none (releasing twice is not an error)."""
        released: ipaddress.IPv4Address | None = None
        with self._locked():
            for ip, holder in self._scan():
                if holder == owner:
                    os.unlink(self.directory / str(ip))
                    released = ip
                    log.debug("released %s", ip, extra={"owner": owner})
            self._seen.pop(owner, None)
        return released

    # -- internals ---------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            fd = os.open(self.directory / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # also drops the flock

    def _scan(self) -> list[tuple[ipaddress.IPv4Address, str]]:
        """Every reservation (owner "" if unreadable); temporaries of crashed
        writers are removed on the way."""
        found = []
        with os.scandir(self.directory) as entries:
            for entry in entries:
                if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                    continue
                try:
                    ip = ipaddress.IPv4Address(entry.name)
                except ValueError:
                    continue  # lock, last_reserved
                owner = self._holder(ip)
                found.append((ip, owner))
                if owner:
                    self._seen[owner] = ip
        return found

    def _holder(self, ip: ipaddress.IPv4Address) -> str:
        try:
            return (self.directory / str(ip)).read_text().strip()
        except OSError:
            return ""

    @staticmethod
    def _find(
        owner: str, found: list[tuple[ipaddress.IPv4Address, str]]
    ) -> ipaddress.IPv4Address | None:
        for ip, holder in found:
            if holder == owner:
                return ip
        return None

    def _candidates(self) -> Iterator[ipaddress.IPv4Address]:
        """Every host address of the network once, starting after the last one handed
        out and wrapping around."""
        first = int(self.network.network_address) + 1
        last = int(self.network.broadcast_address) - 1
        count = last - first + 1
        start = first
        previous = self._last_reserved()
        if previous is not None and first <= int(previous) <= last:
            start = int(previous) + 1
        for offset in range(count):
            yield ipaddress.IPv4Address(first + (start - first + offset) % count)

    def _last_reserved(self) -> ipaddress.IPv4Address | None:
        try:
            return ipaddress.IPv4Address((self.directory / LAST_RESERVED).read_text().strip())
        except (OSError, ValueError):
            return None

    def _reserve(self, ip: ipaddress.IPv4Address, owner: str) -> bool:
        tmp = self.directory / f".{ip}.{os.getpid()}.{threading.get_ident()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, f"{owner}\n".encode())
        finally:
            os.close(fd)
        try:
            os.link(tmp, self.directory / str(ip))
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        return True
