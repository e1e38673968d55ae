"""Cards: create, read, update, delete, and listing with filters and cursor pagination (SPEC §3 cards)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from common.core.ids import encode_cursor

CARD_FIELDS = {
    "id",
    "project_id",
    "title",
    "description",
    "status",
    "priority",
    "due_date",
    "assignee_id",
    "created_by",
    "total_comments",
    "created_at",
    "updated_at",
}


async def test_a_card_gets_its_defaults(api):
    [alice] = await api.users("alice")
    project = await api.project(alice)
    card = await api.card(alice, project, "Write docs")
    assert set(card) == CARD_FIELDS
    assert card["project_id"] == project["id"]
    assert (card["title"], card["description"], card["status"], card["priority"]) == (
        "Write docs",
        "",
        "todo",
        "medium",
    )
    assert (card["due_date"], card["assignee_id"], card["created_by"]) == (None, None, alice.id)
    assert card["total_comments"] == 0
    assert await api.ok("GET", f"/cards/{card['id']}", alice) == card


async def test_a_card_takes_every_field_and_a_naive_due_date_is_utc(api):
    alice, bob = await api.users("alice", "bob")
    project = await api.project(alice)
    await api.add(alice, project, bob)
    card = await api.card(
        alice,
        project,
        "Ship",
        description="all of it",
        status="in_progress",
        priority="urgent",
        due_date="2030-01-02T03:04:05",
        assignee_id=bob.id,
    )
    assert card["status"] == "in_progress" and card["priority"] == "urgent" and card["assignee_id"] == bob.id
    assert card["due_date"] == "2030-01-02T03:04:05+00:00"
    offset = await api.card(alice, project, "Offset", due_date="2030-01-02T05:04:05+02:00")
    assert offset["due_date"] == "2030-01-02T03:04:05+00:00"


BAD_CARDS = [
    ("missing title", {}, "title"),
    ("blank title", {"title": " \t"}, "title"),
    ("long title", {"title": "x" * 201}, "title"),
    ("long description", {"title": "t", "description": "x" * 10_001}, "description"),
    ("NUL in description", {"title": "t", "description": "\u0000"}, "description"),
    ("bad status", {"title": "t", "status": "doing"}, "status"),
    ("bad priority", {"title": "t", "priority": "asap"}, "priority"),
    ("bad due_date", {"title": "t", "due_date": "next tuesday"}, "due_date"),
    ("date without time", {"title": "t", "due_date": "2030-01-02"}, "due_date"),
    ("due_date out of range", {"title": "t", "due_date": "0001-01-01T00:00:00+05:00"}, "due_date"),
    ("bad assignee", {"title": "t", "assignee_id": "bob"}, "assignee_id"),
    ("non-member assignee", {"title": "t", "assignee_id": str(uuid.uuid4())}, "assignee_id"),
    ("unknown field", {"title": "t", "total_comments": 5}, "total_comments"),
]


@pytest.mark.parametrize(("case", "body", "field"), BAD_CARDS, ids=[c[0] for c in BAD_CARDS])
async def test_invalid_card_input_is_a_400_naming_the_field(api, case, body, field):
    [alice] = await api.users("alice")
    project = await api.project(alice)
    status, error = await api.call("POST", f"/projects/{project['id']}/cards", alice, json=body)
    assert status == 400
    assert error["error"]["code"] == "validation_error"
    assert field in error["error"]["details"]


async def test_a_member_patches_some_fields_and_the_rest_stays(api):
    alice, bob = await api.users("alice", "bob")
    project = await api.project(alice)
    await api.add(alice, project, bob)
    card = await api.card(alice, project, "Old", description="keep me", due_date="2030-01-01T00:00:00Z")
    updated = await api.ok("PATCH", f"/cards/{card['id']}", bob, json={"title": "New", "status": "review"})
    assert (updated["title"], updated["status"], updated["description"]) == ("New", "review", "keep me")
    assert updated["due_date"] == card["due_date"] and updated["updated_at"] > card["updated_at"]
    assert await api.ok("GET", f"/cards/{card['id']}", alice) == updated


async def test_null_clears_the_due_date_and_unassigns(api):
    alice, bob = await api.users("alice", "bob")
    project = await api.project(alice)
    await api.add(alice, project, bob)
    card = await api.card(alice, project, due_date="2030-01-01T00:00:00Z", assignee_id=bob.id)
    updated = await api.ok("PATCH", f"/cards/{card['id']}", alice, json={"due_date": None, "assignee_id": None})
    assert updated["due_date"] is None and updated["assignee_id"] is None


async def test_a_no_op_patch_answers_the_card_unchanged(api, pool):
    [alice] = await api.users("alice")
    project = await api.project(alice)
    card = await api.card(alice, project, "Same", priority="high")
    same = await api.ok("PATCH", f"/cards/{card['id']}", alice, json={"title": "Same", "priority": "high"})
    assert same == card
    assert await pool.fetchval("SELECT version FROM cards WHERE id = $1", card["id"]) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "_schema"),
        ({"title": ""}, "title"),
        ({"title": None}, "title"),
        ({"status": "nope"}, "status"),
        ({"due_date": "2030-13-01T00:00:00Z"}, "due_date"),
        ({"assignee_id": str(uuid.uuid4())}, "assignee_id"),
        ({"created_by": str(uuid.uuid4())}, "created_by"),
    ],
)
async def test_an_invalid_card_update_is_a_400(api, body, field):
    [alice] = await api.users("alice")
    project = await api.project(alice)
    card = await api.card(alice, project)
    status, error = await api.call("PATCH", f"/cards/{card['id']}", alice, json=body)
    assert (status, error["error"]["code"]) == (400, "validation_error")
    assert field in error["error"]["details"]


async def test_the_creator_or_the_owner_deletes_a_card_but_not_another_member(api):
    alice, bob, carol = await api.users("alice", "bob", "carol")
    project = await api.project(alice)
    await api.add(alice, project, bob, carol)
    by_bob, again_by_bob = await api.card(bob, project), await api.card(bob, project)
    status, error = await api.call("DELETE", f"/cards/{by_bob['id']}", carol)
    assert (status, error["error"]["code"]) == (403, "forbidden")
    await api.ok("DELETE", f"/cards/{by_bob['id']}", bob, 204)
    await api.ok("DELETE", f"/cards/{again_by_bob['id']}", alice, 204)
    for card in (by_bob, again_by_bob):
        assert (await api.call("GET", f"/cards/{card['id']}", bob))[0] == 404
        assert (await api.call("DELETE", f"/cards/{card['id']}", bob))[0] == 404


# -- listing ----------------------------------------------------------------------------------------


async def _walk(api, user, path: str, limit: int = 2, **params: Any) -> list[str]:
    """Every card id of a cursor-paginated listing, page by page, checking the page shape."""
    seen: list[str] = []
    cursor = None
    for _ in range(50):
        query = {**params, "limit": str(limit), **({"cursor": cursor} if cursor else {})}
        page = await api.ok("GET", path, user, params=query)
        assert set(page) == {"items", "next_cursor"} and len(page["items"]) <= limit
        seen += [card["id"] for card in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError("pagination did not end")


@pytest.fixture
async def board(api):
    """Alice's project with seven cards of mixed fields (newest last in `cards`), bob a member."""
    alice, bob = await api.users("alice", "bob")
    project = await api.project(alice, "Board")
    await api.add(alice, project, bob)
    specs = [
        {"title": "Login page", "status": "todo", "priority": "high", "assignee_id": alice.id},
        {"title": "Logout", "status": "done", "priority": "low", "due_date": "2030-01-01T00:00:00Z"},
        {"title": "Signup", "description": "the LOGIN flow too", "status": "todo", "assignee_id": bob.id},
        {"title": "Reports", "status": "review", "priority": "high", "due_date": "2030-06-01T00:00:00Z"},
        {"title": "Billing", "status": "todo", "priority": "urgent", "assignee_id": alice.id},
        {"title": "100% coverage", "status": "in_progress", "due_date": "2029-01-01T00:00:00Z"},
        {"title": "Search", "status": "todo", "priority": "high", "assignee_id": alice.id},
    ]
    cards = [await api.card(alice, project, **spec) for spec in specs]
    return alice, bob, project, cards


