"""The edge of the running system (every process started by `common.serve`, as `swarm up` does) against
hostile or careless clients: heads it cannot parse, bodies that never finish, and what every answer
says or keeps to itself (headers, `/health`, `/metrics`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import aiohttp
import pytest

from common.swarm.supervisor import Swarm
from common.testing import service_urls
from tests.e2e.client import PASSWORD, Api
from tests.e2e.conftest import running_system
from tests.helpers import access_token, bearer, user_record
from tests.raw_http import MALFORMED, answer_to_dribbled, assert_spec_error, connect, exchange

pytestmark = pytest.mark.e2e

BODY_READ_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def system(servers, tmp_path_factory) -> Iterator[Swarm]:  # type: ignore[no-untyped-def]
    env = {"BODY_READ_TIMEOUT_S": str(BODY_READ_TIMEOUT_S)}
    with running_system(servers, tmp_path_factory.mktemp("swarm"), env=env) as swarm:
        yield swarm


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname and parts.port
    return parts.hostname, parts.port


@pytest.mark.parametrize("process", ["gateway", "auth_svc"])
@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
async def test_an_unparsable_request_gets_the_error_shape_from_every_process(system: Swarm, process: str, case: str):
    url = system.gateway_url if process == "gateway" else system.replicas_of(process)[0].url
    assert url is not None
    sent, status, code = MALFORMED[case]

    response = await exchange(*address(url), sent)

    assert_spec_error(response, status, code, sent)


async def test_a_body_sent_a_byte_at_a_time_is_cut_off_with_a_408(system: Swarm):
    assert system.gateway_url is not None
    head = b"POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    head += b"Content-Length: 60\r\n\r\n"
    async with connect(*address(system.gateway_url)) as conn:
        response = await answer_to_dribbled(
            conn, head, b'{"username": "someone", "password": "' + b"x" * 20 + b'"}', every_s=0.2
        )

    assert response.status == 408
    assert response.json()["error"]["code"] == "request_timeout"
    assert response.header("X-Request-ID")
    assert response.closed
    assert BODY_READ_TIMEOUT_S <= response.elapsed_s < BODY_READ_TIMEOUT_S + 2


async def test_answers_through_the_gateway_carry_each_edge_header_once(system: Swarm, http: aiohttp.ClientSession):
    api = Api(http, system.gateway_url or "")
    name = "edge_headers"
    credentials = {"username": name, "password": PASSWORD}
    base = api.base
    async with http.post(base + "/auth/register", json={**credentials, "email": f"{name}@example.com"}) as registered:
        assert registered.status == 201
        token = (await registered.json())["access_token"]
    async with http.post(base + "/auth/login", json=credentials) as logged_in:
        assert logged_in.status == 200
    async with http.get(base + "/users/me", headers=bearer(token)) as me:
        assert me.status == 200
    async with http.delete(base + "/users/me", headers=bearer(token)) as wrong_method:
        assert wrong_method.status == 405
        assert set(wrong_method.headers.getall("Allow")[0].split(",")) >= {"GET", "PATCH"}

    for response in (registered, logged_in, me, wrong_method):
        assert response.headers.getall("X-Content-Type-Options") == ["nosniff"]
        assert response.headers.getall("X-Request-ID") and len(response.headers.getall("X-Request-ID")) == 1
        assert "Server" not in response.headers
    for response in (registered, logged_in):  # they carry tokens
        assert response.headers.getall("Cache-Control") == ["no-store"]


async def test_health_tells_the_public_only_the_status_and_an_admin_everything(
    system: Swarm, http: aiohttp.ClientSession, servers
):  # type: ignore[no-untyped-def]
    url = f"{system.gateway_url}/health"
    async with http.get(url) as anonymous:
        assert anonymous.status == 200
        assert await anonymous.json() == {"status": "ok"}
    admin = bearer(access_token(servers.keys_dir, user_record(role="admin")))
    async with http.get(url, headers=admin) as detailed:
        assert detailed.status == 200
        body = await detailed.json()
    replicas = {url for service in body["services"].values() for url in service["replicas"]}
    assert replicas == {child.url for name in service_urls(system) for child in system.replicas_of(name)}


async def test_the_public_port_serves_no_metrics(system: Swarm, http: aiohttp.ClientSession):
    assert system.gateway is not None
    async with http.get(f"{system.gateway_url}/metrics") as public:
        assert public.status == 404
    async with http.get(system.gateway.metrics_url) as private:
        assert private.status == 200
