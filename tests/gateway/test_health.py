"""`GET /health` on the gateway: every service replica's readiness, aggregated."""

from __future__ import annotations

from common.swarm.embedded import free_port
from tests.gateway.conftest import StartGateway


async def test_health_is_ok_when_every_replica_is_ready(gateway, upstreams):
    response = await gateway.get("/health")

    assert response.status == 200
    body = await response.json()
    assert body["status"] == "ok"
    assert set(body["services"]) == set(upstreams)
    assert body["services"]["auth_svc"] == {"status": "ok", "replicas": {upstreams["auth_svc"].url: "ok"}}
    assert body["gateway"] == {"redis": "ok"}
    assert response.headers["X-Request-ID"]


async def test_health_is_503_naming_the_service_that_is_not_ready(gateway, upstreams):
    upstreams["comment_svc"].ready_status = 503

    response = await gateway.get("/health")

    assert response.status == 503
    body = await response.json()
    assert body["status"] == "degraded"
    assert body["services"]["comment_svc"]["status"] == "failing"
    assert body["services"]["comment_svc"]["replicas"][upstreams["comment_svc"].url] == "not ready: HTTP 503"
    assert {name for name, svc in body["services"].items() if svc["status"] != "ok"} == {"comment_svc"}


async def test_health_names_the_one_replica_that_is_down(start_gateway: StartGateway, upstreams, closed_url):
    live = upstreams["project_svc"].url
    gateway = await start_gateway(project_url=(live, closed_url))

    response = await gateway.get("/health")

    assert response.status == 503
    replicas = (await response.json())["services"]["project_svc"]["replicas"]
    assert replicas[live] == "ok"
    assert replicas[closed_url].startswith("failing")


async def test_health_is_503_when_the_gateway_cannot_reach_redis(start_gateway: StartGateway):
    gateway = await start_gateway(redis_url=f"redis://127.0.0.1:{free_port()}/0")

    response = await gateway.get("/health")

    assert response.status == 503
    assert (await response.json())["gateway"]["redis"].startswith("failing")


async def test_health_lists_only_the_services_configured_here(start_gateway: StartGateway):
    gateway = await start_gateway(comment_url=(), notif_url=())

    response = await gateway.get("/health")

    assert response.status == 200
    assert set((await response.json())["services"]) == {"auth_svc", "project_svc"}


async def test_the_gateway_ready_check_stays_its_own(gateway):
    response = await gateway.get("/ready")

    assert response.status == 200
    assert (await response.json())["checks"] == {"redis": "ok"}
