"""GetContainerEvents: the container (and sandbox) lifecycle as a stream, as
containerd's CRI plugin serves it (internal/cri/server/container_events.go and its
generateAndSendContainerEvent calls).

Where the events come from. The CRI servicers announce each change where their record
changes, not the supervisor's `subscribe` stream alone: the supervisor knows its
processes but not the CRI's records, and its `created` comes before the record exists
and its `deleted` before the record is gone, so an event built from it would show
a pod without the container, or with one already deleted. So:
- CREATED: CreateContainer, once the record is written (RunPodSandbox for a sandbox,
  with STARTED right after: containerd does the same for the sandbox's id);
- STARTED and STOPPED: whoever moves a record to RUNNING or to EXITED
  (containers.py `_update`, under one lock with the store write, so each transition
  is announced once and in order; a record found EXITED without having been seen
  RUNNING announces STARTED first). The supervisor's `exited` events are what makes
  a container that exits on its own move at once: a watcher thread subscribes to the
  supervisor and refreshes that container's record. Its connection is re-made when it
  breaks (supervisor restart), and after every (re)connection every container not yet
  exited is refreshed, so no exit is missed between two connections;
  StopPodSandbox announces STOPPED for the sandbox when it turns NOTREADY;
- DELETED: RemoveContainer (RemovePodSandbox) once the record is gone.

Delivery: `publish` only queues a small notice (id, sandbox, type, time); one
dispatcher thread builds each response (PodSandboxStatus and the sandbox's
ContainerStatuses, as they are when it is built: at most a moment later than the
change) and hands it to every subscriber, in publication order. No subscriber, no
work: notices published while nobody listens are dropped, and the two threads start
with the first subscription. A subscriber that leaves `MAX_BACKLOG` events unread is
ended with RESOURCE_EXHAUSTED (it may subscribe again and relist, as the kubelet's
evented PLEG does on any stream error).

The response headers are sent as soon as the subscription exists, before any
event: a client that waits for them (`call.initial_metadata()`) knows that every
change it causes from then on is reported.

Ending. A client's cancel (the RPC context's callback) ends its stream at once; the
server's shutdown (`close`) ends every stream with UNAVAILABLE, as containerd does
("subscription closed by server"), stops both threads and waits for them. Each
stream occupies one of the gRPC server's worker threads while it lasts (the sync
gRPC server runs a handler per thread).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum

import grpc

from cri.api import api_pb2
from cri.errors import ResourceExhausted, Unavailable
from cri.supervisor import EventKind, EventStream, SupervisorClient, SupervisorError

log = logging.getLogger(__name__)

MAX_BACKLOG = 1024  # unread events before a subscriber is dropped
RECONNECT_DELAYS = (0.1, 0.2, 0.5, 1.0, 2.0)  # seconds, then the last one again
JOIN_TIMEOUT = 5.0

Publish = Callable[[str, str, api_pb2.ContainerEventType], None]


def no_events(container_id: str, sandbox_id: str, kind: api_pb2.ContainerEventType) -> None:
    """A `Publish` that drops everything (servicers built without a bus)."""


@dataclass(frozen=True, slots=True)
class Notice:
    container_id: str
    sandbox_id: str
    kind: api_pb2.ContainerEventType
    created_at: int  # ns since the epoch


class End(Enum):
    """Why a subscription ended."""

    CANCELLED = "cancelled by the client"
    CLOSED = "container events subscription closed by server"
    OVERFLOW = f"more than {MAX_BACKLOG} events not read"


class Subscription:
    """One client's queue of events; thread-safe."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._events: collections.deque[api_pb2.ContainerEventResponse] = collections.deque()
        self.ended: End | None = None

    def put(self, event: api_pb2.ContainerEventResponse) -> bool:
        """Queue `event`; False if the subscription has ended (or ends now, full)."""
        with self._cond:
            if self.ended is not None:
                return False
            if len(self._events) >= MAX_BACKLOG:
                self._end(End.OVERFLOW)
                return False
            self._events.append(event)
            self._cond.notify()
            return True

    def end(self, why: End) -> None:
        with self._cond:
            if self.ended is None:
                self._end(why)

    def _end(self, why: End) -> None:
        self.ended = why
        self._events.clear()
        self._cond.notify_all()

    def get(self) -> api_pb2.ContainerEventResponse | End:
        """The next event, waiting for one, or why the subscription ended."""
        with self._cond:
            while not self._events and self.ended is None:
                self._cond.wait()
            if self.ended is not None:
                return self.ended
            return self._events.popleft()


