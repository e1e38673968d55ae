"""Every notification type of the SPEC table reaches exactly its recipients, never the actor, through
the real processes: auth_svc, project_svc and comment_svc publish newNotif, notif_svc stores it, and
people read it through the gateway by polling, long-polling and WebSocket."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from common.swarm.supervisor import Swarm
from tests.e2e.client import Account, Api
from tests.e2e.conftest import running_system
from tests.helpers import eventually

pytestmark = pytest.mark.e2e

PUSH_DEADLINE_S = 1.0


@pytest.fixture(scope="module")
def notifying(servers, tmp_path_factory) -> Iterator[Swarm]:  # type: ignore[no-untyped-def]
    # Reminders scan often here, so card_due_soon shows up within the test.
    env = {"REMINDER_INTERVAL_S": "0.2"}
    with running_system(servers, tmp_path_factory.mktemp("notifying"), env=env) as swarm:
        yield swarm


@pytest.fixture
async def api(notifying: Swarm) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(http, notifying.gateway_url or "")


async def feed(api: Api, who: Account) -> list[dict[str, Any]]:
    return await api.all_pages("/notifications", who)


async def types_of(api: Api, who: Account) -> Counter[str]:
    return Counter(n["type"] for n in await feed(api, who))


async def retry_until_replicated(api: Api, method: str, path: str, who: Account, json: Any) -> Any:
    """Writes that depend on another service's replica (a fresh user, card or membership)."""

    async def attempt() -> Any:
        status, body = await api.call(method, path, who, json)
        assert status in (201, 404), (method, path, status, body)
        return body if status == 201 else None

    return await eventually(attempt, what=f"{method} {path} accepted")


async def test_every_type_reaches_exactly_its_recipients_and_never_the_actor(api):
    alice, bob, carol = [await api.register(name) for name in ("alice", "bob", "carol")]
    project = await api.ok("POST", "/projects", alice, json={"title": "Notify"})
    pid = project["id"]
    for member in (bob, carol):
        await retry_until_replicated(api, "POST", f"/projects/{pid}/members", alice, {"user_id": member.id})
    card = await api.ok("POST", f"/projects/{pid}/cards", bob, json={"title": "Wire it", "assignee_id": carol.id})
    await api.ok("PATCH", f"/cards/{card['id']}", carol, json={"status": "in_progress"})
    await retry_until_replicated(api, "POST", f"/cards/{card['id']}/comments", alice, {"body": "first"})
    await retry_until_replicated(api, "POST", f"/cards/{card['id']}/comments", bob, {"body": "second"})
    due = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    await api.ok(
        "POST", f"/projects/{pid}/cards", alice, json={"title": "Soon", "due_date": due, "assignee_id": bob.id}
    )
    await api.call("DELETE", f"/projects/{pid}/members/{carol.id}", alice)

    expected = {
        # card_created: bob's card only (her own card does not notify her); comment_created: bob's comment.
        alice: Counter(registration=1, project_created=1, card_created=1, comment_created=1),
        bob: Counter(
            registration=1,
            member_added=1,
            card_status_changed=1,
            comment_created=1,
            card_created=1,
            card_assigned=1,
            card_due_soon=1,
        ),
        carol: Counter(
            registration=1, member_added=1, card_created=2, card_assigned=1, comment_created=2, member_removed=1
        ),
    }
    for who, wanted in expected.items():

        async def arrived(who: Account = who, wanted: Counter[str] = wanted) -> bool:
            return await types_of(api, who) == wanted

        await eventually(arrived, timeout=10, what=f"{who.username}'s notifications")

    await api.call("DELETE", f"/projects/{pid}", alice)

    async def deleted_notice() -> bool:
        return (await types_of(api, bob))["project_deleted"] == 1

    await eventually(deleted_notice, what="project_deleted for the remaining member")
    assert (await types_of(api, carol))["project_deleted"] == 0  # kicked before the deletion
    assert (await types_of(api, alice))["project_deleted"] == 0  # the actor

    for who in (alice, bob, carol):
        for notification in await feed(api, who):
            if notification["type"] not in ("registration", "project_created", "card_due_soon"):
                assert notification["actor"]["id"] != who.id, notification
    # Nothing more arrives later (no duplicates from redeliveries or replicas).
    assert sum((await types_of(api, bob)).values()) == sum(expected[bob].values()) + 1


async def test_a_long_poll_through_the_gateway_returns_as_soon_as_a_notification_is_stored(api):
    dora, eve = await api.register("dora"), await api.register("eve")
    await eventually(lambda: feed(api, dora), what="dora's registration notice")
    async with api.http.get(f"{api.base}/notifications", headers={"Authorization": f"Bearer {dora.token}"}) as r:
        assert r.status == 200
        etag = r.headers["ETag"]
        assert r.headers["X-Poll-Interval"]
    headers = {"Authorization": f"Bearer {dora.token}", "If-None-Match": etag}
    async with api.http.get(f"{api.base}/notifications", headers=headers) as r:
        assert r.status == 304  # nothing new

    async def poll() -> tuple[int, float]:
        async with api.http.get(f"{api.base}/notifications", headers=headers, params={"wait": "10"}) as r:
            await r.read()
            return r.status, time.monotonic()

    waiting = asyncio.create_task(poll())
    project = await api.ok("POST", "/projects", eve, json={"title": "Ping"})
    await retry_until_replicated(api, "POST", f"/projects/{project['id']}/members", eve, {"user_id": dora.id})
    accepted_at = time.monotonic()  # the member_added notice is stored a few milliseconds after this
    status, answered_at = await waiting
    assert status == 200
    assert answered_at - accepted_at < PUSH_DEADLINE_S  # woken by the notice, long before the 10 s wait ends


async def test_a_websocket_through_the_gateway_receives_the_notification_within_a_second(api, notifying):
    frank, gina = await api.register("frank"), await api.register("gina")
    project = await api.ok("POST", "/projects", gina, json={"title": "Push"})
    url = f"{notifying.gateway_url}/api/v1/ws?access_token={frank.token}"
    async with api.http.ws_connect(url) as socket:
        await retry_until_replicated(api, "POST", f"/projects/{project['id']}/members", gina, {"user_id": frank.id})
        sent_at = time.monotonic()
        message = await socket.receive_json(timeout=5)
        received_at = time.monotonic()
        # Logging out ends the session everywhere, open sockets included.
        status, _ = await api.call("POST", "/auth/logout", frank)
        assert status == 204
        closing = await socket.receive(timeout=5)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        assert socket.close_code == 4001
    assert message["type"] == "notification"
    assert message["data"]["type"] == "member_added"
    assert message["data"]["actor"] == {"id": gina.id, "username": gina.username}
    assert received_at - sent_at < PUSH_DEADLINE_S
