"""Logs: one JSON object per line, each line of a request or of an event's handling bound to its ids and
the service; `swarm up` shows them pretty (coloured) on a terminal and as JSON when piped."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from common.contracts import topology
from common.core.envelope import Event, stream_for
from common.core.logging import configure_logging
from common.db.migrations import migrate
from common.db.pool import create_pool
from common.http.app import create_app, public
from common.messaging.consumer import ConsumerWorker, WorkerOptions
from common.messaging.handlers import after_commit
from common.messaging.tables import COMMON_MIGRATIONS
from common.swarm.procs import LogPrinter
from common.swarm.supervisor import Swarm, SwarmConfig
from tests.helpers import eventually

log = structlog.get_logger("demo")


class JsonLogs:
    """Logging configured as `common.serve` configures it, into pytest's captured stderr."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys

    def start(self) -> None:
        # Inside the test: the captured stream of the setup phase is not the one of the call.
        configure_logging("demo_svc", level="info", fmt="json")
        # Module loggers (worker, web) must not keep this test's stream once it is closed.
        structlog.configure(cache_logger_on_first_use=False)

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self._capsys.readouterr().err.splitlines()]


@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[JsonLogs]:
    try:
        yield JsonLogs(capsys)
    finally:
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()
        logging.getLogger().handlers.clear()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    await migrate(database_url, [("common", COMMON_MIGRATIONS)])
    pool = await create_pool(database_url, 1, 5)
    yield pool
    await pool.close()


async def test_every_line_of_a_request_carries_its_request_id_and_the_service(json_logs, make_settings) -> None:  # type: ignore[no-untyped-def]
    @public
    async def hello(request: web.Request) -> web.Response:
        log.info("demo.greeted", who="world")
        logging.getLogger("some.library").warning("a library speaks")
        return web.json_response({})

    json_logs.start()
    app = create_app(make_settings(service_name="demo_svc"))
    app.router.add_get("/hello", hello)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/hello", headers={"X-Request-ID": "req-logs-1"})
        assert response.status == 200

    lines = [line for line in json_logs.lines() if line.get("request_id") == "req-logs-1"]
    assert [line["event"] for line in lines] == ["demo.greeted", "a library speaks", "http.request"]
    assert all(line["service"] == "demo_svc" for line in lines)
    assert lines[-1]["status"] == 200 and lines[-1]["path"] == "/hello"


async def test_every_line_of_an_events_handling_carries_its_ids_and_the_service(  # type: ignore[no-untyped-def]
    json_logs, pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    async def handle(event: Event, conn: asyncpg.Connection) -> None:
        log.info("demo.applied")

        async def announce() -> None:
            log.info("demo.announced")

        after_commit(announce)

    worker = ConsumerWorker(
        redis=redis,
        pool=pool,
        group="demo_svc",
        consumer="demo-1",
        handlers={"demoHappened": handle},
        options=WorkerOptions(block_ms=50, claim_interval_ms=50),
    )
    event = Event("demoHappened", {}, producer="test", correlation_id="req-logs-2", id=str(uuid.uuid4()))
    await redis.xadd(stream_for(event.type), event.to_fields())  # type: ignore[arg-type]
    json_logs.start()
    task = asyncio.create_task(worker.run())
    try:

        async def applied() -> bool:
            return worker.stats.applied == 1

        await eventually(applied, what="the event applied")
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)

    lines = {line["event"]: line for line in json_logs.lines()}
    for name in ("demo.applied", "demo.announced"):  # in the handler, and once its batch committed
        assert lines[name]["service"] == "demo_svc"
        assert lines[name]["event_id"] == event.id
        assert lines[name]["correlation_id"] == "req-logs-2"
        assert lines[name]["event_type"] == "demoHappened"


def test_console_logs_are_coloured_when_forced_even_through_a_pipe(capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("FORCE_COLOR", "1")
    try:
        configure_logging("demo_svc", fmt="console")
        structlog.get_logger("t").info("card.created")
        coloured = capsys.readouterr().err
        monkeypatch.setenv("NO_COLOR", "1")
        configure_logging("demo_svc", fmt="console")
        structlog.get_logger("t").info("card.created")
        plain = capsys.readouterr().err
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    assert "\x1b[" in coloured and "card.created" in coloured
    assert "\x1b[" not in plain and "card.created" in plain and "service=demo_svc" in plain


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("on_terminal", [True, False])
def test_swarm_up_asks_for_pretty_logs_on_a_terminal_and_json_when_piped(tmp_path, monkeypatch, on_terminal) -> None:  # type: ignore[no-untyped-def]
    for name in ("LOG_FORMAT", "FORCE_COLOR", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    output = Terminal() if on_terminal else io.StringIO()
    monkeypatch.setattr("sys.stdout", output)
    swarm = Swarm(SwarmConfig(data_dir=tmp_path), LogPrinter(output))

    env = swarm._base_env(topology.GATEWAY, 1, 8080, 9464)

    assert env["LOG_FORMAT"] == ("console" if on_terminal else "json")
    assert env.get("FORCE_COLOR") == ("1" if on_terminal else None)