class ContainerEvents:
    """The event bus of one RuntimeService (see the module docstring).

    `sandbox_status(id)` and `container_statuses(id)` describe a sandbox when an
    event is built (None / [] when it is gone); `refresh(id)` brings one container's
    record up to date after the supervisor reported its exit, `refresh_all()` every
    container's (after a (re)connection to the supervisor)."""

    def __init__(
        self,
        *,
        supervisor: SupervisorClient,
        sandbox_status: Callable[[str], api_pb2.PodSandboxStatus | None],
        container_statuses: Callable[[str], list[api_pb2.ContainerStatus]],
        refresh: Callable[[str], None],
        refresh_all: Callable[[], None],
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._supervisor = supervisor
        self._sandbox_status = sandbox_status
        self._container_statuses = container_statuses
        self._refresh = refresh
        self._refresh_all = refresh_all
        self._clock = clock
        self._lock = threading.Condition()
        self._notices: collections.deque[Notice] = collections.deque()
        self._subscribers: list[Subscription] = []
        self._threads: list[threading.Thread] = []
        self._stream: EventStream | None = None
        self._closed = False
        self._stopping = threading.Event()

    # -- publishing --------------------------------------------------------------------

    def publish(self, container_id: str, sandbox_id: str, kind: api_pb2.ContainerEventType) -> None:
        """Queue an event; callers publish in the order the changes happened."""
        with self._lock:
            if not self._subscribers or self._closed:
                return
            self._notices.append(Notice(container_id, sandbox_id, kind, self._clock()))
            self._lock.notify_all()

    def _dispatch(self) -> None:
        while True:
            with self._lock:
                while not self._notices and not self._closed:
                    self._lock.wait()
                if self._closed:
                    return
                notice = self._notices.popleft()
                subscribers = list(self._subscribers)
            if not subscribers:
                continue
            event = self._build(notice)
            for subscription in subscribers:
                if not subscription.put(event):
                    self._drop(subscription)

    def _build(self, notice: Notice) -> api_pb2.ContainerEventResponse:
        event = api_pb2.ContainerEventResponse(
            container_id=notice.container_id,
            container_event_type=notice.kind,
            created_at=notice.created_at,
        )
        try:
            sandbox = self._sandbox_status(notice.sandbox_id)
            if sandbox is not None:
                event.pod_sandbox_status.CopyFrom(sandbox)
            event.containers_statuses.extend(self._container_statuses(notice.sandbox_id))
        except Exception:
            log.exception(
                "describe sandbox %s for an event",
                notice.sandbox_id,
                extra={"id": notice.sandbox_id},
            )
        return event

    # -- subscribing -------------------------------------------------------------------

    def subscribe(self) -> Subscription:
        """A new subscription; the threads start with the first one."""
        subscription = Subscription()
        with self._lock:
            if self._closed:
                raise Unavailable(End.CLOSED.value)
            self._subscribers.append(subscription)
            if not self._threads:
                self._threads = [
                    threading.Thread(target=self._dispatch, name="cri-events", daemon=True),
                    threading.Thread(target=self._watch, name="cri-exits", daemon=True),
                ]
                for thread in self._threads:
                    thread.start()
        return subscription

    def _drop(self, subscription: Subscription) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._subscribers.remove(subscription)

    def stream(self, context: grpc.ServicerContext) -> Iterator[api_pb2.ContainerEventResponse]:
        """The events for one GetContainerEvents call, until the client cancels (ends
        quietly) or the server closes (UNAVAILABLE) or the client falls behind."""
        subscription = self.subscribe()

        def cancelled() -> None:
            subscription.end(End.CANCELLED)
            self._drop(subscription)

        if not context.add_callback(cancelled):
            cancelled()  # the RPC has already ended
        # Headers now, before any event: a client that waits for them knows it is
        # subscribed (nothing it does from then on goes unreported).
        context.send_initial_metadata(())
        try:
            while True:
                item = subscription.get()
                if item is End.CANCELLED:
                    return
                if item is End.CLOSED:
                    raise Unavailable(item.value)
                if isinstance(item, End):
                    raise ResourceExhausted(item.value)
                yield item
        finally:
            self._drop(subscription)

    # -- the supervisor's exits --------------------------------------------------------

    def _watch(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            try:
                stream = self._supervisor.events()
            except SupervisorError as e:
                delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
                attempt += 1
                log.debug("subscribe to the supervisor: %s; again in %s s", e, delay)
                self._stopping.wait(delay)
                continue
            with self._lock:
                if self._closed:
                    stream.close()
                    return
                self._stream = stream
            attempt = 0
            self._guarded(self._refresh_all, "refresh all")
            self._follow(stream)
            with self._lock:
                self._stream = None
            stream.close()

    def _follow(self, stream: EventStream) -> None:
        while not self._stopping.is_set():
            try:
                event = stream.next()
            except SupervisorError as e:  # closed, or the supervisor went away
                log.debug("supervisor event stream ended: %s", e)
                return
            if event.kind is EventKind.EXITED:
                self._guarded(functools.partial(self._refresh, event.container_id), "refresh")

    def _guarded(self, action: Callable[[], None], what: str) -> None:
        try:
            action()
        except Exception:
            log.exception("%s after a supervisor event failed", what)

    # -- shutdown ----------------------------------------------------------------------

    def close(self) -> None:
        """End every stream (UNAVAILABLE), stop the threads and wait for them."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stopping.set()
            subscribers, self._subscribers = self._subscribers, []
            stream, threads = self._stream, self._threads
            self._notices.clear()
            self._lock.notify_all()
        for subscription in subscribers:
            subscription.end(End.CLOSED)
        if stream is not None:
            stream.close()
        for thread in threads:
            thread.join(JOIN_TIMEOUT)
