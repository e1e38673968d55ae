"""What project_svc publishes (docs/events.md), field by field, and what it never publishes."""

from __future__ import annotations

from typing import Any

from common.core.envelope import Event

ALL_TYPES = (
    "newProject",
    "updateProject",
    "deleteProject",
    "addMember",
    "removeMember",
    "newCard",
    "updateCard",
    "changeCardStatus",
    "deleteCard",
    "newNotif",
)


def _card_data(card: dict[str, Any], version: int) -> dict[str, Any]:
    return {**{k: v for k, v in card.items() if k != "total_comments"}, "version": version}


def _project_data(project: dict[str, Any], version: int) -> dict[str, Any]:
    return {**{k: v for k, v in project.items() if k != "members"}, "version": version}


async def _notices(api, kind: str) -> list[Event]:  # type: ignore[no-untyped-def]
    await api.settled()
    return [e for e in await api.events("newNotif") if e.data["type"] == kind]


def _assert_envelope(event: Event, actor_id: str, request_id: str) -> None:
    assert event.producer == "project_svc"
    assert event.actor_id == actor_id
    assert event.correlation_id == request_id


async def test_creating_a_project_publishes_the_project_its_owner_and_a_confirmation(api):
    [alice] = await api.users("alice")
    project = await api.ok("POST", "/projects", alice, 201, json={"title": "Apollo"}, headers={"X-Request-ID": "r-1"})
    await api.settled()
    [new_project] = await api.events("newProject")
    [owner] = await api.events("addMember")
    [confirmation] = await api.events("newNotif")
    assert new_project.data == _project_data(project, 1)
    assert owner.data == {
        "project_id": project["id"],
        "user_id": alice.id,
        "role": "owner",
        "version": 1,
        "active": True,
    }
    assert confirmation.data == {
        "type": "project_created",
        "recipients": [alice.id],
        "actor": {"id": alice.id, "username": alice.username},
        "project_id": project["id"],
        "card_id": None,
        "comment_id": None,
        "message": f'{alice.username} created project "Apollo"',
    }
    for event in (new_project, owner, confirmation):
        _assert_envelope(event, alice.id, "r-1")
    # Published in the order they were written: the project exists before its first member.
    assert new_project.occurred_at <= owner.occurred_at


async def test_updating_a_project_publishes_its_new_state_and_a_no_op_publishes_nothing(api, pool):
    [alice] = await api.users("alice")
    project = await api.project(alice, "Apollo")
    path = f"/projects/{project['id']}"
    updated = await api.ok("PATCH", path, alice, json={"description": "new"}, headers={"X-Request-ID": "r-2"})
    await api.settled()
    [event] = await api.events("updateProject")
    assert event.data == _project_data(updated, 2)
    _assert_envelope(event, alice.id, "r-2")
    same = await api.ok("PATCH", path, alice, json={"title": "Apollo", "description": "new"})
    assert same == updated
    assert (await api.published("updateProject"))["updateProject"] == 1
    assert await pool.fetchval("SELECT version FROM projects") == 2


async def test_deleting_a_project_publishes_a_tombstone_and_tells_every_other_member(api):
    alice, bob, carol, dave = await api.users("alice", "bob", "carol", "dave")
    project = await api.project(alice)
    await api.add(alice, project, bob, carol, dave)
    await api.ok("DELETE", f"/projects/{project['id']}/members/{dave.id}", alice, 204)
    await api.ok("PATCH", f"/projects/{project['id']}", alice, json={"title": "Renamed"})
    await api.ok("DELETE", f"/projects/{project['id']}", alice, 204, headers={"X-Request-ID": "r-3"})
    await api.settled()
    [tombstone] = await api.events("deleteProject")
    assert tombstone.data == {"id": project["id"], "owner_id": alice.id, "version": 3}
    _assert_envelope(tombstone, alice.id, "r-3")
    [notice] = await _notices(api, "project_deleted")
    assert notice.data["recipients"] == [bob.id, carol.id]  # not the actor, not the kicked dave
    assert notice.data["message"] == f'{alice.username} deleted project "Renamed"'
    assert notice.correlation_id == "r-3"
    # Consumers drop members and cards from the project's tombstone: nothing else is published.
    counts = await api.published("removeMember", "deleteCard")
    assert counts == {"removeMember": 1, "deleteCard": 0}


