"""The supervisor's event loop: one thread, one selector, timers, and signals turned
into wake-ups.

Signals: the Python-level handlers only set flags (`Reactor.signalled`), and
`signal.set_wakeup_fd` makes the kernel-facing half write a byte to a socketpair the
selector watches, so the loop wakes up and acts on the flags outside the handler.
The byte's value is never trusted: processes forked from the supervisor (the
runtime's intermediate and init, until they exec) inherit the wake-up socket and
the handlers, so a signal sent to them can wake the supervisor too; only the flags,
set in the process that really received the signal, say what happened. A spurious
wake-up costs one `waitpid(WNOHANG)`.

`ChildWatcher` reaps every child (`waitpid(-1, WNOHANG)` until none is left) and
hands each status to whoever registered that pid; the supervisor is the child
subreaper of its containers, so orphans from inside them end up here too and are
reaped silently. Nothing else in the process may wait for children while the loop
runs (the runtime waits for its own helpers synchronously, inside a request).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import selectors
import signal
import socket
import time
from collections.abc import Callable, Iterable
from types import FrameType

log = logging.getLogger(__name__)

Callback = Callable[[], None]


class Timer:
    __slots__ = ("callback", "cancelled", "deadline")

    def __init__(self, deadline: float, callback: Callback) -> None:
        self.deadline = deadline
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Reactor:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._selector = selectors.DefaultSelector()
        # fd -> [on readable, on writable]
        self._callbacks: dict[int, list[Callback | None]] = {}
        self._timers: list[tuple[float, int, Timer]] = []
        self._sequence = itertools.count()
        self._wakeup_read, self._wakeup_write = socket.socketpair()
        self._wakeup_read.setblocking(False)
        self._wakeup_write.setblocking(False)
        self._on_wakeup: Callback | None = None
        self._previous_handlers: dict[int, object] = {}
        self.signalled: set[int] = set()
        self.stopping = False
        self.add_reader(self._wakeup_read.fileno(), self._drain_wakeup)

    def now(self) -> float:
        return self._clock()

    # -- file descriptors ----------------------------------------------------------

    def _update(self, fd: int) -> None:
        reader, writer = self._callbacks.get(fd, (None, None))
        events = (selectors.EVENT_READ if reader else 0) | (selectors.EVENT_WRITE if writer else 0)
        registered = fd in self._selector.get_map()
        if not events:
            self._callbacks.pop(fd, None)
            if registered:
                self._selector.unregister(fd)
        elif registered:
            self._selector.modify(fd, events)
        else:
            self._selector.register(fd, events)

    def add_reader(self, fd: int, callback: Callback) -> None:
        self._callbacks.setdefault(fd, [None, None])[0] = callback
        self._update(fd)

    def remove_reader(self, fd: int) -> None:
        if fd in self._callbacks:
            self._callbacks[fd][0] = None
            self._update(fd)

    def add_writer(self, fd: int, callback: Callback) -> None:
        self._callbacks.setdefault(fd, [None, None])[1] = callback
        self._update(fd)

    def remove_writer(self, fd: int) -> None:
        if fd in self._callbacks:
            self._callbacks[fd][1] = None
            self._update(fd)

    def remove(self, fd: int) -> None:
        """Forget `fd` entirely (call before closing it)."""
        self._callbacks.pop(fd, None)
        if fd in self._selector.get_map():
            self._selector.unregister(fd)

    # -- timers --------------------------------------------------------------------

    def call_later(self, delay: float, callback: Callback) -> Timer:
        timer = Timer(self._clock() + max(delay, 0.0), callback)
        heapq.heappush(self._timers, (timer.deadline, next(self._sequence), timer))
        return timer

    def _run_due_timers(self) -> None:
        now = self._clock()
        while self._timers and self._timers[0][0] <= now:
            _, _, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                timer.cancelled = True
                timer.callback()

    def _timeout(self) -> float | None:
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        if not self._timers:
            return None
        return max(0.0, self._timers[0][0] - self._clock())

    # -- signals -------------------------------------------------------------------

    def handle_signals(self, signals: Iterable[int], on_wakeup: Callback) -> None:
        """Wake the loop and call `on_wakeup` after any of `signals` (and possibly
        after other wake-ups: see the module docstring); `signalled` says which."""

        def handler(signum: int, _frame: FrameType | None) -> None:
            self.signalled.add(signum)

        self._on_wakeup = on_wakeup
        signal.set_wakeup_fd(self._wakeup_write.fileno(), warn_on_full_buffer=False)
        for signum in signals:
            self._previous_handlers[signum] = signal.signal(signum, handler)

    def wake(self) -> None:
        """Wake the loop up (safe from another thread): after `stop()`, for one."""
        try:
            self._wakeup_write.send(b"\0")
        except BlockingIOError:
            pass  # a wake-up is pending already

    def _drain_wakeup(self) -> None:
        try:
            while self._wakeup_read.recv(4096):
                pass
        except BlockingIOError:
            pass
        if self._on_wakeup is not None:
            self._on_wakeup()

    # -- running -------------------------------------------------------------------

    def run(self) -> None:
        """Dispatch events and timers until `stop()`."""
        if self._on_wakeup is not None:
            self._on_wakeup()  # signals that came before the loop started
        while not self.stopping:
            for key, mask in self._selector.select(self._timeout()):
                # Look the callbacks up again: an earlier one may have removed this fd.
                callbacks = self._callbacks.get(key.fd)
                if callbacks is None:
                    continue
                reader = callbacks[0]
                if mask & selectors.EVENT_READ and reader is not None:
                    reader()
                callbacks = self._callbacks.get(key.fd)
                if mask & selectors.EVENT_WRITE and callbacks is not None and callbacks[1]:
                    callbacks[1]()
            self._run_due_timers()

    def stop(self) -> None:
        self.stopping = True

    def close(self) -> None:
        if self._on_wakeup is not None:
            signal.set_wakeup_fd(-1)
        for signum, previous in self._previous_handlers.items():
            signal.signal(signum, previous)  # type: ignore[arg-type]
        self._previous_handlers.clear()
        self._selector.close()
        self._wakeup_read.close()
        self._wakeup_write.close()


class ChildWatcher:
    """Reaps children and routes their wait statuses by pid."""

    def __init__(self) -> None:
        self._watched: dict[int, Callable[[int], None]] = {}

    def watch(self, pid: int, on_exit: Callable[[int], None]) -> None:
        self._watched[pid] = on_exit

    def unwatch(self, pid: int) -> None:
        self._watched.pop(pid, None)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            on_exit = self._watched.pop(pid, None)
            if on_exit is None:
                log.debug("reaped process %d (status %#x)", pid, status)
                continue
            try:
                on_exit(status)
            except Exception:
                log.exception("handling the exit of process %d", pid)
