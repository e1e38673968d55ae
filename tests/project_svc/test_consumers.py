"""project_svc's event handlers: the user replica and card comment counts stay exact under duplicates,
reordering and late events, called directly and through the running consumer worker."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from marshmallow import ValidationError

from common.core.envelope import Event
from common.db.migrations import migrate
from common.db.pool import create_pool
from common.messaging.tables import COMMON_MIGRATIONS
from project_svc import store
from project_svc.app import MIGRATIONS
from project_svc.consumers import HANDLERS
from tests.helpers import eventually, publish, user_record

USER_COLUMNS = "id, username, email, full_name, role, version, created_at, updated_at"


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """project_svc's schema on a fresh database, without the service running."""
    await migrate(database_url, [("common", COMMON_MIGRATIONS), ("project_svc", MIGRATIONS)])
    pool = await create_pool(database_url, 1, 4)
    yield pool
    await pool.close()


async def _apply(pool: asyncpg.Pool, *events: Event) -> None:
    """Each event in its own transaction, as the worker's savepoints do."""
    for event in events:
        async with pool.acquire() as conn, conn.transaction():
            await HANDLERS[event.type](event, conn)


def _user_versions() -> tuple[Event, Event]:
    v1 = user_record("neil", full_name="Neil")
    v2 = {**v1, "username": "neil_a", "email": "neil@moon.example", "role": "admin", "version": 2}
    v2["updated_at"] = datetime.now(UTC).isoformat()
    return Event.new("newUser", v1, producer="auth_svc"), Event.new("updateUser", v2, producer="auth_svc")


async def _user(pool: asyncpg.Pool, user_id: str) -> dict[str, Any]:
    return dict(await pool.fetchrow(f"SELECT {USER_COLUMNS} FROM users WHERE id = $1", user_id))


def _as_replica(data: dict[str, Any]) -> dict[str, Any]:
    return {
        **data,
        "created_at": datetime.fromisoformat(data["created_at"]),
        "updated_at": datetime.fromisoformat(data["updated_at"]),
    }


async def test_the_user_replica_ends_at_the_newest_version_whatever_the_order_and_repeats(db):
    created, updated = _user_versions()
    await _apply(db, updated, created, created, updated, created)
    assert await _user(db, created.data["id"]) == _as_replica(updated.data)
    assert await db.fetchval("SELECT count(*) FROM users") == 1


async def test_an_older_user_version_never_overwrites_a_newer_one(db):
    created, updated = _user_versions()
    await _apply(db, created, updated, created)
    assert (await _user(db, created.data["id"]))["username"] == "neil_a"


async def test_unknown_user_fields_are_ignored(db):
    created, _ = _user_versions()
    await _apply(db, Event.new("newUser", {**created.data, "avatar": "x.png"}, producer="auth_svc"))
    assert (await _user(db, created.data["id"]))["username"] == "neil"


async def _card(pool: asyncpg.Pool) -> dict[str, Any]:
    async with pool.acquire() as conn, conn.transaction():
        project = await store.insert_project(conn, str(uuid.uuid4()), "P", "", str(uuid.uuid4()))
        return await store.insert_card(
            conn,
            {"id": str(uuid.uuid4()), "project_id": project["id"], "title": "C", "created_by": project["owner_id"]},
        )


def _comment_events(card: dict[str, Any], changes: list[int]) -> list[Event]:
    """One event per comment added (+1) or deleted (-1), numbered as comment_svc's counter does."""
    events, total, comment_ids = [], 0, []
    for version, change in enumerate(changes, start=1):
        total += change
        common = {"card_id": card["id"], "project_id": card["project_id"], "author_id": str(uuid.uuid4())}
        common |= {"total_comments": total, "total_comments_version": version, "version": 1}
        if change > 0:
            comment_ids.append(str(uuid.uuid4()))
            now = datetime.now(UTC).isoformat()
            data = {"id": comment_ids[-1], "body": "hi", "created_at": now, "updated_at": now, **common}
            events.append(Event.new("newComment", data, producer="comment_svc"))
        else:
            events.append(Event.new("deleteComment", {"id": comment_ids.pop(), **common}, producer="comment_svc"))
    return events


