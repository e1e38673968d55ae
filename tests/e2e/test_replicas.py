"""Several replicas per service (`swarm up --replicas comment_svc=3 project_svc=2`) share the work
of one consumer group each and one outbox each, without double effects: every event is published
once and applied once, and many clients commenting at once leave exact counts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis

from common.contracts import topology
from common.core.settings import Settings
from common.swarm.supervisor import Swarm
from tests.e2e.client import Account, Api
from tests.e2e.conftest import running_system
from tests.helpers import eventually

pytestmark = pytest.mark.e2e

COMMENT_REPLICAS = 3
MEMBERS = 4
COMMENTS_EACH = 8
DELETES_EACH = 3


@pytest.fixture(scope="module")
def scaled(servers, tmp_path_factory) -> Iterator[Swarm]:  # type: ignore[no-untyped-def]
    replicas = {"comment_svc": COMMENT_REPLICAS, "project_svc": 2}
    with running_system(servers, tmp_path_factory.mktemp("scaled"), replicas) as swarm:
        yield swarm


@pytest.fixture
async def api(scaled: Swarm) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(http, scaled.gateway_url or "")


async def fetch_counts(swarm: Swarm, service: str, sql: str) -> dict[str, int]:
    conn = await asyncpg.connect(swarm.database_url_of(topology.spec_for(service)))
    try:
        return {row[0]: row[1] for row in await conn.fetch(sql)}
    finally:
        await conn.close()


async def add_member(api: Api, owner: Account, project_id: str, member: Account) -> None:
    async def added() -> bool:
        status, body = await api.call("POST", f"/projects/{project_id}/members", owner, json={"user_id": member.id})
        assert status in (201, 404), body
        return status == 201

    await eventually(added, what=f"{member.username} added")


async def comment_when_replicated(api: Api, who: Account, card_id: str) -> None:
    """Wait until comment_svc lets `who` comment on the card (card and membership replicated)."""

    async def visible() -> bool:
        return (await api.call("GET", f"/cards/{card_id}/comments", who))[0] == 200

    await eventually(visible, what="card and membership replicated into comment_svc")


async def test_concurrent_comments_on_replicas_are_published_and_applied_exactly_once(api, scaled):
    owner = await api.register("owner")
    members = [await api.register(f"member{i}") for i in range(MEMBERS)]
    project = await api.ok("POST", "/projects", owner, json={"title": "Busy"})
    for member in members:
        await add_member(api, owner, project["id"], member)
    cards = [await api.ok("POST", f"/projects/{project['id']}/cards", owner, json={"title": f"c{i}"}) for i in (1, 2)]
    for member in members:
        for card in cards:
            await comment_when_replicated(api, member, card["id"])

    async def post(who: Account, card: dict[str, Any], n: int) -> dict[str, Any]:
        return await api.ok("POST", f"/cards/{card['id']}/comments", who, json={"body": f"{who.username} #{n}"})

    created = await asyncio.gather(*(post(m, cards[n % 2], n) for m in members for n in range(COMMENTS_EACH)))
    doomed = [c for m in members for c in [c for c in created if c["author_id"] == m.id][:DELETES_EACH]]
    deleted = await asyncio.gather(*(api.call("DELETE", f"/comments/{c['id']}", owner) for c in doomed))
    assert all(status == 204 for status, _ in deleted)

    # project_svc's count equals what comment_svc really holds, card by card.
    for card in cards:
        real = len(await api.all_pages(f"/cards/{card['id']}/comments", owner))

        async def converged(card_id: str = card["id"], real: int = real) -> bool:
            return (await api.ok("GET", f"/cards/{card_id}", owner))["total_comments"] == real

        await eventually(converged, timeout=5, what="total_comments equal to the real count")
    assert sum([len(await api.all_pages(f"/cards/{c['id']}/comments", owner)) for c in cards]) == len(created) - len(
        doomed
    )

    redis = aioredis.from_url(scaled.redis_url, decode_responses=True)
    try:
        # Three outbox relays, one publication per change.
        assert await redis.xlen("events:newComment") == len(created)
        assert await redis.xlen("events:deleteComment") == len(doomed)
        notices = [e for _, e in await redis.xrange("events:newNotif") if '"comment_created"' in e["data"]]
        assert len(notices) == len(created)  # the card's creator hears of each comment once

        # One group per consuming service, all its replicas members of it, nothing left pending.
        for stream in ("events:addMember", "events:newCard"):
            groups = {g["name"]: g for g in await redis.xinfo_groups(stream)}
            assert set(groups) == {"comment_svc"}
            assert groups["comment_svc"]["pending"] == 0
            consumers = {c["name"] for c in await redis.xinfo_consumers(stream, "comment_svc")}
            # Each replica's CONSUMER_CONCURRENCY loops: `<CONSUMER_NAME>`, `<CONSUMER_NAME>.1`, ...
            names = [child.env["CONSUMER_NAME"] for child in scaled.replicas_of("comment_svc")]
            loops = range(Settings().consumer_concurrency)
            assert len(names) == COMMENT_REPLICAS
            assert consumers == {name if i == 0 else f"{name}.{i}" for name in names for i in loops}
        groups = {g["name"]: g for g in await redis.xinfo_groups("events:newComment")}
        assert groups["project_svc"]["pending"] == 0
        stream_lengths = {t: await redis.xlen(f"events:{t}") for t in ("addMember", "newCard", "newComment")}
    finally:
        await redis.aclose()

    # Applied once each: the inboxes hold every event id exactly once (their primary key), no more, no less.
    applied_by_comments = await fetch_counts(
        scaled, "comment_svc", "SELECT event_type, count(*) FROM inbox GROUP BY event_type"
    )
    assert applied_by_comments["addMember"] == stream_lengths["addMember"] == MEMBERS + 1
    assert applied_by_comments["newCard"] == stream_lengths["newCard"] == len(cards)
    applied_by_projects = await fetch_counts(
        scaled, "project_svc", "SELECT event_type, count(*) FROM inbox GROUP BY event_type"
    )
    assert applied_by_projects["newComment"] == stream_lengths["newComment"] == len(created)
