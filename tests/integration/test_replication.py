"""project_svc ⇄ comment_svc, both running for real (HTTP, outbox relay, consumer worker) on their own
databases and one Redis: after a mixed workload every replica equals its source, and it still does
when the very events they published are replayed shuffled and twice into an empty replica."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from comment_svc.app import MIGRATIONS as COMMENT_MIGRATIONS
from comment_svc.consumers import HANDLERS as COMMENT_HANDLERS
from common.core.envelope import Event
from common.db.migrations import migrate
from common.db.pool import connect
from common.http.app import runtime_of
from common.messaging.tables import COMMON_MIGRATIONS
from common.swarm.check import declared_checks, run_checks, wait_converged
from project_svc.consumers import HANDLERS as PROJECT_HANDLERS
from tests.helpers import eventually
from tests.integration.conftest import Pair, workload

# What comment_svc keeps of project_svc's entities, as comparable rows: (query on the source, on the replica).
PROJECTS = (
    "SELECT id, title, owner_id, version FROM projects ORDER BY id",
    "SELECT id, title, owner_id, version FROM projects WHERE NOT deleted ORDER BY id",
)
MEMBERS = (
    "SELECT project_id, user_id, role, version FROM members WHERE active ORDER BY project_id, user_id",
    "SELECT project_id, user_id, role, version FROM members WHERE active ORDER BY project_id, user_id",
)
CARDS = (
    "SELECT id, project_id, title, status, created_by, assignee_id, version FROM cards ORDER BY id",
    "SELECT id, project_id, title, status, created_by, assignee_id, version FROM cards WHERE NOT deleted ORDER BY id",
)
PROJECT_EVENT_TYPES = (
    "newProject",
    "updateProject",
    "deleteProject",
    "addMember",
    "removeMember",
    "newCard",
    "updateCard",
    "changeCardStatus",
    "deleteCard",
)
COMMENT_EVENT_TYPES = ("newComment", "updateComment", "deleteComment")


async def rows(pool_or_conn: Any, sql: str) -> list[tuple]:
    return [tuple(r) for r in await pool_or_conn.fetch(sql)]


async def replica_matches_source(pair: Pair) -> bool:
    source, replica = pair.pool(pair.projects), pair.pool(pair.comments)
    for source_sql, replica_sql in (PROJECTS, MEMBERS, CARDS):
        if await rows(source, source_sql) != await rows(replica, replica_sql):
            return False
    return True


async def published(redis, types: tuple[str, ...]) -> list[Event]:  # type: ignore[no-untyped-def]
    events = []
    for event_type in types:
        events += [Event.from_fields(fields) for _, fields in await redis.xrange(f"events:{event_type}")]
    return events


async def test_comment_svc_replicas_equal_project_svc_after_a_mixed_workload(pair, redis):
    await workload(pair, redis)
    await eventually(lambda: replica_matches_source(pair), timeout=10, what="comment_svc replicas equal the source")
    # The comparison is not vacuous: there is something on both sides.
    assert len(await rows(pair.pool(pair.comments), CARDS[1])) == 4
    assert len(await rows(pair.pool(pair.comments), MEMBERS[1])) == 5


async def test_replaying_every_event_shuffled_and_twice_into_an_empty_replica_gives_the_same_state(
    pair, redis, make_database
):
    await workload(pair, redis)
    await eventually(lambda: replica_matches_source(pair), timeout=10, what="live replicas caught up")
    events = await published(redis, PROJECT_EVENT_TYPES)
    expected = [await rows(pair.pool(pair.projects), source_sql) for source_sql, _ in (PROJECTS, MEMBERS, CARDS)]

    for seed in range(5):
        shuffled = events * 2
        random.Random(seed).shuffle(shuffled)
        url = await make_database()
        await migrate(url, [("common", COMMON_MIGRATIONS), ("comment_svc", COMMENT_MIGRATIONS)])
        conn = await connect(url)
        try:
            for event in shuffled:  # straight to the handlers: no inbox to hide a non-idempotent one
                async with conn.transaction():
                    await COMMENT_HANDLERS[event.type](event, conn)
            replayed = [await rows(conn, replica_sql) for _, replica_sql in (PROJECTS, MEMBERS, CARDS)]
        finally:
            await conn.close()
        assert replayed == expected, f"seed {seed}"


async def test_total_comments_is_exact_after_concurrent_comments_and_deletions(pair, redis):
    users = await workload(pair, redis)
    owner, ann, ben, _ = users
    await eventually(lambda: replica_matches_source(pair), timeout=10, what="replicas caught up")
    apollo_cards = await pair.pool(pair.projects).fetch(
        "SELECT c.id FROM cards c JOIN projects p ON p.id = c.project_id WHERE p.title = 'Apollo' ORDER BY c.id"
    )
    card_ids = [r["id"] for r in apollo_cards]
    C = pair.comments

    async def post(who: dict, card_id: str, n: int) -> dict:
        return await pair.call(C, who, "POST", f"/cards/{card_id}/comments", {"body": f"note {n}"})

    writers = (owner, ann, ben)
    created = await asyncio.gather(*(post(w, card_ids[n % len(card_ids)], n) for n in range(12) for w in writers))
    doomed = created[::3]
    await asyncio.gather(*(pair.call(C, owner, "DELETE", f"/comments/{c['id']}") for c in doomed))

    real = "SELECT card_id, count(*) FROM comments GROUP BY card_id ORDER BY card_id"
    counted = "SELECT id, total_comments FROM cards WHERE total_comments > 0 ORDER BY id"

    async def exact() -> bool:
        return await rows(pair.pool(pair.comments), real) == await rows(pair.pool(pair.projects), counted)

    await eventually(exact, timeout=10, what="project_svc total_comments equal to comment_svc's real counts")
    assert sum(n for _, n in await rows(pair.pool(pair.comments), real)) == len(created) - len(doomed)

    # And the counts converge from the comment events alone, in any order, each applied twice.
    events = await published(redis, COMMENT_EVENT_TYPES)
    for seed in range(3):
        shuffled = events * 2
        random.Random(seed).shuffle(shuffled)
        async with pair.pool(pair.projects).acquire() as conn:
            await conn.execute("UPDATE cards SET total_comments = 0, total_comments_version = 0")
            for event in shuffled:
                async with conn.transaction():
                    await PROJECT_HANDLERS[event.type](event, conn)
        assert await exact(), f"seed {seed}"


async def test_the_convergence_checker_is_clean_after_the_workload_and_names_a_broken_row(pair, redis):
    await workload(pair, redis)
    urls = {
        "project_svc": runtime_of(pair.projects.server.app).settings.database_url,
        "comment_svc": runtime_of(pair.comments.server.app).settings.database_url,
    }
    checks = declared_checks(["project_svc", "comment_svc", "notif_svc"])
    report = await wait_converged(urls, checks, timeout_s=10)
    assert report.clean, report.to_dict()
    assert report.checked["comment_svc.cards"] == 4 and report.checked["comment_svc.members"] == 5
    assert "project_svc.users" in report.skipped  # no auth_svc database in this test

    replica = pair.pool(pair.comments)
    card_id = await replica.fetchval("SELECT id FROM cards WHERE NOT deleted ORDER BY id LIMIT 1")
    await replica.execute("UPDATE cards SET title = 'tampered' WHERE id = $1", card_id)
    member = await replica.fetchrow("SELECT project_id, user_id FROM members WHERE active ORDER BY 1, 2 LIMIT 1")
    await replica.execute("DELETE FROM members WHERE project_id = $1 AND user_id = $2", *member)
    await replica.execute("INSERT INTO card_comment_counts VALUES ($1, 7, 1)", card_id)

    broken = await run_checks(urls, checks)
    found = {(f.check, f.kind, f.key) for f in broken.findings}
    assert found == {
        ("comment_svc.cards", "different", (card_id,)),
        ("comment_svc.members", "missing", (member["project_id"], member["user_id"])),
        ("comment_svc.comment_counts", "violation", (card_id, 7, 0)),
    }
