"""The notification store: the one small interface both adapters implement, and the choice between them.

Notifications and per-user feed state live in MongoDB when `MONGO_URL` is set (store_mongo.py, the only
module that imports motor), otherwise in this service's PostgreSQL database (store_postgres.py); the
composition root chooses (`notif_svc.app.open_store`). The
users replica and the worker's inbox are always in PostgreSQL. Both adapters pass the same contract
tests (tests/notif_svc/test_store_contract.py); anything the service relies on is stated here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import asyncpg

from common.core.settings import Settings


@dataclass(frozen=True, slots=True)
class Notice:
    """One newNotif event, to be stored once per recipient."""

    event_id: str
    type: str
    message: str
    actor_id: str | None  # None: the system (reminders)
    actor_username: str | None
    project_id: str | None
    card_id: str | None
    comment_id: str | None
    recipients: tuple[str, ...]  # distinct user ids
    created_at: datetime  # aware, millisecond precision (what MongoDB keeps)


@dataclass(frozen=True, slots=True)
class Notification:
    """One recipient's notification, as stored."""

    id: str
    event_id: str
    recipient_id: str
    type: str
    message: str
    actor_id: str | None
    actor_username: str | None
    project_id: str | None
    card_id: str | None
    comment_id: str | None
    read: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class FeedState:
    """What the polling contract's validators are made of. `version` 0: the feed never changed."""

    version: int
    modified_at: datetime | None


NEVER = FeedState(0, None)

Keyset = tuple[datetime, str]  # (created_at, id) of the last item of the previous page


class NotificationStore(Protocol):
    async def prepare(self) -> None:
        """Ready the storage at start-up (MongoDB: indexes; PostgreSQL: migrations did it)."""

    async def ping(self) -> None:
        """Raise if the storage is unreachable (readiness)."""

    async def close(self) -> None: ...

    async def add(self, conn: asyncpg.Connection, notice: Notice) -> list[Notification]:
        """Store the notice for each recipient, at most once per (event, recipient), and bump the feed
        state of the recipients whose feed changed (MongoDB: of every recipient, see the adapter).

        `conn` is the consumer worker's transaction: the PostgreSQL adapter writes in it, so the rows
        commit with the inbox entry. Returns every recipient's notification of this event, whether
        stored now or by an earlier delivery (so a redelivery can still announce them).
        """

    async def feed(self, user_id: str, *, limit: int, after: Keyset | None, unread_only: bool) -> list[Notification]:
        """The user's notifications, newest first by (created_at, id), strictly after `after`."""

    async def feed_state(self, user_id: str) -> FeedState:
        """One key lookup, never a feed query: the cheap path of conditional polls."""

    async def unread_count(self, user_id: str) -> int: ...

    async def mark_read(self, user_id: str, notification_id: str, now: datetime) -> bool | None:
        """True if it was unread (the feed state is bumped), False if already read, None if the user has
        no such notification (whether or not someone else has)."""

    async def mark_all_read(self, user_id: str, up_to: datetime, now: datetime) -> int:
        """Mark read the user's notifications created at or before `up_to`; bump the feed state if any
        changed. Returns how many changed."""


StoreFactory = Callable[[Settings, asyncpg.Pool], Awaitable[NotificationStore]]
