"""The PostgreSQL notification store, and what `swarm check` reads of notif_svc's PostgreSQL database
(where the users replica is in every mode; its shared queries are `common.contracts.users`).

Every SQL statement of notif_svc is here. Notifications are inserted in the consumer worker's own
transaction, so a notification exists if and only if the inbox row of its event committed.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from common.contracts.users import USER_ROWS_SQL
from notif_svc.store import NEVER, FeedState, Keyset, Notice, Notification

COLUMNS = (
    "id, event_id, recipient_id, type, message, actor_id, actor_username, project_id, card_id, comment_id, "
    "read, created_at"
)

# Serves the feed query (and its unread variant through the partial index notifications_unread).
_FEED = f"SELECT {COLUMNS} FROM notifications WHERE recipient_id = $1"
_FEED_ORDER = " ORDER BY created_at DESC, id DESC LIMIT $2"


def _bump(modified_at_param: str) -> str:
    """Bump the feed state of the users of the CTE `changed` (sorted: concurrent bumps lock in one order).

    `modified_at` never goes back, even if another replica's clock is behind.
    """
    return (
        " INSERT INTO feed_state AS f (user_id, version, modified_at)"
        f" SELECT user_id, 1, {modified_at_param}::timestamptz FROM changed ORDER BY user_id"
        " ON CONFLICT (user_id) DO UPDATE"
        " SET version = f.version + 1, modified_at = greatest(f.modified_at, excluded.modified_at)"
    )


def _notification(record: asyncpg.Record) -> Notification:
    return Notification(**dict(record))


class PostgresNotificationStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def prepare(self) -> None:
        return None  # the tables and indexes come with migrations/001_notifications.sql

    async def ping(self) -> None:
        await self._pool.fetchval("SELECT 1")

    async def close(self) -> None:
        return None  # the pool belongs to the runtime

    async def add(self, conn: asyncpg.Connection, notice: Notice) -> list[Notification]:
        recipients = list(notice.recipients)
        ids = [str(uuid.uuid4()) for _ in recipients]
        # Only the recipients that got a new row have a changed feed: a repeat bumps nothing.
        await conn.execute(
            "WITH changed AS ("
            " INSERT INTO notifications (id, event_id, recipient_id, type, message, actor_id, actor_username,"
            " project_id, card_id, comment_id, created_at)"
            " SELECT n.id, $1, n.recipient_id, $2, $3, $4, $5, $6, $7, $8, $9"
            " FROM unnest($10::uuid[], $11::uuid[]) AS n (id, recipient_id)"
            " ON CONFLICT (event_id, recipient_id) DO NOTHING"
            " RETURNING recipient_id AS user_id)" + _bump("$9"),
            notice.event_id,
            notice.type,
            notice.message,
            notice.actor_id,
            notice.actor_username,
            notice.project_id,
            notice.card_id,
            notice.comment_id,
            notice.created_at,
            ids,
            recipients,
        )
        rows = await conn.fetch(
            f"SELECT {COLUMNS} FROM notifications WHERE event_id = $1 AND recipient_id = ANY($2::uuid[])",
            notice.event_id,
            recipients,
        )
        return [_notification(r) for r in rows]

    async def feed(self, user_id: str, *, limit: int, after: Keyset | None, unread_only: bool) -> list[Notification]:
        query, args = _FEED, [user_id, limit]
        if unread_only:
            query += " AND NOT read"
        if after is not None:
            query += " AND (created_at, id) < ($3, $4::uuid)"
            args += [after[0], after[1]]
        rows = await self._pool.fetch(query + _FEED_ORDER, *args)
        return [_notification(r) for r in rows]

    async def feed_state(self, user_id: str) -> FeedState:
        row = await self._pool.fetchrow("SELECT version, modified_at FROM feed_state WHERE user_id = $1", user_id)
        return FeedState(row["version"], row["modified_at"]) if row is not None else NEVER

    async def unread_count(self, user_id: str) -> int:
        return await self._pool.fetchval(
            "SELECT count(*) FROM notifications WHERE recipient_id = $1 AND NOT read", user_id
        )

    async def mark_read(self, user_id: str, notification_id: str, now: datetime) -> bool | None:
        async with self._pool.acquire() as conn, conn.transaction():
            read = await conn.fetchval(
                "SELECT read FROM notifications WHERE id = $1 AND recipient_id = $2 FOR UPDATE",
                notification_id,
                user_id,
            )
            if read is None:
                return None
            if read:
                return False
            await conn.execute(
                "WITH changed AS (UPDATE notifications SET read = true WHERE id = $1 RETURNING recipient_id AS user_id)"
                + _bump("$2"),
                notification_id,
                now,
            )
            return True

    async def mark_all_read(self, user_id: str, up_to: datetime, now: datetime) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            changed = await conn.fetchval(
                "WITH marked AS (UPDATE notifications SET read = true"
                " WHERE recipient_id = $1 AND NOT read AND created_at <= $2 RETURNING 1)"
                " SELECT count(*) FROM marked",
                user_id,
                up_to,
            )
            if changed:
                await conn.execute(
                    "WITH changed AS (SELECT $1::uuid AS user_id)" + _bump("$2"),
                    user_id,
                    now,
                )
            return changed


# -- what `swarm check` reads here: the users replica, and duplicates in the PostgreSQL store (MongoDB's
# unique index keeps its own) --------------------------------------------------------------------------

CHECK_QUERIES = {
    "users": USER_ROWS_SQL,
    "duplicate_notifications": "SELECT event_id, recipient_id, count(*) FROM notifications "
    "GROUP BY event_id, recipient_id HAVING count(*) > 1",
}
