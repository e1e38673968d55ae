"""A poison event: one its handler always fails for. It must not block its stream, must land in
events:dlq after CONSUMER_MAX_DELIVERIES deliveries with its error, and once the handler is fixed a
replay of the dead letter must apply it exactly once (and only for the group that failed it).

Two poisons, under the workload:
- for a real service: a newComment whose card_id is not a UUID, which project_svc's schema refuses;
- for a consumer group of the test's own (tests/faults/audit.py) that has a "bug" for one real comment
  posted through the gateway; the bug is then fixed and the dead letter replayed with the same code
  `swarm dlq replay` and `POST /admin/dlq/{id}/replay` run (common.messaging.views.replay_dead_letter).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from common.core.envelope import Event
from common.core.errors import NotFound
from common.messaging.consumer import WorkerOptions
from common.messaging.views import DeadLetter, replay_dead_letter
from common.redis.keys import REPLAY_FOR_FIELD
from common.swarm.supervisor import Swarm
from tests.faults.audit import GROUP, Audit
from tests.faults.conftest import api_for, database_urls, running_system
from tests.faults.probes import (
    converged,
    dead_letters,
    describe,
    fetch,
    flowing_past,
    redis_client,
    stream_entries,
    unsettled_streams,
    xrange,
)
from tests.faults.workload import Comment, Outcome, Workload, until

pytestmark = pytest.mark.e2e

MAX_DELIVERIES = 3
# Long enough that a poison is retried for a second and a half (after 500 ms, then 1 s): the window in
# which later events must be seen flowing past it.
RETRY_DELAY_MS = 500


@pytest.fixture(scope="module")
def system(servers, tmp_path_factory) -> Iterator[Swarm]:  # type: ignore[no-untyped-def]
    env = {"CONSUMER_MAX_DELIVERIES": str(MAX_DELIVERIES), "CONSUMER_RETRY_DELAY_MS": str(RETRY_DELAY_MS)}
    with running_system(servers, tmp_path_factory.mktemp("poison"), env=env) as swarm:
        yield swarm


@pytest.fixture
async def redis(system: Swarm) -> AsyncIterator[aioredis.Redis]:
    client = redis_client(system.redis_url)
    yield client
    await client.aclose()


async def dead_letter_of(redis: aioredis.Redis, event_id: str) -> DeadLetter | None:
    return next((d for d in await dead_letters(redis) if d.event_id == event_id), None)


async def test_a_poison_event_is_dead_lettered_after_n_deliveries_while_later_events_flow(system, redis, http):
    api = api_for(http, system)
    workload = Workload(api, teams=3, seed=4)
    await workload.setup()
    poison = Event.new(
        "newComment", {"id": str(uuid.uuid4()), "card_id": "not-a-card", "body": "imported"}, producer="importer"
    )
    workload.start()
    try:
        await api.answers(15, succeeded=True)
        entry = await redis.xadd(poison.stream, poison.to_fields())  # type: ignore[arg-type]
        await comment_on_some_card(workload)  # a later event, whatever the pace of the workload
        await until(
            lambda: flowing_past(redis, poison.stream, "project_svc", entry),
            timeout=10,
            interval=0.02,
            what="comments after the poison applied while it is retried",
        )
        letter = await until(lambda: dead_letter_of(redis, poison.id), timeout=10, what="the poison dead-lettered")
        await api.answers(15, succeeded=True)  # and writes still flow after it
    finally:
        await workload.stop()

    assert (letter.stream, letter.entry_id, letter.group) == (poison.stream, entry, "project_svc")
    assert letter.deliveries == MAX_DELIVERIES
    assert letter.error.startswith("ValidationError") and "card_id" in letter.error
    urls = database_urls(system)
    report = await converged(system, urls, timeout_s=20)
    assert report.clean, describe(report)
    assert not await fetch(urls["project_svc"], "SELECT 1 FROM inbox WHERE event_id = $1", poison.id)
    assert [d.event_id for d in await dead_letters(redis)] == [poison.id]
    problems = await workload.verify()
    assert problems == [], "\n".join(problems)


async def test_once_the_handler_is_fixed_a_replayed_dead_letter_is_applied_exactly_once(system, servers, redis, http):
    api = api_for(http, system)
    options = WorkerOptions(
        block_ms=500,
        claim_idle_ms=1500,
        claim_interval_ms=300,
        retry_delay_ms=RETRY_DELAY_MS,
        max_deliveries=MAX_DELIVERIES,
    )
    streams = ["newComment", "updateComment", "deleteComment"]
    audit = await Audit(redis, servers.postgres.url(), f"faults_audit_{uuid.uuid4().hex[:8]}", streams, options).start()
    workload = Workload(api, teams=3, seed=5)
    try:
        await workload.setup()
        audit.bug = lambda event: event.type == "newComment" and "🐛" in str(event.data.get("body", ""))
        workload.start()
        try:
            await api.answers(15, succeeded=True)
            comment_id = await comment_on_some_card(workload, "see log 🐛")
            await comment_on_some_card(workload)
            entry, fields = await until(
                lambda: _entry_of_comment(redis, comment_id), timeout=10, what="the comment's newComment event"
            )
            await until(
                lambda: flowing_past(redis, "events:newComment", GROUP, entry),
                timeout=10,
                interval=0.02,
                what="the audit applying later comments while it retries the buggy one",
            )
            letter = await until(lambda: dead_letter_of(redis, fields["id"]), timeout=10, what="a dead letter")
            assert letter.group == GROUP and letter.deliveries == MAX_DELIVERIES and "AuditBug" in letter.error
            assert audit.failures == MAX_DELIVERIES
            assert fields["id"] not in await audit.rows_per_event()

            audit.bug = None  # the fix is deployed
            replayed = await replay_dead_letter(redis, letter.id)
            assert (replayed.stream, replayed.group, replayed.event_id) == ("events:newComment", GROUP, fields["id"])
            await until(lambda: _applied(audit, fields["id"]), timeout=10, what="the replayed event applied")
            # Replaying it again finds nothing (it left events:dlq), and a duplicated delivery of the
            # replayed entry is recognised by the inbox.
            with pytest.raises(NotFound):
                await replay_dead_letter(redis, letter.id)
            [(_, replayed_fields)] = await xrange(redis, replayed.stream, replayed.entry_id, replayed.entry_id)
            assert replayed_fields[REPLAY_FOR_FIELD] == GROUP
            await redis.xadd(replayed.stream, replayed_fields)  # type: ignore[arg-type]
            await api.answers(15, succeeded=True)
        finally:
            await workload.stop()

        await until(lambda: _settled(redis), timeout=15, what="every group caught up")
        rows = await audit.rows_per_event()
        assert rows[fields["id"]] == 1
        assert {n for n in rows.values()} == {1}, {e: n for e, n in rows.items() if n != 1}
        # Nothing the audit follows was lost either: it applied every event of its streams.
        ids = {f["id"] for s in streams for _, f in await stream_entries(redis, f"events:{s}")}
        assert set(rows) == ids
        assert await dead_letter_of(redis, fields["id"]) is None

        # project_svc had applied the original: the replay, meant for the audit only, changed nothing.
        urls = database_urls(system)
        report = await converged(system, urls, timeout_s=20)
        assert report.clean, describe(report)
        problems = await workload.verify()
        assert problems == [], "\n".join(problems)
    finally:
        await audit.stop()


async def comment_on_some_card(workload: Workload, body: str = "later") -> str:
    """Post a comment now (through the gateway, on a card of the last team); its id."""
    team = workload.teams[-1]
    for _attempt in range(20):
        card = next(c for c in workload.ledger.cards.values() if c.project_id == team.project.id and not c.deleted)
        reply = await workload.api.call("POST", f"/cards/{card.id}/comments", team.project.owner, json={"body": body})
        if reply.outcome is Outcome.DONE:
            workload.ledger.comments[reply.body["id"]] = Comment(reply.body["id"], card.id, team.project.owner.id, body)
            return str(reply.body["id"])
        await asyncio.sleep(0.05)  # the team deleted that card meanwhile
    raise AssertionError(f"could not comment: {reply.status} {reply.body}")


async def _entry_of_comment(redis: aioredis.Redis, comment_id: str) -> tuple[str, dict[str, str]] | None:
    for entry_id, fields in reversed(await stream_entries(redis, "events:newComment")):
        if comment_id in fields.get("data", ""):
            return entry_id, fields
    return None


async def _applied(audit: Audit, event_id: str) -> bool:
    return event_id in await audit.rows_per_event()


async def _settled(redis: aioredis.Redis) -> str | None:
    return None if await unsettled_streams(redis) else "settled"
