"""Fixed-window counters in Redis: the one mechanism behind every rate limit (gateway and auth_svc).

A window opens at a key's first hit and lasts `window_ms`; the counter key expires with it, so nothing
is ever cleaned up by hand and nobody is locked out past the window's end (later hits do not extend
it). One small Lua script counts and reads the time left in one atomic step: with INCR + EXPIRE as two
commands, a key that expired in between would live on without a TTL and lock its owner out for good.
The scripts touch only their own key, so they work on Redis Cluster.

A limiter that cannot count (Redis unreachable, its connection pool exhausted past its timeout) refuses
with 503 and `Retry-After`: letting requests through uncounted is exactly what a burst would exploit.

Callers own their keys and may queue a hit in a pipeline of their own (the gateway puts the user's hit
in the same round trip as the token deny-list check: `gateway.admission`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import NoScriptError

from common.core.errors import RateLimited, ServiceUnavailable
from common.redis.client import REDIS_FAILURES

log = structlog.get_logger("ratelimit")

WINDOW_MS = 60_000

# Returns {hits in this window, milliseconds until it closes}. A key left without a TTL (it cannot
# happen through these scripts, but a hand-made one could) gets one instead of counting forever.
_HIT = """
local hits = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {hits, ttl}
"""
# Takes one hit back while the window still runs. A plain DECR on a key that expired meanwhile would
# create it again, at -1 and without a TTL.
_FORGIVE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('DECR', KEYS[1])
end
return 0
"""


def _sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()


_HIT_SHA, _FORGIVE_SHA = _sha(_HIT), _sha(_FORGIVE)

Command = tuple[Any, ...]


def hit(key: str, window_ms: int = WINDOW_MS) -> Command:
    """The pipeline command that counts one request against `key`'s window."""
    return ("EVALSHA", _HIT_SHA, 1, key, window_ms)


def forgive(key: str) -> Command:
    """The pipeline command that takes back one hit of `key`'s window (if it is still open)."""
    return ("EVALSHA", _FORGIVE_SHA, 1, key)


def enforce(result: Sequence[int], limit: int) -> None:
    """Raise 429 with `Retry-After` when the window's count (hit result) is over `limit`."""
    hits, ttl_ms = result
    if hits > limit:
        retry_after = max(1, math.ceil(ttl_ms / 1000))
        raise RateLimited(headers={"Retry-After": str(retry_after)}, details={"retry_after_s": retry_after})


async def execute(redis: aioredis.Redis, commands: Sequence[Command]) -> list[Any]:
    """Run `commands` in one round trip (no MULTI: each command is atomic on its own).

    The scripts are called by their SHA; Redis forgets scripts on restart (and SCRIPT FLUSH), so on
    NOSCRIPT we load them and run the batch again. Every command here is safe to repeat except the
    hit itself, and that one did not run: Redis rejected it.
    """
    for attempt in range(2):
        async with redis.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            try:
                return await pipe.execute()
            except NoScriptError:
                if attempt:
                    raise
        for script in (_HIT, _FORGIVE):
            await redis.script_load(script)
    raise AssertionError("unreachable")  # pragma: no cover


async def limit(redis: aioredis.Redis, key: str, allowed: int, *, window_ms: int = WINDOW_MS, what: str) -> None:
    """Count one request against `key`: 429 past `allowed` per window, 503 when it cannot be counted."""
    try:
        (result,) = await execute(redis, (hit(key, window_ms),))
    except REDIS_FAILURES as exc:
        log.warning("ratelimit.unavailable", limit=what, error=repr(exc))
        raise ServiceUnavailable("rate limiter unavailable", details={"limit": what}) from exc
    enforce(result, allowed)
