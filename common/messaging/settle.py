"""Settling entries in Redis once their batch is decided: acknowledge them, or move them to the
dead-letter stream `events:dlq` (with the error) and acknowledge them, atomically.

Redis keeps no acknowledgement times, so the same pipeline records, per event, when this group
acknowledged it (`common.redis.keys.ack_record_key`), for `swarm trace`.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import redis.asyncio as aioredis

from common.core.envelope import DEAD_LETTER_STREAM, Event, utcnow
from common.messaging.apply import CountOutcome, Delivery, WorkerStats
from common.redis.keys import REPLAY_FOR_FIELD, ack_record_key

# KEYS: ack record keys; ARGV: group, epoch ms, retention s. (Its keys span hash slots: on a Redis
# Cluster the records would have to be written per slot.)
_RECORD_ACKS_SCRIPT = """
for _, key in ipairs(KEYS) do
    redis.call('HSET', key, ARGV[1], ARGV[2])
    redis.call('EXPIRE', key, ARGV[3])
end
return #KEYS
"""


class Settler:
    """Acknowledges and dead-letters the entries of one consumer of one group."""

    def __init__(
        self,
        *,
        redis: aioredis.Redis,
        group: str,
        consumer: str,
        trace_retention_s: int,
        stats: WorkerStats,
        log: Any,
        count: CountOutcome,
    ) -> None:
        self._redis = redis
        self.group = group
        self.consumer = consumer
        self._trace_retention_s = trace_retention_s
        self.stats = stats
        self._log = log
        self._count = count

    async def ack(self, deliveries: list[Delivery]) -> None:
        if not deliveries:
            return
        by_stream: dict[str, list[str]] = {}
        for d in deliveries:
            by_stream.setdefault(d.stream, []).append(d.entry_id)
        now_ms = int(time.time() * 1000)
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream, ids in by_stream.items():
                pipe.xack(stream, self.group, *ids)
            # A replay meant for another group is not ours: keep the time we really processed it.
            self._record_acks(
                pipe,
                [
                    d.fields.get("id", "")
                    for d in deliveries
                    if d.fields and d.fields.get(REPLAY_FOR_FIELD, self.group) == self.group
                ],
                now_ms,
            )
            await pipe.execute()

    def _record_acks(self, pipe: Any, event_ids: list[str], now_ms: int) -> None:
        retention = self._trace_retention_s
        keys = [ack_record_key(event_id) for event_id in event_ids if event_id]
        if keys and retention > 0:
            # One command for the whole batch: a HSET + EXPIRE pair per event was a fifth of the
            # consumer's CPU (redis-py packs and parses every command in Python).
            pipe.eval(_RECORD_ACKS_SCRIPT, len(keys), *keys, self.group, now_ms, retention)

    async def dead_letter(self, delivery: Delivery, event: Event | None, error: str) -> None:
        """Move an entry to `events:dlq` (with why) and acknowledge it, atomically."""
        fields: dict[Any, Any] = {
            "stream": delivery.stream,
            "entry_id": delivery.entry_id,
            "group": self.group,
            "consumer": self.consumer,
            "error": error[:4000],
            "deliveries": str(delivery.deliveries),
            "failed_at": utcnow().isoformat().replace("+00:00", "Z"),
            "event_id": event.id if event else "",
            "event_type": event.type if event else "",
            "correlation_id": event.correlation_id if event else "",
            "envelope": orjson.dumps(delivery.fields or {}).decode(),
        }
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(DEAD_LETTER_STREAM, fields)
            pipe.xack(delivery.stream, self.group, delivery.entry_id)
            event_id = fields["event_id"] or (delivery.fields or {}).get("id", "")
            self._record_acks(pipe, [event_id], int(time.time() * 1000))
            await pipe.execute()
        self.stats.dead_lettered += 1
        self._count(delivery.stream, "dead_lettered")
        self.stats.last_errors.pop(delivery.key, None)
        self._log.error(
            "worker.dead_lettered",
            stream=delivery.stream,
            entry_id=delivery.entry_id,
            event_id=fields["event_id"],
            correlation_id=fields["correlation_id"],
            deliveries=delivery.deliveries,
            error=error,
        )