async def _total_comments(pool: asyncpg.Pool, card_id: str) -> tuple[int, int]:
    row = await pool.fetchrow("SELECT total_comments, total_comments_version FROM cards WHERE id = $1", card_id)
    return row["total_comments"], row["total_comments_version"]


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_comment_counts_in_any_order_and_twice_end_at_the_newest_count(db, seed):
    card = await _card(db)
    changes = [+1, +1, +1, -1, +1, -1, -1, +1, +1]  # ends at 3 comments, counter 9
    events = _comment_events(card, changes)
    shuffled = events * 2
    random.Random(seed).shuffle(shuffled)
    await _apply(db, *shuffled)
    assert await _total_comments(db, card["id"]) == (3, 9)


async def test_a_comment_update_carries_the_count_too(db):
    card = await _card(db)
    [added] = _comment_events(card, [+1])
    edited = Event.new("updateComment", {**added.data, "total_comments_version": 2}, producer="comment_svc")
    await _apply(db, edited, added)
    assert await _total_comments(db, card["id"]) == (1, 2)


async def test_comment_events_for_unknown_or_deleted_cards_change_nothing(db):
    card = await _card(db)
    ghost = {"id": str(uuid.uuid4()), "project_id": card["project_id"]}
    await _apply(db, *_comment_events(ghost, [+1, +1]))
    await db.execute("DELETE FROM cards WHERE id = $1", card["id"])
    await _apply(db, *_comment_events(card, [+1]))
    assert await db.fetchval("SELECT count(*) FROM cards") == 0


@pytest.mark.parametrize(
    "bad",
    [{"total_comments": "3"}, {"total_comments": -1}, {"card_id": "nope"}, {"total_comments_version": None}],
    ids=["count as text", "negative count", "bad card id", "no counter"],
)
async def test_a_malformed_comment_payload_is_refused_so_the_worker_retries_then_dead_letters_it(db, bad):
    card = await _card(db)
    [event] = _comment_events(card, [+1])
    broken = Event.new("newComment", {**event.data, **bad}, producer="comment_svc")
    with pytest.raises(ValidationError):
        await _apply(db, broken)
    assert await _total_comments(db, card["id"]) == (0, 0)


# -- through the running service --------------------------------------------------------------------


async def test_the_running_worker_keeps_replica_and_counts_exact_under_reordering_and_duplicates(api, pool, redis):
    [alice] = await api.users("alice")
    project = await api.project(alice)
    card = await api.card(alice, project)
    created, updated = _user_versions()
    comments = _comment_events(card, [+1, +1, -1, +1, +1])  # ends at 3, counter 5
    shuffled = comments * 2
    random.Random(7).shuffle(shuffled)
    # The update is on the wire before the create, and every event is delivered twice (as a relay
    # crashing between XADD and commit would do): the inbox drops the second copy of each id.
    await publish(redis, updated, *shuffled, created, updated, created)

    async def settled() -> bool:
        ids = [e.id for e in (created, updated, *comments)]
        applied = await pool.fetchval("SELECT count(*) FROM inbox WHERE event_id = ANY($1::uuid[])", ids)
        return bool(applied == len(ids))

    await eventually(settled, what="every event applied")
    assert await _user(pool, created.data["id"]) == _as_replica(updated.data)
    assert (await api.ok("GET", f"/cards/{card['id']}", alice))["total_comments"] == 3
    assert await _total_comments(pool, card["id"]) == (3, 5)


async def test_a_reshuffled_copy_with_new_event_ids_changes_nothing_either(api, pool, redis):
    """Same payloads under new ids (a producer re-publishing a snapshot): the version guards hold."""
    [alice] = await api.users("alice")
    project = await api.project(alice)
    card = await api.card(alice, project)
    comments = _comment_events(card, [+1, +1, +1, -1])  # ends at 2, counter 4
    await publish(redis, *comments)

    async def newest_applied() -> bool:
        return await _total_comments(pool, card["id"]) == (2, 4)

    await eventually(newest_applied, what="the newest count")
    copies = [Event.new(e.type, e.data, producer="comment_svc") for e in reversed(comments)]
    await publish(redis, *copies)

    async def copies_applied() -> bool:
        ids = [e.id for e in copies]
        return bool(await pool.fetchval("SELECT count(*) FROM inbox WHERE event_id = ANY($1::uuid[])", ids) == 4)

    await eventually(copies_applied, what="the copies applied")
    assert await _total_comments(pool, card["id"]) == (2, 4)
