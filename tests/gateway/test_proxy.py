"""Forwarding: request ids, headers, body limits, streamed answers, and upstream failures."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from gateway.proxy import long_poll_wait_s
from tests.gateway.conftest import MakeToken, StartGateway, pattern, total_seen

LIMIT = 64 * 1024


async def chunks(total: int, size: int = 16 * 1024) -> AsyncIterator[bytes]:
    """A request body of unknown length: aiohttp sends it chunked, without Content-Length."""
    data = pattern(total)
    for offset in range(0, total, size):
        yield data[offset : offset + size]


async def error_code(response: aiohttp.ClientResponse) -> str:
    return (await response.json())["error"]["code"]


# -- request ids ----------------------------------------------------------------------------------


async def test_a_request_id_is_made_when_the_client_sent_none_and_reaches_the_service(
    gateway, upstreams, make_token: MakeToken
):
    response = await gateway.get("/api/v1/projects", headers=make_token().headers)

    request_id = response.headers["X-Request-ID"]
    assert len(request_id) == 32
    assert upstreams["project_svc"].seen[0].headers["X-Request-ID"] == request_id


async def test_the_clients_request_id_is_passed_on_and_returned(gateway, upstreams, make_token: MakeToken):
    headers = {**make_token().headers, "X-Request-ID": "trace-42"}

    response = await gateway.get("/api/v1/projects", headers=headers)

    assert response.headers["X-Request-ID"] == "trace-42"
    assert response.headers.getall("X-Request-ID") == ["trace-42"]  # not doubled by the service's own
    assert upstreams["project_svc"].seen[0].headers["X-Request-ID"] == "trace-42"


async def test_a_streamed_answer_carries_the_request_id_too(gateway, make_token: MakeToken):
    headers = {**make_token().headers, "X-Request-ID": "stream-7"}

    response = await gateway.get("/api/v1/projects?big=2000000", headers=headers)

    assert response.headers.getall("X-Request-ID") == ["stream-7"]
    await response.read()


# -- headers --------------------------------------------------------------------------------------


async def test_hop_by_hop_headers_stay_behind_and_the_rest_pass(gateway, upstreams, make_token: MakeToken):
    headers = {
        **make_token().headers,
        "Connection": "keep-alive, X-Hop",
        "X-Hop": "per-connection",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Proxy-Authorization": "Basic c2VjcmV0",
        "X-Custom": "kept",
    }

    await gateway.get("/api/v1/projects", headers=headers)

    seen = upstreams["project_svc"].seen[0].headers
    for dropped in ("X-Hop", "Keep-Alive", "TE", "Proxy-Authorization"):
        assert dropped not in seen
    assert seen["X-Custom"] == "kept"
    assert seen["Host"] == upstreams["project_svc"].url.removeprefix("http://")
    assert seen["X-Forwarded-For"] == "127.0.0.1"


async def test_cookies_set_by_a_service_are_not_replayed_on_later_requests(
    start_gateway: StartGateway, upstreams, make_token
):
    # By host name: cookie jars ignore cookies from bare IP addresses, which would hide the leak.
    port = upstreams["project_svc"].server.port
    gateway = await start_gateway(project_url=(f"http://localhost:{port}",))
    headers = make_token().headers
    # A client without a cookie jar: any Cookie the service sees would come from the gateway's session.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:
        first = await client.get(gateway.make_url("/api/v1/projects?cookie=1"), headers=headers)
        assert "upstream_session" in first.headers["Set-Cookie"]
        await client.get(gateway.make_url("/api/v1/projects"), headers=headers)

    assert "Cookie" not in upstreams["project_svc"].seen[1].headers


async def test_the_service_sees_no_headers_the_client_did_not_send(gateway, upstreams, make_token: MakeToken):
    skip = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")
    async with aiohttp.ClientSession(skip_auto_headers=skip) as client:
        await client.post(gateway.make_url("/api/v1/projects"), data=b"raw", headers=make_token().headers)

    seen = upstreams["project_svc"].seen[0].headers
    assert not set(skip) & set(seen)


async def test_a_compressed_answer_passes_through_still_compressed(gateway, make_token: MakeToken):
    response = await gateway.get("/api/v1/projects?gzip=1", headers=make_token().headers, auto_decompress=False)

    assert response.headers["Content-Encoding"] == "gzip"
    raw = await response.read()
    assert raw[:2] == b"\x1f\x8b"
    assert int(response.headers["Content-Length"]) == len(raw)


# -- request bodies -------------------------------------------------------------------------------


async def test_a_body_within_the_limit_reaches_the_service_intact(start_gateway: StartGateway, upstreams, make_token):
    gateway = await start_gateway(max_body_bytes=LIMIT)
    body = pattern(LIMIT)

    response = await gateway.post("/api/v1/projects", data=body, headers=make_token().headers)

    assert response.status == 200
    assert upstreams["project_svc"].seen[0].body == body


async def test_a_chunked_body_within_the_limit_is_streamed_to_the_service_intact(
    start_gateway: StartGateway, upstreams, make_token
):
    gateway = await start_gateway(max_body_bytes=LIMIT)

    response = await gateway.post("/api/v1/projects", data=chunks(LIMIT), headers=make_token().headers)

    assert response.status == 200
    (seen,) = upstreams["project_svc"].seen
    assert "Content-Length" not in seen.headers  # streamed on, not buffered and re-sized
    assert seen.body == pattern(LIMIT)


async def test_a_body_announced_over_the_limit_is_refused_before_any_of_it_arrives(
    start_gateway: StartGateway, upstreams, make_token
):
    gateway = await start_gateway(max_body_bytes=LIMIT)
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    head = (
        "POST /api/v1/projects HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {make_token().value}\r\nContent-Length: {10**10}\r\n\r\n"
    )
    writer.write(head.encode())  # and not one byte of the announced 10 GB

    status_line = await asyncio.wait_for(reader.readline(), 2)
    writer.close()
    await writer.wait_closed()

    assert status_line.startswith(b"HTTP/1.1 413 ")
    assert total_seen(upstreams) == 0


async def test_a_body_over_the_limit_is_a_413_in_the_error_format(start_gateway: StartGateway, upstreams, make_token):
    gateway = await start_gateway(max_body_bytes=LIMIT)

    response = await gateway.post("/api/v1/projects", data=pattern(LIMIT + 1), headers=make_token().headers)

    assert response.status == 413
    assert await error_code(response) == "payload_too_large"
    assert total_seen(upstreams) == 0


async def test_a_chunked_body_over_the_limit_is_cut_off_and_never_completes_upstream(
    start_gateway: StartGateway, upstreams, make_token
):
    gateway = await start_gateway(max_body_bytes=LIMIT)

    response = await gateway.post("/api/v1/projects", data=chunks(4 * LIMIT), headers=make_token().headers)

    assert response.status == 413
    assert await error_code(response) == "payload_too_large"
    assert total_seen(upstreams) == 0


async def test_an_oversized_login_is_refused_too(start_gateway: StartGateway, upstreams):
    gateway = await start_gateway(max_body_bytes=LIMIT)

    response = await gateway.post("/api/v1/auth/login", data=pattern(LIMIT + 1))

    assert response.status == 413
    assert total_seen(upstreams) == 0


# -- answers --------------------------------------------------------------------------------------


@pytest.mark.parametrize("sized", [False, True], ids=["chunked", "with-content-length"])
async def test_a_large_answer_is_streamed_through_intact(gateway, make_token: MakeToken, sized):
    size = 3 * 1024 * 1024 + 17
    query = f"big={size}" + ("&sized=1" if sized else "")

    response = await gateway.get("/api/v1/projects?" + query, headers=make_token().headers)

    assert response.status == 200
    body = await response.read()
    assert hashlib.sha256(body).digest() == hashlib.sha256(pattern(size)).digest()
    if sized:
        assert response.headers["Content-Length"] == str(size)


async def test_an_answer_cut_off_mid_stream_reaches_the_client_as_cut_off(
    start_gateway: StartGateway, raw_upstream, make_token
):
    upstream = await raw_upstream(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    gateway = await start_gateway(project_url=(upstream.url,))

    response = await gateway.get("/api/v1/projects", headers=make_token().headers)

    assert response.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.read()


# -- upstream failures ----------------------------------------------------------------------------


async def test_an_upstream_that_does_not_answer_in_time_is_a_504(start_gateway: StartGateway, make_token):
    gateway = await start_gateway(upstream_timeout_s=0.2)
    started = time.monotonic()

    response = await gateway.get("/api/v1/projects?sleep=5", headers=make_token().headers)

    assert response.status == 504
    assert await error_code(response) == "gateway_timeout"
    assert time.monotonic() - started < 2


async def test_a_long_poll_may_take_longer_than_the_upstream_timeout(start_gateway: StartGateway, make_token):
    gateway = await start_gateway(upstream_timeout_s=0.2)

    response = await gateway.get("/api/v1/notifications?wait=2&sleep=0.5", headers=make_token().headers)

    assert response.status == 200


async def test_an_upstream_that_is_down_is_a_503(start_gateway: StartGateway, closed_url, make_token):
    gateway = await start_gateway(project_url=(closed_url,))

    response = await gateway.get("/api/v1/projects", headers=make_token().headers)

    assert response.status == 503
    body = await response.json()
    assert body["error"]["code"] == "service_unavailable"
    assert body["error"]["details"] == {"service": "project_svc"}


@pytest.mark.parametrize("reply", [None, b"this is not http\r\n\r\n"], ids=["connection-dropped", "garbage-answer"])
async def test_an_upstream_that_breaks_the_exchange_is_a_502(
    start_gateway: StartGateway, raw_upstream, make_token, reply
):
    upstream = await raw_upstream(reply)
    gateway = await start_gateway(project_url=(upstream.url,))

    response = await gateway.post("/api/v1/projects", json={}, headers=make_token().headers)

    assert response.status == 502
    assert await error_code(response) == "bad_gateway"
    assert upstream.requests == 1  # a POST that may have reached the service is not sent again


async def test_a_request_waiting_on_a_slow_upstream_does_not_hold_up_the_others(
    start_gateway: StartGateway, make_token
):
    gateway = await start_gateway(upstream_timeout_s=0.5)
    headers = make_token().headers

    slow = asyncio.create_task(gateway.get("/api/v1/projects?sleep=5", headers=headers))
    fast = await gateway.get("/api/v1/users/me", headers=headers)

    assert fast.status == 200
    assert not slow.done()
    assert (await slow).status == 504


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("wait=5", 5.0),
        ("unread=true&wait=2.5", 2.5),
        ("wait=600", 30.0),
        ("wait=-1", 0.0),
        ("wait=nan", 0.0),
        ("wait=soon", 0.0),
        ("waiting=5", 0.0),
        ("", 0.0),
    ],
)
def test_a_long_poll_wait_is_read_leniently_and_capped_at_the_spec_maximum(query, expected):
    assert long_poll_wait_s(query) == expected
