"""Clients the gateway must not trust to behave: bodies dribbled past the time bound, uploads abandoned
halfway, heads it cannot parse, and the headers every answer leaves with, relayed or not."""

from __future__ import annotations

import asyncio

import pytest
import structlog

from tests.common.service.metrics.scrape import scrape, value
from tests.gateway.conftest import MakeToken, StartGateway, total_seen
from tests.helpers import eventually
from tests.raw_http import MALFORMED, answer_to_dribbled, assert_spec_error, connect, exchange

HOST = "127.0.0.1"


def head(token: str, framing: str) -> bytes:
    return (
        f"POST /api/v1/projects HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n"
    ).encode()


async def test_a_sized_body_that_arrives_too_slowly_is_a_408_before_it_reaches_a_service(
    start_gateway: StartGateway, upstreams, make_token: MakeToken
):
    gateway = await start_gateway(body_read_timeout_s=1.0)
    async with connect(HOST, gateway.port) as conn:
        response = await answer_to_dribbled(
            conn, head(make_token().value, "Content-Length: 100"), b"x" * 100, every_s=0.2
        )

    assert response.status == 408
    assert response.json()["error"]["code"] == "request_timeout"
    assert response.closed and 1.0 <= response.elapsed_s < 3.0
    assert total_seen(upstreams) == 0


async def test_a_chunked_body_that_arrives_too_slowly_is_a_408_and_never_completes_upstream(
    start_gateway: StartGateway, upstreams, make_token: MakeToken
):
    gateway = await start_gateway(body_read_timeout_s=1.0)
    async with connect(HOST, gateway.port) as conn:
        response = await answer_to_dribbled(
            conn,
            head(make_token().value, "Transfer-Encoding: chunked"),
            b"1\r\nx\r\n" * 50 + b"0\r\n\r\n",
            every_s=0.05,
        )

    assert response.status == 408
    assert response.json()["error"]["code"] == "request_timeout"
    assert response.closed and 1.0 <= response.elapsed_s < 3.0
    assert total_seen(upstreams) == 0  # the service saw its request cut off, never a complete one


async def test_a_client_abandoning_an_upload_is_counted_as_499_not_as_an_upstream_failure(
    gateway, upstreams, make_token: MakeToken
):
    with structlog.testing.capture_logs() as logs:
        async with connect(HOST, gateway.port) as conn:
            await conn.send(head(make_token().value, "Transfer-Encoding: chunked") + b"5\r\nhello\r\n")
            # Abandon it once streaming to the service has begun.
            await asyncio.wait_for(upstreams["project_svc"].began.wait(), 5)
            conn.abort()

        async def counted() -> float | None:
            labels = {"service": "gateway", "method": "POST", "route": "/api/v1/projects", "upstream": "project_svc"}
            return value(await scrape(gateway), "taskswarm_http_requests_total", **labels, status="499")

        assert await eventually(counted, what="the abandoned upload counted") == 1

    events = [entry["event"] for entry in logs]
    assert "http.client_gone" in events
    assert "gateway.upstream_failed" not in events
    statuses = {entry["status"] for entry in logs if entry["event"] == "http.request"}
    assert not statuses & {502, 503, 504}


async def test_a_client_leaving_in_the_middle_of_a_streamed_answer_is_counted_as_499(gateway, make_token: MakeToken):
    with structlog.testing.capture_logs() as logs:
        async with connect(HOST, gateway.port) as conn:
            token = make_token().value
            head = f"GET /api/v1/projects?big=50000000 HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {token}"
            await conn.send(head.encode() + b"\r\n\r\n")
            await conn.reader.readexactly(100_000)  # the answer is under way
            conn.abort()

        async def counted() -> float | None:
            labels = {"service": "gateway", "method": "GET", "route": "/api/v1/projects", "upstream": "project_svc"}
            return value(await scrape(gateway), "taskswarm_http_requests_total", **labels, status="499")

        assert await eventually(counted, what="the abandoned answer counted") == 1

    assert "http.client_gone" in [entry["event"] for entry in logs]


async def test_a_relayed_answer_has_each_edge_header_once_and_no_server_banner(gateway, make_token: MakeToken):
    response = await gateway.get("/api/v1/projects?edge=1", headers=make_token().headers)

    assert response.status == 200
    assert response.headers.getall("X-Content-Type-Options") == ["nosniff"]
    assert response.headers.getall("Cache-Control") == ["no-store"]
    assert "Server" not in response.headers


async def test_every_answer_of_the_gateway_says_nosniff_and_names_no_server(gateway, make_token: MakeToken):
    answers = [
        await gateway.get("/api/v1/projects", headers=make_token().headers),  # relayed, the service said neither
        await gateway.get("/api/v1/projects?big=2000000", headers=make_token().headers),  # streamed
        await gateway.get("/api/v1/projects"),  # 401 at the edge
        await gateway.get("/nowhere"),  # 404
        await gateway.post("/health"),  # 405
        await gateway.get("/docs"),
    ]
    for response in answers:
        await response.read()
        assert response.headers.getall("X-Content-Type-Options") == ["nosniff"], response.url
        assert "Server" not in response.headers, response.url
    assert [response.status for response in answers] == [200, 200, 401, 404, 405, 200]
    assert set(answers[4].headers["Allow"].split(",")) == {"GET", "HEAD"}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
async def test_an_unparsable_request_to_the_gateway_is_answered_in_the_error_shape(gateway, upstreams, case: str):
    sent, status, code = MALFORMED[case]

    response = await exchange(HOST, gateway.port, sent)

    assert_spec_error(response, status, code, sent)
    assert total_seen(upstreams) == 0
