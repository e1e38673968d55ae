"""Who may do what (decided from comment_svc's own replicas), and what deletes and kicks take away.

Anyone who is not an active member of the project concerned gets 404, never 403, whether or not the
card or comment exists. Members get 403 only for what their role forbids.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.comment_svc.conftest import Actor, World

ROLES = ("outsider", "member", "owner", "author")

# endpoint -> status each role gets. For PATCH and DELETE every role acts on a fresh comment by `author`.
MATRIX: dict[str, dict[str, int]] = {
    "POST /cards/{card}/comments": {"outsider": 404, "member": 201, "owner": 201, "author": 201},
    "GET /cards/{card}/comments": {"outsider": 404, "member": 200, "owner": 200, "author": 200},
    "GET /comments/{comment}": {"outsider": 404, "member": 200, "owner": 200, "author": 200},
    "PATCH /comments/{comment}": {"outsider": 404, "member": 403, "owner": 403, "author": 200},
    "DELETE /comments/{comment}": {"outsider": 404, "member": 403, "owner": 204, "author": 204},
}


async def _call(world: World, endpoint: str, actor: Actor, card: dict[str, Any], comment: dict[str, Any]) -> int:
    method, template = endpoint.split(" ")
    path = template.format(card=card["id"], comment=comment["id"])
    payload = {"body": f"from {actor.id}"} if method in ("POST", "PATCH") else None
    response = await world.client.request(method, path, json=payload, headers=actor.headers)
    if response.status >= 400:
        code = (await response.json())["error"]["code"]
        assert code == {403: "forbidden", 404: "not_found"}[response.status]
    return response.status


async def _everything_answers(world: World, actor: Actor, card: dict[str, Any], comment: dict[str, Any]) -> set[int]:
    return {await _call(world, endpoint, actor, card, comment) for endpoint in MATRIX}


@pytest.mark.parametrize("endpoint", list(MATRIX))
async def test_permission_matrix(world: World, endpoint: str):
    owner, author, member, outsider = await world.users(4)
    project = await world.project(owner, author, member)
    # The outsider is a member elsewhere, with comments of their own: being a user is not enough.
    elsewhere = await world.card(await world.project(outsider), outsider)
    await world.comment(outsider, elsewhere)
    card = await world.card(project, owner, assignee=member)
    actors = {"outsider": outsider, "member": member, "owner": owner, "author": author}
    for role in ROLES:
        comment = await world.comment(author, card)
        status = await _call(world, endpoint, actors[role], card, comment)
        assert status == MATRIX[endpoint][role], (endpoint, role)
        if status >= 400:  # a refusal changes nothing
            unchanged = await world.client.get(f"/comments/{comment['id']}", headers=author.headers)
            assert await unchanged.json() == comment, (endpoint, role)


async def test_an_owner_deletes_someone_elses_comment_and_a_member_cannot(world: World):
    owner, author, member = await world.users(3)
    card = await world.card(await world.project(owner, author, member), author)
    comment = await world.comment(author, card)
    assert (await world.client.delete(f"/comments/{comment['id']}", headers=member.headers)).status == 403
    assert (await world.client.get(f"/comments/{comment['id']}", headers=author.headers)).status == 200
    assert (await world.client.delete(f"/comments/{comment['id']}", headers=owner.headers)).status == 204
    assert await world.pool.fetchval("SELECT count(*) FROM comments") == 0


async def test_a_kicked_member_gets_404_everywhere_even_on_their_own_comments(world: World):
    owner, author = await world.users(2)
    project = await world.project(owner, author)
    card = await world.card(project, owner, assignee=author)
    comment = await world.comment(author, card)
    assert await _everything_answers(world, author, card, await world.comment(author, card)) == {200, 201, 204}
    await world.kick(project, author)
    assert await _everything_answers(world, author, card, comment) == {404}
    # The comment itself is still there for the members who remain.
    assert (await world.client.get(f"/comments/{comment['id']}", headers=owner.headers)).status == 200


async def test_a_member_added_back_regains_access(world: World):
    owner, member = await world.users(2)
    project = await world.project(owner, member)
    card = await world.card(project, owner)
    comment = await world.comment(member, card)
    await world.kick(project, member)
    assert (await world.client.get(f"/comments/{comment['id']}", headers=member.headers)).status == 404
    await world.apply(world.source.add_member(project["id"], member.id))
    assert (await world.client.get(f"/comments/{comment['id']}", headers=member.headers)).status == 200


async def test_deleting_the_project_deletes_its_comments_and_closes_its_cards(world: World):
    owner, member = await world.users(2)
    project = await world.project(owner, member)
    card, other_card = await world.card(project, owner), await world.card(project, member)
    comments = [await world.comment(member, card), await world.comment(owner, other_card)]
    kept_card = await world.card(await world.project(owner), owner)
    kept = await world.comment(owner, kept_card)
    await world.delete_project(project)
    ids = [c["id"] for c in comments]
    assert await world.pool.fetchval("SELECT count(*) FROM comments WHERE id = ANY($1::uuid[])", ids) == 0
    for actor in (owner, member):
        assert await _everything_answers(world, actor, card, comments[0]) == {404}
    assert await world.pool.fetchval("SELECT count(*) FROM members WHERE project_id = $1", project["id"]) == 0
    # Nothing else went.
    assert (await world.client.get(f"/comments/{kept['id']}", headers=owner.headers)).status == 200


async def test_deleting_a_card_deletes_its_comments(world: World):
    owner, member = await world.users(2)
    project = await world.project(owner, member)
    card, other_card = await world.card(project, owner), await world.card(project, owner)
    gone = [await world.comment(member, card), await world.comment(owner, card)]
    kept = await world.comment(member, other_card)
    await world.delete_card(card)
    ids = [c["id"] for c in gone]
    assert await world.pool.fetchval("SELECT count(*) FROM comments WHERE id = ANY($1::uuid[])", ids) == 0
    assert await _everything_answers(world, owner, card, gone[0]) == {404}
    assert (await world.client.get(f"/comments/{kept['id']}", headers=member.headers)).status == 200
