"""The session deny-list against a real Redis: revoking, announcing, and the edge's one-trip check."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection

from common.redis import ratelimit
from common.redis.sessions import REVOCATIONS_CHANNEL, DenyList


async def test_a_denied_session_is_revoked_and_its_revocation_announced(redis: aioredis.Redis) -> None:
    deny_list = DenyList(redis)
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(REVOCATIONS_CHANNEL)
        await pubsub.get_message(timeout=1)  # the subscription's confirmation

        await deny_list.deny(["s1"], ttl_s=60)

        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
    assert message is not None and message["data"] == "s1"
    assert await deny_list.is_revoked("s1")
    assert not await deny_list.is_revoked("s2")


async def test_the_check_and_the_rate_limit_hit_share_one_round_trip(
    redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    deny_list = DenyList(redis)
    await deny_list.deny(["revoked"], ttl_s=60)
    await deny_list.check("warm-up", hit=ratelimit.hit("hits:warm-up"))  # loads the scripts once
    sends = 0
    send = Connection.send_packed_command

    async def counting(self: Connection, command: Any, check_health: bool = True) -> None:
        nonlocal sends
        sends += 1
        await send(self, command, check_health)

    monkeypatch.setattr(Connection, "send_packed_command", counting)

    first = await deny_list.check("live", hit=ratelimit.hit("hits:user"))
    second = await deny_list.check("revoked", hit=ratelimit.hit("hits:user"))

    assert sends == 2  # one write to Redis per check, the lookup and the hit together
    assert first[0] is False and first[1] is not None and first[1][0] == 1
    assert second[0] is True and second[1] is not None and second[1][0] == 2
