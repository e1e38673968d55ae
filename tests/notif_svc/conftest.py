"""notif_svc under test: served over a real socket on this test's PostgreSQL database and Redis, its
consumer worker running inside it. Notifications go to PostgreSQL, or to MongoDB: a real `mongod` when
MONGO_URL is set, otherwise mongomock-motor's in-memory stand-in (MongoDB cannot be installed here).

Users reach its replica the production way (auth_svc's `newUser` events); notices arrive as the
`newNotif` events their producers publish (built with common.contracts.notices.notice).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web import Application

from auth_svc.tokens import TokenIssuer
from common.contracts.notices import notice
from common.core.envelope import Event
from common.core.settings import Settings
from common.http.app import runtime_of
from notif_svc.api import NOTIFICATION_SERVICE
from notif_svc.app import create_app, open_store
from notif_svc.service import NotificationService
from notif_svc.store import NotificationStore, StoreFactory
from notif_svc.store_mongo import MongoNotificationStore
from notif_svc.websocket import LIVE_HUB
from tests.helpers import bearer, eventually, publish, user_record

STORES = ["postgres", "mongo"]


@asynccontextmanager
async def mongo_database() -> AsyncIterator[Any]:
    """A fresh, empty MongoDB database (real when MONGO_URL is set), dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    url = os.environ.get("MONGO_URL")
    if url:
        from motor.motor_asyncio import AsyncIOMotorClient

        client: Any = AsyncIOMotorClient(url, tz_aware=True)
    else:
        from mongomock_motor import AsyncMongoMockClient

        client = AsyncMongoMockClient(tz_aware=True)
    try:
        yield client[name]
        await client.drop_database(name)
    finally:
        client.close()


def mongo_store_factory(database: Any) -> StoreFactory:
    async def factory(settings: Settings, pool: asyncpg.Pool) -> NotificationStore:
        return MongoNotificationStore(database)

    return factory


class FeedQueryCounter:
    """Wraps a store and counts feed queries (the polling contract's 304 path must make none) and
    feed state reads (a 304 answered from memory makes none either)."""

    def __init__(self) -> None:
        self.feed_queries = 0
        self.state_reads = 0

    def factory(self, inner: StoreFactory = open_store) -> StoreFactory:
        async def make(settings: Settings, pool: asyncpg.Pool) -> NotificationStore:
            store = await inner(settings, pool)
            original_feed, original_state = store.feed, store.feed_state

            async def counted_feed(*args: Any, **kwargs: Any) -> Any:
                self.feed_queries += 1
                return await original_feed(*args, **kwargs)

            async def counted_state(*args: Any, **kwargs: Any) -> Any:
                self.state_reads += 1
                return await original_state(*args, **kwargs)

            store.feed = counted_feed  # type: ignore[method-assign]
            store.feed_state = counted_state  # type: ignore[method-assign]
            return store

        return make


@dataclass
class Actor:
    """A user with an access token (and the session id inside it)."""

    user: dict[str, Any]
    token: str
    session_id: str

    @property
    def id(self) -> str:
        return self.user["id"]

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.token)


def mint(keys_dir: Path, user: dict[str, Any], *, ttl_s: int = 900) -> Actor:
    """A real access token, signed as auth_svc signs them, for a session of our own."""
    session_id = str(uuid.uuid4())
    issuer = TokenIssuer((keys_dir / "jwt_private.pem").read_bytes(), "taskswarm", ttl_s, 3600)
    return Actor(user, issuer.pair(user, session_id, str(uuid.uuid4())).access_token, session_id)


