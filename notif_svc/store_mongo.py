"""The MongoDB notification store. THE ONLY module that imports motor.

Motor reached end of life (2026-05-14); its successor is PyMongo's `AsyncMongoClient`, whose collection
API is the one used here. Switching is therefore this file: replace `AsyncIOMotorClient` in `connect`.

Collections: `notifications` (one document per recipient, `_id` = the notification id) and
`feed_state` (`_id` = user id, `version`, `modified_at`). Indexes are created at start-up (idempotent).

MongoDB does not share the worker's PostgreSQL transaction, so `add` must be safe to redo after a
crash at any point: the insert ignores duplicates (unique (event_id, recipient_id)), and the feed state
is bumped on every attempt, duplicate or not. A crash between insert and bump followed by a redelivery
then still bumps; an extra bump only costs pollers one refetch, a missing one would hide news from them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
from motor.motor_asyncio import AsyncIOMotorClient
from pymongo import ASCENDING, DESCENDING
from pymongo.errors import BulkWriteError

from notif_svc.store import NEVER, FeedState, Keyset, Notice, Notification

DUPLICATE_KEY = 11000
_NEWEST_FIRST = [("created_at", DESCENDING), ("_id", DESCENDING)]


def _utc(value: datetime) -> datetime:
    # Drivers return their own tzinfo classes; responses want plain UTC.
    return value.astimezone(UTC)


def _notification(doc: dict[str, Any]) -> Notification:
    return Notification(
        id=doc["_id"],
        event_id=doc["event_id"],
        recipient_id=doc["recipient_id"],
        type=doc["type"],
        message=doc["message"],
        actor_id=doc.get("actor_id"),
        actor_username=doc.get("actor_username"),
        project_id=doc.get("project_id"),
        card_id=doc.get("card_id"),
        comment_id=doc.get("comment_id"),
        read=bool(doc["read"]),
        created_at=_utc(doc["created_at"]),
    )


class MongoNotificationStore:
    def __init__(self, database: Any, client: Any | None = None) -> None:
        """`database`: a motor (or API-compatible) database; `client` is closed by `close` if given."""
        self._db = database
        self._client = client
        self._notifications = database["notifications"]
        self._feeds = database["feed_state"]

    @classmethod
    def connect(cls, url: str, database_name: str) -> MongoNotificationStore:
        """No I/O here: the driver connects lazily, on the first operation (`prepare`)."""
        client: Any = AsyncIOMotorClient(url, tz_aware=True, uuidRepresentation="standard")
        return cls(client[database_name], client)

    async def prepare(self) -> None:
        await self._notifications.create_index(
            [("recipient_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)], name="feed"
        )
        # Unread feed (equality on `read`, then the feed order), unread count and read-all. Compound rather
        # than partial: a partial index with the feed's key pattern would clash with it on older servers.
        await self._notifications.create_index(
            [("recipient_id", ASCENDING), ("read", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)],
            name="unread",
        )
        await self._notifications.create_index(
            [("event_id", ASCENDING), ("recipient_id", ASCENDING)], name="once", unique=True
        )

    async def ping(self) -> None:
        await self._db.command("ping")

    async def close(self) -> None:
        if self._client is not None:
            self._client.close()

    async def add(self, conn: asyncpg.Connection, notice: Notice) -> list[Notification]:
        del conn  # not ours: MongoDB writes cannot join the worker's PostgreSQL transaction
        recipients = list(notice.recipients)
        docs = [
            {
                "_id": str(uuid.uuid4()),
                "event_id": notice.event_id,
                "recipient_id": recipient,
                "type": notice.type,
                "message": notice.message,
                "actor_id": notice.actor_id,
                "actor_username": notice.actor_username,
                "project_id": notice.project_id,
                "card_id": notice.card_id,
                "comment_id": notice.comment_id,
                "read": False,
                "created_at": notice.created_at,
            }
            for recipient in recipients
        ]
        try:
            await self._notifications.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if not errors or any(error.get("code") != DUPLICATE_KEY for error in errors):
                raise
        await self._bump(recipients, notice.created_at)
        cursor = self._notifications.find({"event_id": notice.event_id, "recipient_id": {"$in": recipients}})
        return [_notification(doc) for doc in await cursor.to_list(length=len(recipients))]

    async def _bump(self, user_ids: list[str], now: datetime) -> None:
        # One upsert per user rather than one bulk_write: recipients are few, and this form is also
        # what mongomock (the contract tests' stand-in when no mongod is available) supports.
        for user_id in user_ids:
            await self._feeds.update_one(
                {"_id": user_id}, {"$inc": {"version": 1}, "$max": {"modified_at": now}}, upsert=True
            )

    async def feed(self, user_id: str, *, limit: int, after: Keyset | None, unread_only: bool) -> list[Notification]:
        query: dict[str, Any] = {"recipient_id": user_id}
        if unread_only:
            query["read"] = False
        if after is not None:
            created_at, last_id = after
            query["$or"] = [
                {"created_at": {"$lt": created_at}},
                {"created_at": created_at, "_id": {"$lt": last_id}},
            ]
        cursor = self._notifications.find(query).sort(_NEWEST_FIRST).limit(limit)
        return [_notification(doc) for doc in await cursor.to_list(length=limit)]

    async def feed_state(self, user_id: str) -> FeedState:
        doc = await self._feeds.find_one({"_id": user_id})
        return FeedState(int(doc["version"]), _utc(doc["modified_at"])) if doc is not None else NEVER

    async def unread_count(self, user_id: str) -> int:
        return int(await self._notifications.count_documents({"recipient_id": user_id, "read": False}))

    async def mark_read(self, user_id: str, notification_id: str, now: datetime) -> bool | None:
        result = await self._notifications.update_one(
            {"_id": notification_id, "recipient_id": user_id, "read": False}, {"$set": {"read": True}}
        )
        if result.modified_count:
            await self._bump([user_id], now)
            return True
        mine = await self._notifications.count_documents({"_id": notification_id, "recipient_id": user_id}, limit=1)
        return False if mine else None

    async def mark_all_read(self, user_id: str, up_to: datetime, now: datetime) -> int:
        result = await self._notifications.update_many(
            {"recipient_id": user_id, "read": False, "created_at": {"$lte": up_to}}, {"$set": {"read": True}}
        )
        if result.modified_count:
            await self._bump([user_id], now)
        return int(result.modified_count)
