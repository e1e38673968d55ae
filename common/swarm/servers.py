"""The servers under `swarm up`: Redis and PostgreSQL, embedded in the data folder or given by URL.

Embedded ones keep their data, and their ports while those are still free, across restarts. A
previous `swarm up` killed without a chance to stop can leave a redis-server, a PostgreSQL and service
processes running; they are found through its state file and stopped first, because two
redis-servers must never append to one AOF and the orphans hold the ports we want back.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from common.db.migrations import ensure_database
from common.swarm.embedded import EmbeddedPostgres, EmbeddedRedis, EmbeddedServerError, free_port
from common.swarm.procs import LogPrinter
from common.swarm.state import ServerState, SwarmState, process_matches


class StartupError(RuntimeError):
    """The system could not be brought up; `tail` holds the last lines of the process at fault."""

    def __init__(self, message: str, label: str | None = None, tail: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.label = label
        self.tail = list(tail)


def database_url(admin_dsn: str, database: str) -> str:
    """The DSN of `database` on the server of `admin_dsn` (same credentials and options)."""
    return urlunsplit(urlsplit(admin_dsn)._replace(path="/" + database))


def port_available(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Servers bind with SO_REUSEADDR: a port left in TIME_WAIT by our last run is free for them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


class PortPicker:
    """Hands out ports nobody listens on, preferring last run's, never the same one twice."""

    def __init__(self, reserved: Iterable[int] = ()) -> None:
        self._taken = set(reserved)

    def pick(self, preferred: int | None = None) -> int:
        port = preferred
        if not port or port in self._taken or not port_available(port):
            port = free_port()
            while port in self._taken:  # handed out already, though nothing listens on it yet
                port = free_port()
        self._taken.add(port)
        return port


def run_async(factory: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a coroutine to completion from sync code, even when the caller is inside an event loop."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(factory())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="swarm-async")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def stop_leftovers(previous: SwarmState, printer: LogPrinter) -> None:
    """Stop what a killed supervisor left running (verified by command line: pids get reused)."""
    orphans = [p.pid for p in previous.processes() if p.pid and process_matches(p.pid, "common.serve")]
    for pid in orphans:
        os.kill(pid, signal.SIGKILL)  # stateless; their pending entries get reclaimed
    if orphans:
        printer.note(f"stopped {len(orphans)} processes a previous run left behind")
    redis_pid = previous.redis.pid
    if previous.redis.embedded and redis_pid and process_matches(redis_pid, "redis-server"):
        printer.note(f"stopping the redis-server a previous run left behind (pid {redis_pid})")
        os.kill(redis_pid, signal.SIGTERM)  # lets it flush its AOF
        orphans.append(redis_pid)
    deadline = time.monotonic() + 10
    while any(process_matches(pid, None) for pid in orphans) and time.monotonic() < deadline:
        time.sleep(0.05)


class SwarmServers:
    def __init__(self, data_dir: Path, redis_url: str | None, postgres_url: str | None) -> None:
        self.data_dir = data_dir
        self.redis_url = redis_url or ""
        self.postgres_url = postgres_url or ""  # the admin DSN
        self._external_redis = bool(redis_url)
        self._external_postgres = bool(postgres_url)
        self._redis: EmbeddedRedis | None = None
        self._postgres: EmbeddedPostgres | None = None

    def start(self, previous: SwarmState | None, ports: PortPicker, printer: LogPrinter) -> None:
        try:
            if not self._external_redis:
                last = previous.redis.port if previous and previous.redis.embedded else None
                self._redis = EmbeddedRedis(self.data_dir / "redis", port=ports.pick(last), appendonly=True)
                self.redis_url = self._redis.start().url
            if not self._external_postgres:
                postgres = EmbeddedPostgres(self.data_dir / "postgres", durable=True)
                if postgres.initialized() and postgres.running():
                    printer.note("stopping the PostgreSQL a previous run left behind")
                    postgres.stop(mode="fast")
                last = previous.postgres.port if previous and previous.postgres.embedded else None
                postgres.port = ports.pick(last)
                self._postgres = postgres.start()
                self.postgres_url = postgres.url()
        except EmbeddedServerError as exc:
            raise StartupError(str(exc)) from exc

    def create_databases(self, names: Iterable[str]) -> None:
        async def create() -> None:
            for name in names:
                await ensure_database(self.postgres_url, name)

        run_async(create)

    def database_url(self, name: str) -> str:
        return database_url(self.postgres_url, name)

    def stop(self, force: bool) -> None:
        """PostgreSQL first (its clients are gone by now), then Redis."""
        if self._postgres is not None:
            self._postgres.stop(mode="immediate" if force else "fast")
        if self._redis is not None:
            if force:
                self._redis.kill()
            else:
                self._redis.stop()  # SIGTERM: redis-server flushes its AOF

    def redis_state(self, running: bool) -> ServerState:
        process = self._redis.process if self._redis else None
        return ServerState(
            self.redis_url,
            embedded=not self._external_redis,
            port=urlsplit(self.redis_url).port,
            pid=process.pid if running and process else None,
        )

    def postgres_state(self) -> ServerState:
        return ServerState(
            self.postgres_url, embedded=not self._external_postgres, port=urlsplit(self.postgres_url).port
        )
