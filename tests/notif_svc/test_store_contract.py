"""The NotificationStore contract, run against both adapters: PostgreSQL for real, MongoDB for real when
MONGO_URL is set (else mongomock-motor). Whatever the service relies on is asserted here, once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from common.db.migrations import migrate
from common.db.pool import create_pool
from common.messaging.tables import COMMON_MIGRATIONS
from notif_svc.app import MIGRATIONS
from notif_svc.store import NEVER, Notice, Notification, NotificationStore
from notif_svc.store_mongo import MongoNotificationStore
from notif_svc.store_postgres import PostgresNotificationStore
from tests.notif_svc.conftest import STORES, mongo_database

T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)


@dataclass
class Harness:
    store: NotificationStore
    pool: asyncpg.Pool  # the worker's transaction lives here, whichever store
    database: Any = None  # the MongoDB database, for the adapter's own tests

    async def add(self, notice: Notice) -> list[Notification]:
        async with self.pool.acquire() as conn, conn.transaction():
            return await self.store.add(conn, notice)


@asynccontextmanager
async def open_harness(kind: str, database_url: str) -> AsyncIterator[Harness]:
    await migrate(database_url, [("common", COMMON_MIGRATIONS), ("notif_svc", MIGRATIONS)])
    pool = await create_pool(database_url, 1, 4)
    try:
        if kind == "postgres":
            store: NotificationStore = PostgresNotificationStore(pool)
            await store.prepare()
            yield Harness(store, pool)
        else:
            async with mongo_database() as database:
                store = MongoNotificationStore(database)
                await store.prepare()
                yield Harness(store, pool, database)
    finally:
        await pool.close()


@pytest.fixture(params=STORES)
async def harness(request: pytest.FixtureRequest, database_url: str) -> AsyncIterator[Harness]:
    async with open_harness(request.param, database_url) as opened:
        yield opened


@pytest.fixture
async def mongo_harness(database_url: str) -> AsyncIterator[Harness]:
    async with open_harness("mongo", database_url) as opened:
        yield opened


def user() -> str:
    return str(uuid.uuid4())


def make_notice(*recipients: str, at: datetime = T0, **overrides: Any) -> Notice:
    fields: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "type": "card_created",
        "message": "a card was created",
        "actor_id": str(uuid.uuid4()),
        "actor_username": "ann",
        "project_id": str(uuid.uuid4()),
        "card_id": str(uuid.uuid4()),
        "comment_id": None,
        "recipients": recipients,
        "created_at": at,
    }
    fields.update(overrides)
    return Notice(**fields)


async def everything(h: Harness, user_id: str, *, unread_only: bool = False) -> list[Notification]:
    return await h.store.feed(user_id, limit=100, after=None, unread_only=unread_only)


async def test_add_stores_one_notification_per_recipient(harness: Harness):
    a, b = user(), user()
    notice = make_notice(a, b)
    stored = await harness.add(notice)
    assert sorted(n.recipient_id for n in stored) == sorted([a, b])
    for n in stored:
        assert uuid.UUID(n.id)
        assert (n.event_id, n.type, n.message, n.read, n.created_at) == (
            notice.event_id,
            "card_created",
            "a card was created",
            False,
            T0,
        )
        assert (n.actor_id, n.actor_username, n.project_id, n.card_id, n.comment_id) == (
            notice.actor_id,
            "ann",
            notice.project_id,
            notice.card_id,
            None,
        )
    assert len({n.id for n in stored}) == 2
    assert [n.id for n in await everything(harness, a)] == [n.id for n in stored if n.recipient_id == a]


async def test_adding_the_same_event_twice_stores_nothing_more_and_returns_the_same(harness: Harness):
    a, b = user(), user()
    notice = make_notice(a, b)
    first = await harness.add(notice)
    again = await harness.add(notice)
    assert sorted(n.id for n in again) == sorted(n.id for n in first)
    assert len(await everything(harness, a)) == 1
    assert len(await everything(harness, b)) == 1
    # A partly new recipient list adds only the new recipient.
    c = user()
    third = await harness.add(make_notice(a, b, c, event_id=notice.event_id))
    assert len(third) == 3
    assert [len(await everything(harness, u)) for u in (a, b, c)] == [1, 1, 1]


async def test_the_feed_is_newest_first_and_keyset_pages_cover_it_exactly_once(harness: Harness):
    me = user()
    times = [T0 + timedelta(seconds=s) for s in (0, 5, 5, 5, 9, 12, 12)]  # ties are broken by id
    for at in times:
        await harness.add(make_notice(me, at=at))
    full = await everything(harness, me)
    assert [n.created_at for n in full] == sorted(times, reverse=True)
    keys = [(n.created_at, n.id) for n in full]
    assert keys == sorted(keys, reverse=True)

    pages, after = [], None
    while True:
        page = await harness.store.feed(me, limit=3, after=after, unread_only=False)
        pages.append(page)
        if len(page) < 3:
            break
        after = (page[-1].created_at, page[-1].id)
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [n.id for p in pages for n in p] == [n.id for n in full]


async def test_the_feed_holds_only_the_users_own_notifications(harness: Harness):
    me, other = user(), user()
    mine = await harness.add(make_notice(me))
    await harness.add(make_notice(other))
    await harness.add(make_notice(other, at=T0 + timedelta(seconds=1)))
    assert [n.id for n in await everything(harness, me)] == [mine[0].id]
    # A position taken from someone else's feed only moves within mine.
    theirs = await everything(harness, other)
    after = (theirs[0].created_at + timedelta(days=1), theirs[0].id)
    assert [n.id for n in await harness.store.feed(me, limit=10, after=after, unread_only=False)] == [mine[0].id]


async def test_unread_filter_and_count_follow_the_read_marks(harness: Harness):
    me, other = user(), user()
    stored = [(await harness.add(make_notice(me, other, at=T0 + timedelta(seconds=i)))) for i in range(3)]
    mine = [next(n for n in s if n.recipient_id == me) for s in stored]
    assert await harness.store.unread_count(me) == 3
    assert await harness.store.mark_read(me, mine[1].id, T0) is True
    assert await harness.store.unread_count(me) == 2
    assert [n.id for n in await everything(harness, me, unread_only=True)] == [mine[2].id, mine[0].id]
    assert [n.read for n in await everything(harness, me)] == [False, True, False]
    assert await harness.store.unread_count(other) == 3


async def test_mark_read_tells_changed_unchanged_and_not_mine_apart(harness: Harness):
    me, other = user(), user()
    [mine] = await harness.add(make_notice(me))
    [theirs] = await harness.add(make_notice(other))
    assert await harness.store.mark_read(me, mine.id, T0) is True
    assert await harness.store.mark_read(me, mine.id, T0) is False
    assert await harness.store.mark_read(me, theirs.id, T0) is None
    assert await harness.store.mark_read(me, str(uuid.uuid4()), T0) is None
    assert [n.read for n in await everything(harness, other)] == [False]


async def test_mark_all_read_marks_only_mine_up_to_the_given_time(harness: Harness):
    me, other = user(), user()
    for i in range(3):
        await harness.add(make_notice(me, other, at=T0 + timedelta(seconds=i)))
    late = await harness.add(make_notice(me, at=T0 + timedelta(seconds=10)))
    assert await harness.store.mark_all_read(me, up_to=T0 + timedelta(seconds=2), now=T0) == 3
    assert [n.read for n in await everything(harness, me)] == [False, True, True, True]
    assert await harness.store.unread_count(me) == 1
    assert await harness.store.unread_count(other) == 3
    assert await harness.store.mark_all_read(me, up_to=T0 + timedelta(seconds=2), now=T0) == 0
    assert await harness.store.mark_all_read(me, up_to=late[0].created_at, now=T0) == 1


async def test_feed_state_bumps_with_every_change_of_the_feed(harness: Harness):
    me, other = user(), user()
    assert await harness.store.feed_state(me) == NEVER
    first = await harness.add(make_notice(me, other, at=T0))
    state = await harness.store.feed_state(me)
    assert (state.version, state.modified_at) == (1, T0)
    assert (await harness.store.feed_state(other)).version == 1

    await harness.add(make_notice(me, at=T0 + timedelta(seconds=1)))
    assert (await harness.store.feed_state(me)).version == 2
    assert (await harness.store.feed_state(other)).version == 1

    mine = next(n for n in first if n.recipient_id == me)
    t_read = T0 + timedelta(seconds=5)
    await harness.store.mark_read(me, mine.id, t_read)
    assert await harness.store.feed_state(me) == type(state)(3, t_read)
    await harness.store.mark_read(me, mine.id, t_read + timedelta(seconds=1))  # already read: no change
    assert (await harness.store.feed_state(me)).version == 3

    await harness.store.mark_all_read(me, up_to=t_read, now=t_read + timedelta(seconds=2))
    assert (await harness.store.feed_state(me)).version == 4
    await harness.store.mark_all_read(me, up_to=t_read, now=t_read + timedelta(seconds=3))  # nothing left
    assert (await harness.store.feed_state(me)).version == 4
    assert (await harness.store.feed_state(other)).version == 1


async def test_modified_at_never_goes_back(harness: Harness):
    me = user()
    await harness.add(make_notice(me, at=T0 + timedelta(seconds=10)))
    await harness.add(make_notice(me, at=T0))  # another replica, its clock behind
    assert await harness.store.feed_state(me) == type(NEVER)(2, T0 + timedelta(seconds=10))


async def test_a_repeated_add_never_lowers_the_feed_version(harness: Harness):
    me = user()
    notice = make_notice(me)
    await harness.add(notice)
    await harness.add(notice)
    assert (await harness.store.feed_state(me)).version >= 1


async def test_mongo_a_crash_between_insert_and_bump_is_repaired_by_the_redelivery(mongo_harness: Harness):
    """MongoDB only: PostgreSQL inserts and bumps in the worker's one transaction."""
    harness = mongo_harness
    me = user()
    notice = make_notice(me)
    # The first delivery inserted, then the process died before the bump (and before the inbox commit).
    await harness.database["notifications"].insert_one(
        {
            "_id": str(uuid.uuid4()),
            "event_id": notice.event_id,
            "recipient_id": me,
            "type": notice.type,
            "message": notice.message,
            "read": False,
            "created_at": notice.created_at,
        }
    )
    assert await harness.store.feed_state(me) == NEVER
    await harness.add(notice)  # the redelivery
    assert len(await everything(harness, me)) == 1
    assert (await harness.store.feed_state(me)).version == 1


