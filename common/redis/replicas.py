"""How many replicas a write must reach before we call it durable (SPEC §5 "Failover").

An XADD answered by the primary is in that primary's memory only: a primary killed before it pushed the
entry to a replica loses it, and the replica promoted in its place never saw it. `WAIT numreplicas
timeout` blocks until the writes *of its own connection* reached that many replicas (or the timeout
passed) and answers how many did. `ReplicaQuorum` decides `numreplicas`: the configured count
(`REDIS_MIN_REPLICAS_ACK`), or with "auto" 1 when the primary has replicas and 0 when it has none (a lone
server has nothing to wait for; waiting would only stall every batch for the timeout).

"auto" reads `connected_slaves` from `INFO replication`, one round trip at most every
`REFRESH_INTERVAL_S` (not per batch: the relay's throughput on a lone server stays what it was), and again
at once after `forget()` (the relay calls it when a WAIT fell short or Redis failed: the topology may
have changed, e.g. a replica was promoted and now has no replica of its own).
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis

# A replica attached since the last look is waited for at most this much later; until then its writes
# are acknowledged like a lone server's (the state before it attached).
REFRESH_INTERVAL_S = 5.0


class ReplicaQuorum:
    def __init__(self, configured: int | None, *, refresh_interval_s: float = REFRESH_INTERVAL_S) -> None:
        """`configured`: an explicit count of replicas, or None for "auto"."""
        self._configured = configured
        self._refresh_interval_s = refresh_interval_s
        self._known: int | None = None
        self._known_at = 0.0

    async def required(self, redis: aioredis.Redis) -> int:
        """How many replicas must acknowledge a write on `redis` before it counts as durable."""
        if self._configured is not None:
            return self._configured
        now = time.monotonic()
        if self._known is None or now - self._known_at >= self._refresh_interval_s:
            info = await redis.info("replication")
            self._known = min(int(info.get("connected_slaves", 0)), 1)
            self._known_at = now
        return self._known

    def forget(self) -> None:
        """Look at the primary's replicas again before the next write (its topology may have changed)."""
        self._known = None
