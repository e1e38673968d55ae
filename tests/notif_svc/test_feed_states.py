"""The in-memory feed states: answered only while every change is heard, never older than a change."""

from __future__ import annotations

from notif_svc.feed_states import FeedStateCache
from notif_svc.store import FeedState

V1, V2 = FeedState(1, None), FeedState(2, None)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        self.now += 0.001  # every reading is later than the one before, as with time.monotonic
        return self.now


def cache(max_age_s: float = 2.0, **kwargs: int) -> tuple[FeedStateCache, Clock]:
    clock = Clock()
    states = FeedStateCache(max_age_s, clock=clock, **kwargs)
    states.trust(True)
    return states, clock


def test_a_state_read_is_answered_from_memory_until_a_change_is_heard():
    states, _ = cache()
    states.put("u", V1, states.started())
    assert states.get("u") == V1
    states.invalidate(["u"])
    assert states.get("u") is None
    states.put("u", V2, states.started())
    assert states.get("u") == V2


def test_a_read_that_started_before_a_change_was_heard_is_not_kept():
    states, _ = cache()
    started = states.started()  # the database read begins...
    states.invalidate(["u"])  # ...a change is announced meanwhile...
    states.put("u", V1, started)  # ...and the read, possibly older than the change, ends
    assert states.get("u") is None


def test_nothing_is_kept_or_answered_while_changes_are_not_heard():
    states, _ = cache()
    states.put("u", V1, states.started())
    states.trust(False)  # the pub/sub connection dropped
    assert states.get("u") is None
    states.put("u", V1, states.started())
    assert len(states) == 0
    started = states.started()
    states.trust(True)  # subscribed again: a read begun before that may have missed a change
    states.put("u", V1, started)
    assert states.get("u") is None
    states.put("u", V1, states.started())
    assert states.get("u") == V1


def test_no_state_is_answered_older_than_the_maximum_age():
    states, clock = cache(max_age_s=2.0)
    states.put("u", V1, states.started())
    clock.now += 1.9
    assert states.get("u") == V1
    clock.now += 0.2
    assert states.get("u") is None


def test_memory_is_bounded_and_overflow_forgets_everything_safely():
    states, _ = cache(max_entries=3)
    for user in "abc":
        states.put(user, V1, states.started())
    started = states.started()
    states.put("d", V1, states.started())  # one too many: everything goes
    assert len(states) == 0 and states.get("a") is None
    states.put("a", V1, started)  # a read begun before the reset is not trusted either
    assert states.get("a") is None
    states.invalidate(["a", "b", "c", "d"])  # markers count too
    assert len(states) == 0
