"""comment_svc's replicas converge to the source whatever the order, with every event applied twice.

The handlers are called directly (no inbox in between), so a repeated event really reaches them: what
is proven here is the handlers' own idempotence and order independence (versions, sticky tombstones),
not the worker's deduplication.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import asyncpg
import pytest
from marshmallow import ValidationError

from comment_svc import store
from comment_svc.consumers import HANDLERS
from common.core.envelope import Event
from common.db.pool import connect
from tests.comment_svc.builders import ProjectSource, apply_directly, replica_snapshot
from tests.comment_svc.conftest import World
from tests.helpers import eventually, user_record


def _user_events(users: list[dict[str, Any]]) -> list[Event]:
    return [Event.new("newUser", dict(u), producer="auth_svc", actor_id=u["id"]) for u in users]


def scenario() -> tuple[ProjectSource, dict[str, dict[str, Any]], list[Event]]:
    """A history touching every replicated event type: the source state it ends in, and its events."""
    source = ProjectSource()
    a, b, c, d = (user_record() for _ in range(4))
    events = _user_events([a, b, c, d])
    a_renamed = {**a, "username": a["username"] + "_2", "full_name": "Ann", "version": 2}
    events.append(Event.new("updateUser", a_renamed, producer="auth_svc", actor_id=a["id"]))
    users = {u["id"]: u for u in (a_renamed, b, c, d)}

    p1, created = source.create_project(a["id"])
    events += created
    events += source.add_member(p1["id"], b["id"]) + source.add_member(p1["id"], c["id"])
    events += source.update_project(p1["id"], title="renamed") + source.update_project(p1["id"], description="x")
    k1, created = source.create_card(p1["id"], a["id"], assignee_id=b["id"])
    events += created
    events += source.update_card(k1["id"], title="k1 renamed")
    events += source.update_card(k1["id"], status="in_progress")  # updateCard + changeCardStatus
    events += source.update_card(k1["id"], status="done", assignee_id=c["id"])
    k2, created = source.create_card(p1["id"], b["id"])
    events += created
    events += source.update_card(k2["id"], status="review")
    events += source.delete_card(k2["id"])
    _k3, created = source.create_card(p1["id"], c["id"], assignee_id=c["id"])
    events += created
    events += source.remove_member(p1["id"], c["id"])  # also unassigns k1 and k3
    events += source.add_member(p1["id"], c["id"])  # membership version 3
    events += source.remove_member(p1["id"], b["id"])

    p2, created = source.create_project(b["id"])
    events += created
    events += source.add_member(p2["id"], d["id"])
    k4, created = source.create_card(p2["id"], d["id"], assignee_id=d["id"])
    events += created
    events += source.update_card(k4["id"], status="done")
    events += source.delete_project(p2["id"])

    p3, created = source.create_project(c["id"])
    events += created
    events += source.update_project(p3["id"], title="third")
    return source, users, events


async def _users(conn: asyncpg.Connection) -> dict[str, dict[str, Any]]:
    rows = await conn.fetch("SELECT id, username, email, full_name, role, version FROM users")
    return {r["id"]: dict(r) for r in rows}


ORDERS = ["in order", "reversed", "shuffled seed 1", "shuffled seed 2", "shuffled seed 3", "shuffled seed 4"]


@pytest.mark.parametrize("order", ORDERS)
async def test_replicas_equal_the_source_whatever_the_order_with_every_event_twice(replica_conn, order):
    source, users, events = scenario()
    if order == "in order":
        sequence = events + events
    elif order == "reversed":
        sequence = events[::-1] + events[::-1]
    else:
        sequence = events + events
        random.Random(int(order.rsplit(" ", 1)[1])).shuffle(sequence)
    await apply_directly(replica_conn, sequence)

    assert await replica_snapshot(replica_conn) == source.expected_replica()
    assert await _users(replica_conn) == {
        uid: {k: u[k] for k in ("id", "username", "email", "full_name", "role", "version")} for uid, u in users.items()
    }


async def test_a_late_update_never_resurrects_a_deleted_card(replica_conn):
    source = ProjectSource()
    owner = str(uuid.uuid4())
    project, events = source.create_project(owner)
    card, created = source.create_card(project["id"], owner)
    newer_update = Event.new(
        "updateCard", {**card, "title": "zombie", "version": 5}, producer="project_svc", actor_id=owner
    )
    await apply_directly(replica_conn, events + created + source.delete_card(card["id"]) + [newer_update])
    row = await replica_conn.fetchrow("SELECT deleted FROM cards WHERE id = $1", card["id"])
    assert row["deleted"] is True
    assert await store.visible_card(replica_conn, card["id"], owner) is None


async def test_a_delete_wins_even_over_an_update_that_claims_a_higher_version(replica_conn):
    source = ProjectSource()
    owner = str(uuid.uuid4())
    project, events = source.create_project(owner)
    card, created = source.create_card(project["id"], owner)
    newer_update = Event.new("updateCard", {**card, "version": 5}, producer="project_svc", actor_id=owner)
    await apply_directly(replica_conn, [*events, newer_update, *source.delete_card(card["id"]), *created])
    assert await replica_conn.fetchval("SELECT deleted FROM cards WHERE id = $1", card["id"]) is True


async def test_an_update_project_before_its_new_project_is_kept(replica_conn):
    source = ProjectSource()
    owner = str(uuid.uuid4())
    project, created = source.create_project(owner, title="first")
    [new_project, add_owner] = created
    [update] = source.update_project(project["id"], title="second")
    await apply_directly(replica_conn, [update, add_owner, new_project])
    row = await replica_conn.fetchrow("SELECT title, owner_id, version, deleted FROM projects")
    assert dict(row) == {"title": "second", "owner_id": owner, "version": 2, "deleted": False}


async def test_member_and_card_events_after_delete_project_are_ignored(replica_conn):
    source = ProjectSource()
    owner, member = str(uuid.uuid4()), str(uuid.uuid4())
    project, created = source.create_project(owner)
    added = source.add_member(project["id"], member)
    card, new_card = source.create_card(project["id"], member)
    updated = source.update_card(card["id"], status="done")
    deleted = source.delete_project(project["id"])
    await apply_directly(replica_conn, deleted + created + added + new_card + updated)
    assert await replica_conn.fetchval("SELECT count(*) FROM members") == 0
    assert await replica_conn.fetchval("SELECT count(*) FROM cards WHERE NOT deleted") == 0
    row = await replica_conn.fetchrow("SELECT owner_id, version, deleted FROM projects")
    assert dict(row) == {"owner_id": owner, "version": 2, "deleted": True}


async def test_delete_project_drops_its_members_hides_its_cards_and_deletes_its_comments(replica_conn):
    source = ProjectSource()
    owner = str(uuid.uuid4())
    doomed, created = source.create_project(owner)
    kept, created_kept = source.create_project(owner)
    card, new_card = source.create_card(doomed["id"], owner)
    kept_card, new_kept_card = source.create_card(kept["id"], owner)
    await apply_directly(replica_conn, created + created_kept + new_card + new_kept_card)
    for c in (card, kept_card):
        await store.insert_comment(replica_conn, str(uuid.uuid4()), c["id"], c["project_id"], owner, "hi")

    await apply_directly(replica_conn, source.delete_project(doomed["id"]))
    assert await replica_conn.fetchval("SELECT array_agg(project_id) FROM members") == [kept["id"]]
    assert await replica_conn.fetchval("SELECT array_agg(id) FROM cards WHERE NOT deleted") == [kept_card["id"]]
    assert await replica_conn.fetchval("SELECT array_agg(card_id) FROM comments") == [kept_card["id"]]


async def test_delete_card_deletes_its_comments_only(replica_conn):
    source = ProjectSource()
    owner = str(uuid.uuid4())
    project, created = source.create_project(owner)
    card, new_card = source.create_card(project["id"], owner)
    other, new_other = source.create_card(project["id"], owner)
    await apply_directly(replica_conn, created + new_card + new_other)
    for c in (card, card, other):
        await store.insert_comment(replica_conn, str(uuid.uuid4()), c["id"], project["id"], owner, "hi")
    await apply_directly(replica_conn, source.delete_card(card["id"]) * 2)
    assert await replica_conn.fetchval("SELECT array_agg(card_id) FROM comments") == [other["id"]]


async def test_malformed_payloads_fail_so_the_worker_retries_then_dead_letters_them(replica_conn):
    bad = Event.new("addMember", {"project_id": "nope", "user_id": str(uuid.uuid4())}, producer="project_svc")
    with pytest.raises(ValidationError) as failure:
        await apply_directly(replica_conn, [bad])
    assert set(failure.value.messages) == {"project_id", "role", "version", "active"}
    assert await replica_conn.fetchval("SELECT count(*) FROM members") == 0


async def test_delete_project_waits_for_a_concurrent_add_member_of_that_project(replica_conn, database_url):
    """Two consumer replicas: an addMember in flight must not survive a deleteProject applied meanwhile."""
    source = ProjectSource()
    owner, member = str(uuid.uuid4()), str(uuid.uuid4())
    project, created = source.create_project(owner)
    await apply_directly(replica_conn, created)
    [add] = source.add_member(project["id"], member)
    [delete] = source.delete_project(project["id"])

    other = await connect(database_url)
    try:
        adding = replica_conn.transaction()
        await adding.start()
        await HANDLERS["addMember"](add, replica_conn)  # applied, not yet committed

        async def delete_elsewhere() -> None:
            async with other.transaction():
                await HANDLERS["deleteProject"](delete, other)

        deleting = asyncio.create_task(delete_elsewhere())

        async def delete_is_waiting() -> bool:
            return bool(
                await replica_conn.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND pid = $1",
                    other.get_server_pid(),
                )
            )

        await eventually(delete_is_waiting, what="deleteProject waiting for the addMember's lock")
        await adding.commit()
        await deleting
    finally:
        await other.close()
    assert await replica_conn.fetchval("SELECT count(*) FROM members WHERE project_id = $1", project["id"]) == 0


async def test_the_running_service_converges_from_events_published_in_reverse(world: World):
    """The same through Redis and the consumer worker: newest first, and every event published twice."""
    source, _users, events = scenario()
    duplicates = [Event.from_fields(e.to_fields()) for e in events]  # same ids: the inbox skips them
    await world.apply(events[::-1] + duplicates)
    async with world.pool.acquire() as conn:
        assert await replica_snapshot(conn) == source.expected_replica()
