"""Redis pub/sub as this code base uses it: one reconnecting subscriber per process, and publishing.

What is heard is named by `Topic`: one channel (`Topic("auth:revocations")`), or a keyed family of
channels, one per key (`Topic("notif:user:", keyed=True)`: the channel of user 42 is `notif:user:42`).
Callers name topics and keys, never channels or commands.

`Subscriber` holds ONE dedicated connection (its own client, not the request pool) subscribed to its
topics, and hands every message to a callback from a single reader task, so what waits on the messages
(queues, sockets) holds no Redis connection at all. Pub/sub is fire-and-forget: a message sent while the
connection is down is lost. So the subscriber tells its owner when that may have happened: `on_lost`
when the connection fails (it then reconnects with `common.core.retry.Backoff`), and `on_subscribed`
every time ALL its topics are confirmed, with `again=True` after the first time, whether the
resubscription is ours (after a failure) or redis-py's own transparent one (it reconnects inside a read
and subscribes again; we notice by the confirmations arriving again). The owner re-checks then whatever
it was waiting for: messages published meanwhile are gone.

`publish` (a batch in one round trip) and `queue_publish` (onto a caller's pipeline) are the only ways
this code base publishes.

Redis Cluster (SPEC §7) is meant to touch this module only: on a cluster, publishing becomes SPUBLISH,
a single-channel topic SSUBSCRIBE on the node owning its slot, and a keyed topic (PSUBSCRIBE today:
sharded pub/sub has no patterns) a fixed set of sharded channels the keys hash onto, with the key carried
next to the payload; the subscriber then holds one connection per shard and resubscribes when the
topology changes (a moved slot ends a sharded subscription with an `sunsubscribe`), calling
`on_subscribed(again=True)` just the same. Callers, which only see topics, keys and payloads, stay as
they are.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from redis.asyncio.client import Pipeline

from common.core.retry import Backoff
from common.core.settings import Settings
from common.redis.client import REDIS_FAILURES, Client, make_redis

log = structlog.get_logger("redis.pubsub")

# Wake up regularly on an idle connection, so redis-py's health checks run and a dead peer is noticed.
_READ_TIMEOUT_S = 1.0

Payload = str | bytes


@dataclass(frozen=True, slots=True)
class Topic:
    """One channel `name`, or (`keyed`) the family of channels `name + key`."""

    name: str
    keyed: bool = False

    def channel(self, key: str | None = None) -> str:
        if self.keyed != (key is not None):
            raise ValueError(f"topic {self.name!r} is {'' if self.keyed else 'not '}keyed")
        return self.name + (key or "")


@dataclass(frozen=True, slots=True)
class Message:
    """What a subscriber heard: on which topic, for which key (keyed topics; else None), what."""

    topic: Topic
    key: str | None
    data: str


async def publish(client: Client, topic: Topic, messages: Iterable[tuple[str | None, Payload]]) -> None:
    """Publish each (key, payload) on `topic` (key None for a single-channel topic), in one round trip.

    Raises one of `REDIS_FAILURES` when Redis cannot take them (some may have been published)."""
    async with client.pipeline(transaction=False) as pipe:
        for key, payload in messages:
            queue_publish(pipe, topic, key, payload)
        await pipe.execute()


def queue_publish(pipe: Pipeline, topic: Topic, key: str | None, payload: Payload) -> None:
    """Add one publication to a pipeline the caller executes (with its other commands)."""
    pipe.publish(topic.channel(key), payload)


def _ignore_lost(error: BaseException) -> None:
    pass


class Subscriber:
    """One connection subscribed to `topics`, kept subscribed until `stop()`.

    Callbacks run on the reader task and must not block: `on_message` for every message,
    `on_subscribed(again)` once all topics are confirmed (after `subscribed` is set), `on_lost(error)` when
    the connection failed (after `subscribed` is cleared), before waiting to reconnect.
    """

    def __init__(
        self,
        settings: Settings,
        topics: Sequence[Topic],
        *,
        on_message: Callable[[Message], None],
        on_subscribed: Callable[[bool], None],
        on_lost: Callable[[BaseException], None] = _ignore_lost,
        name: str = "pubsub",
    ) -> None:
        if not topics:
            raise ValueError("a subscriber needs at least one topic")
        self._settings = settings
        self._topics = tuple(topics)
        self._channels = {t.name: t for t in self._topics if not t.keyed}
        self._patterns = {t.name + "*": t for t in self._topics if t.keyed}
        self._on_message = on_message
        self._on_subscribed = on_subscribed
        self._on_lost = on_lost
        self._name = name
        self._task: asyncio.Task[None] | None = None
        self._confirmations = 0
        self._subscribed_once = False
        self.subscribed = asyncio.Event()  # all topics confirmed on the current connection
        self.resubscriptions = 0  # times subscribed again after the first (each one may have lost messages)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        backoff = Backoff()
        while True:
            client = make_redis(self._settings, max_connections=1)  # the one pub/sub connection
            try:
                async with client.pubsub() as pubsub:
                    self._confirmations = 0
                    for topic in self._topics:
                        if topic.keyed:
                            await pubsub.psubscribe(topic.name + "*")
                        else:
                            await pubsub.subscribe(topic.name)
                    while True:
                        message = await pubsub.get_message(timeout=_READ_TIMEOUT_S)
                        if message is not None:
                            self._dispatch(message)
                            backoff.reset()
            except REDIS_FAILURES as exc:
                self.subscribed.clear()
                self._on_lost(exc)
                delay = backoff.next_delay()
                log.warning(
                    "pubsub.redis_unavailable", subscriber=self._name, error=repr(exc), retry_in_s=round(delay, 3)
                )
                await asyncio.sleep(delay)
            finally:
                await client.aclose()

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind in ("subscribe", "psubscribe"):
            self._confirmed()
        elif kind == "pmessage":
            topic = self._patterns.get(message["pattern"])
            if topic is not None:
                self._on_message(Message(topic, message["channel"].removeprefix(topic.name), message["data"]))
        elif kind == "message":
            topic = self._channels.get(message["channel"])
            if topic is not None:
                self._on_message(Message(topic, None, message["data"]))

    def _confirmed(self) -> None:
        # Each (re)subscription of this connection confirms its topics one by one; the last one counts.
        self._confirmations += 1
        if self._confirmations % len(self._topics) != 0:
            return
        again = self._subscribed_once
        self._subscribed_once = True
        if again:
            self.resubscriptions += 1
        self.subscribed.set()
        self._on_subscribed(again)
