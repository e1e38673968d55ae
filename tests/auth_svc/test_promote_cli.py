"""`swarm users promote` against a real database, as an operator runs it."""

from __future__ import annotations

import asyncio
import os
import sys

from common.core.envelope import Event
from tests.helpers import bearer, eventually

SWARM = [sys.executable, "-c", "from common.swarm.cli import main; main()"]


async def swarm(*args: str, env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *SWARM,
        *args,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode()


async def test_promote_makes_a_user_admin_and_publishes_update_user(
    auth_client, register, database_url, servers, redis
):
    user = await register(username="root_like")
    env = {"DATABASE_URL": database_url, "REDIS_URL": servers.redis.url, "SWARM_DATA_DIR": "/nonexistent"}
    code, output = await swarm("users", "promote", "root_like", "--role", "admin", env=env)
    assert code == 0, output
    assert "root_like is now admin" in output
    me = await auth_client.get(f"/users/{user['user']['id']}", headers=bearer(user["access_token"]))
    assert (await me.json())["role"] == "admin"
    updates = await eventually(lambda: redis.xrange("events:updateUser"), what="updateUser relayed")
    assert Event.from_fields(updates[0][1]).data["role"] == "admin"


async def test_promote_of_an_unknown_user_fails_clearly(auth_client, database_url, servers):
    env = {"DATABASE_URL": database_url, "REDIS_URL": servers.redis.url}
    code, output = await swarm("users", "promote", "ghost", env=env)
    assert code == 1
    assert "no user named 'ghost'" in output
