"""The session deny-list in Redis: revoked sessions, the announcement of each revocation, and the check.

A revoked session's key lives for the access-token lifetime (after that its tokens expire anyway), and
each revocation is published on `REVOCATIONS_CHANNEL` so live connections (notif_svc's WebSockets) close
at once instead of at their next check. Keyed by session id, not token id: revoking a session (logout,
password change, refresh-token reuse) revokes every access token it issued.

`DenyList.check` is the edge's one round trip: the deny-list lookup and, optionally, a rate-limit hit
(`common.redis.ratelimit`) in the same pipeline, so the gateway pays one Redis round trip per request.
Every method raises RedisError when Redis cannot answer: callers refuse then (503), never let through.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis

from common.redis import ratelimit
from common.redis.pubsub import Topic, queue_publish

REVOCATIONS_CHANNEL = "auth:revocations"
REVOCATIONS = Topic(REVOCATIONS_CHANNEL)  # each message: the id of a session just revoked


def revoked_session_key(session_id: str) -> str:
    return f"auth:revoked-session:{session_id}"


class DenyList:
    """The deny-list on one Redis client (the process's shared pool)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def is_revoked(self, session_id: str) -> bool:
        return bool(await self._redis.exists(revoked_session_key(session_id)))

    async def check(
        self, session_id: str, *, hit: ratelimit.Command | None = None
    ) -> tuple[bool, Sequence[int] | None]:
        """Whether `session_id` is revoked, and the result of `hit` (a `ratelimit.hit` command), in ONE
        round trip. The hit is counted even for a revoked session: the lookup and the count share the trip."""
        commands: list[ratelimit.Command] = [("EXISTS", revoked_session_key(session_id))]
        if hit is not None:
            commands.append(hit)
        results: list[Any] = await ratelimit.execute(self._redis, commands)
        return bool(results[0]), (results[1] if hit is not None else None)

    async def deny(self, session_ids: Iterable[str], ttl_s: int) -> None:
        """Put sessions on the deny-list for `ttl_s` seconds (the access-token lifetime) and announce them."""
        ids = list(session_ids)
        if not ids:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for sid in ids:
                pipe.set(revoked_session_key(sid), "1", ex=max(ttl_s, 1))
            for sid in ids:
                queue_publish(pipe, REVOCATIONS, None, sid)
            await pipe.execute()
