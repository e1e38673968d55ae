"""`retention:lock:<stream>`: one trimmer per stream at a time, with a token-checked renewal and release.

The lock expires by itself (`LOCK_TTL_MS`) if its holder dies; a holder renews it per chunk and stops
before trimming more if the renewal finds it expired (another trimmer may have taken over).
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import redis.asyncio as aioredis

LOCK_PREFIX = "retention:lock:"


LOCK_TTL_MS = 60_000


_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


_RENEW = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
)


class StreamLock:
    """`retention:lock:<stream>`: one trimmer per stream at a time (token-checked release and renewal)."""

    def __init__(self, redis: aioredis.Redis, key: str, token: str) -> None:
        self._redis, self.key, self._token = redis, key, token

    @classmethod
    async def acquire(cls, redis: aioredis.Redis, stream: str) -> StreamLock | None:
        token = uuid.uuid4().hex
        key = LOCK_PREFIX + stream
        if await redis.set(key, token, nx=True, px=LOCK_TTL_MS):
            return cls(redis, key, token)
        return None

    async def renew(self) -> bool:
        client: Any = self._redis
        return bool(await client.eval(_RENEW, 1, self.key, self._token, LOCK_TTL_MS))

    async def release(self) -> None:
        client: Any = self._redis
        with contextlib.suppress(Exception):  # it expires anyway
            await client.eval(_RELEASE, 1, self.key, self._token)
