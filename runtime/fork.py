"""Forking a child that can never return into its parent's code.

After os.fork() the child holds a copy of the caller's whole stack: an exception
escaping the child's work would unwind into the parent's `except`/`finally`
blocks and run them twice, e.g. `create`'s undo deleting the container it is
setting up. `fork_child` runs the child's function and ends the child with
os._exit whatever happens.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


def fork_child(target: Callable[[], object]) -> int:
    """Fork; in the child run `target` then exit (status 0, or 1 if it raised).
    Returns the child's pid in the parent."""
    pid = os.fork()
    if pid != 0:
        return pid
    status = 1
    try:
        target()
        status = 0
    except BaseException as e:  # last resort: nobody else will report it
        try:
            os.write(2, f"kubeling-runtime: child process failed: {e}\n".encode())
        except BaseException:
            pass
    finally:
        os._exit(status)
