"""Stream-inspection fixtures: the real services and the gateway in this process, a scripted scenario
through the gateway, consumer workers whose handler can be made to fail, and the `swarm` command line
as a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from auth_svc.app import create_app as create_auth_app
from comment_svc.app import create_app as create_comment_app
from common.core.envelope import Event
from common.db.migrations import migrate
from common.db.pool import create_pool
from common.messaging import views as streams
from common.messaging.consumer import ConsumerWorker, WorkerOptions
from common.messaging.tables import COMMON_MIGRATIONS
from gateway.app import create_app as create_gateway_app
from notif_svc.app import create_app as create_notif_app
from project_svc.app import create_app as create_project_app
from tests.helpers import access_token, bearer, eventually, user_record

SWARM = [sys.executable, "-c", "from common.swarm.cli import main; main()"]
SERVICE_APPS = {
    "auth_svc": (create_auth_app, "auth_url"),
    "project_svc": (create_project_app, "project_url"),
    "comment_svc": (create_comment_app, "comment_url"),
    "notif_svc": (create_notif_app, "notif_url"),
}


@pytest.fixture
def database_url() -> str:
    """Every service here gets its own database from `make_database`; nothing needs the default one."""
    return "postgresql://unused@127.0.0.1:1/unused"


@pytest.fixture
def admin_headers(servers: Any) -> dict[str, str]:
    return bearer(access_token(servers.keys_dir, user_record("root", role="admin")))


@pytest.fixture
def user_headers(servers: Any) -> dict[str, str]:
    return bearer(access_token(servers.keys_dir, user_record("mallory", role="user")))


@pytest.fixture
async def gateway(make_settings: Any, redis: aioredis.Redis) -> AsyncIterator[TestClient]:
    """A gateway routing to no service: only its own admin routes answer (Redis emptied first)."""
    settings = make_settings(service_name="gateway", auth_url=())
    async with TestClient(TestServer(create_gateway_app(settings), host="127.0.0.1")) as client:
        yield client


# -- the whole system in this process, and a scripted scenario through its gateway ---------------------


@dataclass
class System:
    gateway: TestClient
    redis: aioredis.Redis
    services: dict[str, TestClient]

    async def call(self, method: str, path: str, *, token: str | None = None, request_id: str, json: Any = None) -> Any:
        headers = {"X-Request-ID": request_id}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        response = await self.gateway.request(method, "/api/v1" + path, json=json, headers=headers)
        assert response.status < 300, f"{method} {path} → {response.status} {await response.text()}"
        assert response.headers["X-Request-ID"] == request_id
        return await response.json() if response.status != 204 else None


async def settled(redis: aioredis.Redis) -> bool:
    """Every group of every stream has acknowledged everything (nothing pending, no lag)."""
    overview = await streams.list_streams(redis)
    return bool(overview.items) and all(item.lag == 0 and item.pending == 0 for item in overview.items)


@pytest.fixture
async def system(make_settings: Any, make_database: Any, redis: aioredis.Redis) -> AsyncIterator[System]:
    async with contextlib.AsyncExitStack() as stack:
        services: dict[str, TestClient] = {}
        urls: dict[str, tuple[str, ...]] = {}
        for name, (factory, url_setting) in SERVICE_APPS.items():
            app = factory(make_settings(service_name=name, database_url=await make_database()))
            client = await stack.enter_async_context(TestClient(TestServer(app, host="127.0.0.1")))
            services[name] = client
            urls[url_setting] = (f"http://127.0.0.1:{client.server.port}",)
        gateway_app = create_gateway_app(make_settings(service_name="gateway", **urls))
        gateway = await stack.enter_async_context(TestClient(TestServer(gateway_app, host="127.0.0.1")))
        yield System(gateway, redis, services)


@dataclass
class Scenario:
    """What the scripted activity produced, for the views to be checked against."""

    system: System
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    project: dict[str, Any] = field(default_factory=dict)
    card: dict[str, Any] = field(default_factory=dict)
    comment: dict[str, Any] = field(default_factory=dict)
    request_ids: dict[str, str] = field(default_factory=dict)
    malformed_entry: str = ""
    dead_letter_id: str = ""


AUDIT_GROUP = "audit_svc"
AUDIT_CONSUMER = "auditor-1"


@pytest.fixture
async def scenario(system: System) -> Scenario:
    """Two users register; alice makes a project, adds bob, files a card for him; bob comments. Then a
    malformed entry lands in events:newCard (comment_svc dead-letters it), and an extra group `audit_svc`
    reads one newCard entry without acknowledging it (1 pending, 1 lag)."""
    run = uuid.uuid4().hex[:8]
    ids = {step: f"req-{step}-{run}" for step in ("alice", "bob", "project", "member", "card", "comment")}
    found = Scenario(system, request_ids=ids)
    redis = system.redis
    for who in ("alice", "bob"):
        body = {"username": f"{who}_{run}", "email": f"{who}_{run}@example.com", "password": "correct-horse-9"}
        found.users[who] = await system.call("POST", "/auth/register", request_id=ids[who], json=body)
    alice, bob = found.users["alice"]["access_token"], found.users["bob"]["access_token"]
    await eventually(lambda: settled(redis), timeout=10, what="users replicated everywhere")
    found.project = await system.call("POST", "/projects", token=alice, request_id=ids["project"], json={"title": "P"})
    project_id = found.project["id"]
    member = {"user_id": found.users["bob"]["user"]["id"]}
    await system.call("POST", f"/projects/{project_id}/members", token=alice, request_id=ids["member"], json=member)
    await eventually(lambda: settled(redis), timeout=10, what="membership replicated")
    card = {"title": "Fix the flux capacitor", "assignee_id": member["user_id"]}
    cards = f"/projects/{project_id}/cards"
    found.card = await system.call("POST", cards, token=alice, request_id=ids["card"], json=card)
    await eventually(lambda: settled(redis), timeout=10, what="card replicated")
    found.comment = await system.call(
        "POST", f"/cards/{found.card['id']}/comments", token=bob, request_id=ids["comment"], json={"body": "On it."}
    )
    await eventually(lambda: settled(redis), timeout=10, what="comment counted")
    broken = {"id": f"broken-{run}", "type": "newCard", "correlation_id": f"req-broken-{run}", "data": "{oops"}
    found.malformed_entry = await redis.xadd("events:newCard", broken)  # type: ignore[arg-type]
    letters = await eventually(lambda: redis.xrange("events:dlq"), timeout=10, what="malformed entry dead-lettered")
    found.dead_letter_id = letters[0][0]
    await redis.xgroup_create("events:newCard", AUDIT_GROUP, id="0")
    await redis.xreadgroup(AUDIT_GROUP, AUDIT_CONSUMER, {"events:newCard": ">"}, count=1)
    return found


# -- consumer workers of two groups on one stream, one of whose handler fails until fixed ---------------

THING_STREAM = "events:newThing"


@dataclass
class Groups:
    """`fragile_svc` fails on events named `poison` while `broken` is set; `steady_svc` never fails."""

    redis: aioredis.Redis
    broken: bool = True
    applied: dict[str, list[str]] = field(default_factory=lambda: {"fragile_svc": [], "steady_svc": []})

    async def publish(self, name: str, correlation_id: str = "") -> Event:
        event = Event(
            type="newThing", data={"name": name}, producer="test", correlation_id=correlation_id or f"corr-{name}"
        )
        await self.redis.xadd(THING_STREAM, event.to_fields())  # type: ignore[arg-type]
        return event


@pytest.fixture
async def groups(redis: aioredis.Redis, make_database: Callable[[], Awaitable[str]]) -> AsyncIterator[Groups]:
    state = Groups(redis)
    pools: list[asyncpg.Pool] = []
    workers: list[ConsumerWorker] = []
    for group in ("fragile_svc", "steady_svc"):
        database = await make_database()
        await migrate(database, [("common", COMMON_MIGRATIONS)])
        pools.append(await create_pool(database, 1, 4))

        def handler_for(group: str) -> Callable[[Event, asyncpg.Connection], Awaitable[None]]:
            async def handle(event: Event, conn: asyncpg.Connection) -> None:
                if group == "fragile_svc" and state.broken and event.data["name"] == "poison":
                    raise ValueError("cannot digest poison")
                state.applied[group].append(event.data["name"])

            return handle

        options = WorkerOptions(
            batch_size=10, block_ms=50, claim_idle_ms=60_000, claim_interval_ms=50, retry_delay_ms=10, max_deliveries=2
        )
        workers.append(
            ConsumerWorker(
                redis=redis,
                pool=pools[-1],
                group=group,
                consumer=f"{group}-1",
                handlers={"newThing": handler_for(group)},
                options=options,
            )
        )
    tasks = [asyncio.create_task(worker.run()) for worker in workers]
    try:
        yield state
    finally:
        for worker in workers:
            worker.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        for pool in pools:
            await pool.close()


# -- the command line -----------------------------------------------------------------------------------


async def swarm(*args: str, redis_url: str, timeout: float = 30) -> tuple[int, str, str]:
    """Run `swarm ARGS` against `redis_url`, as an operator would (stdout is a pipe: no colours)."""
    process = await asyncio.create_subprocess_exec(
        *SWARM,
        *args,
        env=cli_env(redis_url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    return process.returncode or 0, out.decode(), err.decode()


def cli_env(redis_url: str) -> dict[str, str]:
    return {**os.environ, "REDIS_URL": redis_url, "SWARM_DATA_DIR": "/nonexistent", "COLUMNS": "250"}
