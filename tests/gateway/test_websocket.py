"""WebSockets through the gateway: admitted at the edge (header or `?access_token=`), relayed to a
notif_svc replica only once it accepted, messages and close codes carried both ways."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDictProxy

from common.redis.sessions import DenyList
from gateway.proxy import GATEWAY
from tests.gateway.conftest import MakeToken, StartGateway, Upstream
from tests.helpers import eventually

WS_PATH = "/api/v1/ws"


@dataclass
class Opened:
    """One upgrade as the service saw it, and how the socket ended."""

    path: str
    query: str
    headers: CIMultiDictProxy[str]
    close_code: int | None = None
    close_message: str = ""
    received: list[Any] = field(default_factory=list)


class WsUpstream:
    """notif_svc's WebSocket endpoint, scripted: greets, echoes, and obeys commands sent as text.

    `close:<code>` closes with that code (reason "bye"), `drop` cuts the TCP connection without a close
    frame, `later:<s>` answers "late" after s seconds. `refuse` answers the upgrade with an HTTP error.
    """

    def __init__(self) -> None:
        self.opened: list[Opened] = []
        self.attempts = 0
        self.refuse: tuple[int, dict[str, Any]] | None = None
        app = web.Application()
        app.router.add_get("/notifications/ws", self._socket)
        self.server = TestServer(app, host="127.0.0.1")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        self.attempts += 1
        if self.refuse is not None:
            status, body = self.refuse
            return web.json_response(body, status=status, headers={"WWW-Authenticate": "Bearer"})
        path, _, query = request.raw_path.partition("?")
        opened = Opened(path, query, request.headers)
        self.opened.append(opened)
        socket = web.WebSocketResponse(protocols=("notifications.v1",))
        await socket.prepare(request)
        await socket.send_json({"type": "hello"})
        async for message in socket:
            if message.type is WSMsgType.BINARY:
                opened.received.append(message.data)
                await socket.send_bytes(message.data[::-1])
                continue
            opened.received.append(message.data)
            command, _, argument = message.data.partition(":")
            if command == "close":
                await socket.close(code=int(argument), message=b"bye")
            elif command == "drop":
                assert request.transport is not None
                request.transport.close()
            elif command == "later":
                await asyncio.sleep(float(argument))
                await socket.send_str("late")
            else:
                await socket.send_str("echo:" + message.data)
        opened.close_code = socket.close_code
        return socket


@pytest.fixture
async def ws_upstream() -> AsyncIterator[WsUpstream]:
    upstream = WsUpstream()
    await upstream.server.start_server()
    yield upstream
    await upstream.server.close()


@pytest.fixture
async def ws_gateway(start_gateway: StartGateway, ws_upstream: WsUpstream):  # type: ignore[no-untyped-def]
    return await start_gateway(notif_url=(ws_upstream.url,))


def handshake_headers(**extra: str) -> dict[str, str]:
    """A browser's opening handshake, for requests whose refusal we want to read as JSON."""
    return {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        **extra,
    }


