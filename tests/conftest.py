"""Shared fixtures: real Redis and PostgreSQL servers started for this test session.

Each pytest-xdist worker starts its own servers on free ports in its own temporary folder, so runs
never touch a server someone started by hand and never share state with another worker. Each test
gets a fresh database and an empty Redis.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from common.core.settings import Settings
from common.db.migrations import ensure_database
from common.swarm.cluster import EmbeddedRedisCluster
from common.testing import (
    ReplicatedRedis,
    ThrowawayServers,
    drop_database,
    embedded_redis_cluster,
    replicated_redis,
    throwaway_servers,
)

Servers = ThrowawayServers


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    # Not under pytest's basetemp: a pytest session starting meanwhile (another checkout, a developer's
    # run) resets the permissions of /tmp/pytest-of-<user>, and the embedded PostgreSQL, which runs as an
    # unprivileged user when we are root, would lose its data folder mid-run.
    with throwaway_servers("taskswarm-test-servers-") as servers:
        yield servers


@pytest.fixture
async def database_url(servers: Servers) -> AsyncIterator[str]:
    """A brand-new empty database for this test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = servers.postgres.url()
    await ensure_database(admin, name)
    yield servers.postgres.url(name)
    await drop_database(admin, name)


@pytest.fixture
async def make_database(servers: Servers) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """Factory of brand-new empty databases (one per service when a test runs several), dropped after."""
    admin = servers.postgres.url()
    made: list[str] = []

    async def make() -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        await ensure_database(admin, name)
        made.append(name)
        return servers.postgres.url(name)

    yield make
    for name in made:
        await drop_database(admin, name)


@pytest.fixture
async def redis(servers: Servers) -> AsyncIterator[aioredis.Redis]:
    """A client on an emptied Redis."""
    client = aioredis.from_url(servers.redis.url, decode_responses=True)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
def replicated(tmp_path: Path) -> Iterator[ReplicatedRedis]:
    """A Redis primary with one in-sync replica, of this test's own (fail-over tests freeze and kill them)."""
    with replicated_redis(tmp_path / "replicated") as pair:
        yield pair


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[EmbeddedRedisCluster]:
    """A Redis Cluster of 3 primaries with a replica each for this session (about 2.5 s to form); tests
    that kill nodes start their own with `common.testing.embedded_redis_cluster` instead."""
    with (
        tempfile.TemporaryDirectory(prefix="taskswarm-test-cluster-") as root,
        embedded_redis_cluster(Path(root)) as cluster,
    ):
        yield cluster


@pytest.fixture
def flushed_redis_cluster(redis_cluster: EmbeddedRedisCluster) -> EmbeddedRedisCluster:
    """The session's cluster, every primary emptied (replicas follow)."""
    for node in redis_cluster.primary_nodes():
        with node.client() as client:
            client.flushall()
    return redis_cluster


@pytest.fixture
def make_settings(servers: Servers, database_url: str):  # type: ignore[no-untyped-def]
    """Factory of Settings pointing at this test's servers; keyword overrides win."""

    def make(**overrides: object) -> Settings:
        base: dict[str, object] = {
            "database_url": database_url,
            "redis_url": servers.redis.url,
            "jwt_private_key_file": str(servers.keys_dir / "jwt_private.pem"),
            "jwt_public_key_file": str(servers.keys_dir / "jwt_public.pem"),
            "log_level": "warning",
            "metrics_port": 0,  # /metrics on the app's own port: in-process apps of parallel tests share a host
            "consumer_block_ms": 200,
            "consumer_claim_interval_ms": 200,
            "consumer_retry_delay_ms": 50,
            "outbox_poll_interval_ms": 200,
        }
        base.update(overrides)
        return Settings.from_env({}, **base)

    return make
