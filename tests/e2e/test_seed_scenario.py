"""The seed scenario, through the gateway, against every service running as its own process.

register three users → create a project → add a member → create and assign cards → comment → the
card's total_comments follows through project_svc → delete a comment → the count goes back → an
outsider gets 404 everywhere → kick the member → they lose access in both services → delete the
project → its comments are gone from comment_svc.

The steps share one system and run in order: each test is one chapter of the story.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis

from common.contracts import topology
from tests.e2e.client import Account, Api
from tests.helpers import eventually

pytestmark = pytest.mark.e2e

# SPEC: a comment's effect on total_comments is visible within 1 s.
CONSISTENCY_DEADLINE_S = 1.0


class Story:
    """What the chapters have built so far."""

    alice: Account  # the project's owner
    bob: Account  # the member
    carol: Account  # an outsider
    project_id: str
    card_id: str
    other_card_id: str
    bob_comment_id: str
    alice_comment_id: str


story = Story()


@pytest.fixture
async def api(system) -> AsyncIterator[Api]:  # type: ignore[no-untyped-def]
    async with aiohttp.ClientSession() as http:
        yield Api(http, system.gateway_url)


async def total_comments(api: Api, who: Account, card_id: str) -> int:
    return int((await api.ok("GET", f"/cards/{card_id}", who))["total_comments"])


async def count_becomes(api: Api, who: Account, card_id: str, expected: int) -> float:
    """Seconds until the card shows `expected` comments; fails past the SPEC's deadline."""
    started = time.monotonic()

    async def probe() -> bool:
        return await total_comments(api, who, card_id) == expected

    await eventually(probe, timeout=CONSISTENCY_DEADLINE_S, interval=0.01, what=f"total_comments == {expected}")
    return time.monotonic() - started


async def test_1_three_users_register_and_alice_creates_a_project(api):
    story.alice, story.bob, story.carol = [await api.register(name) for name in ("alice", "bob", "carol")]
    project = await api.ok("POST", "/projects", story.alice, json={"title": "Apollo", "description": "to the moon"})
    story.project_id = project["id"]
    assert project["owner_id"] == story.alice.id
    assert [(m["user_id"], m["role"]) for m in project["members"]] == [(story.alice.id, "owner")]


async def test_2_alice_adds_bob_once_project_svc_knows_him(api):
    # bob's newUser travels auth_svc → Redis → project_svc; until it lands he is "no such user".
    async def add_bob() -> Any:
        status, body = await api.call(
            "POST", f"/projects/{story.project_id}/members", story.alice, json={"user_id": story.bob.id}
        )
        assert status in (201, 404), body
        return body if status == 201 else None

    member = await eventually(add_bob, what="bob replicated into project_svc")
    assert member["user_id"] == story.bob.id and member["role"] == "member"
    detail = await api.ok("GET", f"/projects/{story.project_id}", story.bob)
    assert {m["user_id"] for m in detail["members"]} == {story.alice.id, story.bob.id}
    status, _ = await api.call(
        "POST", f"/projects/{story.project_id}/members", story.alice, json={"user_id": story.bob.id}
    )
    assert status == 409


async def test_3_cards_are_created_and_assigned(api):
    card = await api.ok(
        "POST",
        f"/projects/{story.project_id}/cards",
        story.alice,
        json={"title": "Build the rocket", "priority": "high", "assignee_id": story.bob.id},
    )
    story.card_id = card["id"]
    assert (card["assignee_id"], card["status"], card["total_comments"]) == (story.bob.id, "todo", 0)
    other = await api.ok("POST", f"/projects/{story.project_id}/cards", story.bob, json={"title": "Fuel"})
    story.other_card_id = other["id"]
    assigned = await api.ok("PATCH", f"/cards/{other['id']}", story.bob, json={"assignee_id": story.alice.id})
    assert assigned["assignee_id"] == story.alice.id

    mine = await api.all_pages("/cards", story.bob, assignee_id="me")
    assert [c["id"] for c in mine] == [story.card_id]
    newest_first = await api.all_pages(f"/projects/{story.project_id}/cards", story.alice)
    assert [c["id"] for c in newest_first] == [story.other_card_id, story.card_id]


