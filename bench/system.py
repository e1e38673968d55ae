"""Servers and swarms for the benchmarks: embedded Redis + PostgreSQL, the `swarm up` machinery on them."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import redis

from common.contracts import topology
from common.swarm.embedded import free_port
from common.swarm.procs import ChildProcess
from common.swarm.supervisor import Swarm, SwarmConfig
from common.testing import ThrowawayServers, throwaway_servers

# Benchmarks hammer one user: the per-user limit would turn them into a 429 benchmark.
BENCH_ENV = {
    "LOG_LEVEL": "warning",
    "RATE_LIMIT_USER_PER_MINUTE": "1000000000",
    "RATE_LIMIT_AUTH_PER_MINUTE": "1000000",
}


Servers = ThrowawayServers


def servers() -> contextlib.AbstractContextManager[Servers]:
    return throwaway_servers("taskswarm-bench-")


@contextlib.contextmanager
def swarm(
    srv: Servers,
    *,
    replicas: Mapping[str, int] | None = None,
    only: Sequence[str] | None = None,
    gateway: bool = True,
    gateway_workers: int = 1,
    env: Mapping[str, str] | None = None,
) -> Iterator[Swarm]:
    """The system (or only the named services) as real processes on fresh databases and empty streams."""
    with redis.Redis.from_url(srv.redis.url) as client:
        client.flushall()
    services = None if only is None else [topology.spec_for(name) for name in only]
    config = SwarmConfig(
        data_dir=srv.root / f"swarm-{uuid.uuid4().hex[:6]}",
        gateway_port=free_port(),
        gateway_workers=gateway_workers,
        replicas=dict(replicas or {}),
        redis_url=srv.redis.url,
        postgres_url=srv.postgres.url(),
        keys_dir=srv.keys_dir,
        database_suffix=f"_{uuid.uuid4().hex[:8]}",
        log_format="json",
        env={**BENCH_ENV, **(env or {})},
        services=services,
        gateway_spec=(topology.gateway() if gateway else None) if services is not None else None,
    )
    if services is None and not gateway:
        config.gateway_spec = None
    s = Swarm(config)
    s.start()
    try:
        yield s
    finally:
        s.stop()


@contextlib.contextmanager
def extra_process(
    s: Swarm, like: ChildProcess, *, factory: str | None = None, env: Mapping[str, str] | None = None
) -> Iterator[ChildProcess]:
    """One more process beside a running swarm: `like` on a free port, with another factory or variables."""
    port = free_port()
    spec = dataclasses.replace(like.spec, factory=factory or like.spec.factory)
    metrics_port = free_port()  # `like`'s is taken
    child_env = {**like.env, "PORT": str(port), "METRICS_PORT": str(metrics_port), **(env or {})}
    child = ChildProcess(spec, 99, port, child_env, like.host, metrics_port=metrics_port)
    child.start(s.printer)
    try:
        deadline = time.monotonic() + 30
        while not child.probe_ready():
            if not child.running() or time.monotonic() > deadline:
                raise RuntimeError(
                    f"{spec.name} ({spec.factory or 'its manifest'}) did not become ready: {list(child.tail)}"
                )
            time.sleep(0.1)
        yield child
    finally:
        child.signal_stop()
        if child.wait(10) is None:
            child.kill()
            child.wait()


def versions(srv: Servers) -> dict[str, str]:
    import platform

    out: dict[str, str] = {"python": platform.python_version(), "cores": str(os.cpu_count())}
    with redis.Redis.from_url(srv.redis.url) as client:
        out["redis"] = str(client.info("server")["redis_version"])
    import asyncio

    import asyncpg

    async def pg() -> str:
        conn = await asyncpg.connect(srv.postgres.url())
        try:
            return str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()

    out["postgres"] = asyncio.run(pg())
    for tool, args in (("wrk", ["wrk", "--version"]), ("nginx", ["nginx", "-v"])):
        path = shutil.which(tool) or (f"/usr/sbin/{tool}" if Path(f"/usr/sbin/{tool}").exists() else None)
        if path is None:
            out[tool] = "missing"
            continue
        r = subprocess.run([path, *args[1:]], capture_output=True, text=True)
        out[tool] = ((r.stdout or r.stderr).strip().splitlines() or ["?"])[0]
    return out
