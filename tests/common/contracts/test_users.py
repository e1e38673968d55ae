"""Version-guarded replica writes: the newest version wins whatever the order, duplicates change nothing."""

from __future__ import annotations

import itertools

import pytest

from common.contracts.users import apply_user
from common.core.envelope import Event
from common.db.pool import connect
from common.db.upserts import upsert_if_newer, upsert_many_if_newer
from tests.helpers import user_record


@pytest.fixture
async def conn(database_url):  # type: ignore[no-untyped-def]
    connection = await connect(database_url)
    await connection.execute(
        "CREATE TABLE things (id uuid PRIMARY KEY, name text, version bigint NOT NULL);"
        "CREATE TABLE pairs (a text, b text, role text, version bigint NOT NULL, PRIMARY KEY (a, b));"
        "CREATE TABLE users (id uuid PRIMARY KEY, username text, email text, full_name text, role text,"
        " version bigint NOT NULL, created_at timestamptz, updated_at timestamptz)"
    )
    yield connection
    await connection.close()


THING = "00000000-0000-0000-0000-000000000001"


@pytest.mark.parametrize("order", list(itertools.permutations([1, 2, 3])))
async def test_the_highest_version_wins_in_any_order_and_with_duplicates(conn, order):
    for version in order + order:
        await upsert_if_newer(conn, "things", {"id": THING, "name": f"v{version}", "version": version})
    assert tuple(await conn.fetchrow("SELECT name, version FROM things")) == ("v3", 3)


async def test_it_reports_whether_it_wrote(conn):
    assert await upsert_if_newer(conn, "things", {"id": THING, "name": "a", "version": 2}) is True
    assert await upsert_if_newer(conn, "things", {"id": THING, "name": "b", "version": 2}) is False
    assert await upsert_if_newer(conn, "things", {"id": THING, "name": "c", "version": 1}) is False
    assert await upsert_if_newer(conn, "things", {"id": THING, "name": "d", "version": 3}) is True
    assert await conn.fetchval("SELECT name FROM things") == "d"


async def test_a_composite_key_keeps_rows_apart(conn):
    await upsert_if_newer(conn, "pairs", {"a": "p", "b": "u1", "role": "member", "version": 1}, key=("a", "b"))
    await upsert_if_newer(conn, "pairs", {"a": "p", "b": "u2", "role": "owner", "version": 1}, key=("a", "b"))
    await upsert_if_newer(conn, "pairs", {"a": "p", "b": "u1", "role": "gone", "version": 2}, key=("a", "b"))
    assert [tuple(r) for r in await conn.fetch("SELECT b, role FROM pairs ORDER BY b")] == [
        ("u1", "gone"),
        ("u2", "owner"),
    ]


async def test_the_user_replica_ends_at_the_latest_user_even_when_the_update_comes_first(conn):
    created = user_record("ada")
    updated = {**created, "email": "ada@new.example.com", "version": 2}
    for event_type, user in (("updateUser", updated), ("newUser", created), ("updateUser", updated)):
        await apply_user(Event.new(event_type, user, producer="auth_svc"), conn)
    row = await conn.fetchrow("SELECT id, username, email, version FROM users")
    assert tuple(row) == (created["id"], "ada", "ada@new.example.com", 2)


@pytest.mark.parametrize("order", list(itertools.permutations([1, 2, 3])))
async def test_many_rows_at_once_end_like_one_upsert_per_row_in_order(conn, order):
    other = "00000000-0000-0000-0000-000000000002"
    rows = [{"id": THING, "name": f"v{v}", "version": v} for v in order + order]
    rows.insert(1, {"id": other, "name": "other", "version": 1})
    await upsert_many_if_newer(conn, "things", rows)
    assert [tuple(r) for r in await conn.fetch("SELECT id::text, name, version FROM things ORDER BY id")] == [
        (THING, "v3", 3),
        (other, "other", 1),
    ]


async def test_a_run_of_user_events_is_replicated_in_one_call_like_one_by_one(conn):
    ada, bob = user_record("ada"), user_record("bob")
    renamed = {**ada, "full_name": "Ada L.", "version": 2}
    events = [
        Event.new(t, u, producer="auth_svc")
        for t, u in (("newUser", ada), ("updateUser", renamed), ("newUser", bob), ("newUser", ada))
    ]
    await apply_user.many(events, conn)
    rows = {r["username"]: (r["full_name"], r["version"]) for r in await conn.fetch("SELECT * FROM users")}
    assert rows == {"ada": ("Ada L.", 2), "bob": (bob["full_name"], 1)}
