"""`/metrics` on the running system (the `swarm up` machinery, every process separate) after a scripted
scenario: request and event counters, a consumer that falls behind, an outbox that cannot drain."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
import redis.asyncio as aioredis

from common.swarm.procs import ChildProcess
from common.swarm.state import load_state
from common.swarm.supervisor import Swarm
from tests.common.service.metrics.scrape import CONTENT_TYPE, Series, parse, value
from tests.e2e.client import PASSWORD, Api
from tests.e2e.conftest import running_system
from tests.helpers import eventually

pytestmark = pytest.mark.e2e

USERS = "events:newUser"


@pytest.fixture(scope="module")
def system(servers, tmp_path_factory) -> Iterator[Swarm]:  # type: ignore[no-untyped-def]
    with running_system(servers, tmp_path_factory.mktemp("swarm")) as swarm:
        yield swarm


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def api(http: aiohttp.ClientSession, system: Swarm) -> Api:
    assert system.gateway_url is not None
    return Api(http, system.gateway_url)


def process_of(system: Swarm, name: str) -> ChildProcess:
    process = system.gateway if name == "gateway" else system.replicas_of(name)[0]
    assert process is not None
    return process


def url_of(system: Swarm, name: str) -> str:
    return process_of(system, name).url


async def scrape(http: aiohttp.ClientSession, system: Swarm, name: str) -> Series:
    async with http.get(process_of(system, name).metrics_url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == CONTENT_TYPE
        return parse(await response.text())


@pytest.mark.parametrize("name", ["gateway", "auth_svc", "notif_svc"])
async def test_metrics_are_served_on_a_port_of_their_own_never_on_the_api_port(
    http: aiohttp.ClientSession, system: Swarm, name: str
) -> None:
    process = process_of(system, name)
    assert process.metrics_port not in (None, process.port)

    async with http.get(process.url + "/metrics") as response:
        assert response.status == 404
    assert await scrape(http, system, name)
    state = load_state(system.data_dir)  # where `swarm up` tells operators (and its table) to find them
    assert state is not None
    assert process.metrics_url in {recorded.metrics_url for recorded in state.processes()}


async def test_requests_and_events_are_counted_in_each_process(api: Api, http, system: Swarm) -> None:  # type: ignore[no-untyped-def]
    alice, bob = await api.register("alice"), await api.register("bob")
    project = await api.ok("POST", "/projects", alice, json={"title": "metrics"})

    async def add_bob() -> bool:  # once project_svc has bob's newUser
        status, _ = await api.call("POST", f"/projects/{project['id']}/members", alice, json={"user_id": bob.id})
        return status == 201

    await eventually(add_bob, what="bob replicated into project_svc")

    gateway = await scrape(http, system, "gateway")
    register = {"service": "gateway", "method": "POST", "route": "/api/v1/auth", "upstream": "auth_svc"}
    assert (value(gateway, "taskswarm_http_requests_total", **register, status="201") or 0) >= 2
    projects = {"service": "gateway", "method": "POST", "route": "/api/v1/projects", "upstream": "project_svc"}
    assert value(gateway, "taskswarm_http_requests_total", **projects, status="201") == 2
    assert value(gateway, "taskswarm_http_request_duration_seconds_count", **projects, status="201") == 2
    auth = await scrape(http, system, "auth_svc")
    on_auth = {"service": "auth_svc", "method": "POST", "route": "/auth/register", "upstream": ""}
    assert (value(auth, "taskswarm_http_requests_total", **on_auth, status="201") or 0) >= 2
    on_project = {"service": "project_svc", "method": "POST", "upstream": ""}
    project_svc = await scrape(http, system, "project_svc")
    assert value(project_svc, "taskswarm_http_requests_total", **on_project, route="/projects", status="201") == 1

    async def published_and_consumed() -> bool:
        auth, comment = await scrape(http, system, "auth_svc"), await scrape(http, system, "comment_svc")
        published = value(auth, "taskswarm_events_published_total", service="auth_svc", event_type="newUser")
        applied = {"service": "comment_svc", "group": "comment_svc", "outcome": "applied"}
        users = value(comment, "taskswarm_events_consumed_total", **applied, event_type="newUser")
        members = value(comment, "taskswarm_events_consumed_total", **applied, event_type="addMember")
        return (published or 0) >= 2 and (users or 0) >= 2 and (members or 0) >= 1

    await eventually(published_and_consumed, timeout=10, what="events published by auth_svc, applied by comment_svc")


async def test_a_stopped_consumer_shows_as_lag_on_the_gateway(api: Api, http, system: Swarm) -> None:  # type: ignore[no-untyped-def]
    notif = system.replicas_of("notif_svc")[0]
    assert notif.pid is not None
    group = {"service": "gateway", "stream": USERS, "group": "notif_svc"}
    os.kill(notif.pid, signal.SIGSTOP)  # alive, holding its entries, reading nothing more
    try:
        for _ in range(3):
            await api.register("late")

        async def behind() -> bool:  # once auth_svc's relay published all three
            gateway = await scrape(http, system, "gateway")
            lag = value(gateway, "taskswarm_consumer_lag", **group) or 0
            pending = value(gateway, "taskswarm_consumer_pending", **group) or 0
            # A read that was already blocked may still take the first entry (then it is pending, not lag).
            return lag >= 2 and lag + pending >= 3

        await eventually(behind, what="notif_svc's group to fall behind by the three new users")
    finally:
        os.kill(notif.pid, signal.SIGCONT)

    async def caught_up() -> bool:
        gateway = await scrape(http, system, "gateway")
        return (
            value(gateway, "taskswarm_consumer_lag", **group)
            == 0
            == value(gateway, "taskswarm_consumer_pending", **group)
        )

    await eventually(caught_up, timeout=15, what="notif_svc to catch up")


async def test_an_outbox_that_cannot_reach_redis_shows_its_backlog(http, system: Swarm, servers) -> None:  # type: ignore[no-untyped-def]
    redis = aioredis.from_url(servers.redis.url)
    auth_url = url_of(system, "auth_svc")
    body = {"username": "paused_writes", "email": "paused@example.com", "password": PASSWORD}
    try:
        await redis.client_pause(10_000, all=False)  # Redis refuses writes for a while: the relay's XADD waits
        # Straight to auth_svc: registering writes nothing to Redis there (the gateway's rate limit would).
        async with http.post(auth_url + "/auth/register", json=body) as response:
            assert response.status == 201
        auth = await scrape(http, system, "auth_svc")
        assert (value(auth, "taskswarm_outbox_backlog", service="auth_svc") or 0) >= 1
        assert (value(auth, "taskswarm_outbox_oldest_age_seconds", service="auth_svc") or 0) > 0
    finally:
        await redis.client_unpause()
        await redis.aclose()

    async def drained() -> bool:
        auth = await scrape(http, system, "auth_svc")
        return value(auth, "taskswarm_outbox_backlog", service="auth_svc") == 0

    await eventually(drained, timeout=10, what="the outbox to drain once Redis takes writes again")