async def test_adding_and_removing_a_member_publishes_membership_versions_and_tells_the_member(api):
    alice, bob = await api.users("alice", "bob")
    project = await api.project(alice, "Apollo")
    await api.ok(
        "POST",
        f"/projects/{project['id']}/members",
        alice,
        201,
        json={"user_id": bob.id},
        headers={"X-Request-ID": "a"},
    )
    await api.ok("DELETE", f"/projects/{project['id']}/members/{bob.id}", alice, 204, headers={"X-Request-ID": "r"})
    await api.settled()
    added = [e for e in await api.events("addMember") if e.data["user_id"] == bob.id]
    [removed] = await api.events("removeMember")
    base = {"project_id": project["id"], "user_id": bob.id, "role": "member"}
    assert [e.data for e in added] == [{**base, "version": 1, "active": True}]
    assert removed.data == {**base, "version": 2, "active": False}
    _assert_envelope(added[0], alice.id, "a")
    _assert_envelope(removed, alice.id, "r")
    [welcome] = await _notices(api, "member_added")
    [goodbye] = await _notices(api, "member_removed")
    assert welcome.data["recipients"] == goodbye.data["recipients"] == [bob.id]
    assert welcome.data["message"] == f'{alice.username} added you to project "Apollo"'
    assert goodbye.data["message"] == f'{alice.username} removed you from project "Apollo"'
    assert (welcome.correlation_id, goodbye.correlation_id) == ("a", "r")


async def test_a_new_card_is_published_and_announced_to_the_other_members_and_its_assignee(api):
    alice, bob, carol = await api.users("alice", "bob", "carol")
    project = await api.project(alice, "Apollo")
    await api.add(alice, project, bob, carol)
    card = await api.ok(
        "POST",
        f"/projects/{project['id']}/cards",
        alice,
        201,
        json={"title": "Launch", "due_date": "2030-01-01T00:00:00Z", "assignee_id": bob.id},
        headers={"X-Request-ID": "c-1"},
    )
    await api.settled()
    [new_card] = await api.events("newCard")
    assert new_card.data == _card_data(card, 1)
    assert "total_comments" not in new_card.data
    _assert_envelope(new_card, alice.id, "c-1")
    [created] = await _notices(api, "card_created")
    assert created.data["recipients"] == [bob.id, carol.id]
    assert (created.data["project_id"], created.data["card_id"]) == (project["id"], card["id"])
    assert created.data["message"] == f'{alice.username} created card "Launch" in project "Apollo"'
    [assigned] = await _notices(api, "card_assigned")
    assert assigned.data["recipients"] == [bob.id]
    assert assigned.data["message"] == f'{alice.username} assigned you to card "Launch"'


async def test_assigning_a_card_to_oneself_notifies_nobody_of_the_assignment(api):
    [alice] = await api.users("alice")
    project = await api.project(alice)
    await api.card(alice, project, assignee_id=alice.id)
    card = await api.card(alice, project)
    await api.ok("PATCH", f"/cards/{card['id']}", alice, json={"assignee_id": alice.id})
    counts = await api.published("newCard", "updateCard")
    assert counts == {"newCard": 2, "updateCard": 1}
    # Alone in the project: card_created has nobody to tell either.
    assert [e.data["type"] for e in await api.events("newNotif")] == ["project_created"]


async def test_a_status_change_publishes_update_and_status_change_with_one_version(api):
    alice, bob, carol = await api.users("alice", "bob", "carol")
    project = await api.project(alice)
    await api.add(alice, project, bob, carol)
    card = await api.card(alice, project, "Launch", assignee_id=bob.id)
    updated = await api.ok(
        "PATCH",
        f"/cards/{card['id']}",
        carol,
        json={"status": "done", "title": "Launched"},
        headers={"X-Request-ID": "s"},
    )
    await api.settled()
    [update] = await api.events("updateCard")
    [change] = await api.events("changeCardStatus")
    assert update.data == _card_data(updated, 2)
    assert change.data == {**_card_data(updated, 2), "old_status": "todo", "new_status": "done"}
    _assert_envelope(update, carol.id, "s")
    _assert_envelope(change, carol.id, "s")
    [notice] = await _notices(api, "card_status_changed")
    assert notice.data["recipients"] == [alice.id, bob.id]  # creator and assignee, not the actor carol
    assert notice.data["message"] == f'{carol.username} moved card "Launched" from todo to done'
    assert len(await _notices(api, "card_assigned")) == 1  # only the creation's


