"""GET /notifications/ws: pushes each new notification of the caller as it is stored, and closes when
the session is revoked (4001) or the token expires (4002). Bad tokens never get a socket."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiohttp import WSMsgType, WSServerHandshakeError
from aiohttp.client_ws import ClientWebSocketResponse

from common.redis.sessions import DenyList
from tests.notif_svc.conftest import Actor, World, notice_event

WS = "/notifications/ws"


async def _connect(world: World, actor: Actor, *, via_query: bool = False) -> ClientWebSocketResponse:
    if via_query:
        ws = await world.client.ws_connect(WS, params={"access_token": actor.token})
    else:
        ws = await world.client.ws_connect(WS, headers=actor.headers)
    await world.listeners(1)
    return ws


async def _closed_with(ws: ClientWebSocketResponse, timeout: float) -> int:
    """The code of the close frame the server sends next (after a clean close handshake)."""
    message = await asyncio.wait_for(ws.receive(), timeout)
    assert message.type is WSMsgType.CLOSE, message
    assert ws.close_code == message.data  # our close reply was accepted: not 1006 (abnormal)
    return message.data


async def test_a_new_notification_is_pushed_within_a_second(world: World):
    actor, reader = await world.users(2)
    ws = await _connect(world, reader)
    started = time.monotonic()
    event = notice_event([reader], by=actor)
    await world.apply([event])
    frame: dict[str, Any] = await asyncio.wait_for(ws.receive_json(), 1.0)
    assert time.monotonic() - started < 1.0
    assert frame["type"] == "notification"
    [item] = (await world.feed(reader))["items"]
    assert frame["data"] == item
    assert frame["data"]["message"] == event.data["message"]
    await ws.close()


async def test_the_token_may_come_in_the_query_and_only_my_notifications_are_pushed(pg_world: World):
    actor, reader, other = await pg_world.users(3)
    ws = await _connect(pg_world, reader, via_query=True)
    await pg_world.notify(other, by=actor)
    mine = await pg_world.notify(reader, by=actor)
    frame = await asyncio.wait_for(ws.receive_json(), 1.0)
    assert frame["data"]["message"] == mine.data["message"]
    # Read marks change the feed but are not notifications: nothing is pushed for them.
    await pg_world.client.post("/notifications/read-all", headers=reader.headers)
    await ws.send_str("client messages are ignored")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ws.receive(), 0.3)
    await ws.close()


async def test_logging_out_closes_the_socket_with_4001(pg_world: World):
    [reader] = await pg_world.users(1)
    ws = await _connect(pg_world, reader)
    await DenyList(pg_world.redis).deny([reader.session_id], 900)
    assert await _closed_with(ws, 1.0) == 4001


async def test_another_sessions_logout_leaves_the_socket_open(pg_world: World):
    actor, reader = await pg_world.users(2)
    ws = await _connect(pg_world, reader)
    await DenyList(pg_world.redis).deny([actor.session_id], 900)
    event = await pg_world.notify(reader, by=actor)
    frame = await asyncio.wait_for(ws.receive_json(), 1.0)
    assert frame["data"]["message"] == event.data["message"]
    await ws.close()


async def test_the_socket_closes_with_4002_when_the_token_expires(pg_world: World):
    reader = pg_world.actor(ttl_s=2)
    ws = await _connect(pg_world, reader)
    assert await _closed_with(ws, 4.0) == 4002


async def test_bad_tokens_get_401_before_any_upgrade(pg_world: World):
    [reader] = await pg_world.users(1)
    revoked = pg_world.actor()
    await DenyList(pg_world.redis).deny([revoked.session_id], 900)
    expired = pg_world.actor(ttl_s=-10)
    cases = {
        "missing": {},
        "garbage": {"Authorization": "Bearer not.a.token"},
        "revoked": revoked.headers,
        "expired": expired.headers,
    }
    for name, headers in cases.items():
        with pytest.raises(WSServerHandshakeError) as caught:
            await pg_world.client.ws_connect(WS, headers=headers)
        assert caught.value.status == 401, name
        response = await pg_world.client.get(WS, headers=headers)
        assert response.status == 401, name
        assert (await response.json())["error"]["code"] in {
            "missing_token",
            "invalid_token",
            "token_revoked",
            "token_expired",
        }
    with pytest.raises(WSServerHandshakeError):
        await pg_world.client.ws_connect(WS, params={"access_token": "nope"})
    ws = await _connect(pg_world, reader)  # and a good one still works
    await ws.close()
