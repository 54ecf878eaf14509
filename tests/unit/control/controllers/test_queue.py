"""The keyed work queue: dedup, one worker per key, requeue while processing, backoff."""

from __future__ import annotations

import threading

from control.controllers.base import WorkQueue


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_key_queued_twice_is_handed_out_once() -> None:
    queue = WorkQueue()
    queue.add("a")
    queue.add("b")
    queue.add("a")
    assert [queue.get(0), queue.get(0), queue.get(0)] == ["a", "b", None]


def test_a_key_being_processed_is_not_handed_out_again_until_done() -> None:
    queue = WorkQueue()
    queue.add("a")
    assert queue.get(0) == "a"
    queue.add("a")  # changed while a worker reconciles it
    assert queue.get(0) is None
    queue.done("a")
    assert queue.get(0) == "a"
    queue.done("a")
    assert queue.get(0) is None


def test_retry_backs_off_exponentially_and_forget_resets() -> None:
    clock = Clock()
    queue = WorkQueue(base_delay=1.0, max_delay=5.0, clock=clock)
    assert [queue.retry("a") for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert queue.get(0) is None
    clock.now = 1.0
    assert queue.get(0) == "a"
    queue.done("a")
    queue.forget("a")
    assert queue.failures("a") == 0
    assert queue.retry("a") == 1.0


def test_add_after_keeps_the_earliest_time() -> None:
    clock = Clock()
    queue = WorkQueue(clock=clock)
    queue.add_after("a", 10)
    queue.add_after("a", 2)
    clock.now = 2
    assert queue.get(0) == "a"


def test_get_blocks_until_a_key_arrives_and_shut_down_releases() -> None:
    queue = WorkQueue()
    got: list[str | None] = []
    waiter = threading.Thread(target=lambda: got.append(queue.get(5)))
    waiter.start()
    queue.add("x")
    waiter.join(5)
    assert got == ["x"]
    queue.shut_down()
    assert queue.get(5) is None
