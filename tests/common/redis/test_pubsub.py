"""The pub/sub mechanism against a real Redis: a subscriber hears its topics (and only them), publishing
reaches it, and when the server drops its connection it subscribes again and says so."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import redis.asyncio as aioredis

from common.core.settings import Settings
from common.redis.pubsub import Message, Subscriber, Topic, publish
from tests.helpers import eventually

USERS = Topic("test:user:", keyed=True)
ALERTS = Topic("test:alerts")


@dataclass
class Heard:
    """What the callbacks were told, in order."""

    messages: asyncio.Queue[Message] = field(default_factory=asyncio.Queue)
    subscriptions: list[bool] = field(default_factory=list)  # the `again` of each on_subscribed


@pytest.fixture
async def heard(servers, redis: aioredis.Redis) -> AsyncIterator[tuple[Subscriber, Heard]]:  # type: ignore[no-untyped-def]
    heard = Heard()
    subscriber = Subscriber(
        Settings(redis_url=servers.redis.url),
        [USERS, ALERTS],
        on_message=heard.messages.put_nowait,
        on_subscribed=heard.subscriptions.append,
        name="test-subscriber",
    )
    await subscriber.start()

    async def subscribed() -> bool:
        return subscriber.subscribed.is_set()

    await eventually(subscribed, what="the subscriber subscribed")
    yield subscriber, heard
    await subscriber.stop()
    assert not subscriber.running()


async def _next(heard: Heard, timeout: float = 5.0) -> Message:
    return await asyncio.wait_for(heard.messages.get(), timeout)


async def test_a_subscriber_hears_keyed_and_single_channel_topics_and_nothing_else(
    heard: tuple[Subscriber, Heard], redis: aioredis.Redis
) -> None:
    subscriber, log = heard
    assert log.subscriptions == [False]  # subscribed once, not "again"

    await redis.publish("test:other", "not ours")
    await publish(redis, USERS, [("u1", b'{"n": 1}'), ("u2", "two")])
    await publish(redis, ALERTS, [(None, "fire")])

    assert await _next(log) == Message(USERS, "u1", '{"n": 1}')
    assert await _next(log) == Message(USERS, "u2", "two")
    assert await _next(log) == Message(ALERTS, None, "fire")
    assert log.messages.empty()
    assert subscriber.resubscriptions == 0


async def test_after_the_server_kills_its_connection_the_subscriber_subscribes_again_and_says_so(
    heard: tuple[Subscriber, Heard], redis: aioredis.Redis
) -> None:
    subscriber, log = heard

    killed = await redis.client_kill_filter(_type="pubsub")
    assert killed == 1  # its ONE connection

    async def resubscribed() -> bool:
        return log.subscriptions == [False, True]

    await eventually(resubscribed, what="the subscriber told it subscribed again")
    assert subscriber.resubscriptions == 1
    assert subscriber.subscribed.is_set()
    await publish(redis, USERS, [("u1", "after")])
    assert await _next(log) == Message(USERS, "u1", "after")
    assert len(await redis.pubsub_channels()) + await redis.pubsub_numpat() == 2  # both topics, once each


def test_a_keyed_topic_needs_a_key_and_a_single_channel_topic_takes_none() -> None:
    assert USERS.channel("42") == "test:user:42"
    assert ALERTS.channel() == "test:alerts"
    with pytest.raises(ValueError):
        USERS.channel()
    with pytest.raises(ValueError):
        ALERTS.channel("42")
