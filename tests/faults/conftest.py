"""The whole system as real processes (the `swarm up` machinery), for fault injection.

Every fault module starts its own system with short timings, so a fault is recovered from in a second
or two instead of the production defaults' half-minute; `restart_crashed=True` plus a `Supervision`
thread make a killed process come back the way `swarm up` brings it back.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis

from common.swarm.embedded import free_port
from common.swarm.procs import ChildProcess
from common.swarm.supervisor import Swarm, SwarmConfig
from tests.faults.workload import Api

# Small timings (the defaults are tuned for production, not for a test that waits on them). Rate
# limits are lifted: the workload is one client IP and a handful of users hammering the gateway.
FAULT_ENV: dict[str, str] = {
    "LOG_LEVEL": "warning",
    "CONSUMER_BLOCK_MS": "500",
    "CONSUMER_CLAIM_IDLE_MS": "1500",
    "CONSUMER_CLAIM_INTERVAL_MS": "300",
    "CONSUMER_RETRY_DELAY_MS": "50",
    "CONSUMER_MAX_DELIVERIES": "3",
    "CONSUMER_SHUTDOWN_GRACE_S": "3",
    "OUTBOX_POLL_INTERVAL_MS": "200",
    "UPSTREAM_TIMEOUT_S": "3",
    "UPSTREAM_CONNECT_TIMEOUT_S": "1",
    "RATE_LIMIT_AUTH_PER_MINUTE": "100000",
    "RATE_LIMIT_USER_PER_MINUTE": "100000",
    "DB_POOL_MAX": "10",
}


def make_swarm(
    data_dir: Path,
    *,
    redis_url: str,
    postgres_url: str,
    keys_dir: Path,
    replicas: Mapping[str, int] | None = None,
    env: Mapping[str, str] | None = None,
) -> Swarm:
    config = SwarmConfig(
        data_dir=data_dir,
        gateway_port=free_port(),
        replicas=dict(replicas or {}),
        redis_url=redis_url,
        postgres_url=postgres_url,
        keys_dir=keys_dir,
        database_suffix=f"_{uuid.uuid4().hex[:8]}",
        log_format="json",
        env={**FAULT_ENV, **(env or {})},
        stop_timeout_s=10.0,
        restart_crashed=True,
    )
    return Swarm(config)


@contextlib.contextmanager
def running_system(  # type: ignore[no-untyped-def]
    servers, data_dir: Path, replicas: Mapping[str, int] | None = None, env: Mapping[str, str] | None = None
) -> Iterator[Swarm]:
    """Every service and the gateway on the session's servers, fresh databases, empty streams."""
    with redis.Redis.from_url(servers.redis.url) as client:
        client.flushall()  # an earlier module's streams would be consumed from id 0 by the new groups
    swarm = make_swarm(
        data_dir,
        redis_url=servers.redis.url,
        postgres_url=servers.postgres.url(),
        keys_dir=servers.keys_dir,
        replicas=replicas,
        env=env,
    )
    swarm.start()
    try:
        yield swarm
    finally:
        swarm.stop()


class Supervision:
    """What `swarm up`'s main loop does (`Swarm.check_children`), in a thread, while a test runs.

    The test holds `lock` while it kills, freezes or retires a child, so the supervisor never looks at
    a child half-way through that.
    """

    def __init__(self, swarm: Swarm, poll_s: float = 0.1) -> None:
        self.swarm = swarm
        self.lock = threading.Lock()
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._frozen: set[int] = set()
        self._thread = threading.Thread(target=self._run, name="fault-supervision", daemon=True)

    def __enter__(self) -> Supervision:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10)
        for pid in self._frozen:  # never leave a process stopped: it could not even be terminated
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def _run(self) -> None:
        while not self._stop.wait(self._poll_s):
            with self.lock:
                self.swarm.check_children()

    def child(self, label: str) -> ChildProcess:
        return next(c for c in self.swarm.children if c.label == label)

    def freeze(self, child: ChildProcess) -> None:
        """SIGSTOP: the process keeps its sockets (and what Redis already handed it) but does nothing."""
        assert child.pid is not None
        os.kill(child.pid, signal.SIGSTOP)
        self._frozen.add(child.pid)

    def thaw(self, child: ChildProcess) -> None:
        assert child.pid is not None
        os.kill(child.pid, signal.SIGCONT)
        self._frozen.discard(child.pid)

    def kill(self, child: ChildProcess) -> None:
        """kill -9; the supervisor restarts it (after its crash back-off) like `swarm up` would."""
        with self.lock:
            assert child.process is not None
            pid = child.pid
            child.process.kill()
            child.process.wait()
            self._frozen.discard(pid or -1)

    def retire(self, child: ChildProcess) -> None:
        """kill -9 and never restart it: a replica whose machine is gone. Others must take its work."""
        with self.lock:
            assert child.process is not None
            pid = child.pid
            child.process.kill()
            child.process.wait()
            child.join_output()
            child.process = None  # what the supervisor itself records for a child it will not restart
            self._frozen.discard(pid or -1)

    def all_ready(self) -> bool:
        with self.lock:
            return all(c.process is None or (c.running() and c.probe_ready(0.5)) for c in self.swarm.children)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=8, connect=2)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        yield session


def api_for(http: aiohttp.ClientSession, swarm: Swarm) -> Api:
    assert swarm.gateway_url
    return Api(http, swarm.gateway_url)


def database_urls(swarm: Swarm) -> dict[str, str]:
    urls: dict[str, Any] = {spec.name: swarm.database_url_of(spec) for spec in swarm.services}
    return {name: url for name, url in urls.items() if url}
