"""The edge of every process (`common.serve` runs apps this way): a real socket, `common.http.server`'s
protocol, hostile clients. Unparsable heads, slow heads and bodies, hang-ups mid-body, and the headers
every answer carries."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web

from common.http.app import create_app, json_response, public
from common.http.contexts import redis_context
from common.http.server import listening_port, serving
from common.http.validation import read_json
from tests.common.service.metrics.scrape import parse, value
from tests.helpers import eventually
from tests.raw_http import MALFORMED, answer_to_dribbled, assert_spec_error, connect, dribble, exchange

HOST = "127.0.0.1"


ECHO_BEGAN = web.AppKey("echo_began", asyncio.Event)


@public
async def echo(request: web.Request) -> web.Response:
    request.app[ECHO_BEGAN].set()
    return json_response({"got": await read_json(request)})


@public
async def crash(request: web.Request) -> web.Response:
    raise RuntimeError("bug")


Serve = Callable[..., Awaitable[int]]
_SERVED: dict[int, web.Application] = {}  # port → the app `serve` started there (this test only)


def echo_began(port: int) -> asyncio.Event:
    """Set once the echo handler of the app on `port` has started (its body may still be arriving)."""
    return _SERVED[port][ECHO_BEGAN]


@pytest.fixture
async def serve(make_settings, redis) -> AsyncIterator[Serve]:  # type: ignore[no-untyped-def]
    """Serve a demo service as `common.serve` does, with settings overrides; returns its port."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(**overrides: Any) -> int:
            settings = make_settings(service_name="demo", host=HOST, port=0, max_body_bytes=1024, **overrides)
            app = create_app(settings)
            app.cleanup_ctx.append(redis_context)
            app.router.add_post("/echo", echo)
            app.router.add_get("/crash", crash)
            app[ECHO_BEGAN] = asyncio.Event()
            runner = await stack.enter_async_context(serving(app, settings, shutdown_timeout=1))
            port = listening_port(runner)
            _SERVED[port] = app
            stack.callback(_SERVED.pop, port, None)
            return port

        yield start


def post_head(length: int) -> bytes:
    head = f"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    return head.encode()


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
async def test_an_unparsable_request_is_answered_in_the_error_shape_quoting_nothing(serve: Serve, case: str) -> None:
    port = await serve()
    sent, status, code = MALFORMED[case]

    with structlog.testing.capture_logs() as logs:
        response = await exchange(HOST, port, sent)

    assert_spec_error(response, status, code, sent)
    logged = [entry for entry in logs if entry["event"] == "http.bad_request"]
    assert [entry["request_id"] for entry in logged] == [response.header("X-Request-ID")]


async def test_a_good_request_still_gets_through_the_same_server(serve: Serve) -> None:
    port = await serve()
    body = b'{"a": 1}'

    response = await exchange(HOST, port, post_head(len(body)) + body)

    assert response.status == 200 and response.json() == {"got": {"a": 1}}
    assert not response.closed  # keep-alive as usual


async def test_a_body_that_arrives_too_slowly_is_a_408_and_the_connection_closes_within_the_bound(
    serve: Serve,
) -> None:
    port = await serve(body_read_timeout_s=1.0)
    async with connect(HOST, port) as conn:
        response = await answer_to_dribbled(conn, post_head(100), b'{"a": "' + b"x" * 92 + b'"}', every_s=0.2)

    assert response.status == 408
    assert response.json()["error"]["code"] == "request_timeout"
    assert response.header("Connection") == "close"
    assert response.closed
    assert 1.0 <= response.elapsed_s < 3.0  # the bound, not the 20 s the whole body would take


async def test_a_body_that_arrives_in_time_is_not_cut_off(serve: Serve) -> None:
    port = await serve(body_read_timeout_s=3.0)
    body = b'{"a": "' + b"x" * 8 + b'"}'
    async with connect(HOST, port) as conn:
        await conn.send(post_head(len(body)))
        await dribble(conn, body, every_s=0.05)  # slow, but done well within the bound
        response = await conn.response()

    assert response.status == 200


async def test_a_request_head_that_arrives_too_slowly_is_cut_off_at_the_keep_alive_timeout(serve: Serve) -> None:
    port = await serve(keepalive_timeout_s=1.0)
    head = b"GET /health HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"x" * 200 + b"\r\n\r\n"
    async with connect(HOST, port) as conn:
        started = time.monotonic()
        sender = asyncio.create_task(dribble(conn, head, every_s=0.1))
        try:
            assert await conn.closed_by_server(within_s=4.0)
        finally:
            sender.cancel()
        assert time.monotonic() - started < 4.0  # not the ~21 s the whole head would take


async def test_a_client_hanging_up_mid_body_is_counted_as_499_never_as_a_server_error(serve: Serve) -> None:
    port = await serve()
    with structlog.testing.capture_logs() as logs:
        async with connect(HOST, port) as conn:
            await conn.send(post_head(500) + b'{"a": "xx')
            await asyncio.wait_for(echo_began(port).wait(), 5)  # the handler is reading the body
            conn.abort()

        async def counted() -> float | None:
            async with aiohttp.ClientSession() as http, http.get(f"http://{HOST}:{port}/metrics") as response:
                series = parse(await response.text())
            labels = {"service": "demo", "method": "POST", "route": "/echo", "upstream": ""}
            return value(series, "taskswarm_http_requests_total", **labels, status="499")

        assert await eventually(counted, what="the abandoned request counted") == 1

    events = [entry["event"] for entry in logs]
    assert "http.client_gone" in events
    assert "http.dependency_unavailable" not in events
    statuses = [entry["status"] for entry in logs if entry["event"] == "http.request" and entry["path"] == "/echo"]
    assert statuses == [499]


async def test_every_answer_says_nosniff_and_names_no_server(serve: Serve) -> None:
    port = await serve()
    base = f"http://{HOST}:{port}"
    async with aiohttp.ClientSession() as http:
        answers = [
            await http.get(base + "/health"),  # 200
            await http.get(base + "/nowhere"),  # 404
            await http.put(base + "/echo"),  # 405
            await http.get(base + "/crash"),  # 500
            await http.post(base + "/echo", data=b"{" * 2000, headers={"Content-Type": "application/json"}),  # 413
            await http.post(base + "/echo", data=b"{", headers={"Content-Type": "application/json"}),  # 400
        ]
        for response in answers:
            response.release()

    assert [response.status for response in answers] == [200, 404, 405, 500, 413, 400]
    for response in answers:
        assert response.headers.getall("X-Content-Type-Options") == ["nosniff"], response.status
        assert "Server" not in response.headers, response.status


async def test_a_405_says_which_methods_the_resource_has(serve: Serve) -> None:
    port = await serve()
    async with aiohttp.ClientSession() as http, http.delete(f"http://{HOST}:{port}/health") as response:
        assert response.status == 405
        assert (await response.json())["error"]["code"] == "method_not_allowed"
        assert set(response.headers["Allow"].split(",")) == {"GET", "HEAD"}
