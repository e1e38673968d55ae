"""The whole system as real processes (the `swarm up` machinery) on this session's servers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from common.embedded import free_port
from common.supervisor import Swarm, SwarmConfig


@pytest.fixture(scope="module")
def system(servers, tmp_path_factory) -> Iterator[Swarm]:  # type: ignore[no-untyped-def]
    config = SwarmConfig(
        data_dir=tmp_path_factory.mktemp("swarm"),
        gateway_port=free_port(),
        redis_url=servers.redis.url,
        postgres_url=servers.postgres.url(),
        keys_dir=servers.keys_dir,
        database_suffix=f"_{uuid.uuid4().hex[:8]}",
        log_format="json",
        env={"LOG_LEVEL": "warning"},
    )
    swarm = Swarm(config)
    swarm.start()
    try:
        yield swarm
    finally:
        swarm.stop()
