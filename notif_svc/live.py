"""The live hub: how a notification stored by any replica reaches the long-polls and WebSockets of all.

Every notif_svc process holds ONE Redis pub/sub connection (its own client, not the request client's
pool): PSUBSCRIBE `notif:user:*` and SUBSCRIBE `auth:revocations`. A single reader task dispatches what
arrives to local listeners (an asyncio queue per waiting request or socket), keyed by user id and by
session id, so a held long-poll or an open socket holds no Redis connection at all: any number of them
wait on their queues while the request pool serves everything else. Publishing is a plain PUBLISH on the
shared client.

Pub/sub is fire-and-forget: a message sent while the connection is down is lost. So nothing relies on
it alone: long-polls also re-check the feed version every few seconds, and after every reconnection
(ours, or redis-py's own transparent resubscription, which we notice by the subscribe confirmations
arriving again) every listener gets RESYNC, to re-check whatever it was waiting for.

Messages on `notif:user:<id>` are JSON objects with a `type`: `notification` (`data` is the
notification as the API shows it; sockets forward these verbatim) or `read` (the user's read marks
changed; it only wakes long-polls).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from common.core.retry import Backoff
from common.core.settings import Settings
from common.redis.client import make_redis
from common.redis.sessions import REVOCATIONS_CHANNEL
from notif_svc.feed_states import FeedStateCache

log = structlog.get_logger("notif.live")

USER_CHANNEL_PREFIX = "notif:user:"
USER_CHANNEL_PATTERN = USER_CHANNEL_PREFIX + "*"
# Undelivered messages a listener may hold before it is declared too slow (sockets then close).
LISTENER_LIMIT = 256
_SUBSCRIPTIONS = 2  # the user channel pattern and the revocations channel
_READ_TIMEOUT_S = 1.0  # wake up regularly, so redis-py's health checks run on an idle connection


def user_channel(user_id: str) -> str:
    return USER_CHANNEL_PREFIX + user_id


class Signal(enum.Enum):
    REVOKED = "revoked"  # the listener's session was revoked
    RESYNC = "resync"  # pub/sub was re-established: messages may have been lost meanwhile
    CLOSING = "closing"  # this process is shutting down
    LAGGING = "lagging"  # the listener fell LISTENER_LIMIT messages behind; later ones are dropped
    CLIENT_GONE = "client_gone"  # set by the listener's owner (a socket whose client closed)


Item = str | Signal  # a raw message of the user's channel, or a signal


class Listener:
    """What one waiting request or socket receives, in order."""

    def __init__(self, user_id: str, session_id: str | None) -> None:
        self.user_id = user_id
        self.session_id = session_id
        self._queue: asyncio.Queue[Item] = asyncio.Queue()  # bounded by hand: signals always fit
        self._lagging = False

    def deliver(self, message: str) -> None:
        if self._lagging:
            return
        if self._queue.qsize() >= LISTENER_LIMIT:
            self._lagging = True
            self._queue.put_nowait(Signal.LAGGING)
            return
        self._queue.put_nowait(message)

    def signal(self, signal: Signal) -> None:
        self._queue.put_nowait(signal)

    async def get(self) -> Item:
        return await self._queue.get()


class LiveHub:
    def __init__(self, settings: Settings, feed_states: FeedStateCache) -> None:
        self._settings = settings
        # Kept in step with what this connection hears (see notif_svc.feed_states).
        self.feed_states = feed_states
        self._users: dict[str, set[Listener]] = {}
        self._sessions: dict[str, set[Listener]] = {}
        self._task: asyncio.Task[None] | None = None
        self._subscribed_once = False
        self._confirmations = 0
        self.connected = asyncio.Event()
        self.reconnects = 0

    # -- listeners -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def listen(self, user_id: str, session_id: str | None = None) -> Iterator[Listener]:
        """Receive the user's channel (and the session's revocation) while inside the block.

        Register BEFORE checking the state you wait on: a change committed between the check and the
        registration would otherwise be announced to nobody.
        """
        listener = Listener(user_id, session_id)
        self._users.setdefault(user_id, set()).add(listener)
        if session_id is not None:
            self._sessions.setdefault(session_id, set()).add(listener)
        try:
            yield listener
        finally:
            self._discard(self._users, user_id, listener)
            if session_id is not None:
                self._discard(self._sessions, session_id, listener)

    @staticmethod
    def _discard(table: dict[str, set[Listener]], key: str, listener: Listener) -> None:
        listeners = table.get(key)
        if listeners is not None:
            listeners.discard(listener)
            if not listeners:
                del table[key]

    def _all_listeners(self) -> set[Listener]:
        return {listener for listeners in self._users.values() for listener in listeners}

    def broadcast(self, signal: Signal) -> None:
        for listener in self._all_listeners():
            listener.signal(signal)

    @property
    def listener_count(self) -> int:
        return len(self._all_listeners())

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="notif-live-hub")

    async def stop(self) -> None:
        self.broadcast(Signal.CLOSING)
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
                    await pubsub.psubscribe(USER_CHANNEL_PATTERN)
                    await pubsub.subscribe(REVOCATIONS_CHANNEL)
                    while True:
                        message = await pubsub.get_message(timeout=_READ_TIMEOUT_S)
                        if message is not None:
                            self._dispatch(message)
                            backoff.reset()
            except (RedisError, OSError) as exc:
                self.connected.clear()
                self.feed_states.trust(False)
                delay = backoff.next_delay()
                log.warning("live.redis_unavailable", error=repr(exc), retry_in_s=round(delay, 3))
                await asyncio.sleep(delay)
            finally:
                await client.aclose()

    # -- dispatch --------------------------------------------------------------------------------

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind in ("subscribe", "psubscribe"):
            self._on_subscribed()
        elif kind == "pmessage":
            user_id = message["channel"].removeprefix(USER_CHANNEL_PREFIX)
            self.feed_states.invalidate([user_id])
            for listener in list(self._users.get(user_id, ())):
                listener.deliver(message["data"])
        elif kind == "message" and message["channel"] == REVOCATIONS_CHANNEL:
            for listener in list(self._sessions.get(message["data"], ())):
                listener.signal(Signal.REVOKED)

    def _on_subscribed(self) -> None:
        # Each (re)subscription of this connection confirms its _SUBSCRIPTIONS subscriptions one by one.
        self._confirmations += 1
        if self._confirmations % _SUBSCRIPTIONS != 1:
            return
        self.connected.set()
        self.feed_states.trust(True)  # forgets what was kept before: changes may have gone unheard
        if self._subscribed_once:
            # Subscribed again: whatever was published while we were away is lost to us.
            self.reconnects += 1
            log.warning("live.resubscribed", listeners=self.listener_count)
            self.broadcast(Signal.RESYNC)
        self._subscribed_once = True


async def publish(redis: aioredis.Redis, messages: Iterable[tuple[str, dict[str, Any]]]) -> None:
    """PUBLISH each (user id, message) on that user's channel, in one round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        for user_id, message in messages:
            pipe.publish(user_channel(user_id), orjson.dumps(message))
        await pipe.execute()
