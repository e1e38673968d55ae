"""Bursts of parallel requests against the real processes: limits hold, and nothing healthy answers 503.

Each burst is sent at once: one aiohttp session without a connection cap (`limit=0`), every request
started before any is awaited. The per-IP login limit stays at its default; the per-user limit is set
high, so what refuses an authenticated request here can only be a lack of capacity (which must not be).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from auth_svc.throttle import failures_key
from common.core.settings import Settings
from common.swarm.supervisor import Swarm
from tests.e2e.client import Account, Api
from tests.e2e.conftest import running_system
from tests.helpers import eventually

pytestmark = pytest.mark.e2e

LOGINS = 250
REQUESTS = 200
# With the default pool (REDIS_POOL_MAX 50, REDIS_POOL_TIMEOUT_S 5), were a held poll to hold a pooled
# connection, the third wave of 50 would wait twice LONG_POLL_S (> 5 s) for one, and answer 503.
LONG_POLL_S = 3
PER_IP = Settings().rate_limit_auth_per_minute


@pytest.fixture(scope="module")
def bursting(servers, tmp_path_factory) -> Iterator[Swarm]:  # type: ignore[no-untyped-def]
    env = {"RATE_LIMIT_USER_PER_MINUTE": "1000000"}
    with running_system(servers, tmp_path_factory.mktemp("bursting"), env=env) as swarm:
        yield swarm


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # limit=0: no client-side cap, so the burst really leaves at once (the default would send 100 at a time).
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        yield session


@pytest.fixture
async def api(bursting: Swarm, http: aiohttp.ClientSession) -> Api:
    return Api(http, bursting.gateway_url or "")


async def burst(http: aiohttp.ClientSession, count: int, method: str, url: str, **kwargs: Any) -> Counter[int]:
    """Send `count` copies of one request at once; the statuses answered."""

    async def one() -> int:
        async with http.request(method, url, **kwargs) as response:
            await response.read()
            return response.status

    return Counter(await asyncio.gather(*(one() for _ in range(count))))


async def logins_checked(swarm: Swarm, names: list[str]) -> int:
    """How many of these (distinct, wrong) logins auth_svc counted, each one a password check: every
    login it handles counts against its name first (auth_svc.throttle), and a failed one stays counted."""
    async with aioredis.from_url(swarm.redis_url, decode_responses=True) as redis:
        counts = await redis.mget([failures_key(name) for name in names])
    return sum(int(count or 0) for count in counts)


async def test_a_burst_of_logins_from_one_address_gets_no_more_than_the_limit_through(bursting, http):
    url = f"{bursting.gateway_url}/api/v1/auth/login"
    names = [f"nobody_{uuid.uuid4().hex[:8]}" for _ in range(LOGINS)]  # one each: only the IP limit applies

    async def one(name: str) -> int:
        async with http.post(url, json={"username": name, "password": "not the password"}) as response:
            await response.read()
            return response.status

    statuses = Counter(await asyncio.gather(*(one(name) for name in names)))

    refused = statuses[429] + statuses[503]  # at the edge, before auth_svc
    assert refused >= LOGINS - PER_IP, statuses
    # The others reached auth_svc: answered 401, or 504 had the machine been too busy to hash 20 passwords
    # in UPSTREAM_TIMEOUT_S. auth_svc counted exactly those, which it checked (or throttled).
    assert await logins_checked(bursting, names) == LOGINS - refused


# One read of each service (each checks the token against the deny-list again, then reads its database).
SERVED = {
    "/users/me": 200,
    "/projects": 200,
    "/comments/3f2504e0-4f89-41d3-9a0c-0305e82c3301": 404,  # nobody's: fixed, so xdist workers agree
    "/notifications/unread-count": 200,
}


@pytest.mark.parametrize("path", SERVED)
async def test_a_burst_of_authenticated_requests_is_served(api: Api, http, path: str):
    alice = await api.register("burst")

    statuses = await burst(http, REQUESTS, "GET", api.base + path, headers=_bearer(alice))

    assert set(statuses) <= {SERVED[path], 429}, statuses


async def test_a_burst_of_long_polls_is_held_and_served(api: Api, http):
    bob = await api.register("polls")
    # The registration notice arrives by event: wait for it, so the feed is quiet while the polls hold.
    await eventually(lambda: _feed_has_items(api, bob), timeout=10, what="the registration notice")
    async with http.get(f"{api.base}/notifications", headers=_bearer(bob)) as response:
        etag = response.headers["ETag"]
    headers = {**_bearer(bob), "If-None-Match": etag}

    statuses = await burst(http, REQUESTS, "GET", f"{api.base}/notifications?wait={LONG_POLL_S}", headers=headers)

    assert set(statuses) <= {304, 429}, statuses


async def _feed_has_items(api: Api, who: Account) -> bool:
    page = await api.ok("GET", "/notifications", who)
    return bool(page["items"])


def _bearer(who: Account) -> dict[str, str]:
    return {"Authorization": f"Bearer {who.token}"}
