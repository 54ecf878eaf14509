"""ExecSync and ReopenContainerLog (containerd: internal/cri/server/container_execsync.go,
container_log_reopen.go): the two container RPCs the node supervisor answers for a
running container, by running a command in it to completion or by reopening its log
file (after the kubelet rotated it).

Both need the container RUNNING (by its up-to-date record) and translate the
supervisor's errors: its InvalidState and NotFound become ours. ExecSync's timeout is
the supervisor's to enforce; a command that runs past it is DEADLINE_EXCEEDED.
Exec (streamed) is streaming.py's.
"""

from __future__ import annotations

from cri.api import api_pb2
from cri.errors import DeadlineExceeded, InvalidArgument
from cri.runtime_service.containers import Containers
from cri.store import ContainerState, NotFound
from cri.supervisor import InvalidState as SupervisorInvalidState
from cri.supervisor import NotFound as SupervisorNotFound
from runtime import errors as runtime_errors


def reopen_container_log(containers: Containers, container_id: str) -> None:
    """ReopenContainerLog: the supervisor closes and reopens the container's log
    file (after the kubelet rotated it); only for a running container."""
    record = containers.current(container_id)
    if record.state is not ContainerState.RUNNING:
        raise runtime_errors.InvalidState(
            f"container {record.id} is {record.state.value}, not RUNNING"
        )
    try:
        containers.node.supervisor.reopen_log(record.id)
    except SupervisorInvalidState as e:
        raise runtime_errors.InvalidState(str(e)) from None
    except SupervisorNotFound as e:
        raise NotFound(str(e)) from None


def exec_sync(containers: Containers, request: api_pb2.ExecSyncRequest) -> api_pb2.ExecSyncResponse:
    if not request.cmd:
        raise InvalidArgument("cmd: required")
    record = containers.current(request.container_id)
    if record.state is not ContainerState.RUNNING:
        raise runtime_errors.InvalidState(
            f"container {record.id} is {record.state.value}, not RUNNING"
        )
    try:
        result = containers.node.supervisor.exec_sync(
            record.id, list(request.cmd), timeout=float(max(request.timeout, 0))
        )
    except SupervisorInvalidState as e:
        raise runtime_errors.InvalidState(str(e)) from None
    except SupervisorNotFound as e:
        raise NotFound(str(e)) from None
    if result.timed_out:
        raise DeadlineExceeded(f"command {list(request.cmd)!r} timed out after {request.timeout} s")
    return api_pb2.ExecSyncResponse(
        stdout=result.stdout, stderr=result.stderr, exit_code=result.exit_code
    )
