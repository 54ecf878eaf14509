"""control/storage/fanout.py: bounded per-watch queues, dropping a watch that falls
behind, ending watches with an error after what they hold, and the hand-over from
replay to live events (through the memory backend, which publishes every write)."""

from __future__ import annotations

import pytest

from control.storage import Compacted, EventType, KeyValue, MemoryBackend, Revision
from control.storage.base import Event
from control.storage.fanout import Broadcaster, ReplayPage


def put(key: str, revision: int) -> Event:
    kv = KeyValue(key, b"v", Revision(revision), Revision(revision), 1)
    return Event(EventType.PUT, kv, None)


def no_replay(prefix: str, after: int, upto: int) -> ReplayPage:
    return [], upto


def test_a_watch_that_falls_behind_is_dropped_and_can_resume() -> None:
    with MemoryBackend(max_pending=5) as store:
        start = store.current_revision()
        slow = store.watch("/", from_revision=start)
        fast = store.watch("/", from_revision=start)
        seen: list[int] = []
        for i in range(8):
            store.create(f"/k{i}", b"v")
            seen.extend(e.revision for e in fast.next_batch(timeout=1) or [])
        assert len(seen) == 8  # a consumer that keeps up is not affected
        assert slow.next_batch(timeout=1) is None  # dropped at the sixth event
        # the consumer re-watches from the last revision it saw: nothing is lost
        with store.watch("/", from_revision=start) as again:
            replayed = again.next_batch(timeout=1) or []
        assert [e.revision for e in replayed] == seen
        fast.close()


def test_only_events_under_the_prefix_count_against_the_bound() -> None:
    with MemoryBackend(max_pending=3) as store:
        watch = store.watch("/mine/", from_revision=store.current_revision())
        for i in range(20):
            store.create(f"/other/{i}", b"v")
        store.create("/mine/a", b"v")
        batch = watch.next_batch(timeout=1)
        assert batch is not None and [e.kv.key for e in batch] == ["/mine/a"]


def test_ending_with_an_error_delivers_what_is_queued_first() -> None:
    broadcaster = Broadcaster()
    watch = broadcaster.subscribe("/", 0, no_replay)
    broadcaster.publish([put("/a", 1), put("/b", 2)], 2)
    broadcaster.end_all(lambda: Compacted("watch", 2, 5))
    batch = watch.next_batch(timeout=1)
    assert batch is not None and [e.revision for e in batch] == [1, 2]
    with pytest.raises(Compacted):
        watch.next_batch(timeout=1)
    assert len(broadcaster) == 0


def test_replay_covers_up_to_the_published_revision_then_the_queue_takes_over() -> None:
    history = [put(f"/k{i}", i) for i in range(1, 8)]
    calls: list[tuple[int, int]] = []

    def replay(prefix: str, after: int, upto: int) -> ReplayPage:
        calls.append((after, upto))
        page = [e for e in history if after < e.revision <= upto][:2]  # pages of two
        return page, page[-1].revision if len(page) == 2 else upto

    broadcaster = Broadcaster()
    broadcaster.start_at(5)  # events 1..5 are history, 6 and 7 come live
    watch = broadcaster.subscribe("/", 1, replay)
    broadcaster.publish(history[5:], 7)
    got: list[int] = []
    while len(got) < 6:
        got.extend(e.revision for e in watch.next_batch(timeout=1) or [])
    assert got == [2, 3, 4, 5, 6, 7]
    assert calls == [(1, 5), (3, 5)]  # replay stops at 5: the queue has the rest


def test_a_closed_watch_is_forgotten() -> None:
    broadcaster = Broadcaster()
    watch = broadcaster.subscribe("/", 0, no_replay)
    assert len(broadcaster) == 1
    watch.close()
    assert len(broadcaster) == 0
    broadcaster.publish([put("/a", 1)], 1)
    assert watch.next_batch(timeout=0) is None
