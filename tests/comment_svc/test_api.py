"""comment_svc's REST API: shapes, validation, pagination, unknown ids."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime

import orjson

from common.core.ids import encode_cursor
from tests.comment_svc.conftest import World

COMMENT_KEYS = {"id", "card_id", "project_id", "author_id", "author", "body", "created_at", "updated_at"}


async def test_a_member_comments_on_a_card_and_gets_the_comment_back(world: World):
    owner, member = await world.users(2)
    project = await world.project(owner, member)
    card = await world.card(project, owner)
    response = await world.client.post(
        f"/cards/{card['id']}/comments", json={"body": "Looks good"}, headers=member.headers
    )
    assert response.status == 201
    comment = await response.json()
    assert set(comment) == COMMENT_KEYS
    assert uuid.UUID(comment["id"])
    assert comment["card_id"] == card["id"]
    assert comment["project_id"] == project["id"]
    assert comment["author_id"] == member.id
    assert comment["author"] == {"id": member.id, "username": member.user["username"]}
    assert comment["body"] == "Looks good"
    assert comment["created_at"] == comment["updated_at"]


async def test_the_detail_is_the_comment_as_created(world: World):
    owner, member = await world.users(2)
    card = await world.card(await world.project(owner, member), owner)
    created = await world.comment(member, card, "first!")
    response = await world.client.get(f"/comments/{created['id']}", headers=owner.headers)
    assert response.status == 200
    assert await response.json() == created


async def test_the_author_username_is_null_while_the_user_replica_does_not_know_them(world: World):
    [owner] = await world.users(1)
    stranger = world.actor()  # a member whose newUser has not arrived yet
    card = await world.card(await world.project(owner, stranger), owner)
    comment = await world.comment(stranger, card)
    assert comment["author"] == {"id": stranger.id, "username": None}


async def test_bodies_of_1_and_10000_characters_are_accepted(world: World):
    [owner] = await world.users(1)
    card = await world.card(await world.project(owner), owner)
    assert (await world.comment(owner, card, "x"))["body"] == "x"
    assert (await world.comment(owner, card, "y" * 10_000))["body"] == "y" * 10_000


async def test_invalid_bodies_are_400_with_per_field_details_on_create_and_edit(world: World):
    [owner] = await world.users(1)
    card = await world.card(await world.project(owner), owner)
    comment = await world.comment(owner, card)
    cases = {
        "blank": ({"body": "  \n\t "}, "body"),
        "empty": ({"body": ""}, "body"),
        "too long": ({"body": "z" * 10_001}, "body"),
        "missing": ({}, "body"),
        "not a string": ({"body": 42}, "body"),
        "NUL character": ({"body": "a\u0000b"}, "body"),
        "unknown field": ({"body": "ok", "author_id": owner.id}, "author_id"),
    }
    for method, path in (("POST", f"/cards/{card['id']}/comments"), ("PATCH", f"/comments/{comment['id']}")):
        for name, (payload, field) in cases.items():
            response = await world.client.request(method, path, json=payload, headers=owner.headers)
            assert response.status == 400, (method, name)
            error = (await response.json())["error"]
            assert error["code"] == "validation_error", (method, name)
            assert field in error["details"], (method, name, error)
        as_json = {**owner.headers, "Content-Type": "application/json"}
        response = await world.client.request(method, path, data=b"{not json", headers=as_json)
        assert response.status == 400
        assert (await response.json())["error"]["code"] == "invalid_json"
    detail = await (await world.client.get(f"/comments/{comment['id']}", headers=owner.headers)).json()
    assert detail == comment  # nothing was changed by the rejected edits


async def test_editing_changes_the_body_and_updated_at(world: World):
    [owner] = await world.users(1)
    card = await world.card(await world.project(owner), owner)
    comment = await world.comment(owner, card, "draft")
    response = await world.client.patch(f"/comments/{comment['id']}", json={"body": "final"}, headers=owner.headers)
    assert response.status == 200
    edited = await response.json()
    assert edited["body"] == "final"
    assert datetime.fromisoformat(edited["updated_at"]) > datetime.fromisoformat(comment["updated_at"])
    assert {k: v for k, v in edited.items() if k not in ("body", "updated_at")} == {
        k: v for k, v in comment.items() if k not in ("body", "updated_at")
    }


async def test_editing_with_the_same_body_is_200_and_changes_nothing(world: World):
    [owner] = await world.users(1)
    card = await world.card(await world.project(owner), owner)
    comment = await world.comment(owner, card, "same")
    response = await world.client.patch(f"/comments/{comment['id']}", json={"body": "same"}, headers=owner.headers)
    assert response.status == 200
    assert await response.json() == comment
    assert await world.pool.fetchval("SELECT version FROM comments WHERE id = $1", comment["id"]) == 1


async def test_deleting_answers_204_and_the_comment_is_gone(world: World):
    [owner] = await world.users(1)
    card = await world.card(await world.project(owner), owner)
    comment = await world.comment(owner, card)
    response = await world.client.delete(f"/comments/{comment['id']}", headers=owner.headers)
    assert response.status == 204
    assert (await world.client.get(f"/comments/{comment['id']}", headers=owner.headers)).status == 404
    assert (await world.client.delete(f"/comments/{comment['id']}", headers=owner.headers)).status == 404
    listing = await (await world.client.get(f"/cards/{card['id']}/comments", headers=owner.headers)).json()
    assert listing == {"items": [], "next_cursor": None}


async def test_pages_walk_every_comment_oldest_first(world: World):
    owner, member = await world.users(2)
    card = await world.card(await world.project(owner, member), owner)
    created = [await world.comment(owner if i % 2 else member, card, f"comment {i}") for i in range(7)]
    seen: list[dict] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        response = await world.client.get(f"/cards/{card['id']}/comments", params=params, headers=owner.headers)
        assert response.status == 200
        page = await response.json()
        assert set(page) == {"items", "next_cursor"}
        pages += 1
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(page["items"]) == 3
    assert pages == 3
    assert seen == created


async def test_the_default_page_is_20_comments(world: World):
    [owner] = await world.users(1)
    card = await world.card(await world.project(owner), owner)
    for i in range(21):
        await world.comment(owner, card, f"c{i}")
    page = await (await world.client.get(f"/cards/{card['id']}/comments", headers=owner.headers)).json()
    assert [c["body"] for c in page["items"]] == [f"c{i}" for i in range(20)]
    assert page["next_cursor"] is not None


async def test_a_card_lists_only_its_own_comments(world: World):
    [owner] = await world.users(1)
    project = await world.project(owner)
    card, other = await world.card(project, owner), await world.card(project, owner)
    mine = await world.comment(owner, card)
    await world.comment(owner, other)
    page = await (await world.client.get(f"/cards/{card['id']}/comments", headers=owner.headers)).json()
    assert page["items"] == [mine]


async def test_bad_cursors_and_limits_are_400_not_500(world: World):
    [owner] = await world.users(1)
    card = await world.card(await world.project(owner), owner)
    not_a_position = base64.urlsafe_b64encode(orjson.dumps([1, 2])).decode()
    bad = [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"cursor": "!!not-base64!!"}, "cursor"),
        ({"cursor": not_a_position}, "cursor"),
        ({"cursor": encode_cursor({"created_at": "yesterday", "id": str(uuid.uuid4())})}, "cursor"),
        ({"cursor": encode_cursor({"created_at": "2024-01-01T00:00:00+00:00", "id": "nope"})}, "cursor"),
        ({"cursor": encode_cursor({"created_at": "2024-01-01T00:00:00", "id": str(uuid.uuid4())})}, "cursor"),
        ({"cursor": encode_cursor({"created_at": 5, "id": str(uuid.uuid4())})}, "cursor"),
        ({"unknown": "1"}, "unknown"),
    ]
    for params, field in bad:
        response = await world.client.get(f"/cards/{card['id']}/comments", params=params, headers=owner.headers)
        assert response.status == 400, params
        error = (await response.json())["error"]
        assert error["code"] == "validation_error"
        assert field in error["details"], (params, error)
    ok = await world.client.get(f"/cards/{card['id']}/comments", params={"limit": "100"}, headers=owner.headers)
    assert ok.status == 200


async def test_unknown_and_malformed_ids_are_404_on_every_endpoint(world: World):
    [owner] = await world.users(1)
    await world.card(await world.project(owner), owner)
    for missing in (str(uuid.uuid4()), "not-a-uuid", "1"):
        requests = [
            ("POST", f"/cards/{missing}/comments", {"body": "hi"}),
            ("GET", f"/cards/{missing}/comments", None),
            ("GET", f"/comments/{missing}", None),
            ("PATCH", f"/comments/{missing}", {"body": "hi"}),
            ("DELETE", f"/comments/{missing}", None),
        ]
        for method, path, payload in requests:
            response = await world.client.request(method, path, json=payload, headers=owner.headers)
            assert response.status == 404, (method, path)
            assert (await response.json())["error"]["code"] == "not_found"


async def test_every_endpoint_needs_a_bearer_token(world: World):
    some_id = str(uuid.uuid4())
    for method, path in (
        ("POST", f"/cards/{some_id}/comments"),
        ("GET", f"/cards/{some_id}/comments"),
        ("GET", f"/comments/{some_id}"),
        ("PATCH", f"/comments/{some_id}"),
        ("DELETE", f"/comments/{some_id}"),
    ):
        response = await world.client.request(method, path, json={"body": "hi"})
        assert response.status == 401, (method, path)