def _newest_first(cards: list[dict[str, Any]], keep) -> list[str]:  # type: ignore[no-untyped-def]
    return [card["id"] for card in reversed(cards) if keep(card)]


FILTERS = [
    ("no filter", {}, lambda c, me: True),
    ("status", {"status": "todo"}, lambda c, me: c["status"] == "todo"),
    ("priority", {"priority": "high"}, lambda c, me: c["priority"] == "high"),
    ("assignee me", {"assignee_id": "me"}, lambda c, me: c["assignee_id"] == me),
    ("q in title or description", {"q": "LOGIN"}, lambda c, me: "login" in (c["title"] + c["description"]).lower()),
    ("q is literal", {"q": "%"}, lambda c, me: "%" in c["title"]),
    ("empty q is no filter", {"q": ""}, lambda c, me: True),
    ("due_before", {"due_before": "2030-03-01T00:00:00Z"}, lambda c, me: (c["due_date"] or "9") < "2030-03-01"),
    ("combined", {"status": "todo", "priority": "high", "assignee_id": "me"}, None),
]


@pytest.mark.parametrize(("case", "params", "keep"), FILTERS, ids=[f[0] for f in FILTERS])
async def test_project_cards_walk_every_page_newest_first_with_filters(api, board, case, params, keep):
    alice, _bob, project, cards = board
    if keep is None:

        def keep(c, me):  # type: ignore[no-untyped-def]
            return c["status"] == "todo" and c["priority"] == "high" and c["assignee_id"] == me

    expected = _newest_first(cards, lambda c: keep(c, alice.id))
    assert expected, "the board should match every filter at least once"
    assert await _walk(api, alice, f"/projects/{project['id']}/cards", **params) == expected