async def test_4_a_comment_shows_in_total_comments_within_a_second(api):
    # comment_svc learns of the card and of bob's membership by events; the first try may be early.
    async def comment() -> Any:
        status, body = await api.call(
            "POST", f"/cards/{story.card_id}/comments", story.bob, json={"body": "Where is the fuel?"}
        )
        assert status in (201, 404), body
        return body if status == 201 else None

    story.bob_comment_id = (await eventually(comment, what="card and membership replicated into comment_svc"))["id"]
    await count_becomes(api, story.alice, story.card_id, 1)

    reply = await api.ok("POST", f"/cards/{story.card_id}/comments", story.alice, json={"body": "On its way."})
    story.alice_comment_id = reply["id"]
    await count_becomes(api, story.bob, story.card_id, 2)
    thread = await api.all_pages(f"/cards/{story.card_id}/comments", story.bob)
    assert [c["id"] for c in thread] == [story.bob_comment_id, story.alice_comment_id]  # oldest first
    assert thread[0]["author"] == {"id": story.bob.id, "username": story.bob.username}


async def test_5_deleting_a_comment_takes_the_count_back(api):
    status, _ = await api.call("DELETE", f"/comments/{story.bob_comment_id}", story.bob)
    assert status == 204
    await count_becomes(api, story.alice, story.card_id, 1)
    status, _ = await api.call("GET", f"/comments/{story.bob_comment_id}", story.alice)
    assert status == 404


async def test_6_an_outsider_gets_404_everywhere(api):
    carol, project, card = story.carol, story.project_id, story.card_id
    attempts = [
        ("GET", f"/projects/{project}", None),
        ("PATCH", f"/projects/{project}", {"title": "mine now"}),
        ("DELETE", f"/projects/{project}", None),
        ("POST", f"/projects/{project}/members", {"user_id": carol.id}),
        ("DELETE", f"/projects/{project}/members/{story.bob.id}", None),
        ("POST", f"/projects/{project}/cards", {"title": "sneaky"}),
        ("GET", f"/projects/{project}/cards", None),
        ("GET", f"/cards/{card}", None),
        ("PATCH", f"/cards/{card}", {"status": "done"}),
        ("DELETE", f"/cards/{card}", None),
        ("POST", f"/cards/{card}/comments", {"body": "hello?"}),
        ("GET", f"/cards/{card}/comments", None),
        ("GET", f"/comments/{story.alice_comment_id}", None),
        ("PATCH", f"/comments/{story.alice_comment_id}", {"body": "edited"}),
        ("DELETE", f"/comments/{story.alice_comment_id}", None),
    ]
    for method, path, body in attempts:
        status, answer = await api.call(method, path, carol, json=body)
        assert status == 404, (method, path, status, answer)
        assert answer["error"]["code"].endswith("not_found"), answer
    assert (await api.ok("GET", "/projects", carol))["total"] == 0
    assert await api.all_pages("/cards", carol) == []
    # Nothing the outsider tried changed anything.
    assert await total_comments(api, story.alice, card) == 1
    assert (await api.ok("GET", f"/projects/{project}", story.alice))["title"] == "Apollo"


async def test_7_a_kicked_member_loses_access_in_both_services(api):
    bob, project, card = story.bob, story.project_id, story.card_id
    status, _ = await api.call("DELETE", f"/projects/{project}/members/{bob.id}", story.alice)
    assert status == 204
    # project_svc owns memberships: immediately.
    for path in (f"/projects/{project}", f"/cards/{card}", f"/projects/{project}/cards"):
        assert (await api.call("GET", path, bob))[0] == 404, path

    # comment_svc decides from its replica: as soon as removeMember is applied.
    async def comments_refused() -> bool:
        return (await api.call("GET", f"/cards/{card}/comments", bob))[0] == 404

    await eventually(comments_refused, timeout=CONSISTENCY_DEADLINE_S, interval=0.01, what="bob refused by comment_svc")
    status, _ = await api.call("POST", f"/cards/{card}/comments", bob, json={"body": "let me back in"})
    assert status == 404
    # Kicking unassigned him: the card he was working on has no assignee any more.
    assert (await api.ok("GET", f"/cards/{card}", story.alice))["assignee_id"] is None


