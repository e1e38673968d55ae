"""Projects: create, list (search + offset pagination), detail, update, delete (SPEC §3 Projects)."""

from __future__ import annotations

import pytest

PROJECT_FIELDS = {"id", "title", "description", "owner_id", "created_at", "updated_at"}


async def test_creating_a_project_makes_the_creator_its_owner(api):
    [alice] = await api.users("alice")
    project = await api.project(alice, "Apollo", description="To the moon")
    assert set(project) == PROJECT_FIELDS | {"members"}
    assert project["title"] == "Apollo"
    assert project["description"] == "To the moon"
    assert project["owner_id"] == alice.id
    [owner] = project["members"]
    assert owner["user_id"] == alice.id
    assert owner["username"] == alice.username
    assert owner["role"] == "owner"
    assert set(owner) == {"user_id", "username", "role", "added_at"}


async def test_description_defaults_to_empty(api):
    [alice] = await api.users("alice")
    assert (await api.project(alice))["description"] == ""


async def test_a_member_unknown_to_the_replica_shows_a_null_username(api):
    [ghost] = await api.users("ghost", replicate=False)
    project = await api.project(ghost)
    assert project["members"] == [
        {"user_id": ghost.id, "username": None, "role": "owner", "added_at": project["members"][0]["added_at"]}
    ]


BAD_PROJECTS = [
    ("missing title", {}, "title"),
    ("empty title", {"title": ""}, "title"),
    ("blank title", {"title": "   "}, "title"),
    ("long title", {"title": "x" * 201}, "title"),
    ("title not a string", {"title": 7}, "title"),
    ("NUL in title", {"title": "a\u0000b"}, "title"),
    ("long description", {"title": "ok", "description": "x" * 10_001}, "description"),
    ("unknown field", {"title": "ok", "owner_id": "someone"}, "owner_id"),
]


@pytest.mark.parametrize(("case", "body", "field"), BAD_PROJECTS, ids=[c[0] for c in BAD_PROJECTS])
async def test_invalid_project_input_is_a_400_naming_the_field(api, case, body, field):
    [alice] = await api.users("alice", replicate=False)
    status, error = await api.call("POST", "/projects", alice, json=body)
    assert status == 400
    assert error["error"]["code"] == "validation_error"
    assert field in error["error"]["details"]


async def test_malformed_json_is_a_400(api):
    [alice] = await api.users("alice", replicate=False)
    status, error = await api.call(
        "POST", "/projects", alice, data=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert (status, error["error"]["code"]) == (400, "invalid_json")


async def test_every_endpoint_needs_a_token(api):
    status, error = await api.call("GET", "/projects", None)
    assert (status, error["error"]["code"]) == (401, "missing_token")


async def test_the_list_shows_only_my_projects_newest_first(api):
    alice, bob = await api.users("alice", "bob")
    first = await api.project(alice, "First")
    await api.project(bob, "Bob's own")
    shared = await api.project(bob, "Shared")
    await api.add(bob, shared, alice)
    third = await api.project(alice, "Third")
    page = await api.ok("GET", "/projects", alice)
    assert [p["id"] for p in page["items"]] == [third["id"], shared["id"], first["id"]]
    assert page["total"] == 3 and page["limit"] == 20 and page["offset"] == 0
    assert set(page["items"][0]) == PROJECT_FIELDS


async def test_offset_pagination_walks_every_project_once(api):
    [alice] = await api.users("alice")
    made = [await api.project(alice, f"P{i}") for i in range(5)]
    seen = []
    for offset in (0, 2, 4):
        page = await api.ok("GET", f"/projects?limit=2&offset={offset}", alice)
        assert page["total"] == 5 and page["limit"] == 2 and page["offset"] == offset
        seen += [p["id"] for p in page["items"]]
    assert seen == [p["id"] for p in reversed(made)]
    beyond = await api.ok("GET", "/projects?limit=2&offset=10", alice)
    assert beyond["items"] == [] and beyond["total"] == 5


async def test_search_matches_a_title_substring_in_any_case_and_literally(api):
    [alice] = await api.users("alice")
    apollo = await api.project(alice, "Project APOLLO")
    await api.project(alice, "Gemini")
    percent = await api.project(alice, "100% done")
    page = await api.ok("GET", "/projects", alice, params={"search": "apollo"})
    assert [p["id"] for p in page["items"]] == [apollo["id"]] and page["total"] == 1
    page = await api.ok("GET", "/projects", alice, params={"search": "%"})
    assert [p["id"] for p in page["items"]] == [percent["id"]]


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=x", "offset=-1", "colour=red", "search=%00"])
async def test_bad_list_parameters_are_a_400(api, query):
    [alice] = await api.users("alice", replicate=False)
    status, error = await api.call("GET", f"/projects?{query}", alice)
    assert (status, error["error"]["code"]) == (400, "validation_error")


async def test_the_detail_lists_active_members_with_their_usernames(api):
    alice, bob = await api.users("alice", "bob")
    project = await api.project(alice)
    await api.add(alice, project, bob)
    detail = await api.ok("GET", f"/projects/{project['id']}", bob)
    assert [(m["user_id"], m["username"], m["role"]) for m in detail["members"]] == [
        (alice.id, alice.username, "owner"),
        (bob.id, bob.username, "member"),
    ]


async def test_the_owner_updates_title_and_description(api):
    [alice] = await api.users("alice")
    project = await api.project(alice, "Old")
    updated = await api.ok("PATCH", f"/projects/{project['id']}", alice, json={"title": "New", "description": "d"})
    assert updated["title"] == "New" and updated["description"] == "d"
    assert updated["updated_at"] > project["updated_at"]
    assert (await api.ok("GET", f"/projects/{project['id']}", alice))["title"] == "New"


@pytest.mark.parametrize(
    ("body", "field"), [({}, "_schema"), ({"title": " "}, "title"), ({"owner_id": "x"}, "owner_id")]
)
async def test_an_invalid_project_update_is_a_400(api, body, field):
    [alice] = await api.users("alice")
    project = await api.project(alice)
    status, error = await api.call("PATCH", f"/projects/{project['id']}", alice, json=body)
    assert status == 400 and field in error["error"]["details"]


async def test_deleting_a_project_removes_it_with_its_cards(api, pool):
    alice, bob = await api.users("alice", "bob")
    project = await api.project(alice)
    await api.add(alice, project, bob)
    card = await api.card(bob, project)
    await api.ok("DELETE", f"/projects/{project['id']}", alice, 204)
    assert (await api.call("GET", f"/projects/{project['id']}", alice))[0] == 404
    assert (await api.call("GET", f"/cards/{card['id']}", bob))[0] == 404
    assert (await api.ok("GET", "/projects", bob))["total"] == 0
    assert await pool.fetchval("SELECT count(*) FROM cards") == 0
    assert await pool.fetchval("SELECT count(*) FROM members") == 0


@pytest.mark.parametrize("project_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"])
async def test_an_unknown_or_malformed_project_id_is_a_404(api, project_id):
    [alice] = await api.users("alice", replicate=False)
    for method in ("GET", "PATCH", "DELETE"):
        status, error = await api.call(method, f"/projects/{project_id}", alice, json={"title": "x"})
        assert (status, error["error"]["code"]) == (404, "not_found")
