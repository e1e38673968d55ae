"""Feed states kept in memory, so that a conditional poll answered 304 reads no database at all.

A poll's cost is its feed state (version, last change), compared with the client's validators. This
process hears every change to any feed on the live hub's pub/sub connection (every replica announces
what it stores and every read mark, `notif_svc.live`), so it can keep the states it read and drop one
as soon as a change to it is heard. That is only sound while every change *is* heard:

- nothing is kept, and nothing answered from memory, while the pub/sub connection is down; everything
  is dropped when it comes back (announcements sent meanwhile are lost);
- a state read from the database while a change was being announced is not kept: each read notes when
  it started, and an invalidation newer than that start wins (the read may predate the change);
- no state is answered older than `max_age_s`: an announcement can still be lost without the
  connection dropping (the PUBLISH after a commit failing), and this bounds what that costs to the
  delay a held long-poll already accepts (`service.RECHECK_INTERVAL_S`).

A poll answered from memory may be a few milliseconds behind a commit made by another replica, as if
it had arrived a moment earlier; this replica's own changes are dropped before it answers anyone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from notif_svc.store import FeedState

# (state or None for "changed at", monotonic time); a None state is an invalidation marker.
_Entry = tuple[FeedState | None, float]


class FeedStateCache:
    def __init__(
        self, max_age_s: float, *, max_entries: int = 200_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._max_age_s = max_age_s
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._trusted = False  # whether changes are being heard (the hub is subscribed)
        self._reset_at = clock()

    def started(self) -> float:
        """Call before reading a state from the database; pass the result to `put`."""
        return self._clock()

    def get(self, user_id: str) -> FeedState | None:
        if not self._trusted:
            return None
        entry = self._entries.get(user_id)
        if entry is None or entry[0] is None or self._clock() - entry[1] > self._max_age_s:
            return None
        return entry[0]

    def put(self, user_id: str, state: FeedState, read_started: float) -> None:
        if not self._trusted or read_started <= self._reset_at:
            return
        entry = self._entries.get(user_id)
        if entry is not None and entry[0] is None and entry[1] >= read_started:
            return  # a change was heard while (or after) the state was read: it may be older
        if user_id not in self._entries and len(self._entries) >= self._max_entries:
            self._reset()
            return
        self._entries[user_id] = (state, self._clock())

    def invalidate(self, user_ids: Iterable[str]) -> None:
        now = self._clock()
        for user_id in user_ids:
            self._entries[user_id] = (None, now)
        if len(self._entries) > self._max_entries:
            self._reset()

    def trust(self, hearing_changes: bool) -> None:
        """The hub subscribed (True) or lost its connection (False): either way, forget everything."""
        self._trusted = hearing_changes
        self._reset()

    def __len__(self) -> int:
        return len(self._entries)

    def _reset(self) -> None:
        self._entries.clear()
        self._reset_at = self._clock()
