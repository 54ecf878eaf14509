"""Restart back-off: first restart at once, then doubling to the maximum, reset after a
long enough run; Go-style durations in the messages."""

from __future__ import annotations

import pytest

from kubelet.pods.backoff import Backoff, go_duration


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_doubling_up_to_the_maximum() -> None:
    clock = Clock()
    backoff = Backoff(10, 40, clock=clock)
    assert not backoff.in_backoff("p/c", clock.now)  # the first failure restarts at once
    backoff.next("p/c", clock.now)
    assert backoff.get("p/c") == 10
    clock.now += 1
    assert backoff.in_backoff("p/c", clock.now - 1)  # failed again 1 s later
    assert backoff.remaining("p/c", clock.now - 1) == pytest.approx(9)
    clock.now += 9.5
    assert not backoff.in_backoff("p/c", clock.now - 10.5)
    for expected in (20, 40, 40):
        backoff.next("p/c", clock.now)
        assert backoff.get("p/c") == expected
        clock.now += 1


def test_reset_after_twice_the_maximum() -> None:
    clock = Clock()
    backoff = Backoff(10, 40, clock=clock)
    backoff.next("k", clock.now)
    backoff.next("k", clock.now)
    assert backoff.get("k") == 20
    clock.now += 81
    assert not backoff.in_backoff("k", clock.now - 1)
    backoff.next("k", clock.now)
    assert backoff.get("k") == 10


def test_since_update_is_for_pulls() -> None:
    clock = Clock()
    backoff = Backoff(5, 20, clock=clock)
    assert not backoff.in_backoff_since_update("img")
    backoff.next("img", clock.now)
    assert backoff.in_backoff_since_update("img")
    clock.now += 5.1
    assert not backoff.in_backoff_since_update("img")


def test_forget_and_gc() -> None:
    clock = Clock()
    backoff = Backoff(1, 2, clock=clock)
    backoff.next("uid1/a", clock.now)
    backoff.next("uid2/a", clock.now)
    backoff.forget_prefix("uid1/")
    assert backoff.get("uid1/a") == 0 and backoff.get("uid2/a") == 1
    clock.now += 10
    backoff.gc()
    assert backoff.get("uid2/a") == 0


def test_bad_settings() -> None:
    with pytest.raises(ValueError, match="initial"):
        Backoff(0, 10)
    with pytest.raises(ValueError, match="maximum"):
        Backoff(10, 5)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(10, "10s"), (1.5, "1.5s"), (80, "1m20s"), (300, "5m0s"), (3725, "1h2m5s")],
)
def test_go_duration(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text
