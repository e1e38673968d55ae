"""Memberships: adding, kicking and re-adding members (SPEC §3 Projects, docs/events.md memberships)."""

from __future__ import annotations

import uuid


async def test_adding_a_member_returns_the_membership(api):
    alice, bob = await api.users("alice", "bob")
    project = await api.project(alice)
    member = await api.ok("POST", f"/projects/{project['id']}/members", alice, 201, json={"user_id": bob.id})
    assert set(member) == {"user_id", "username", "role", "added_at"}
    assert (member["user_id"], member["username"], member["role"]) == (bob.id, bob.username, "member")
    assert (await api.ok("GET", "/projects", bob))["total"] == 1


async def test_a_user_unknown_to_the_replica_cannot_be_added(api):
    [alice] = await api.users("alice")
    project = await api.project(alice)
    status, error = await api.call(
        "POST", f"/projects/{project['id']}/members", alice, json={"user_id": str(uuid.uuid4())}
    )
    assert (status, error["error"]["code"]) == (404, "user_not_found")


async def test_adding_an_active_member_again_is_a_conflict(api):
    alice, bob = await api.users("alice", "bob")
    project = await api.project(alice)
    await api.add(alice, project, bob)
    for user in (bob, alice):
        status, error = await api.call("POST", f"/projects/{project['id']}/members", alice, json={"user_id": user.id})
        assert status == 409, error


async def test_an_invalid_member_body_is_a_400(api):
    [alice] = await api.users("alice")
    project = await api.project(alice)
    for body in ({}, {"user_id": "nope"}, {"user_id": str(uuid.uuid4()), "role": "owner"}):
        status, error = await api.call("POST", f"/projects/{project['id']}/members", alice, json=body)
        assert (status, error["error"]["code"]) == (400, "validation_error"), body


async def test_the_owner_cannot_be_removed(api):
    [alice] = await api.users("alice")
    project = await api.project(alice)
    status, error = await api.call("DELETE", f"/projects/{project['id']}/members/{alice.id}", alice)
    assert (status, error["error"]["code"]) == (409, "owner_cannot_be_removed")


async def test_removing_someone_who_is_not_an_active_member_is_a_404(api):
    alice, bob = await api.users("alice", "bob")
    project = await api.project(alice)
    for target in (bob.id, str(uuid.uuid4()), "not-a-uuid"):
        status, _ = await api.call("DELETE", f"/projects/{project['id']}/members/{target}", alice)
        assert status == 404, target
    await api.add(alice, project, bob)
    await api.ok("DELETE", f"/projects/{project['id']}/members/{bob.id}", alice, 204)
    status, _ = await api.call("DELETE", f"/projects/{project['id']}/members/{bob.id}", alice)
    assert status == 404


async def test_a_kicked_member_loses_access_at_once(api):
    alice, bob = await api.users("alice", "bob")
    project = await api.project(alice)
    await api.add(alice, project, bob)
    card = await api.card(bob, project)
    await api.ok("DELETE", f"/projects/{project['id']}/members/{bob.id}", alice, 204)
    for method, path in [
        ("GET", f"/projects/{project['id']}"),
        ("GET", f"/projects/{project['id']}/cards"),
        ("GET", f"/cards/{card['id']}"),
        ("PATCH", f"/cards/{card['id']}"),
    ]:
        status, _ = await api.call(method, path, bob, json={"title": "mine"})
        assert status == 404, (method, path)
    assert (await api.ok("GET", "/projects", bob))["total"] == 0
    assert (await api.ok("GET", "/cards", bob))["items"] == []
    detail = await api.ok("GET", f"/projects/{project['id']}", alice)
    assert [m["user_id"] for m in detail["members"]] == [alice.id]


async def test_kicking_unassigns_the_members_cards_in_that_project_only(api):
    alice, bob = await api.users("alice", "bob")
    project, other = await api.project(alice, "A"), await api.project(alice, "B")
    await api.add(alice, project, bob)
    await api.add(alice, other, bob)
    mine = [await api.card(alice, project, f"c{i}", assignee_id=bob.id) for i in range(2)]
    untouched = await api.card(alice, project, "alice's", assignee_id=alice.id)
    elsewhere = await api.card(alice, other, "elsewhere", assignee_id=bob.id)
    await api.settled()
    before = len(await api.events("updateCard"))
    await api.ok("DELETE", f"/projects/{project['id']}/members/{bob.id}", alice, 204)
    for card in mine:
        assert (await api.ok("GET", f"/cards/{card['id']}", alice))["assignee_id"] is None
    assert (await api.ok("GET", f"/cards/{untouched['id']}", alice))["assignee_id"] == alice.id
    assert (await api.ok("GET", f"/cards/{elsewhere['id']}", alice))["assignee_id"] == bob.id
    await api.settled()
    updates = (await api.events("updateCard"))[before:]
    assert sorted(u.data["id"] for u in updates) == sorted(c["id"] for c in mine)
    assert all(u.data["assignee_id"] is None and u.data["version"] == 2 for u in updates)


async def test_re_adding_a_removed_member_reactivates_the_row_and_bumps_its_version(api, pool):
    alice, bob = await api.users("alice", "bob")
    project = await api.project(alice)
    path = f"/projects/{project['id']}/members"
    await api.add(alice, project, bob)
    await api.ok("DELETE", f"{path}/{bob.id}", alice, 204)
    await api.add(alice, project, bob)
    row = await pool.fetchrow("SELECT active, version, removed_at FROM members WHERE user_id = $1", bob.id)
    assert (row["active"], row["version"], row["removed_at"]) == (True, 3, None)
    await api.ok("DELETE", f"{path}/{bob.id}", alice, 204)
    row = await pool.fetchrow("SELECT active, version, removed_at FROM members WHERE user_id = $1", bob.id)
    assert row["active"] is False and row["version"] == 4 and row["removed_at"] is not None
    await api.settled()
    versions = [(e.type, e.data["version"]) for t in ("addMember", "removeMember") for e in await api.events(t)]
    assert sorted(v for t, v in versions if t == "addMember") == [1, 1, 3]  # alice (owner), bob twice
    assert sorted(v for t, v in versions if t == "removeMember") == [2, 4]
