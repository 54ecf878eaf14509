"""cri/runtime_service/events.py without a server: publication order, what each
event carries, slow subscribers, the supervisor's exits, cancel and close (the RPC
over a real server is in tests/integration/cri/test_events.py)."""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cri.api import api_pb2
from cri.errors import ResourceExhausted, Unavailable
from cri.runtime_service import events as events_module
from cri.runtime_service.events import ContainerEvents, End, Subscription
from cri.supervisor import Event, EventKind
from cri.supervisor import Unavailable as SupervisorUnavailable

TIMEOUT = 10.0
CREATED = api_pb2.CONTAINER_CREATED_EVENT
STARTED = api_pb2.CONTAINER_STARTED_EVENT
STOPPED = api_pb2.CONTAINER_STOPPED_EVENT


class FakeStream:
    def __init__(self) -> None:
        self.items: queue.Queue[Event | None] = queue.Queue()

    def next(self, timeout: float | None = None) -> Event:
        item = self.items.get(timeout=TIMEOUT)
        if item is None:
            self.items.put(None)
            raise SupervisorUnavailable("event stream: closed")
        return item

    def close(self) -> None:
        self.items.put(None)


class FakeSupervisor:
    def __init__(self) -> None:
        self.streams: queue.Queue[FakeStream] = queue.Queue()

    def events(self) -> FakeStream:
        stream = FakeStream()
        self.streams.put(stream)
        return stream


class Calls:
    """Records the bus's calls back into the servicers, for waiting on them."""

    def __init__(self) -> None:
        self.seen: queue.Queue[tuple[str, str]] = queue.Queue()

    def refresh(self, container_id: str) -> None:
        self.seen.put(("refresh", container_id))

    def refresh_all(self) -> None:
        self.seen.put(("refresh_all", ""))

    def next(self) -> tuple[str, str]:
        return self.seen.get(timeout=TIMEOUT)


def make_bus(
    calls: Calls | None = None,
    *,
    sandbox_status: Callable[[str], api_pb2.PodSandboxStatus | None] | None = None,
) -> tuple[ContainerEvents, FakeSupervisor]:
    supervisor = FakeSupervisor()
    calls = calls or Calls()
    clock = itertools.count(100)

    def status(sandbox_id: str) -> api_pb2.PodSandboxStatus | None:
        return api_pb2.PodSandboxStatus(id=sandbox_id)

    def statuses(sandbox_id: str) -> list[api_pb2.ContainerStatus]:
        return [api_pb2.ContainerStatus(id=f"{sandbox_id}-c")]

    bus = ContainerEvents(
        supervisor=supervisor,  # type: ignore[arg-type]
        sandbox_status=sandbox_status or status,
        container_statuses=statuses,
        refresh=calls.refresh,
        refresh_all=calls.refresh_all,
        clock=lambda: next(clock),
    )
    return bus, supervisor


def get(subscription: Subscription) -> api_pb2.ContainerEventResponse:
    got: list[api_pb2.ContainerEventResponse | End] = []
    thread = threading.Thread(target=lambda: got.append(subscription.get()), daemon=True)
    thread.start()
    thread.join(TIMEOUT)
    assert got, "no event"
    item = got[0]
    assert not isinstance(item, End), item
    return item


def test_nothing_runs_and_nothing_is_kept_without_subscribers() -> None:
    bus, supervisor = make_bus()
    bus.publish("c1", "s1", CREATED)
    assert supervisor.streams.empty()
    subscription = bus.subscribe()
    bus.publish("c1", "s1", STARTED)
    event = get(subscription)
    assert (event.container_id, event.container_event_type) == ("c1", STARTED)
    bus.close()


def test_events_arrive_in_order_with_the_pod_and_its_containers() -> None:
    bus, _ = make_bus()
    first, second = bus.subscribe(), bus.subscribe()
    for kind in (CREATED, STARTED, STOPPED):
        bus.publish("c1", "s1", kind)
    for subscription in (first, second):
        received = [get(subscription) for _ in range(3)]
        assert [e.container_event_type for e in received] == [CREATED, STARTED, STOPPED]
        assert [e.created_at for e in received] == [100, 101, 102]
        assert all(e.pod_sandbox_status.id == "s1" for e in received)
        assert all([c.id for c in e.containers_statuses] == ["s1-c"] for e in received)
    bus.close()


def test_an_event_goes_out_even_when_its_pod_cannot_be_described() -> None:
    def broken(sandbox_id: str) -> api_pb2.PodSandboxStatus | None:
        raise RuntimeError("no")

    bus, _ = make_bus(sandbox_status=broken)
    subscription = bus.subscribe()
    bus.publish("c1", "s1", CREATED)
    event = get(subscription)
    assert event.container_id == "c1"
    assert not event.HasField("pod_sandbox_status")
    bus.close()


