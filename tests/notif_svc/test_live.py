"""The live hub: one pub/sub connection per process fanning out to local listeners, surviving a lost
connection, and what a shutdown does to held polls and open sockets."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp import WSMsgType

from common.core.settings import Settings
from common.redis.sessions import REVOCATIONS_CHANNEL
from notif_svc.feed_states import FeedStateCache
from notif_svc.live import LISTENER_LIMIT, Listener, LiveHub, Signal, publish
from notif_svc.store import FeedState
from tests.helpers import eventually
from tests.notif_svc.conftest import World


@pytest.fixture
async def hub(servers, redis: aioredis.Redis) -> AsyncIterator[LiveHub]:  # type: ignore[no-untyped-def]
    live = LiveHub(Settings(redis_url=servers.redis.url), FeedStateCache(max_age_s=60))
    await live.start()

    async def connected() -> bool:
        return live.connected.is_set()

    await eventually(connected, what="the hub subscribed")
    yield live
    await live.stop()


async def _next(listener: Listener, timeout: float = 2.0) -> str | Signal:
    return await asyncio.wait_for(listener.get(), timeout)


async def _next_message(listener: Listener) -> object:
    item = await _next(listener)
    assert isinstance(item, str), item
    return orjson.loads(item)


async def test_messages_reach_every_listener_of_that_user_only(hub: LiveHub, redis: aioredis.Redis):
    me, other = str(uuid.uuid4()), str(uuid.uuid4())
    with hub.listen(me) as first, hub.listen(me) as second, hub.listen(other) as theirs:
        await publish(redis, [(me, {"type": "notification", "data": {"n": 1}})])
        for listener in (first, second):
            assert await _next_message(listener) == {"type": "notification", "data": {"n": 1}}
        with pytest.raises(TimeoutError):
            await _next(theirs, 0.2)
    assert hub.listener_count == 0


async def test_a_message_on_a_users_channel_drops_the_feed_state_kept_for_that_user(hub: LiveHub, redis):  # type: ignore[no-untyped-def]
    me, other = str(uuid.uuid4()), str(uuid.uuid4())
    for user in (me, other):
        hub.feed_states.put(user, FeedState(1, None), hub.feed_states.started())
    with hub.listen(me) as listener:
        await publish(redis, [(me, {"type": "read"})])  # what a replica announces after changing my feed
        await _next_message(listener)
    assert hub.feed_states.get(me) is None
    assert hub.feed_states.get(other) == FeedState(1, None)


async def test_a_revocation_signals_the_listeners_of_that_session(hub: LiveHub, redis: aioredis.Redis):
    user, session = str(uuid.uuid4()), str(uuid.uuid4())
    with hub.listen(user, session) as revoked, hub.listen(user, str(uuid.uuid4())) as untouched:
        await redis.publish(REVOCATIONS_CHANNEL, session)
        assert await _next(revoked) is Signal.REVOKED
        with pytest.raises(TimeoutError):
            await _next(untouched, 0.2)


async def test_the_hub_resubscribes_after_redis_drops_its_connection(hub: LiveHub, redis: aioredis.Redis):
    user = str(uuid.uuid4())
    hub.feed_states.put(user, FeedState(3, None), hub.feed_states.started())
    assert hub.feed_states.get(user) == FeedState(3, None)
    with hub.listen(user) as listener:
        killed = await redis.client_kill_filter(_type="pubsub")
        assert killed >= 1
        # Whatever was published meanwhile is lost: listeners are told to re-check, and no feed state
        # kept from before is answered any more.
        assert await _next(listener, 5.0) is Signal.RESYNC
        assert hub.reconnects == 1
        assert hub.feed_states.get(user) is None
        await publish(redis, [(user, {"type": "read"})])
        assert await _next_message(listener) == {"type": "read"}


def test_a_listener_that_falls_behind_is_told_once_and_later_messages_are_dropped():
    listener = Listener(str(uuid.uuid4()), None)
    for n in range(LISTENER_LIMIT + 10):
        listener.deliver(str(n))
    listener.signal(Signal.CLOSING)
    drained = [listener._queue.get_nowait() for _ in range(listener._queue.qsize())]
    assert drained == [*(str(n) for n in range(LISTENER_LIMIT)), Signal.LAGGING, Signal.CLOSING]


async def test_shutdown_answers_held_polls_with_304_and_closes_sockets_with_1001(pg_world: World):
    [reader] = await pg_world.users(1)
    etag = (await pg_world.client.get("/notifications", headers=reader.headers)).headers["ETag"]
    ws = await pg_world.client.ws_connect("/notifications/ws", headers=reader.headers)
    held = asyncio.create_task(
        pg_world.client.get("/notifications", params={"wait": 20}, headers={**reader.headers, "If-None-Match": etag})
    )
    await pg_world.listeners(2)
    started = time.monotonic()
    closing = asyncio.create_task(pg_world.client.server.close())
    response = await asyncio.wait_for(held, 2.0)
    assert response.status == 304
    message = await asyncio.wait_for(ws.receive(), 2.0)
    assert (message.type, message.data) == (WSMsgType.CLOSE, 1001)
    await asyncio.wait_for(closing, 5.0)
    assert time.monotonic() - started < 5.0