async def test_the_hot_queries_have_their_indexes(harness: Harness):
    if harness.database is not None:
        indexes = await harness.database["notifications"].index_information()
        keys = {name: [field for field, _ in info["key"]] for name, info in indexes.items()}
        assert keys["feed"] == ["recipient_id", "created_at", "_id"]
        assert keys["unread"] == ["recipient_id", "read", "created_at", "_id"]
        assert keys["once"] == ["event_id", "recipient_id"]
        assert indexes["once"]["unique"] is True
        return
    plans = {}
    async with harness.pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")  # the tables are tiny: force the planner's hand
        me = user()
        for name, query in {
            "feed": "SELECT id FROM notifications WHERE recipient_id = $1 "
            "AND (created_at, id) < (now(), gen_random_uuid()) ORDER BY created_at DESC, id DESC LIMIT 20",
            "unread": "SELECT count(*) FROM notifications WHERE recipient_id = $1 AND NOT read",
            "state": "SELECT version FROM feed_state WHERE user_id = $1",
        }.items():
            plans[name] = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {query}", me))
    assert "notifications_feed" in plans["feed"]
    assert "Sort" not in plans["feed"]
    assert "notifications_unread" in plans["unread"]
    assert "feed_state_pkey" in plans["state"]
    unique = await harness.pool.fetchval("SELECT indexdef FROM pg_indexes WHERE indexname = 'notifications_once'")
    assert "UNIQUE" in unique and "(event_id, recipient_id)" in unique
