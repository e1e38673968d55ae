"""Fixtures for project_svc: the service on a real socket, users in its replica, and a small API driver."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from common.core.envelope import Event
from common.http.app import runtime_of
from project_svc.app import create_app
from tests.helpers import access_token, bearer, eventually, publish, user_record


@dataclass
class User:
    record: dict[str, Any]
    headers: dict[str, str]

    @property
    def id(self) -> str:
        return str(self.record["id"])

    @property
    def username(self) -> str:
        return str(self.record["username"])


@pytest.fixture
async def client(make_settings, redis) -> AsyncIterator[TestClient]:  # type: ignore[no-untyped-def]
    """project_svc served over a real socket, with its outbox relay and consumer worker running."""
    app = create_app(make_settings(service_name="project_svc"))
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.fixture
def pool(client: TestClient) -> asyncpg.Pool:
    return runtime_of(client.server.app).db()


class Api:
    """Calls project_svc as a given user; the helpers assert the happy status and return the body."""

    def __init__(self, client: TestClient, redis: aioredis.Redis, keys_dir: Any) -> None:
        self.client = client
        self.redis = redis
        self._keys_dir = keys_dir

    async def users(self, *names: str, replicate: bool = True) -> list[User]:
        """Users with valid tokens; with `replicate`, published as newUser and waited for in the replica."""
        records = [user_record(f"{name}_{uuid.uuid4().hex[:6]}") for name in names]
        users = [User(r, bearer(access_token(self._keys_dir, r))) for r in records]
        if replicate:
            await publish(self.redis, *(Event.new("newUser", r, producer="auth_svc") for r in records))
            ids = [u.id for u in users]
            pool = runtime_of(self.client.server.app).db()

            async def replicated() -> bool:
                count = await pool.fetchval("SELECT count(*) FROM users WHERE id = ANY($1::uuid[])", ids)
                return bool(count == len(ids))

            await eventually(replicated, what="users in the replica")
        return users

    async def call(self, method: str, path: str, user: User | None, **kwargs: Any) -> tuple[int, Any]:
        headers = {**(user.headers if user else {}), **kwargs.pop("headers", {})}
        response = await self.client.request(method, path, headers=headers, **kwargs)
        body = await response.json() if response.content_type == "application/json" else None
        return response.status, body

    async def ok(self, method: str, path: str, user: User, status: int = 200, **kwargs: Any) -> Any:
        got, body = await self.call(method, path, user, **kwargs)
        assert got == status, (method, path, got, body)
        return body

    async def project(self, owner: User, title: str = "Apollo", **body: Any) -> dict[str, Any]:
        return await self.ok("POST", "/projects", owner, 201, json={"title": title, **body})

    async def add(self, owner: User, project: dict[str, Any], *members: User) -> None:
        for member in members:
            await self.ok("POST", f"/projects/{project['id']}/members", owner, 201, json={"user_id": member.id})

    async def card(self, user: User, project: dict[str, Any], title: str = "Fix it", **body: Any) -> dict[str, Any]:
        return await self.ok("POST", f"/projects/{project['id']}/cards", user, 201, json={"title": title, **body})

    async def settled(self) -> None:
        """Wait until every committed event has left the outbox: the streams then hold all there will be."""
        pool = runtime_of(self.client.server.app).db()

        async def drained() -> bool:
            return bool(await pool.fetchval("SELECT count(*) FROM outbox") == 0)

        await eventually(drained, what="the outbox to drain")

    async def events(self, event_type: str) -> list[Event]:
        """Everything published on events:<type> so far (call `settled` first)."""
        return [Event.from_fields(fields) for _, fields in await self.redis.xrange(f"events:{event_type}")]

    async def published(self, *event_types: str) -> dict[str, int]:
        await self.settled()
        return {t: await self.redis.xlen(f"events:{t}") for t in event_types}


@pytest.fixture
def api(client: TestClient, redis: aioredis.Redis, servers) -> Api:  # type: ignore[no-untyped-def]
    return Api(client, redis, servers.keys_dir)