def watch(get: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
    """A probe for `eventually` reading a plain attribute."""

    async def probe() -> Any:
        return get()

    return probe


async def hello(socket: aiohttp.ClientWebSocketResponse) -> None:
    assert await socket.receive_json(timeout=5) == {"type": "hello"}


async def test_messages_flow_both_ways_through_the_gateway(ws_gateway, ws_upstream: WsUpstream, make_token: MakeToken):
    token = make_token()
    async with ws_gateway.ws_connect(WS_PATH, headers=token.headers) as socket:
        await hello(socket)  # pushed by the service unasked
        await socket.send_str("ping")
        assert await socket.receive_str(timeout=5) == "echo:ping"
        await socket.send_bytes(b"\x00\x01\x02")
        assert await socket.receive_bytes(timeout=5) == b"\x02\x01\x00"

    (opened,) = ws_upstream.opened
    assert opened.path == "/notifications/ws"
    assert opened.received == ["ping", b"\x00\x01\x02"]


async def test_the_service_sees_the_bearer_token_and_the_request_id(
    ws_gateway, ws_upstream: WsUpstream, make_token: MakeToken
):
    token = make_token()
    headers = {**token.headers, "X-Request-ID": "trace-me-42"}
    async with ws_gateway.ws_connect(WS_PATH, headers=headers) as socket:
        await hello(socket)
        # The 101's headers (aiohttp keeps the handshake response only privately).
        assert socket._response.headers["X-Request-ID"] == "trace-me-42"

    (opened,) = ws_upstream.opened
    assert opened.headers["Authorization"] == "Bearer " + token.value
    assert opened.headers["X-Request-ID"] == "trace-me-42"


async def test_a_token_in_the_query_is_sent_upstream_as_a_bearer_header_and_left_out_of_the_query(
    ws_gateway, ws_upstream: WsUpstream, make_token: MakeToken
):
    token = make_token()
    async with ws_gateway.ws_connect(f"{WS_PATH}?since=abc&access_token={token.value}&x=1") as socket:
        await hello(socket)
        await socket.send_str("ping")
        assert await socket.receive_str(timeout=5) == "echo:ping"

    (opened,) = ws_upstream.opened
    assert opened.headers["Authorization"] == "Bearer " + token.value
    assert opened.query == "since=abc&x=1"


async def test_the_subprotocol_the_service_chose_is_the_one_the_client_gets(ws_gateway, make_token: MakeToken):
    async with ws_gateway.ws_connect(
        WS_PATH, headers=make_token().headers, protocols=("other", "notifications.v1")
    ) as socket:
        await hello(socket)
        assert socket.protocol == "notifications.v1"


async def test_a_close_code_from_the_service_reaches_the_client(ws_gateway, make_token: MakeToken):
    async with ws_gateway.ws_connect(WS_PATH, headers=make_token().headers) as socket:
        await hello(socket)
        await socket.send_str("close:4001")
        closing = await socket.receive(timeout=5)

    assert closing.type is WSMsgType.CLOSE
    assert (closing.data, closing.extra) == (4001, "bye")
    assert socket.close_code == 4001


async def test_a_close_code_from_the_client_reaches_the_service(
    ws_gateway, ws_upstream: WsUpstream, make_token: MakeToken
):
    async with ws_gateway.ws_connect(WS_PATH, headers=make_token().headers) as socket:
        await hello(socket)
        await socket.close(code=4000, message=b"done")

    (opened,) = ws_upstream.opened
    await eventually(watch(lambda: opened.close_code), what="the service to see the close")
    assert opened.close_code == 4000
    gateway_app = ws_gateway.server.app
    await eventually(watch(lambda: gateway_app[GATEWAY].websockets.open_count == 0), what="the relay to end")


async def test_a_service_that_vanishes_closes_the_client_with_going_away(ws_gateway, make_token: MakeToken):
    async with ws_gateway.ws_connect(WS_PATH, headers=make_token().headers) as socket:
        await hello(socket)
        await socket.send_str("drop")
        closing = await socket.receive(timeout=5)

    assert closing.type is WSMsgType.CLOSE
    assert socket.close_code == aiohttp.WSCloseCode.GOING_AWAY


async def test_an_open_socket_is_not_cut_by_the_upstream_read_timeout(
    start_gateway: StartGateway, ws_upstream: WsUpstream, make_token: MakeToken
):
    gateway = await start_gateway(notif_url=(ws_upstream.url,), upstream_timeout_s=0.2)
    async with gateway.ws_connect(WS_PATH, headers=make_token().headers) as socket:
        await hello(socket)
        await socket.send_str("later:0.6")  # silence three times longer than the HTTP read timeout
        assert await socket.receive_str(timeout=5) == "late"


async def assert_refused_at_the_edge(response: aiohttp.ClientResponse, status: int, code: str) -> None:
    assert response.status == status, await response.text()
    assert (await response.json())["error"]["code"] == code
    assert "Upgrade" not in response.headers


@pytest.mark.parametrize("how", ["no token", "garbage in the query", "garbage in the header", "revoked"])
async def test_a_socket_without_a_valid_token_is_a_401_and_the_service_is_never_contacted(
    ws_gateway, ws_upstream: WsUpstream, make_token: MakeToken, redis, how
):
    token = make_token()
    path, headers = WS_PATH, handshake_headers()
    code = "invalid_token"
    if how == "no token":
        code = "missing_token"
    elif how == "garbage in the query":
        path += "?access_token=not-a-jwt"
    elif how == "garbage in the header":
        headers["Authorization"] = "Bearer not-a-jwt"
    else:
        await DenyList(redis).deny([token.session_id], ttl_s=60)
        path += "?access_token=" + token.value
        code = "token_revoked"

    response = await ws_gateway.get(path, headers=headers)

    await assert_refused_at_the_edge(response, 401, code)
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert ws_upstream.attempts == 0


async def test_the_client_library_sees_the_edge_401_as_a_refused_handshake(ws_gateway, ws_upstream: WsUpstream):
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await ws_gateway.ws_connect(WS_PATH)
    assert refused.value.status == 401
    assert ws_upstream.attempts == 0


async def test_sockets_count_against_the_user_rate_limit(
    start_gateway: StartGateway, ws_upstream: WsUpstream, make_token: MakeToken
):
    gateway = await start_gateway(notif_url=(ws_upstream.url,), rate_limit_user_per_minute=1)
    token = make_token()
    async with gateway.ws_connect(WS_PATH, headers=token.headers) as socket:
        await hello(socket)
        response = await gateway.get(f"{WS_PATH}?access_token={token.value}", headers=handshake_headers())
        await assert_refused_at_the_edge(response, 429, "rate_limited")
        assert response.headers["Retry-After"]
    assert ws_upstream.attempts == 1


async def test_a_malformed_handshake_is_a_400_before_any_replica_is_contacted(
    ws_gateway, ws_upstream: WsUpstream, make_token: MakeToken
):
    headers = {**handshake_headers(), **make_token().headers}
    del headers["Sec-WebSocket-Key"]
    response = await ws_gateway.get(WS_PATH, headers=headers)

    await assert_refused_at_the_edge(response, 400, "invalid_websocket_handshake")
    assert ws_upstream.attempts == 0


async def test_no_reachable_replica_is_a_503_before_the_upgrade(
    start_gateway: StartGateway, closed_url: str, make_token: MakeToken
):
    gateway = await start_gateway(notif_url=(closed_url,))
    response = await gateway.get(WS_PATH, headers={**handshake_headers(), **make_token().headers})

    await assert_refused_at_the_edge(response, 503, "service_unavailable")
    assert (await response.json())["error"]["details"] == {"service": "notif_svc"}


async def test_a_refused_connection_moves_on_to_the_next_replica(
    start_gateway: StartGateway, closed_url: str, ws_upstream: WsUpstream, make_token: MakeToken
):
    gateway = await start_gateway(notif_url=(closed_url, ws_upstream.url))
    for _ in range(2):  # round-robin: one of the two starts at the dead replica
        async with gateway.ws_connect(WS_PATH, headers=make_token().headers) as socket:
            await hello(socket)
    assert len(ws_upstream.opened) == 2


async def test_a_service_refusing_the_upgrade_has_its_status_and_error_relayed(
    ws_gateway, ws_upstream: WsUpstream, make_token: MakeToken
):
    body = {"error": {"code": "token_revoked", "message": "token revoked", "details": {}}}
    ws_upstream.refuse = (401, body)
    response = await ws_gateway.get(WS_PATH, headers={**handshake_headers(), **make_token().headers})

    assert response.status == 401
    assert await response.json() == body
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.headers["X-Request-ID"]
    assert ws_upstream.attempts == 1


async def test_a_service_answering_the_upgrade_with_a_success_is_a_bad_gateway(
    gateway, upstreams: dict[str, Upstream], make_token: MakeToken
):
    # The echo server answers 200 to anything: it does not speak WebSocket.
    response = await gateway.get(WS_PATH, headers={**handshake_headers(), **make_token().headers})

    await assert_refused_at_the_edge(response, 502, "bad_gateway")
    assert len(upstreams["notif_svc"].seen) == 1


async def test_a_plain_get_on_the_websocket_route_is_forwarded_as_http(
    gateway, upstreams: dict[str, Upstream], make_token: MakeToken
):
    response = await gateway.get(WS_PATH, headers=make_token().headers)

    assert response.status == 200
    (seen,) = upstreams["notif_svc"].seen
    assert seen.path == "/notifications/ws"


async def test_shutting_the_gateway_down_closes_open_sockets_on_both_legs_with_going_away(
    ws_gateway, ws_upstream: WsUpstream, make_token: MakeToken
):
    socket = await ws_gateway.ws_connect(WS_PATH, headers=make_token().headers)
    await hello(socket)
    closing = asyncio.create_task(socket.receive(timeout=10))
    await ws_gateway.server.close()  # would wait for the open socket's handler without the shutdown hook

    assert (await closing).type is WSMsgType.CLOSE
    assert socket.close_code == aiohttp.WSCloseCode.GOING_AWAY
    (opened,) = ws_upstream.opened
    await eventually(watch(lambda: opened.close_code), what="the service to see the close")
    assert opened.close_code == aiohttp.WSCloseCode.GOING_AWAY
    await socket.close()
