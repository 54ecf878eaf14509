"""Reading and writing cgroup files, creating and removing cgroup directories.

Owns: the only `os.open`/`os.write`/`os.rmdir` calls of the package, and the
error messages they produce ("write 1048576 to <dir>/memory.limit_in_bytes:
EBUSY (Device or resource busy)").
Doesn't own: which file gets which value (the controller modules).

Every function takes the cgroup directory as a parameter. A value is written
with one unbuffered write(2) (cgroupfs parses each write as one command) to a
file opened without O_CREAT: a missing file is an error (ENOENT), never a new
file, both on cgroupfs and in test trees.
"""

from __future__ import annotations

import errno as _errno
import os
import time

from runtime.cgroups.base import CgroupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


def describe(err: OSError) -> str:
    """'EBUSY (Device or resource busy)' for an OSError."""
    code = err.errno or 0
    name = _errno.errorcode.get(code, str(code))
    return f"{name} ({os.strerror(code)})"


def write_file(cgroup_dir: str, name: str, value: str) -> None:
    """Write `value` to `cgroup_dir/name` in a single write(2)."""
    path = cgroup_dir + "/" + name
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
    except OSError as e:
        raise CgroupError(f"write {value} to {path}: {describe(e)}", e.errno) from e


def read_file(cgroup_dir: str, name: str) -> str | None:
    """The contents of `cgroup_dir/name`, or None if it cannot be read."""
    try:
        fd = os.open(cgroup_dir + "/" + name, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")
    except OSError:
        return None
    finally:
        os.close(fd)


def exists(cgroup_dir: str, name: str) -> bool:
    return os.path.exists(cgroup_dir + "/" + name)


def read_int(cgroup_dir: str, name: str) -> int | None:
    """An integer file; "max" and unreadable files give None."""
    text = read_file(cgroup_dir, name)
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def read_keyed(cgroup_dir: str, name: str) -> dict[str, int]:
    """A flat-keyed file ("key value" per line) as a dict; {} if missing."""
    text = read_file(cgroup_dir, name)
    result: dict[str, int] = {}
    if text is None:
        return result
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2:
            try:
                result[fields[0]] = int(fields[1])
            except ValueError:
                pass
    return result


def make_dirs(path: str) -> None:
    """mkdir -p; an existing directory is fine."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise CgroupError(f"mkdir {path}: {describe(e)}", e.errno) from e


def read_pids(cgroup_dir: str) -> set[int]:
    """Pids in cgroup.procs of `cgroup_dir` and every descendant; {} if missing."""
    pids: set[int] = set()
    for dirpath, _dirnames, _files in os.walk(cgroup_dir):
        text = read_file(dirpath, "cgroup.procs")
        if text:
            pids.update(int(p) for p in text.split() if p.isdigit())
    return pids


def remove_tree(
    cgroup_dir: str,
    *,
    timeout: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """rmdir `cgroup_dir` and its descendants, children first.

    A cgroup whose processes were just killed stays busy (EBUSY) until they
    are reaped, so EBUSY is retried until `timeout`. A missing directory is
    fine. Only directories are removed: cgroupfs control files vanish with
    their directory.
    """
    deadline = clock() + timeout
    delay = 0.001
    while True:
        try:
            dirs = [dirpath for dirpath, _d, _f in os.walk(cgroup_dir, topdown=False)]
            for path in dirs:
                try:
                    os.rmdir(path)
                except FileNotFoundError:
                    pass
            return
        except OSError as e:
            if e.errno != _errno.EBUSY or clock() >= deadline:
                raise CgroupError(
                    f"rmdir {e.filename or cgroup_dir}: {describe(e)}", e.errno
                ) from e
        sleep(delay)
        delay = min(delay * 2, 0.05)