async def test_the_assignee_filter_takes_a_user_id(api, board):
    alice, bob, project, cards = board
    expected = _newest_first(cards, lambda c: c["assignee_id"] == bob.id)
    assert await _walk(api, alice, f"/projects/{project['id']}/cards", assignee_id=bob.id) == expected


async def test_one_page_holds_everything_when_the_limit_allows(api, board):
    alice, _bob, project, cards = board
    page = await api.ok("GET", f"/projects/{project['id']}/cards", alice, params={"limit": "100"})
    assert [c["id"] for c in page["items"]] == _newest_first(cards, lambda c: True)
    assert page["next_cursor"] is None


BAD_TIME_CURSOR = encode_cursor({"created_at": "yesterday", "id": str(uuid.uuid4())})
BAD_ID_CURSOR = encode_cursor({"created_at": "2030-01-01T00:00:00+00:00", "id": 5})
BAD_LISTINGS = [
    ("limit 0", {"limit": "0"}, "limit"),
    ("limit 101", {"limit": "101"}, "limit"),
    ("garbage cursor", {"cursor": "!!!not-base64"}, "cursor"),
    ("cursor of another shape", {"cursor": encode_cursor({"offset": 3})}, "cursor"),
    (
        "cursor with a bad time",
        {"cursor": BAD_TIME_CURSOR},
        "cursor",
    ),
    ("cursor with a bad id", {"cursor": BAD_ID_CURSOR}, "cursor"),
    ("bad status", {"status": "doing"}, "status"),
    ("bad assignee", {"assignee_id": "you"}, "assignee_id"),
    ("bad due_before", {"due_before": "soon"}, "due_before"),
    ("NUL in q", {"q": "a\u0000"}, "q"),
    ("unknown parameter", {"sort": "title"}, "sort"),
]


@pytest.mark.parametrize(("case", "params", "field"), BAD_LISTINGS, ids=[c[0] for c in BAD_LISTINGS])
async def test_bad_listing_parameters_are_a_400(api, case, params, field):
    [alice] = await api.users("alice")
    project = await api.project(alice)
    for path in (f"/projects/{project['id']}/cards", "/cards"):
        status, error = await api.call("GET", path, alice, params=params)
        assert (status, error["error"]["code"]) == (400, "validation_error"), path
        assert field in error["error"]["details"]


async def test_my_cards_span_only_the_projects_i_am_a_member_of(api):
    alice, bob = await api.users("alice", "bob")
    mine, shared, foreign = await api.project(alice, "Mine"), await api.project(bob, "Shared"), await api.project(bob)
    await api.add(bob, shared, alice)
    created = [
        await api.card(alice, mine, "a1", assignee_id=alice.id),
        await api.card(bob, shared, "s1", assignee_id=alice.id),
        await api.card(bob, foreign, "f1"),
        await api.card(bob, shared, "s2", assignee_id=bob.id, status="done"),
        await api.card(alice, mine, "a2", status="done"),
    ]
    visible = [c for c in created if c["project_id"] != foreign["id"]]
    assert await _walk(api, alice, "/cards") == _newest_first(visible, lambda c: True)
    assigned = _newest_first(visible, lambda c: c["assignee_id"] == alice.id)
    assert await _walk(api, alice, "/cards", assignee_id="me") == assigned
    done = _newest_first(visible, lambda c: c["status"] == "done")
    assert await _walk(api, alice, "/cards", limit=1, status="done") == done
    assert await _walk(api, bob, "/cards") == _newest_first(created[1:4], lambda c: True)


async def test_total_comments_is_part_of_the_card(api, pool):
    [alice] = await api.users("alice")
    project = await api.project(alice)
    card = await api.card(alice, project)
    await pool.execute("UPDATE cards SET total_comments = 4 WHERE id = $1", card["id"])
    assert (await api.ok("GET", f"/cards/{card['id']}", alice))["total_comments"] == 4
