"""notif_svc's REST API: the notification shape, pagination, the unread filter and count, read marks,
and that nobody reaches anybody else's notifications."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from common.core.ids import encode_cursor, encode_keyset
from tests.notif_svc.conftest import World

NOTIFICATION_KEYS = {"id", "type", "message", "actor", "project_id", "card_id", "comment_id", "read", "created_at"}


async def test_a_notification_has_the_spec_shape(world: World):
    actor, reader = await world.users(2)
    card_id, comment_id = str(uuid.uuid4()), str(uuid.uuid4())
    event = await world.notify(reader, by=actor, kind="comment_created", card_id=card_id, comment_id=comment_id)
    page = await world.feed(reader)
    assert page["next_cursor"] is None
    [item] = page["items"]
    assert set(item) == NOTIFICATION_KEYS
    assert uuid.UUID(item["id"])
    assert item["type"] == "comment_created"
    assert item["message"] == event.data["message"]
    assert item["actor"] == {"id": actor.id, "username": actor.user["username"]}
    assert (item["project_id"], item["card_id"], item["comment_id"]) == (
        event.data["project_id"],
        card_id,
        comment_id,
    )
    assert item["read"] is False
    assert abs(datetime.fromisoformat(item["created_at"]) - datetime.now(UTC)) < timedelta(seconds=10)


async def test_the_feed_pages_newest_first_with_cursors(pg_world: World):
    [reader] = await pg_world.users(1)
    events = [await pg_world.notify(reader) for _ in range(5)]
    messages, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = await pg_world.feed(reader, **params)
        pages += 1
        messages += [n["message"] for n in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert messages == [e.data["message"] for e in reversed(events)]
    assert len((await pg_world.feed(reader))["items"]) == 5  # default limit 20


async def test_unread_filter_and_unread_count(pg_world: World):
    [reader] = await pg_world.users(1)
    for _ in range(3):
        await pg_world.notify(reader)
    items = (await pg_world.feed(reader))["items"]
    response = await pg_world.client.post(f"/notifications/{items[1]['id']}/read", headers=reader.headers)
    assert response.status == 204
    unread = await pg_world.feed(reader, unread="true")
    assert [n["id"] for n in unread["items"]] == [items[0]["id"], items[2]["id"]]
    assert [n["read"] for n in (await pg_world.feed(reader))["items"]] == [False, True, False]
    response = await pg_world.client.get("/notifications/unread-count", headers=reader.headers)
    assert response.status == 200
    assert await response.json() == {"unread": 2}


async def test_read_all_marks_everything_read(world: World):
    reader, other = await world.users(2)
    for _ in range(3):
        await world.notify(reader, other)
    response = await world.client.post("/notifications/read-all", headers=reader.headers)
    assert response.status == 204
    assert all(n["read"] for n in (await world.feed(reader))["items"])
    assert (await world.feed(reader, unread="true"))["items"] == []
    counts = [
        await (await world.client.get("/notifications/unread-count", headers=a.headers)).json() for a in (reader, other)
    ]
    assert counts == [{"unread": 0}, {"unread": 3}]
    # Nothing left to mark: still 204.
    assert (await world.client.post("/notifications/read-all", headers=reader.headers)).status == 204


async def test_marking_read_twice_is_204_both_times(pg_world: World):
    [reader] = await pg_world.users(1)
    await pg_world.notify(reader)
    [item] = (await pg_world.feed(reader))["items"]
    for _ in range(2):
        response = await pg_world.client.post(f"/notifications/{item['id']}/read", headers=reader.headers)
        assert response.status == 204


async def test_someone_elses_unknown_or_malformed_ids_are_404(world: World):
    owner, intruder = await world.users(2)
    await world.notify(owner)
    [item] = (await world.feed(owner))["items"]
    for notification_id in (item["id"], str(uuid.uuid4()), "not-a-uuid", "1"):
        response = await world.client.post(f"/notifications/{notification_id}/read", headers=intruder.headers)
        assert response.status == 404, notification_id
        assert (await response.json())["error"]["code"] == "not_found"
    assert [n["read"] for n in (await world.feed(owner))["items"]] == [False]
    assert (await world.feed(intruder))["items"] == []


async def test_uppercase_ids_name_the_same_notification(world: World):
    [reader] = await world.users(1)
    await world.notify(reader)
    [item] = (await world.feed(reader))["items"]
    response = await world.client.post(f"/notifications/{item['id'].upper()}/read", headers=reader.headers)
    assert response.status == 204
    assert [n["read"] for n in (await world.feed(reader))["items"]] == [True]


async def test_a_tampered_cursor_only_ever_yields_my_own_notifications(pg_world: World):
    me, other = await pg_world.users(2)
    await pg_world.notify(me)
    for _ in range(3):
        await pg_world.notify(other)
    theirs = (await pg_world.feed(other))["items"]
    far_future = datetime.now(UTC) + timedelta(days=1)
    for cursor in (
        encode_keyset(datetime.fromisoformat(theirs[0]["created_at"]), theirs[0]["id"]),
        encode_keyset(far_future, theirs[1]["id"]),
    ):
        page = await pg_world.feed(me, cursor=cursor)
        assert all(n["id"] not in {t["id"] for t in theirs} for n in page["items"])
    [mine] = (await pg_world.feed(me, cursor=encode_keyset(far_future, str(uuid.uuid4()))))["items"]
    assert mine["id"] not in {t["id"] for t in theirs}


async def test_invalid_cursors_limits_and_waits_are_400_with_details(pg_world: World):
    [reader] = await pg_world.users(1)
    cases = {
        "cursor": ["garbage!", encode_cursor({"created_at": "yesterday", "id": "x"}), encode_cursor({"id": 1})],
        "limit": ["0", "101", "ten"],
        "wait": ["-1", "31", "1.5", "soon"],
        "unread": ["maybe"],
        "bogus": ["1"],
    }
    for field, values in cases.items():
        for value in values:
            response = await pg_world.client.get("/notifications", params={field: value}, headers=reader.headers)
            assert response.status == 400, (field, value)
            error = (await response.json())["error"]
            assert error["code"] == "validation_error"
            assert field in error["details"], (field, value, error)


async def test_every_route_needs_a_token(pg_world: World):
    routes = [
        ("GET", "/notifications"),
        ("GET", "/notifications/unread-count"),
        ("POST", "/notifications/read-all"),
        ("POST", f"/notifications/{uuid.uuid4()}/read"),
    ]
    for method, path in routes:
        response = await pg_world.client.request(method, path)
        assert response.status == 401, path
        assert (await response.json())["error"]["code"] == "missing_token"
