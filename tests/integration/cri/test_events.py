"""GetContainerEvents through the CRI server's gRPC stubs, against the real kernel
(root): the lifecycle of containers (one that exits on its own, one that exits at
once) and of their sandbox arrives in order with the pod's and the containers'
statuses, several clients see the same events, a client's cancel and the server's
shutdown end the streams. The server: conftest.py.
"""

from __future__ import annotations

import queue
import threading

import grpc
import pytest

from cri.api import api_pb2
from tests.integration.cri.support import NEEDS_CRI, Cri, wait_for

pytestmark = NEEDS_CRI

CREATED = api_pb2.CONTAINER_CREATED_EVENT
STARTED = api_pb2.CONTAINER_STARTED_EVENT
STOPPED = api_pb2.CONTAINER_STOPPED_EVENT
DELETED = api_pb2.CONTAINER_DELETED_EVENT
LIFECYCLE = [CREATED, STARTED, STOPPED, DELETED]
TIMEOUT = 10.0


class Watch:
    """One GetContainerEvents stream, read by a thread into a queue."""

    def __init__(self, cri: Cri) -> None:
        self.call = cri.runtime.GetContainerEvents(api_pb2.GetEventsRequest())
        self.call.initial_metadata()  # the server has subscribed us
        self.queue: queue.Queue[api_pb2.ContainerEventResponse | None] = queue.Queue()
        self.error: grpc.RpcError | None = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for event in self.call:
                self.queue.put(event)
        except grpc.RpcError as e:
            self.error = e
        finally:
            self.queue.put(None)

    def next(self) -> api_pb2.ContainerEventResponse:
        event = self.queue.get(timeout=TIMEOUT)
        assert event is not None, f"the stream ended: {self.error}"
        return event

    def until(
        self, container_id: str, kind: api_pb2.ContainerEventType
    ) -> list[api_pb2.ContainerEventResponse]:
        """Every event up to the one of `kind` for `container_id`, that one included."""
        seen = []
        while True:
            event = self.next()
            seen.append(event)
            if event.container_id == container_id and event.container_event_type == kind:
                return seen

    def ended(self) -> grpc.RpcError | None:
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive(), "the stream did not end"
        return self.error

    def cancel(self) -> None:
        self.call.cancel()
        self.ended()


def kinds(events: list[api_pb2.ContainerEventResponse], of: str) -> list[int]:
    return [e.container_event_type for e in events if e.container_id == of]


def statuses(event: api_pb2.ContainerEventResponse) -> dict[str, api_pb2.ContainerStatus]:
    return {status.id: status for status in event.containers_statuses}


def test_container_that_exits_on_its_own(cri: Cri) -> None:
    watch = Watch(cri)
    sandbox_id = cri.run_sandbox("job")
    container_id = cri.create(sandbox_id, "work", ["sh", "-c", "sleep 0.5; exit 3"])
    cri.start_container(container_id)
    events = watch.until(container_id, STOPPED)
    cri.runtime.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=container_id))
    events += watch.until(container_id, DELETED)

    assert kinds(events, sandbox_id) == [CREATED, STARTED]
    assert kinds(events, container_id) == LIFECYCLE
    assert [e.created_at for e in events] == sorted(e.created_at for e in events)
    for event in events:
        assert event.pod_sandbox_status.id == sandbox_id
        assert event.pod_sandbox_status.metadata.name == "job"
        assert event.pod_sandbox_status.state == api_pb2.SANDBOX_READY
    mine = [e for e in events if e.container_id == container_id]
    assert statuses(mine[0])[container_id].metadata.name == "work"
    exited = statuses(mine[2])[container_id]
    assert exited.state == api_pb2.CONTAINER_EXITED
    assert exited.exit_code == 3
    assert container_id not in statuses(mine[3])

    cri.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=sandbox_id))
    stopped = watch.until(sandbox_id, STOPPED)[-1]
    assert stopped.pod_sandbox_status.state == api_pb2.SANDBOX_NOTREADY
    cri.runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id))
    deleted = watch.until(sandbox_id, DELETED)[-1]
    assert not deleted.HasField("pod_sandbox_status")  # it is gone
    watch.cancel()


def test_every_container_gets_its_whole_lifecycle_in_order(cri: Cri) -> None:
    watch = Watch(cri)
    sandbox_id = cri.run_sandbox("fast")
    quick = cri.create(sandbox_id, "quick", ["true"])  # may exit before Start returns
    slow = cri.create(sandbox_id, "slow", ["sleep", "600"])
    cri.start_container(quick)
    cri.start_container(slow)
    events = watch.until(quick, STOPPED)
    cri.runtime.StopContainer(api_pb2.StopContainerRequest(container_id=slow, timeout=0))
    events += watch.until(slow, STOPPED)
    # Removing the sandbox removes both containers.
    cri.runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id))
    events += watch.until(sandbox_id, DELETED)
    assert kinds(events, quick) == LIFECYCLE
    assert kinds(events, slow) == LIFECYCLE
    assert kinds(events, sandbox_id) == [CREATED, STARTED, STOPPED, DELETED]
    # RemovePodSandbox: the sandbox stops (after its containers), then its
    # containers go, then the sandbox.
    order = [(e.container_id, e.container_event_type) for e in events]
    assert order.index((sandbox_id, STOPPED)) > order.index((slow, STOPPED))
    assert order.index((sandbox_id, STOPPED)) < order.index((quick, DELETED))
    assert order[-1] == (sandbox_id, DELETED)
    watch.cancel()


def test_several_clients_and_a_cancel(cri: Cri) -> None:
    first, second = Watch(cri), Watch(cri)
    sandbox_id = cri.run_sandbox("two")
    assert kinds(first.until(sandbox_id, STARTED), sandbox_id) == [CREATED, STARTED]
    assert kinds(second.until(sandbox_id, STARTED), sandbox_id) == [CREATED, STARTED]

    first.cancel()
    assert first.error is not None and first.error.code() == grpc.StatusCode.CANCELLED
    container_id = cri.create(sandbox_id, "after", ["true"])
    assert kinds(second.until(container_id, CREATED), container_id) == [CREATED]
    third = Watch(cri)  # a new client after a cancel is served too
    cri.start_container(container_id)
    assert kinds(second.until(container_id, STOPPED), container_id) == [STARTED, STOPPED]
    assert kinds(third.until(container_id, STOPPED), container_id) == [STARTED, STOPPED]
    second.cancel()
    third.cancel()


def test_server_shutdown_ends_every_stream(cri: Cri) -> None:
    watches = [Watch(cri), Watch(cri)]
    sandbox_id = cri.run_sandbox("bye")
    for watch in watches:
        watch.until(sandbox_id, STARTED)
    assert cri.service is not None
    cri.service.close()
    for watch in watches:
        error = watch.ended()
        assert error is not None and error.code() == grpc.StatusCode.UNAVAILABLE
        assert "closed by server" in str(error.details())
    # Its threads are gone; a new subscription is refused the same way.
    wait_for(
        lambda: not {t.name for t in threading.enumerate()} & {"cri-events", "cri-exits"},
        "the event threads to end",
    )
    with pytest.raises(grpc.RpcError) as refused:
        next(iter(cri.runtime.GetContainerEvents(api_pb2.GetEventsRequest(), timeout=TIMEOUT)))
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    # The rest of the server still works.
    assert cri.sandbox_status(sandbox_id).status.state == api_pb2.SANDBOX_READY
