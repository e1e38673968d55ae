"""Rate limits: per client IP on sign-up, login and refresh, per user elsewhere; 429 with Retry-After.
A limiter that cannot count (Redis down, or its pool exhausted) refuses with 503: it never lets through."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp.test_utils import TestClient

from common.http.app import runtime_of
from common.swarm.embedded import free_port
from gateway.admission import ip_key, user_key
from tests.gateway.conftest import MakeToken, StartGateway, total_seen
from tests.helpers import eventually


async def login(gateway: TestClient) -> aiohttp.ClientResponse:
    return await gateway.post("/api/v1/auth/login", json={"username": "u", "password": "p"})


async def assert_rate_limited(response: aiohttp.ClientResponse) -> None:
    assert response.status == 429, await response.text()
    assert (await response.json())["error"]["code"] == "rate_limited"
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert response.headers["X-Request-ID"]


async def test_logins_over_the_limit_from_one_address_are_refused_with_retry_after(
    start_gateway: StartGateway, upstreams
):
    gateway = await start_gateway(rate_limit_auth_per_minute=3)

    statuses = [(await login(gateway)).status for _ in range(3)]
    await assert_rate_limited(await login(gateway))

    assert statuses == [200, 200, 200]
    assert len(upstreams["auth_svc"].seen) == 3


async def test_another_address_may_still_log_in(start_gateway: StartGateway):
    gateway = await start_gateway(rate_limit_auth_per_minute=1)
    await login(gateway)
    await assert_rate_limited(await login(gateway))

    # Loopback is a whole /8 on Linux: connecting from 127.0.0.2 is a different client address.
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector) as elsewhere:
        response = await elsewhere.post(gateway.make_url("/api/v1/auth/login"), json={})
        assert response.status == 200


async def test_other_public_endpoints_keep_their_own_allowance(start_gateway: StartGateway):
    gateway = await start_gateway(rate_limit_auth_per_minute=1)
    await login(gateway)
    await assert_rate_limited(await login(gateway))

    assert (await gateway.post("/api/v1/auth/register", json={})).status == 200
    assert (await gateway.post("/api/v1/auth/refresh", json={})).status == 200


async def test_refreshes_over_their_own_limit_from_one_address_are_refused(start_gateway: StartGateway, upstreams):
    gateway = await start_gateway(rate_limit_auth_per_minute=1, rate_limit_refresh_per_minute=2)

    statuses = [(await gateway.post("/api/v1/auth/refresh", json={})).status for _ in range(2)]
    await assert_rate_limited(await gateway.post("/api/v1/auth/refresh", json={}))

    assert statuses == [200, 200]
    assert len(upstreams["auth_svc"].seen) == 2


async def test_a_user_over_the_limit_is_refused_and_other_users_are_not(
    start_gateway: StartGateway, upstreams, make_token: MakeToken
):
    gateway = await start_gateway(rate_limit_user_per_minute=2)
    busy, other = make_token(), make_token()

    statuses = [(await gateway.get("/api/v1/projects", headers=busy.headers)).status for _ in range(2)]
    await assert_rate_limited(await gateway.get("/api/v1/cards", headers=busy.headers))

    assert statuses == [200, 200]
    assert (await gateway.get("/api/v1/projects", headers=other.headers)).status == 200
    assert len(upstreams["project_svc"].seen) == 3


async def test_all_sessions_of_a_user_share_the_user_allowance(start_gateway: StartGateway, make_token: MakeToken):
    gateway = await start_gateway(rate_limit_user_per_minute=1)
    phone = make_token()
    laptop = make_token(sub=phone.user_id)

    assert (await gateway.get("/api/v1/projects", headers=phone.headers)).status == 200
    await assert_rate_limited(await gateway.get("/api/v1/projects", headers=laptop.headers))


async def test_counters_expire_with_their_window(start_gateway: StartGateway, redis, make_token: MakeToken):
    gateway = await start_gateway(rate_limit_auth_per_minute=1, rate_limit_user_per_minute=1)
    token = make_token()
    await login(gateway)
    await gateway.get("/api/v1/projects", headers=token.headers)

    for key in (ip_key("/auth/login", "127.0.0.1"), user_key(token.user_id)):
        assert 0 < await redis.pttl(key) <= 60_000


async def test_a_new_window_opens_once_the_old_one_expires(start_gateway: StartGateway, redis):
    gateway = await start_gateway(rate_limit_auth_per_minute=1)
    await login(gateway)
    await assert_rate_limited(await login(gateway))

    key = ip_key("/auth/login", "127.0.0.1")
    await redis.pexpire(key, 1)  # fast-forward to the window's end
    await eventually(lambda: _expired(redis, key), what="the window's counter to expire")

    assert (await login(gateway)).status == 200


async def test_counting_goes_on_after_redis_forgets_the_script(start_gateway: StartGateway, redis, make_token):
    gateway = await start_gateway(rate_limit_user_per_minute=2)
    token = make_token()
    assert (await gateway.get("/api/v1/projects", headers=token.headers)).status == 200

    await redis.script_flush()  # what a Redis restart does

    assert (await gateway.get("/api/v1/projects", headers=token.headers)).status == 200
    await assert_rate_limited(await gateway.get("/api/v1/projects", headers=token.headers))


async def assert_refused_as_unavailable(response: aiohttp.ClientResponse) -> None:
    assert response.status == 503, await response.text()
    assert (await response.json())["error"]["code"] == "service_unavailable"
    assert int(response.headers["Retry-After"]) >= 1
    assert response.headers["X-Request-ID"]


async def test_without_redis_neither_logins_nor_tokens_are_let_through(
    start_gateway: StartGateway, upstreams, make_token: MakeToken
):
    gateway = await start_gateway(redis_url=f"redis://127.0.0.1:{free_port()}/0", rate_limit_auth_per_minute=1)

    await assert_refused_as_unavailable(await login(gateway))  # the limit cannot count: it refuses
    await assert_refused_as_unavailable(await gateway.get("/api/v1/projects", headers=make_token().headers))

    assert total_seen(upstreams) == 0


async def test_with_every_redis_connection_taken_logins_wait_then_are_refused_not_let_through(
    start_gateway: StartGateway, upstreams
):
    gateway = await start_gateway(redis_pool_max=2, redis_pool_timeout_s=0.2)
    pool = runtime_of(gateway.server.app).redis_client().connection_pool
    held = [await pool.get_connection() for _ in range(2)]  # as a burst would, for longer than the timeout
    try:
        await assert_refused_as_unavailable(await login(gateway))
        assert upstreams["auth_svc"].seen == []
    finally:
        for connection in held:
            await pool.release(connection)

    assert (await login(gateway)).status == 200  # a connection came back: counted, and let through


async def test_a_burst_bigger_than_the_pool_waits_for_connections_instead_of_failing(
    start_gateway: StartGateway, make_token: MakeToken
):
    gateway = await start_gateway(redis_pool_max=2)
    token = make_token()

    responses = await asyncio.gather(*(gateway.get("/api/v1/projects", headers=token.headers) for _ in range(50)))

    assert [r.status for r in responses] == [200] * 50


async def _expired(redis, key: str) -> bool:  # type: ignore[no-untyped-def]
    return not await redis.exists(key)
