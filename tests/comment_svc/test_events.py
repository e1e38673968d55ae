"""What comment_svc publishes: exact payloads, exact comment counts under concurrency, who is notified."""

from __future__ import annotations

import asyncio
import itertools
import random

from common.core.envelope import Event
from tests.comment_svc.conftest import Actor, World


def _by_comment(notices: list[Event]) -> dict[str, Event]:
    return {n.data["comment_id"]: n for n in notices}


async def test_new_comment_carries_the_comment_and_the_cards_count(world: World):
    owner, member = await world.users(2)
    project = await world.project(owner, member)
    card = await world.card(project, owner)
    first = await world.comment(member, card, "one")
    second = await world.comment(owner, card, "two")
    events = await world.published("newComment")
    assert [e.data for e in events] == [
        {
            "id": comment["id"],
            "card_id": card["id"],
            "project_id": project["id"],
            "author_id": comment["author_id"],
            "body": comment["body"],
            "created_at": comment["created_at"],
            "updated_at": comment["updated_at"],
            "version": 1,
            "total_comments": n,
            "total_comments_version": n,
        }
        for n, comment in enumerate([first, second], start=1)
    ]
    assert [(e.producer, e.actor_id) for e in events] == [("comment_svc", member.id), ("comment_svc", owner.id)]


async def test_update_comment_carries_the_new_version_and_the_current_count(world: World):
    [owner] = await world.users(1)
    project = await world.project(owner)
    card = await world.card(project, owner)
    comment = await world.comment(owner, card, "draft")
    await world.comment(owner, card, "another")
    response = await world.client.patch(f"/comments/{comment['id']}", json={"body": "final"}, headers=owner.headers)
    edited = await response.json()
    [update] = await world.published("updateComment")
    assert update.data == {
        "id": comment["id"],
        "card_id": card["id"],
        "project_id": project["id"],
        "author_id": owner.id,
        "body": "final",
        "created_at": comment["created_at"],
        "updated_at": edited["updated_at"],
        "version": 2,
        "total_comments": 2,
        "total_comments_version": 2,
    }
    assert update.actor_id == owner.id


async def test_an_edit_that_changes_nothing_and_refused_requests_publish_nothing(world: World):
    owner, member = await world.users(2)
    card = await world.card(await world.project(owner, member), owner)
    comment = await world.comment(owner, card, "same")
    await world.client.patch(f"/comments/{comment['id']}", json={"body": "same"}, headers=owner.headers)
    await world.client.patch(f"/comments/{comment['id']}", json={"body": "mine now"}, headers=member.headers)
    await world.client.delete(f"/comments/{comment['id']}", headers=member.headers)
    await world.client.post(f"/cards/{card['id']}/comments", json={"body": " "}, headers=member.headers)
    assert await world.published("updateComment") == []
    assert await world.published("deleteComment") == []
    assert len(await world.published("newComment")) == 1


async def test_delete_comment_carries_the_next_version_and_the_decremented_count(world: World):
    owner, member = await world.users(2)
    project = await world.project(owner, member)
    card = await world.card(project, owner)
    comment = await world.comment(member, card)
    await world.comment(owner, card)
    await world.client.patch(f"/comments/{comment['id']}", json={"body": "edited"}, headers=member.headers)
    assert (await world.client.delete(f"/comments/{comment['id']}", headers=owner.headers)).status == 204
    [deleted] = await world.published("deleteComment")
    assert deleted.data == {
        "id": comment["id"],
        "card_id": card["id"],
        "project_id": project["id"],
        "author_id": member.id,
        "version": 3,  # created (1), edited (2), deleted: last + 1
        "total_comments": 1,
        "total_comments_version": 3,
    }
    assert deleted.actor_id == owner.id  # the owner deleted it


async def test_comments_removed_with_their_card_publish_nothing(world: World):
    [owner] = await world.users(1)
    card = await world.card(await world.project(owner), owner)
    await world.comment(owner, card)
    await world.delete_card(card)
    assert await world.published("deleteComment") == []


