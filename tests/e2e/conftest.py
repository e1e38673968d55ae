"""The whole system as real processes (the `swarm up` machinery) on this session's servers."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import redis

from common.swarm.embedded import free_port
from common.swarm.supervisor import Swarm, SwarmConfig


@contextlib.contextmanager
def running_system(  # type: ignore[no-untyped-def]
    servers, data_dir: Path, replicas: Mapping[str, int] | None = None, env: Mapping[str, str] | None = None
) -> Iterator[Swarm]:
    """Every service and the gateway, each a separate process, with fresh databases and empty streams."""
    # Streams left by an earlier module would be consumed from id 0 by this system's new groups.
    with redis.Redis.from_url(servers.redis.url) as client:
        client.flushall()
    config = SwarmConfig(
        data_dir=data_dir,
        gateway_port=free_port(),
        replicas=dict(replicas or {}),
        redis_url=servers.redis.url,
        postgres_url=servers.postgres.url(),
        keys_dir=servers.keys_dir,
        database_suffix=f"_{uuid.uuid4().hex[:8]}",
        log_format="json",
        env={"LOG_LEVEL": "warning", **(env or {})},
    )
    swarm = Swarm(config)
    swarm.start()
    try:
        yield swarm
    finally:
        swarm.stop()


@pytest.fixture(scope="module")
def system(servers, tmp_path_factory) -> Iterator[Swarm]:  # type: ignore[no-untyped-def]
    with running_system(servers, tmp_path_factory.mktemp("swarm")) as swarm:
        yield swarm
