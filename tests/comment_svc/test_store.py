"""comment_svc's queries against a real, migrated database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson

from comment_svc import store


async def _comment(conn: asyncpg.Connection, card: str, author: str, at: datetime) -> None:
    await conn.execute(
        "INSERT INTO comments (id, card_id, project_id, author_id, body, created_at) VALUES ($1, $2, $3, $4, 'x', $5)",
        str(uuid.uuid4()),
        card,
        str(uuid.uuid4()),
        author,
        at,
    )


async def test_commenters_are_each_author_once_by_first_comment(replica_conn: asyncpg.Connection):
    card, other_card = str(uuid.uuid4()), str(uuid.uuid4())
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for minutes, author in ((5, b), (6, a), (7, b), (8, c), (9, a), (10, c)):
        await _comment(replica_conn, card, author, t0 + timedelta(minutes=minutes))
    await _comment(replica_conn, other_card, str(uuid.uuid4()), t0)  # another card's commenter: not listed
    assert await store.commenters(replica_conn, card) == [b, a, c]
    assert await store.commenters(replica_conn, str(uuid.uuid4())) == []


async def test_commenters_read_the_index_not_the_cards_comments(replica_conn: asyncpg.Connection):
    # Under the card's row lock on every new comment: its cost must not grow with the card's comments.
    card, author = str(uuid.uuid4()), str(uuid.uuid4())
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    await replica_conn.executemany(
        "INSERT INTO comments (id, card_id, project_id, author_id, body, created_at) VALUES ($1, $2, $3, $4, 'x', $5)",
        [(str(uuid.uuid4()), card, card, author, t0 + timedelta(seconds=i)) for i in range(2000)],
    )
    await replica_conn.execute("ANALYZE comments")
    plan = await replica_conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + store._COMMENTERS, card)
    plan = orjson.loads(plan) if isinstance(plan, str) else plan
    # A GROUP BY over the card's comments would pass all 2,000 index entries up the plan.
    assert max(_rows_per_node(plan[0]["Plan"])) <= 2
    assert await store.commenters(replica_conn, card) == [author]


def _rows_per_node(node: dict[str, Any]) -> list[int]:
    rows = [int(node["Actual Rows"])]
    for child in node.get("Plans", []):
        rows += _rows_per_node(child)
    return rows