class World:
    """Drives one notif_svc app through its event inputs and its HTTP API."""

    def __init__(self, client: TestClient, redis: aioredis.Redis, keys_dir: Path) -> None:
        self.client = client
        self.redis = redis
        self.keys_dir = keys_dir

    @property
    def app(self) -> Application:
        assert self.client.app is not None
        return self.client.app

    @property
    def pool(self) -> asyncpg.Pool:
        return runtime_of(self.app).db()

    @property
    def service(self) -> NotificationService:
        return self.app[NOTIFICATION_SERVICE]

    async def listeners(self, count: int = 1) -> None:
        """Wait until `count` requests or sockets are listening for wake-ups in this app."""
        hub = self.app[LIVE_HUB]

        async def enough() -> bool:
            return hub.listener_count >= count

        await eventually(enough, what=f"{count} live listeners")

    # -- inputs: events -----------------------------------------------------------------------------

    async def apply(self, events: Iterable[Event]) -> None:
        """Publish events as their producers' relays would, and wait until this app applied them all."""
        events = list(events)
        await publish(self.redis, *events)
        ids = sorted({e.id for e in events})

        async def applied() -> bool:
            count = await self.pool.fetchval("SELECT count(*) FROM inbox WHERE event_id = ANY($1::uuid[])", ids)
            return count == len(ids)

        await eventually(applied, what=f"{len(ids)} events applied by notif_svc")

    def actor(self, *, ttl_s: int = 900, **overrides: Any) -> Actor:
        """A user with a token, not (yet) announced to notif_svc."""
        return mint(self.keys_dir, user_record(**overrides), ttl_s=ttl_s)

    async def users(self, count: int) -> list[Actor]:
        actors = [self.actor() for _ in range(count)]
        await self.apply(Event.new("newUser", a.user, producer="auth_svc", actor_id=a.id) for a in actors)
        return actors

    async def notify(
        self, *recipients: Actor, by: Actor | None = None, kind: str = "card_created", **ids: Any
    ) -> Event:
        """Publish one newNotif for `recipients` (caused by `by`) and wait until it is stored."""
        event = notice_event(recipients, by=by, kind=kind, **ids)
        await self.apply([event])
        return event

    # -- the API ------------------------------------------------------------------------------------

    async def feed(self, actor: Actor, **params: Any) -> dict[str, Any]:
        response = await self.client.get("/notifications", params=params, headers=actor.headers)
        assert response.status == 200, await response.text()
        return await response.json()


def notice_event(
    recipients: Iterable[Actor], *, by: Actor | None = None, kind: str = "card_created", **ids: Any
) -> Event:
    actor = {"id": by.id, "username": by.user["username"]} if by else {"id": None, "username": "taskswarm"}
    event = notice(
        kind,
        recipients=[r.id for r in recipients],
        actor=actor,
        message=f"{kind} {uuid.uuid4().hex[:6]}",
        producer="project_svc",
        project_id=ids.get("project_id", str(uuid.uuid4())),
        card_id=ids.get("card_id"),
        comment_id=ids.get("comment_id"),
    )
    assert event is not None
    return event


AppMaker = Callable[..., Awaitable[World]]


@pytest.fixture
async def make_world(make_settings, redis, servers) -> AsyncIterator[AppMaker]:  # type: ignore[no-untyped-def]
    """Factory of running notif_svc apps (same database and Redis unless told otherwise)."""
    async with AsyncExitStack() as stack:

        async def make(
            store: str = "postgres", *, store_factory: StoreFactory | None = None, **overrides: Any
        ) -> World:
            config = make_settings(service_name="notif_svc", **overrides)
            if store_factory is None and store == "mongo":
                store_factory = mongo_store_factory(await stack.enter_async_context(mongo_database()))
            app = create_app(config, store_factory=store_factory or open_store)
            client = await stack.enter_async_context(TestClient(TestServer(app)))
            return World(client, redis, servers.keys_dir)

        yield make


@pytest.fixture(params=STORES)
async def world(request: pytest.FixtureRequest, make_world: AppMaker) -> World:
    """A running notif_svc on each notification store."""
    return await make_world(request.param)


@pytest.fixture
async def pg_world(make_world: AppMaker) -> World:
    """A running notif_svc on the PostgreSQL store (for what does not depend on the store)."""
    return await make_world("postgres")
