"""Helpers for the test suite and the benchmarks, never used by a running service or by `swarm` itself:
throwaway servers for a session, dropping a test database, the URLs of a started system's replicas."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from common.core.keys import ensure_keypair
from common.swarm.embedded import EmbeddedPostgres, EmbeddedRedis
from common.swarm.supervisor import Swarm


@dataclass
class ThrowawayServers:
    """A PostgreSQL and a Redis of their own, with a token key pair, in one temporary folder."""

    postgres: EmbeddedPostgres
    redis: EmbeddedRedis
    keys_dir: Path
    root: Path


@contextlib.contextmanager
def throwaway_servers(prefix: str, *, durable: bool = False) -> Iterator[ThrowawayServers]:
    """Start both on free ports for a test session or a benchmark; stop them and delete everything after.

    `durable`: PostgreSQL with fsync (for crash tests); without, it is faster and loses nothing unless the
    machine itself goes down. The folder is world-readable: PostgreSQL may run as an unprivileged user.
    """
    root = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(root, 0o755)
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        postgres = EmbeddedPostgres(root / "postgres", durable=durable).start()
        stack.callback(postgres.stop, mode="immediate")
        redis_server = EmbeddedRedis(root / "redis").start()
        stack.callback(redis_server.stop)
        keys_dir = root / "keys"
        ensure_keypair(keys_dir / "jwt_private.pem", keys_dir / "jwt_public.pem")
        yield ThrowawayServers(postgres, redis_server, keys_dir, root)


async def drop_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def service_urls(swarm: Swarm) -> dict[str, list[str]]:
    """Service name → the base URLs of its replicas in a started `Swarm` (to call a service directly)."""
    return {spec.name: [c.url for c in swarm.replicas_of(spec.name)] for spec in swarm.services}
