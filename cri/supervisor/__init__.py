"""The node supervisor: the one process that forks, reaps and logs the containers.

`kubeling cri` starts it (`ensure_supervisor`) before the gRPC server has any
thread, and a later server process starts it again if it is gone. It is spawned, not
forked: `python -m cri.supervisor --state DIR --daemonize` in its own session,
re-parented to init, so it outlives any restart or kill -9 of the gRPC server,
and inherits nothing from it. The server talks to it over `<state>/supervisor.sock`
with JSON lines (`cri.supervisor.protocol`) through `SupervisorClient`.

What it does, single-threaded around one selector (`reactor`):
- creates containers from OCI bundles with the runtime's create (monitor=False,
  stdio=pipes): no per-container monitor process, the supervisor is the child
  subreaper of every container's init (`containers`, `creation`). A create runs
  in steps on the loop (`Runtime.create_steps`), so that while one container's
  init sets itself up the loop serves other requests and creates. Threads were
  the other way, but a process that forks must then fork from threads (a child
  copying another thread's held lock hangs) and share the reaping of children;
  steps need neither. With 100 pods starting at once the loop was busy 99% of the
  burst creating one container at a time (29 ms each, 60% of it waiting for init),
  and 55-70% with creates side by side (12.7 ms of the loop per create);
- reaps them on SIGCHLD, records each exit with `Runtime.record_exit`, and streams
  exit events to subscribers;
- copies each container's stdout/stderr to its CRI log file, reopened on request
  after rotation (`logs`); keeps the stdin pipe's write end when asked for one;
- runs ExecSync commands in forked helpers, output captured, with a timeout, and
  streaming Exec commands on the CRI server's pipes or a pty (`execsync`);
- copies a running container's output to attached clients and their stdin into it
  (`attach`, `stdio`);
- on a restart of the supervisor itself, re-adopts what is on disk (`records`,
  `adoption`).

Restart of the supervisor: the normal case is that it is never restarted while
containers run (it has no reason to: the gRPC server is what gets upgraded or
crashes). If it is, the new one is no longer the containers' parent: it learns of
their exits through pidfds, and their exit codes only if the runtime recorded them or
the zombie is still there to read, else 255. **Their stdout/stderr pipes are lost**:
output written after the restart is not logged (and the writer gets EPIPE or
SIGPIPE), and they cannot be attached to. See `adoption`. Also, the runtime forks
without exec, so a container created but not yet started holds copies of the
supervisor's descriptors (its listening socket among them) until it execs: after a
supervisor crash, connecting to the socket may succeed with nobody to answer, which
is why `ensure_supervisor` asks the instance lock, not the socket, whether one runs.

Figures, measured on the development VM (ext4 state directory, cgroup v1, busybox
containers; `tests/integration/cri/test_supervisor.py::test_twenty_containers`):
- spawning a supervisor until it listens: 110-125 ms, once per boot (a fork of the
  CLI would take 2 ms, but would copy whatever the caller has: spawning is chosen
  for safety, and so that any later server process can start it the same way);
- a call on a fresh connection: ~0.17 ms (0.03-0.09 ms on a kept connection);
- create+start of a container through it: median 19-35 ms, of which the runtime's
  own create+start is most (12-20 ms; a v1 cgroup attach alone is ~7 ms); the
  supervisor's share is ~4 ms, mostly fsync of its records (~0 on a tmpfs /run);
- memory: PSS 11.5-12 MiB idle and the same with 20 running containers (about
  10 KiB per container), i.e. ~0.6 MiB per pod at 20 pods. Most of it is the
  interpreter (4 MiB) and the modules it needs (stdlib ~4.5 MiB, runtime ~1.5 MiB);
  dropping dataclasses, typing and argparse would save ~1.3 MiB.
"""

from __future__ import annotations

from cri.supervisor.client import EventStream, SupervisorClient, ensure_supervisor
from cri.supervisor.errors import (
    AlreadyExists,
    InvalidArgument,
    InvalidState,
    NotFound,
    SupervisorError,
    Unavailable,
)
from cri.supervisor.protocol import ContainerInfo, Event, EventKind, ExecResult, Status

__all__ = [
    "AlreadyExists",
    "ContainerInfo",
    "Event",
    "EventKind",
    "EventStream",
    "ExecResult",
    "InvalidArgument",
    "InvalidState",
    "NotFound",
    "Status",
    "SupervisorClient",
    "SupervisorError",
    "Unavailable",
    "ensure_supervisor",
]
