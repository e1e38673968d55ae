"""comment_svc under test: served over a real socket on this test's database and Redis, its consumer
worker running inside it. Its replicas are filled the way production fills them: by publishing
auth_svc's `newUser` and project_svc's events (tests/comment_svc/builders.py) and waiting until applied."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from comment_svc.app import MIGRATIONS, create_app
from common.core.envelope import Event
from common.db.migrations import migrate
from common.db.pool import connect
from common.http.app import runtime_of
from common.messaging.tables import COMMON_MIGRATIONS
from tests.comment_svc.builders import ProjectSource
from tests.helpers import access_token, bearer, eventually, publish, user_record


@dataclass
class Actor:
    """A user known to comment_svc's replica, with a valid access token."""

    user: dict[str, Any]
    headers: dict[str, str]

    @property
    def id(self) -> str:
        return self.user["id"]


class World:
    """Drives comment_svc through its event inputs and its HTTP API."""

    def __init__(self, client: TestClient, redis: aioredis.Redis, keys_dir: Any) -> None:
        self.client = client
        self.redis = redis
        self.keys_dir = keys_dir
        self.source = ProjectSource()

    @property
    def pool(self) -> asyncpg.Pool:
        app = self.client.app
        assert app is not None
        return runtime_of(app).db()

    # -- inputs: events -----------------------------------------------------------------------------

    async def apply(self, events: Iterable[Event]) -> None:
        """Publish events as their producers' relays would, and wait until comment_svc applied them all."""
        events = list(events)
        await publish(self.redis, *events)
        ids = sorted({e.id for e in events})

        async def applied() -> bool:
            count = await self.pool.fetchval("SELECT count(*) FROM inbox WHERE event_id = ANY($1::uuid[])", ids)
            return count == len(ids)

        await eventually(applied, what=f"{len(ids)} events applied by comment_svc")

    def actor(self, **overrides: Any) -> Actor:
        """A user with a token, not (yet) announced to comment_svc."""
        user = user_record(**overrides)
        return Actor(user, bearer(access_token(self.keys_dir, user)))

    async def users(self, count: int) -> list[Actor]:
        actors = [self.actor() for _ in range(count)]
        await self.apply(Event.new("newUser", a.user, producer="auth_svc", actor_id=a.id) for a in actors)
        return actors

    async def project(self, owner: Actor, *members: Actor) -> dict[str, Any]:
        project, events = self.source.create_project(owner.id)
        for member in members:
            events += self.source.add_member(project["id"], member.id)
        await self.apply(events)
        return project

    async def card(self, project: dict[str, Any], creator: Actor, assignee: Actor | None = None) -> dict[str, Any]:
        card, events = self.source.create_card(project["id"], creator.id, assignee_id=assignee.id if assignee else None)
        await self.apply(events)
        return card

    async def kick(self, project: dict[str, Any], member: Actor) -> None:
        await self.apply(self.source.remove_member(project["id"], member.id))

    async def delete_card(self, card: dict[str, Any]) -> None:
        await self.apply(self.source.delete_card(card["id"]))

    async def delete_project(self, project: dict[str, Any]) -> None:
        await self.apply(self.source.delete_project(project["id"]))

    # -- the API ------------------------------------------------------------------------------------

    async def comment(self, actor: Actor, card: dict[str, Any], body: str | None = None) -> dict[str, Any]:
        body = body or f"comment {uuid.uuid4().hex[:8]}"
        response = await self.client.post(f"/cards/{card['id']}/comments", json={"body": body}, headers=actor.headers)
        assert response.status == 201, await response.text()
        return await response.json()

    # -- outputs: events ----------------------------------------------------------------------------

    async def outbox_drained(self) -> bool:
        return await self.pool.fetchval("SELECT count(*) FROM outbox") == 0

    async def published(self, event_type: str) -> list[Event]:
        """Everything comment_svc committed of this type, once its outbox is empty."""
        await eventually(self.outbox_drained, what="comment_svc's outbox drained")
        entries: Any = await self.redis.xrange(f"events:{event_type}")
        return [Event.from_fields(fields) for _, fields in entries]


@pytest.fixture
async def comment_client(make_settings, redis) -> AsyncIterator[TestClient]:  # type: ignore[no-untyped-def]
    app = create_app(make_settings(service_name="comment_svc"))
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.fixture
def world(comment_client: TestClient, redis: aioredis.Redis, servers: Any) -> World:
    return World(comment_client, redis, servers.keys_dir)


@pytest.fixture
async def replica_conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to a migrated comment_svc database, for calling the event handlers directly."""
    await migrate(database_url, [("common", COMMON_MIGRATIONS), ("comment_svc", MIGRATIONS)])
    conn = await connect(database_url)
    yield conn
    await conn.close()
