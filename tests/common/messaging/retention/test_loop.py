"""The automatic trimmer (`retention_context`) in a bare service app, against a real Redis."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from common.http.app import create_app
from common.http.contexts import redis_context, retention_context
from common.messaging.retention import read_archive, trim
from tests.common.messaging.retention.conftest import add, consume, ids_of
from tests.helpers import eventually

CARDS, PROJECTS, COMMENTS = "events:newCard", "events:newProject", "events:newComment"


@contextlib.asynccontextmanager
async def service(settings: Any, produces: list[str]) -> AsyncIterator[TestClient]:
    app = create_app(settings)
    app.cleanup_ctx.append(redis_context)
    app.cleanup_ctx.append(retention_context(produces))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


def archived_ids(directory: Path) -> list[str]:
    return [entry.id for path in sorted(directory.rglob("*.jsonl.gz")) for entry in read_archive(path)]


async def test_it_archives_and_trims_old_consumed_entries_of_the_streams_it_produces(redis, make_settings, tmp_path):
    old = [await add(redis, "newCard", f"old{i}", days_ago=40 - i) for i in range(3)]
    recent = await add(redis, "newCard", "recent", days_ago=1)
    await consume(redis, CARDS, "comment_svc", "c-1", count=2)
    held = await consume(redis, CARDS, "comment_svc", "c-1", count=1, ack=False)  # old[2] pending
    await consume(redis, CARDS, "comment_svc", "c-1")
    project = await add(redis, "newProject", "p", days_ago=40)  # produced here, but no group reads it
    comment = await add(redis, "newComment", "m", days_ago=40)  # consumed, but not produced by this service
    await consume(redis, COMMENTS, "project_svc", "p-1")
    settings = make_settings(
        service_name="project_svc",
        stream_retention_s=30 * 86400,
        stream_retention_interval_s=0.05,
        stream_archive_dir=str(tmp_path),
    )

    async with service(settings, ["newCard", "newProject", "changeCardStatus"]):
        await eventually(lambda: _equal(ids_of(redis, CARDS), [*old[2:], recent]), what="old consumed cards trimmed")
        assert archived_ids(tmp_path) == old[:2]
        await redis.xack(CARDS, "comment_svc", *held)  # the pending one is done at last: a later pass takes it
        await eventually(lambda: _equal(ids_of(redis, CARDS), [recent]), what="the acknowledged card trimmed")

    assert archived_ids(tmp_path) == old
    assert await ids_of(redis, PROJECTS) == [project]
    assert await ids_of(redis, COMMENTS) == [comment]
    assert await redis.exists("events:changeCardStatus") == 0  # a stream nobody wrote is not created


async def test_replicas_trimming_at_once_archive_each_entry_once(redis, make_settings, tmp_path, monkeypatch):
    monkeypatch.setattr(trim, "ARCHIVE_CHUNK", 4)
    old = [await add(redis, "newCard", f"old{i}", days_ago=40 - i / 10) for i in range(60)]
    await consume(redis, CARDS, "comment_svc", "c-1")
    settings = make_settings(
        service_name="project_svc",
        stream_retention_s=30 * 86400,
        stream_retention_interval_s=0.02,
        stream_archive_dir=str(tmp_path),
    )

    async with contextlib.AsyncExitStack() as stack:
        for _replica in range(3):
            await stack.enter_async_context(service(settings, ["newCard"]))
        await eventually(lambda: _equal(ids_of(redis, CARDS), []), what="every old card trimmed")

    assert archived_ids(tmp_path) == old


async def test_a_retention_of_zero_turns_the_trimmer_off(redis, make_settings):
    old = [await add(redis, "newCard", f"old{i}", days_ago=400) for i in range(1)]
    await consume(redis, CARDS, "comment_svc", "c-1")
    settings = make_settings(service_name="project_svc", stream_retention_s=0, stream_retention_interval_s=0.01)

    async with service(settings, ["newCard"]):
        assert not [task for task in asyncio.all_tasks() if task.get_name() == "stream-retention"]
        assert await ids_of(redis, CARDS) == old

    on = make_settings(service_name="project_svc", stream_retention_interval_s=3600)  # the defaults: 90 days
    async with service(on, ["newCard"]):
        assert [task for task in asyncio.all_tasks() if task.get_name() == "stream-retention"]
        await eventually(lambda: _equal(ids_of(redis, CARDS), []), what="the first pass runs at start-up")


async def _equal(value: Any, expected: Any) -> bool:
    return bool(await value == expected)
