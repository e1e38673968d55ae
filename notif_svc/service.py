"""notif_svc use cases: store notices as notifications, read and mark a user's feed, wait for news.

A user only ever sees their own notifications: every store call is scoped by the caller's user id, so
someone else's notification id is simply not found, and a cursor (even a forged one) only moves the
position within the caller's own feed.

Order of effects for a new notification (consumer side): rows (and feed state) first, in the worker's
transaction; the announcement on Redis (`live.publish`) only after the commit (`after_commit`), so a
woken reader always finds what woke it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg
import structlog

from common.contracts.notices import NoticeSchema
from common.contracts.users import current_usernames
from common.core.envelope import Event, utcnow
from common.core.errors import NotFound
from common.core.formats import canonical_uuid, is_uuid
from common.core.ids import decode_keyset, encode_keyset
from common.redis.client import REDIS_FAILURES
from common.service.runtime import Runtime
from notif_svc import live
from notif_svc.schemas import NotificationSchema
from notif_svc.store import FeedState, Notice, Notification, NotificationStore

log = structlog.get_logger("notif")

NOT_FOUND = "notification not found"
# A held long-poll re-reads the feed version this often, in case its wake-up was lost (pub/sub is
# fire-and-forget: a Redis blip between commit and PUBLISH drops it).
RECHECK_INTERVAL_S = 2.0

_notice_schema = NoticeSchema()
_view_schema = NotificationSchema()

Announcement = tuple[str, dict[str, Any]]  # (recipient id, message for their channel)


class MalformedNotice(ValueError):
    """A newNotif whose ids are not UUIDs: no retry can fix it (the worker dead-letters it)."""


def now_ms() -> datetime:
    """Now, at the millisecond precision both stores keep (so what we announce is what we store)."""
    now = utcnow()
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def notification_view(notification: Notification, usernames: Mapping[str, str]) -> dict[str, Any]:
    """The API shape; the actor's name is the replica's current one when known, else the event's."""
    actor_id = notification.actor_id
    username = usernames.get(actor_id) if actor_id is not None else None
    return _view_schema.dump(
        {
            "id": notification.id,
            "type": notification.type,
            "message": notification.message,
            "actor": {"id": actor_id, "username": username or notification.actor_username},
            "project_id": notification.project_id,
            "card_id": notification.card_id,
            "comment_id": notification.comment_id,
            "read": notification.read,
            "created_at": notification.created_at,
        }
    )


def _canonical(value: str | None) -> str | None:
    """The canonical form of a UUID string (MongoDB compares ids as strings), None kept."""
    if value is None:
        return None
    try:
        return canonical_uuid(value)
    except ValueError:
        raise MalformedNotice(f"newNotif with an id that is not a UUID: {value!r}") from None


def notice_from_event(event: Event) -> Notice:
    """Validate a newNotif (marshmallow's ValidationError or MalformedNotice if it is not one)."""
    data = _notice_schema.load(event.data)
    recipients = tuple(dict.fromkeys(str(_canonical(r)) for r in data["recipients"]))
    actor = data["actor"]
    return Notice(
        event_id=str(_canonical(event.id)),
        type=data["type"],
        message=data["message"],
        actor_id=_canonical(actor["id"]),
        actor_username=actor["username"],
        project_id=_canonical(data["project_id"]),
        card_id=_canonical(data["card_id"]),
        comment_id=_canonical(data["comment_id"]),
        recipients=recipients,
        created_at=now_ms(),
    )


class NotificationService:
    def __init__(self, runtime: Runtime, hub: live.LiveHub) -> None:
        self._rt = runtime
        self._hub = hub
        self._store: NotificationStore | None = None

    def attach_store(self, store: NotificationStore | None) -> None:
        """Set at start-up (and unset at shutdown) by the app's store context."""
        self._store = store

    @property
    def store(self) -> NotificationStore:
        assert self._store is not None, "the notification store is not open"
        return self._store

    # -- consumer side -----------------------------------------------------------------------------

    async def store_notice(self, event: Event, conn: asyncpg.Connection) -> list[Announcement]:
        """Store a newNotif for its recipients (idempotent); return what to announce once committed."""
        notice = notice_from_event(event)
        stored = await self.store.add(conn, notice)
        usernames = await current_usernames(conn, [notice.actor_id])
        log.info("notification.stored", notification_type=notice.type, recipients=len(notice.recipients))
        return [(n.recipient_id, {"type": "notification", "data": notification_view(n, usernames)}) for n in stored]

    async def announce(self, announcements: list[Announcement]) -> None:
        if announcements:
            # Here first (no poll of ours answers from memory once this returns), then everywhere.
            self._hub.feed_states.invalidate({user_id for user_id, _ in announcements})
            await live.publish(self._rt.redis_client(), announcements)

    # -- the feed ----------------------------------------------------------------------------------

    async def feed_state(self, user_id: str) -> FeedState:
        """The feed's state for validators: from memory when this process is sure it is current."""
        cache = self._hub.feed_states
        state = cache.get(user_id)
        if state is None:
            started = cache.started()
            state = await self.store.feed_state(user_id)
            cache.put(user_id, state, started)
        return state

    async def feed(self, user_id: str, *, limit: int, cursor: str | None, unread_only: bool) -> dict[str, Any]:
        after = decode_keyset(cursor) if cursor is not None else None
        rows = await self.store.feed(user_id, limit=limit + 1, after=after, unread_only=unread_only)
        page = rows[:limit]
        next_cursor = encode_keyset(page[-1].created_at, page[-1].id) if len(rows) > limit else None
        usernames = await current_usernames(self._rt.db(), [n.actor_id for n in page])
        return {"items": [notification_view(n, usernames) for n in page], "next_cursor": next_cursor}

    async def wait_for_change(self, user_id: str, seen_version: int, timeout_s: float) -> FeedState | None:
        """Hold until the user's feed version differs from `seen_version` (its new state) or the
        timeout passes (None). Also None at once if the process is shutting down."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        with self._hub.listen(user_id) as listener:
            # Listening first, then checking: a change committed in between is both seen here and
            # announced to us, never neither.
            while True:
                state = await self.store.feed_state(user_id)
                if state.version != seen_version:
                    return state
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                try:
                    item = await asyncio.wait_for(listener.get(), min(remaining, RECHECK_INTERVAL_S))
                except TimeoutError:
                    continue
                if item is live.Signal.CLOSING:
                    return None

    async def unread_count(self, user_id: str) -> int:
        return await self.store.unread_count(user_id)

    # -- read marks --------------------------------------------------------------------------------

    async def mark_read(self, user_id: str, notification_id: str) -> None:
        if not is_uuid(notification_id):
            raise NotFound(NOT_FOUND)
        changed = await self.store.mark_read(user_id, canonical_uuid(notification_id), now_ms())
        if changed is None:
            raise NotFound(NOT_FOUND)
        if changed:
            await self._announce_read(user_id)

    async def mark_all_read(self, user_id: str) -> None:
        now = now_ms()
        changed = await self.store.mark_all_read(user_id, up_to=now, now=now)
        if changed:
            await self._announce_read(user_id)
        log.info("notification.all_read", marked=changed)

    async def _announce_read(self, user_id: str) -> None:
        # Wakes the user's other long-polls at once; if it is lost they notice within RECHECK_INTERVAL_S.
        self._hub.feed_states.invalidate([user_id])
        with contextlib.suppress(*REDIS_FAILURES):
            await live.publish(self._rt.redis_client(), [(user_id, {"type": "read"})])
