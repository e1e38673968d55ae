"""Failed logins are throttled per login name: 429 past the allowance, the same for a name nobody has."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from auth_svc.app import create_app
from auth_svc.throttle import failures_key
from common.swarm.embedded import free_port
from tests.auth_svc.conftest import RegisterFn
from tests.helpers import eventually

ALLOWED = 3


@pytest.fixture
async def auth_client(make_settings, redis) -> AsyncIterator[TestClient]:  # type: ignore[no-untyped-def]
    """auth_svc allowing ALLOWED failed logins per name and window."""
    app = create_app(make_settings(service_name="auth_svc", login_failures_per_name=ALLOWED))
    async with TestClient(TestServer(app)) as client:
        yield client


async def login(client: TestClient, username: str, password: str) -> aiohttp.ClientResponse:
    return await client.post("/auth/login", json={"username": username, "password": password})


async def fail(client: TestClient, username: str, times: int) -> None:
    for _ in range(times):
        response = await login(client, username, "not the password")
        assert response.status == 401, await response.text()


async def refusal(response: aiohttp.ClientResponse) -> dict[str, Any]:
    """What a throttled answer shows, but the seconds left (the two windows opened moments apart)."""
    assert 1 <= int(response.headers["Retry-After"]) <= 900
    error = (await response.json())["error"]
    return {
        "status": response.status,
        "code": error["code"],
        "message": error["message"],
        "details": set(error["details"]),
    }


async def test_past_the_allowance_a_name_is_refused_even_with_the_right_password(auth_client, register: RegisterFn):
    alice = await register()
    await fail(auth_client, alice["user"]["username"], ALLOWED)

    refused = await login(auth_client, alice["user"]["username"], alice["password"])

    assert refused.status == 429
    assert (await refused.json())["error"]["code"] == "rate_limited"


async def test_a_name_nobody_has_is_refused_exactly_like_a_real_one(auth_client, register: RegisterFn):
    real = (await register())["user"]["username"]
    unknown = f"nobody_{uuid.uuid4().hex[:8]}"
    await fail(auth_client, real, ALLOWED)
    await fail(auth_client, unknown, ALLOWED)

    answers = [await refusal(await login(auth_client, name, "not the password")) for name in (real, unknown)]

    assert answers[0]["status"] == 429
    assert answers[0] == answers[1]


async def test_the_name_is_counted_whatever_its_case(auth_client, register: RegisterFn):
    alice = await register()
    username = alice["user"]["username"]
    await fail(auth_client, username.upper(), ALLOWED)

    assert (await login(auth_client, username, alice["password"])).status == 429


async def test_successful_logins_do_not_use_up_the_allowance(auth_client, register: RegisterFn):
    alice = await register()
    username = alice["user"]["username"]

    for _ in range(ALLOWED + 2):
        assert (await login(auth_client, username, alice["password"])).status == 200
    await fail(auth_client, username, ALLOWED)  # all failures still allowed


async def test_other_names_keep_their_allowance(auth_client, register: RegisterFn):
    alice, bob = await register(), await register()
    await fail(auth_client, alice["user"]["username"], ALLOWED)

    assert (await login(auth_client, bob["user"]["username"], bob["password"])).status == 200


async def test_the_name_may_log_in_again_once_its_window_ends(auth_client, register: RegisterFn, redis):
    alice = await register()
    username = alice["user"]["username"]
    await fail(auth_client, username, ALLOWED)
    key = failures_key(username)
    assert 0 < await redis.pttl(key) <= 900_000  # a window that ends by itself

    await redis.pexpire(key, 1)  # fast-forward to the window's end
    await eventually(lambda: _gone(redis, key), what="the window's counter to expire")

    assert (await login(auth_client, username, alice["password"])).status == 200


async def test_a_burst_of_parallel_guesses_gets_no_more_checks_than_sequential_ones(auth_client, register: RegisterFn):
    username = (await register())["user"]["username"]

    responses = await asyncio.gather(*(login(auth_client, username, f"guess {i}") for i in range(30)))

    assert Counter(r.status for r in responses) == {401: ALLOWED, 429: 30 - ALLOWED}


async def test_logins_are_refused_with_503_when_the_failures_cannot_be_counted(make_settings):  # type: ignore[no-untyped-def]
    unreachable = make_settings(service_name="auth_svc", redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with TestClient(TestServer(create_app(unreachable))) as client:
        response = await login(client, "alice", "whatever")
        body = await response.json()

    assert response.status == 503
    assert body["error"]["code"] == "service_unavailable"
    assert response.headers["Retry-After"]


async def _gone(redis, key: str) -> bool:  # type: ignore[no-untyped-def]
    return not await redis.exists(key)
