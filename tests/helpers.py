"""Small test utilities: waiting on a condition with a deadline, users, tokens and events."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import redis.asyncio as aioredis

from auth_svc.tokens import TokenIssuer
from common.core.envelope import Event

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]], *, timeout: float = 5.0, interval: float = 0.02, what: str = "condition"
) -> T:
    """Poll `probe` until it returns a truthy value; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {value!r})")
        await asyncio.sleep(interval)


def user_record(username: str | None = None, **overrides: Any) -> dict[str, Any]:
    """A user as auth_svc publishes it in newUser (no secrets, version 1)."""
    username = username or f"user_{uuid.uuid4().hex[:10]}"
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    user = {
        "id": str(uuid.uuid4()),
        "username": username,
        "email": f"{username}@example.com",
        "full_name": "",
        "role": "user",
        "created_at": now,
        "updated_at": now,
        "version": 1,
    }
    user.update(overrides)
    return user


def access_token(keys_dir: Path, user: dict[str, Any]) -> str:
    """A real access token for `user`, signed with the test session's private key (as auth_svc would)."""
    issuer = TokenIssuer((keys_dir / "jwt_private.pem").read_bytes(), "taskswarm", 900, 3600)
    return issuer.pair(user, str(uuid.uuid4()), str(uuid.uuid4())).access_token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def publish(redis: aioredis.Redis, *events: Event) -> None:
    """XADD events to their streams, as a producer's outbox relay would."""
    for event in events:
        await redis.xadd(event.stream, event.to_fields())  # type: ignore[arg-type]
