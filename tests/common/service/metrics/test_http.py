"""Request metrics of a real service: counted and timed by route template and final status."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from common.swarm.embedded import free_port
from project_svc.app import create_app
from tests.common.service.metrics.scrape import CONTENT_TYPE, labelsets, parse, scrape, value
from tests.helpers import access_token, bearer, user_record

REQUESTS = "taskswarm_http_requests_total"
DURATION = "taskswarm_http_request_duration_seconds"


@pytest.fixture
async def client(make_settings, redis) -> AsyncIterator[TestClient]:  # type: ignore[no-untyped-def]
    async with TestClient(TestServer(create_app(make_settings(service_name="project_svc")))) as client:
        yield client


def labels(method: str, route: str, status: int) -> dict[str, str]:
    return {"service": "project_svc", "method": method, "route": route, "upstream": "", "status": str(status)}


async def test_requests_are_counted_by_route_template_and_status_never_by_raw_path(client, servers) -> None:
    headers = bearer(access_token(servers.keys_dir, user_record()))
    ids = [str(uuid.uuid4()) for _ in range(3)]
    for project_id in ids:  # three paths, one template
        assert (await client.get(f"/projects/{project_id}", headers=headers)).status == 404
    assert (await client.get("/projects", headers=headers)).status == 200
    assert (await client.get("/projects")).status == 401
    assert (await client.get("/no/such/path")).status == 404
    assert (await client.request("PROPFIND", "/projects")).status == 405

    series = await scrape(client)

    assert value(series, REQUESTS, **labels("GET", "/projects/{project_id}", 404)) == 3
    assert value(series, REQUESTS, **labels("GET", "/projects", 200)) == 1
    assert value(series, REQUESTS, **labels("GET", "/projects", 401)) == 1
    assert value(series, REQUESTS, **labels("GET", "unmatched", 404)) == 1
    assert value(series, REQUESTS, **labels("other", "unmatched", 405)) == 1
    seen_routes = {found["route"] for found in labelsets(series, REQUESTS)}
    assert not any(project_id in route for route in seen_routes for project_id in ids)
    assert seen_routes <= {"/projects/{project_id}", "/projects", "unmatched", "/metrics"}


async def test_latency_is_a_histogram_with_the_same_labels(client) -> None:
    for _ in range(2):
        assert (await client.get("/health")).status == 200

    series = await scrape(client)

    health = labels("GET", "/health", 200)
    assert value(series, DURATION + "_count", **health) == 2
    assert value(series, DURATION + "_bucket", **health, le="+Inf") == 2
    assert value(series, DURATION + "_bucket", **health, le="30.0") == 2
    assert 0 < (value(series, DURATION + "_sum", **health) or 0) < 5


async def test_metrics_need_no_token_and_say_which_process_answers(client) -> None:
    series = await scrape(client)  # no Authorization header

    info = labelsets(series, "taskswarm_process_info")
    assert len(info) == 1
    assert info[0]["service"] == "project_svc"
    assert info[0]["consumer"].startswith("project_svc-")
    assert value(series, "process_resident_memory_bytes")
    # The scrape before this one is counted like any request.
    second = await scrape(client)
    assert value(second, REQUESTS, **labels("GET", "/metrics", 200)) == 1


async def test_with_a_metrics_port_the_metrics_are_there_and_not_on_the_api_port(make_settings, redis) -> None:  # type: ignore[no-untyped-def]
    metrics_port = free_port()
    app = create_app(make_settings(service_name="project_svc", metrics_port=metrics_port))
    async with TestClient(TestServer(app)) as api, aiohttp.ClientSession() as http:
        assert (await api.get("/metrics")).status == 404
        async with http.get(f"http://127.0.0.1:{metrics_port}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == CONTENT_TYPE
            series = parse(await response.text())
    assert labelsets(series, "taskswarm_process_info")[0]["service"] == "project_svc"
    assert value(series, REQUESTS, **labels("GET", "unmatched", 404)) == 1  # the API port's refusal, counted