def test_a_subscriber_that_does_not_read_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events_module, "MAX_BACKLOG", 3)
    subscription = Subscription()
    for _ in range(3):
        assert subscription.put(api_pb2.ContainerEventResponse())
    assert not subscription.put(api_pb2.ContainerEventResponse())
    assert subscription.get() is End.OVERFLOW
    assert not subscription.put(api_pb2.ContainerEventResponse())


def test_exits_reported_by_the_supervisor_refresh_the_container() -> None:
    calls = Calls()
    bus, supervisor = make_bus(calls)
    bus.subscribe()
    stream = supervisor.streams.get(timeout=TIMEOUT)
    assert calls.next() == ("refresh_all", "")  # what exited while not connected
    stream.items.put(Event(EventKind.STARTED, "c1", 7, 1))
    stream.items.put(Event(EventKind.EXITED, "c1", 7, 2, exit_code=3))
    assert calls.next() == ("refresh", "c1")
    # The supervisor goes away: the bus connects again and refreshes everything.
    stream.close()
    again = supervisor.streams.get(timeout=TIMEOUT)
    assert calls.next() == ("refresh_all", "")
    again.items.put(Event(EventKind.EXITED, "c2", 8, 3, exit_code=0))
    assert calls.next() == ("refresh", "c2")
    bus.close()


class FakeContext:
    def __init__(self, active: bool = True) -> None:
        self.callbacks: list[Callable[[], None]] = []
        self.metadata: list[Any] = []
        self.active = active

    def add_callback(self, callback: Callable[[], None]) -> bool:
        if self.active:
            self.callbacks.append(callback)
        return self.active

    def send_initial_metadata(self, metadata: Any) -> None:
        self.metadata.append(metadata)


def run_stream(bus: ContainerEvents, context: FakeContext) -> tuple[threading.Thread, list[Any]]:
    """Consume `bus.stream(context)` on a thread: the events, then the error if any."""
    got: list[Any] = []

    def consume() -> None:
        stream: Iterator[api_pb2.ContainerEventResponse] = bus.stream(context)  # type: ignore[arg-type]
        try:
            got.extend(stream)
        except Exception as e:
            got.append(e)

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    return thread, got


def wait_until(predicate: Callable[[], bool]) -> None:
    done = threading.Event()
    for _ in range(1000):
        if predicate():
            return
        done.wait(0.01)
    raise AssertionError("timed out")


def test_a_cancel_ends_the_stream_quietly() -> None:
    bus, _ = make_bus()
    context = FakeContext()
    thread, got = run_stream(bus, context)
    wait_until(lambda: bool(context.metadata))  # headers once subscribed
    bus.publish("c1", "s1", CREATED)
    wait_until(lambda: len(got) == 1)
    context.callbacks[0]()  # the client cancels
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    assert [e.container_event_type for e in got] == [CREATED]
    bus.publish("c1", "s1", STARTED)  # nobody listens any more: dropped
    bus.close()


def test_an_rpc_that_ended_before_subscribing_gets_nothing() -> None:
    bus, _ = make_bus()
    thread, got = run_stream(bus, FakeContext(active=False))
    thread.join(TIMEOUT)
    assert got == []
    bus.close()


def test_close_ends_every_stream_with_unavailable_and_refuses_new_ones() -> None:
    bus, supervisor = make_bus()
    contexts = [FakeContext(), FakeContext()]
    runs = [run_stream(bus, context) for context in contexts]
    wait_until(lambda: all(context.metadata for context in contexts))
    supervisor.streams.get(timeout=TIMEOUT)
    bus.close()
    for thread, got in runs:
        thread.join(TIMEOUT)
        assert not thread.is_alive()
        assert len(got) == 1 and isinstance(got[0], Unavailable)
        assert "closed by server" in str(got[0])
    with pytest.raises(Unavailable):
        bus.subscribe()
    bus.close()  # again: nothing to do


def test_a_stream_that_fell_behind_ends_with_resource_exhausted() -> None:
    bus, _ = make_bus()
    subscribe = bus.subscribe

    def full() -> Subscription:
        subscription = subscribe()
        subscription.end(End.OVERFLOW)  # as the dispatcher does when its backlog is full
        return subscription

    bus.subscribe = full  # type: ignore[method-assign]
    with pytest.raises(ResourceExhausted, match="not read"):
        list(bus.stream(FakeContext()))  # type: ignore[arg-type]
    bus.close()
