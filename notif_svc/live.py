"""The live hub: how a notification stored by any replica reaches the long-polls and WebSockets of all.

Every notif_svc process holds ONE Redis pub/sub subscriber (`common.redis.pubsub.Subscriber`: its own
connection, reconnecting with backoff) on two topics: the users' channels (`notif:user:<id>`) and the
session revocations (`common.redis.sessions.REVOCATIONS`). What arrives is dispatched here to local
listeners (an asyncio queue per waiting request or socket), keyed by user id and by session id, so a
held long-poll or an open socket holds no Redis connection at all: any number of them wait on their
queues while the request pool serves everything else. Publishing is `common.redis.pubsub.publish` on
the shared client.

Pub/sub is fire-and-forget: a message sent while the connection is down is lost. So nothing relies on
it alone: long-polls also re-check the feed version every few seconds, and after every resubscription
(the subscriber tells us, whichever way it happened) every listener gets RESYNC, to re-check whatever
it was waiting for, and the feed states kept in memory are dropped.

Messages on a user's channel are JSON objects with a `type`: `notification` (`data` is the
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
import structlog

from common.core.settings import Settings
from common.redis.client import Client
from common.redis.pubsub import Message, Subscriber, Topic
from common.redis.pubsub import publish as publish_on
from common.redis.sessions import REVOCATIONS
from notif_svc.feed_states import FeedStateCache

log = structlog.get_logger("notif.live")

USERS = Topic("notif:user:", keyed=True)  # keyed by user id
# Undelivered messages a listener may hold before it is declared too slow (sockets then close).
LISTENER_LIMIT = 256


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
        # Kept in step with what this connection hears (see notif_svc.feed_states).
        self.feed_states = feed_states
        self._users: dict[str, set[Listener]] = {}
        self._sessions: dict[str, set[Listener]] = {}
        self._subscriber = Subscriber(
            settings,
            [USERS, REVOCATIONS],
            on_message=self._dispatch,
            on_subscribed=self._on_subscribed,
            on_lost=self._on_lost,
            name="notif-live-hub",
        )

    @property
    def connected(self) -> asyncio.Event:
        """Set while subscribed (the readiness check)."""
        return self._subscriber.subscribed

    @property
    def reconnects(self) -> int:
        return self._subscriber.resubscriptions

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
        await self._subscriber.start()

    async def stop(self) -> None:
        self.broadcast(Signal.CLOSING)
        await self._subscriber.stop()

    def running(self) -> bool:
        return self._subscriber.running()

    # -- what the subscriber hears ---------------------------------------------------------------

    def _dispatch(self, message: Message) -> None:
        if message.topic == USERS and message.key is not None:
            self.feed_states.invalidate([message.key])
            for listener in list(self._users.get(message.key, ())):
                listener.deliver(message.data)
        elif message.topic == REVOCATIONS:
            for listener in list(self._sessions.get(message.data, ())):
                listener.signal(Signal.REVOKED)

    def _on_subscribed(self, again: bool) -> None:
        self.feed_states.trust(True)  # forgets what was kept before: changes may have gone unheard
        if again:
            # Subscribed again: whatever was published while we were away is lost to us.
            log.warning("live.resubscribed", listeners=self.listener_count)
            self.broadcast(Signal.RESYNC)

    def _on_lost(self, error: BaseException) -> None:
        self.feed_states.trust(False)


async def publish(redis: Client, messages: Iterable[tuple[str, dict[str, Any]]]) -> None:
    """Announce each (user id, message) on that user's channel, in one round trip."""
    await publish_on(redis, USERS, [(user_id, orjson.dumps(message)) for user_id, message in messages])
