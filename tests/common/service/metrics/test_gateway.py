"""The gateway's metrics: proxied requests labelled by routing rule and service; every group's lag."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from common.core.envelope import DEAD_LETTER_STREAM
from gateway.app import create_app
from tests.common.service.metrics.scrape import labelsets, scrape, value
from tests.helpers import access_token, bearer, user_record

REQUESTS = "taskswarm_http_requests_total"


@pytest.fixture
def database_url() -> str:
    """The gateway owns no database."""
    return "postgresql://unused@127.0.0.1:1/unused"


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    """One server standing in for every service: answers 200 to anything."""

    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"path": request.path})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    async with TestServer(app, host="127.0.0.1") as server:
        yield f"http://127.0.0.1:{server.port}"


@pytest.fixture
async def gateway(make_settings, redis, upstream: str) -> AsyncIterator[TestClient]:  # type: ignore[no-untyped-def]
    urls = {name: (upstream,) for name in ("auth_url", "project_url", "comment_url", "notif_url")}
    async with TestClient(TestServer(create_app(make_settings(service_name="gateway", **urls)))) as client:
        yield client


def labels(method: str, route: str, status: int, upstream: str = "") -> dict[str, str]:
    return {"service": "gateway", "method": method, "route": route, "upstream": upstream, "status": str(status)}


async def test_proxied_requests_are_labelled_by_rule_and_service_never_by_raw_path(gateway, servers) -> None:
    headers = bearer(access_token(servers.keys_dir, user_record()))
    card_ids = [str(uuid.uuid4()) for _ in range(2)]
    for card_id in card_ids:
        assert (await gateway.get(f"/api/v1/cards/{card_id}/comments", headers=headers)).status == 200
        assert (await gateway.get(f"/api/v1/cards/{card_id}", headers=headers)).status == 200
    assert (await gateway.get(f"/api/v1/cards/{card_ids[0]}")).status == 401  # refused at the edge
    assert (await gateway.get("/api/v1/nothing/here", headers=headers)).status == 404
    assert (await gateway.get("/api/v1/admin/streams", headers=headers)).status == 403  # answered by the gateway

    series = await scrape(gateway)

    comments = labels("GET", "/api/v1/cards/*/comments", 200, "comment_svc")
    assert value(series, REQUESTS, **comments) == 2
    assert value(series, REQUESTS, **labels("GET", "/api/v1/cards", 200, "project_svc")) == 2
    assert value(series, REQUESTS, **labels("GET", "/api/v1/cards", 401, "project_svc")) == 1
    assert value(series, REQUESTS, **labels("GET", "/api/v1/{tail}", 404)) == 1
    assert value(series, REQUESTS, **labels("GET", "/api/v1/admin/streams", 403)) == 1
    assert value(series, "taskswarm_http_request_duration_seconds_count", **comments) == 2
    routes = {found["route"] for found in labelsets(series, REQUESTS)}
    assert not any(card_id in route for route in routes for card_id in card_ids)


async def test_the_gateway_reports_every_group_of_every_stream_and_the_dead_letters(
    gateway, redis: aioredis.Redis
) -> None:
    # A group nobody consumes for (its service is down): its lag is seen all the same.
    await redis.xgroup_create("events:metricsProbe", "absent_svc", id="$", mkstream=True)
    ids = [await redis.xadd("events:metricsProbe", {"n": str(n)}) for n in range(3)]
    await redis.xreadgroup("absent_svc", "ghost", {"events:metricsProbe": ">"}, count=1)  # pending, never acked
    await redis.xadd(DEAD_LETTER_STREAM, {"stream": "events:metricsProbe", "entry_id": ids[0]})

    series = await scrape(gateway)

    group = {"service": "gateway", "stream": "events:metricsProbe", "group": "absent_svc"}
    assert value(series, "taskswarm_consumer_lag", **group) == 2
    assert value(series, "taskswarm_consumer_pending", **group) == 1
    assert value(series, "taskswarm_dead_letters", service="gateway") == 1

    await redis.xack("events:metricsProbe", "absent_svc", ids[0])
    await redis.xgroup_destroy("events:metricsProbe", "absent_svc")
    assert value(await scrape(gateway), "taskswarm_consumer_lag", **group) is None  # gone, not stale