async def test_8_deleting_the_project_removes_its_comments_from_comment_svc(api, system):
    status, _ = await api.call("DELETE", f"/projects/{story.project_id}", story.alice)
    assert status == 204
    assert (await api.call("GET", f"/projects/{story.project_id}", story.alice))[0] == 404
    assert (await api.call("GET", f"/cards/{story.card_id}", story.alice))[0] == 404

    async def comment_gone() -> bool:
        return (await api.call("GET", f"/comments/{story.alice_comment_id}", story.alice))[0] == 404

    await eventually(comment_gone, timeout=CONSISTENCY_DEADLINE_S, interval=0.01, what="comment deleted by event")
    # Not merely hidden: the rows are gone from comment_svc's own database.
    conn = await asyncpg.connect(system.database_url_of(topology.spec_for("comment_svc")))
    try:
        left = await conn.fetchval("SELECT count(*) FROM comments WHERE project_id = $1", story.project_id)
    finally:
        await conn.close()
    assert left == 0


def swarm_check(system, *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    command = [
        sys.executable,
        "-c",
        "from common.swarm.cli import main; main()",
        "check",
        "--data-dir",
        str(system.data_dir),
    ]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=60)


async def test_9_swarm_check_is_clean_and_names_a_tampered_replica_row(system):
    clean = await asyncio.to_thread(swarm_check, system, "--wait", "5", "--json")
    report = json.loads(clean.stdout)
    assert clean.returncode == 0, report
    assert report["clean"] and report["checked"]["comment_svc.users"] == 3

    conn = await asyncpg.connect(system.database_url_of(topology.spec_for("notif_svc")))
    try:
        await conn.execute("UPDATE users SET username = 'mallory' WHERE id = $1", story.carol.id)
    finally:
        await conn.close()
    broken = await asyncio.to_thread(swarm_check, system, "--json")
    assert broken.returncode == 1
    [finding] = json.loads(broken.stdout)["findings"]
    assert finding["check"] == "notif_svc.users" and finding["kind"] == "different"
    assert finding["key"] == [story.carol.id]
    assert finding["replica"][1] == "mallory" and finding["source"][1] == story.carol.username


def swarm(system, *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    command = [
        sys.executable,
        "-c",
        "from common.swarm.cli import main; main()",
        *args,
        "--data-dir",
        str(system.data_dir),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


async def test_10_a_wiped_user_replica_is_rebuilt_by_swarm_republish_after_the_streams_were_trimmed(system):
    client = aioredis.from_url(system.redis_url, decode_responses=True)
    try:
        async for key in client.scan_iter(match="events:*", _type="STREAM"):
            await client.xtrim(key, maxlen=0, approximate=False)
    finally:
        await client.aclose()
    conn = await asyncpg.connect(system.database_url_of(topology.spec_for("notif_svc")))
    try:
        await conn.execute("TRUNCATE users")
    finally:
        await conn.close()
    assert (await asyncio.to_thread(swarm, system, "check")).returncode == 1

    republished = await asyncio.to_thread(swarm, system, "republish", "users")
    assert republished.returncode == 0, republished.stderr
    assert republished.stdout.startswith("3 events of users queued in auth_svc's outbox")
    rebuilt = await asyncio.to_thread(swarm, system, "check", "--wait", "10", "--json")
    assert rebuilt.returncode == 0, rebuilt.stdout
    assert json.loads(rebuilt.stdout)["checked"]["notif_svc.users"] == 3


async def test_11_swarm_demo_fills_the_running_system_through_the_gateway(system):
    filled = await asyncio.to_thread(
        swarm, system, "demo", "--users", "3", "--projects", "1", "--cards", "2", "--comments", "1"
    )
    assert filled.returncode == 0, filled.stderr
    assert "made 3 users, 1 projects, 2 cards, 2 comments" in filled.stdout
    login = filled.stdout.split("log in as ")[1].split(" / ")[0]
    async with aiohttp.ClientSession() as http:
        api = Api(http, system.gateway_url)
        status, _ = await api.call("POST", "/auth/login", json={"username": login, "password": "taskswarm-demo"})
        assert status == 200
    checked = await asyncio.to_thread(swarm, system, "check", "--wait", "10")
    assert checked.returncode == 0, checked.stdout