async def test_concurrent_comments_and_deletes_leave_an_exact_count(world: World):
    users = await world.users(5)
    owner, members = users[0], users[1:]
    project = await world.project(owner, *members)
    card = await world.card(project, owner)
    existing = [await world.comment(users[i % 5], card) for i in range(10)]
    rng = random.Random(7)

    async def create(actor: Actor) -> int:
        response = await world.client.post(f"/cards/{card['id']}/comments", json={"body": "x"}, headers=actor.headers)
        return response.status

    async def delete(comment: dict) -> int:
        # The owner deletes some comments, their authors others, and a few twice (one of them must lose).
        actor = owner if rng.random() < 0.5 else next(u for u in users if u.id == comment["author_id"])
        return (await world.client.delete(f"/comments/{comment['id']}", headers=actor.headers)).status

    doomed = existing[:8]
    requests = [create(users[i % 5]) for i in range(20)] + [delete(c) for c in doomed] + [delete(c) for c in doomed[:2]]
    rng.shuffle(requests)
    statuses = await asyncio.gather(*requests)
    assert sorted(statuses) == sorted([201] * 20 + [204] * 8 + [404] * 2)

    real = await world.pool.fetchval("SELECT count(*) FROM comments WHERE card_id = $1", card["id"])
    assert real == 10 + 20 - 8
    row = await world.pool.fetchrow(
        "SELECT total AS total_comments, version AS total_comments_version FROM card_comment_counts WHERE card_id = $1",
        card["id"],
    )
    assert row["total_comments"] == real
    assert row["total_comments_version"] == 10 + 20 + 8  # one per committed insert or delete, no more

    counted = [e.data for e in await world.published("newComment") + await world.published("deleteComment")]
    versions = sorted(d["total_comments_version"] for d in counted)
    assert versions == list(range(1, 39))  # every change has its own counter value
    latest = max(counted, key=lambda d: d["total_comments_version"])
    assert latest["total_comments"] == real
    # Replaying the counts in counter order is a consistent history: each change moves the count by one.
    by_version = sorted(counted, key=lambda d: d["total_comments_version"])
    for before, after in itertools.pairwise(by_version):
        assert abs(after["total_comments"] - before["total_comments"]) == 1


async def test_comment_created_notifies_creator_assignee_and_earlier_commenters_still_members(world: World):
    creator, assignee, early, late, leaver = await world.users(5)
    project = await world.project(creator, assignee, early, late, leaver)
    card = await world.card(project, creator, assignee=assignee)
    c1 = await world.comment(early, card)
    c2 = await world.comment(leaver, card)
    c3 = await world.comment(late, card)
    c4 = await world.comment(creator, card)
    await world.kick(project, leaver)
    c5 = await world.comment(assignee, card)
    notices = _by_comment(await world.published("newNotif"))
    expected = {
        c1["id"]: [creator.id, assignee.id],
        c2["id"]: [creator.id, assignee.id, early.id],
        c3["id"]: [creator.id, assignee.id, early.id, leaver.id],
        c4["id"]: [assignee.id, early.id, leaver.id, late.id],  # never the author
        c5["id"]: [creator.id, early.id, late.id],  # the leaver is no longer a member
    }
    assert {cid: n.data["recipients"] for cid, n in notices.items()} == expected


async def test_the_comment_created_notice_payload(world: World):
    creator, author = await world.users(2)
    project = await world.project(creator, author)
    card = await world.card(project, creator)
    comment = await world.comment(author, card)
    [notice] = await world.published("newNotif")
    assert notice.data == {
        "type": "comment_created",
        "recipients": [creator.id],
        "actor": {"id": author.id, "username": author.user["username"]},
        "project_id": project["id"],
        "card_id": card["id"],
        "comment_id": comment["id"],
        "message": f'{author.user["username"]} commented on "{card["title"]}"',
    }
    assert notice.producer == "comment_svc"
    assert notice.actor_id == author.id
    [new_comment] = await world.published("newComment")
    assert notice.correlation_id == new_comment.correlation_id  # both caused by the same request


async def test_nobody_to_notify_publishes_no_notice(world: World):
    [owner] = await world.users(1)
    card = await world.card(await world.project(owner), owner, assignee=owner)
    await world.comment(owner, card)
    await world.comment(owner, card)
    assert len(await world.published("newComment")) == 2
    assert await world.published("newNotif") == []