async def test_a_status_change_by_the_assignee_tells_only_the_creator(api):
    alice, bob = await api.users("alice", "bob")
    project = await api.project(alice)
    await api.add(alice, project, bob)
    card = await api.card(alice, project, assignee_id=bob.id)
    await api.ok("PATCH", f"/cards/{card['id']}", bob, json={"status": "in_progress"})
    [notice] = await _notices(api, "card_status_changed")
    assert notice.data["recipients"] == [alice.id]


async def test_reassigning_a_card_tells_the_new_assignee_and_unassigning_tells_nobody(api):
    alice, bob, carol = await api.users("alice", "bob", "carol")
    project = await api.project(alice)
    await api.add(alice, project, bob, carol)
    card = await api.card(alice, project, assignee_id=bob.id)
    await api.ok("PATCH", f"/cards/{card['id']}", alice, json={"assignee_id": carol.id})
    await api.ok("PATCH", f"/cards/{card['id']}", alice, json={"assignee_id": None})
    assert [n.data["recipients"] for n in await _notices(api, "card_assigned")] == [[bob.id], [carol.id]]
    updates = await api.events("updateCard")
    assert [(u.data["assignee_id"], u.data["version"]) for u in updates] == [(carol.id, 2), (None, 3)]
    assert await api.events("changeCardStatus") == []


async def test_deleting_a_card_publishes_its_tombstone(api):
    [alice] = await api.users("alice")
    project = await api.project(alice)
    card = await api.card(alice, project)
    await api.ok("PATCH", f"/cards/{card['id']}", alice, json={"priority": "low"})
    await api.ok("DELETE", f"/cards/{card['id']}", alice, 204, headers={"X-Request-ID": "d"})
    await api.settled()
    [tombstone] = await api.events("deleteCard")
    assert tombstone.data == {"id": card["id"], "project_id": project["id"], "version": 3}
    _assert_envelope(tombstone, alice.id, "d")


async def test_rejected_and_no_op_requests_publish_nothing(api, pool):
    alice, bob = await api.users("alice", "bob")
    project = await api.project(alice)
    await api.add(alice, project, bob)
    card = await api.card(alice, project, "Same", status="review")
    before = await api.published(*ALL_TYPES)
    p, c = project["id"], card["id"]
    rejected = [
        ("POST", f"/projects/{p}/members", alice, {"user_id": bob.id}),  # 409 already a member
        ("DELETE", f"/projects/{p}/members/{alice.id}", alice, None),  # 409 owner
        ("POST", f"/projects/{p}/cards", alice, {"title": "x", "assignee_id": "00000000-0000-0000-0000-000000000000"}),
        ("POST", f"/projects/{p}/cards", alice, {"title": "   "}),
        ("PATCH", f"/cards/{c}", alice, {"status": "review", "title": "Same"}),  # no-op: 200
        ("PATCH", f"/cards/{c}", alice, {}),
        ("PATCH", f"/projects/{p}", bob, {"title": "mine now"}),  # 403
        ("DELETE", f"/cards/{c}", bob, None),  # 403
    ]
    statuses = [(await api.call(m, path, user, json=body))[0] for m, path, user, body in rejected]
    assert statuses == [409, 409, 400, 400, 200, 400, 403, 403]
    assert await api.published(*ALL_TYPES) == before
    assert await pool.fetchval("SELECT version FROM cards WHERE id = $1", c) == 1


async def test_kicking_publishes_the_removal_the_unassignments_and_one_notice_in_one_request(api):
    alice, bob = await api.users("alice", "bob")
    project = await api.project(alice)
    await api.add(alice, project, bob)
    card = await api.card(bob, project, assignee_id=bob.id)
    await api.ok("DELETE", f"/projects/{project['id']}/members/{bob.id}", alice, 204, headers={"X-Request-ID": "k"})
    await api.settled()
    [removed] = await api.events("removeMember")
    [unassigned] = await api.events("updateCard")
    [notice] = await _notices(api, "member_removed")
    assert unassigned.data == {**_card_data(card, 2), "assignee_id": None, "updated_at": unassigned.data["updated_at"]}
    assert {removed.correlation_id, unassigned.correlation_id, notice.correlation_id} == {"k"}
