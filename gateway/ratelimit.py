"""Fixed-window request counters in Redis: per client IP on sign-up and login, per user elsewhere.

A window opens at a key's first hit and lasts a minute; the counter key expires with it, so nothing
is ever cleaned up by hand. One small Lua script counts and reads the time left in one atomic step:
with INCR + EXPIRE as two commands, a key that expired in between would live on without a TTL and
lock its owner out for good. The script touches only its own key, so it works on Redis Cluster.

Counting never costs a round trip of its own for authenticated requests: the caller queues the hit in
the same pipeline as the token deny-list check (see `gateway.admission`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import NoScriptError, RedisError

from common.core.errors import RateLimited

log = structlog.get_logger("gateway.ratelimit")

WINDOW_MS = 60_000

# Returns {hits in this window, milliseconds until it closes}. A key left without a TTL (it cannot
# happen through this script, but a hand-made one could) gets one instead of counting forever.
_SCRIPT = """
local hits = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {hits, ttl}
"""
_SCRIPT_SHA = hashlib.sha1(_SCRIPT.encode()).hexdigest()

Command = tuple[Any, ...]


def ip_key(path: str, ip: str) -> str:
    # One counter per endpoint: a burst of sign-ups from a shared address does not lock its logins.
    return "gateway:ratelimit:ip:" + path + ":" + ip


def user_key(user_id: str) -> str:
    return "gateway:ratelimit:user:" + user_id


def hit(key: str) -> Command:
    """The pipeline command that counts one request against `key`'s window."""
    return ("EVALSHA", _SCRIPT_SHA, 1, key, WINDOW_MS)


def enforce(result: Sequence[int], limit: int) -> None:
    """Raise 429 with `Retry-After` when the window's count (hit result) is over `limit`."""
    hits, ttl_ms = result
    if hits > limit:
        retry_after = max(1, math.ceil(ttl_ms / 1000))
        raise RateLimited(headers={"Retry-After": str(retry_after)}, details={"retry_after_s": retry_after})


async def execute(redis: aioredis.Redis, commands: Sequence[Command]) -> list[Any]:
    """Run `commands` in one round trip (no MULTI: each command is atomic on its own).

    The script is called by its SHA; Redis forgets scripts on restart (and SCRIPT FLUSH), so on
    NOSCRIPT we load it once and run the batch again. Every command here is safe to repeat except the
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
        await redis.script_load(_SCRIPT)
    raise AssertionError("unreachable")  # pragma: no cover


async def limit_ip(redis: aioredis.Redis, path: str, ip: str, limit: int) -> None:
    """Count a public request per client IP. Fails open: a Redis outage must not stop logins."""
    if limit <= 0:
        return
    try:
        (result,) = await execute(redis, (hit(ip_key(path, ip)),))
    except RedisError as exc:
        log.warning("gateway.ratelimit_unavailable", path=path, error=repr(exc))
        return
    enforce(result, limit)
