"""comment_svc's SQL: comments, and the replicas (projects, members, cards) they are decided from.

Every function takes the connection of the caller's transaction; nothing here decides rules, but the
"who may see what" joins live here because they are one query each:
a card is visible to a user when it is not deleted, its project is not tombstoned and the user is an
active member of that project; a comment is visible when its card is.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import asyncpg

from common.contracts.users import USER_ROWS_SQL
from common.db.upserts import upsert_if_newer

Record = dict[str, Any]

COMMENT_COLUMNS = "c.id, c.card_id, c.project_id, c.author_id, c.body, c.version, c.created_at, c.updated_at"
CARD_COLUMNS = "k.id, k.project_id, k.title, k.created_by, k.assignee_id"
# A card as requests see it: its replica row and this service's own comment count for it.
CARD_COUNT_COLUMNS = (
    f"{CARD_COLUMNS}, coalesce(n.total, 0) AS total_comments, coalesce(n.version, 0) AS total_comments_version"
)

# A user may act on a card only while an active member of a live project.
_MEMBER_OF_LIVE_PROJECT = """
    EXISTS (SELECT 1 FROM members m WHERE m.project_id = {project} AND m.user_id = {user} AND m.active)
    AND NOT EXISTS (SELECT 1 FROM projects p WHERE p.id = {project} AND p.deleted)
"""


def _row(record: asyncpg.Record | None) -> Record | None:
    return dict(record) if record is not None else None


# -- replicas ---------------------------------------------------------------------------------------


async def lock_project(conn: asyncpg.Connection, project_id: str, *, exclusive: bool) -> None:
    """Serialise deleteProject (exclusive) against the member/card events of that project (shared).

    Without it, two consumer replicas could apply deleteProject and an addMember/newCard of the same
    project side by side: the delete would not see the uncommitted row and leave it alive for good.
    The lock is transaction-scoped (held until the worker's batch commits); a hash collision between
    two projects only costs some waiting.
    """
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    await conn.execute(f"SELECT {function}(hashtextextended($1::text, 0))", project_id)


async def project_tombstoned(conn: asyncpg.Connection, project_id: str) -> bool:
    return bool(await conn.fetchval("SELECT deleted FROM projects WHERE id = $1", project_id))


async def upsert_project(conn: asyncpg.Connection, project: Record) -> bool:
    # `deleted` is not among the columns written, so an update never lifts a tombstone.
    return await upsert_if_newer(conn, "projects", project)


async def tombstone_project(conn: asyncpg.Connection, project_id: str, owner_id: str | None, version: int) -> None:
    await upsert_if_newer(conn, "projects", {"id": project_id, "owner_id": owner_id, "version": version})
    # Unconditional: whatever version the row holds, a deleted project stays deleted.
    await conn.execute("UPDATE projects SET deleted = true WHERE id = $1", project_id)


async def drop_project_contents(conn: asyncpg.Connection, project_id: str) -> dict[str, int]:
    """Forget a deleted project's members, hide its cards, delete its comments; return what went."""
    members = await conn.fetchval(
        "WITH gone AS (DELETE FROM members WHERE project_id = $1 RETURNING 1) SELECT count(*) FROM gone", project_id
    )
    # The cards' row locks also wait for any comment being written on them right now, so the comment
    # delete below (a later statement, a fresh snapshot) sees that comment too.
    cards = await conn.fetchval(
        "WITH hidden AS (UPDATE cards SET deleted = true WHERE project_id = $1 AND NOT deleted RETURNING 1) "
        "SELECT count(*) FROM hidden",
        project_id,
    )
    comments = await conn.fetchval(
        "WITH gone AS (DELETE FROM comments WHERE project_id = $1 RETURNING 1) SELECT count(*) FROM gone", project_id
    )
    await conn.execute(
        "DELETE FROM card_comment_counts WHERE card_id IN (SELECT id FROM cards WHERE project_id = $1)", project_id
    )
    return {"members": members, "cards": cards, "comments": comments}


async def upsert_member(conn: asyncpg.Connection, membership: Record) -> bool:
    return await upsert_if_newer(conn, "members", membership, key=("project_id", "user_id"))


async def upsert_card(conn: asyncpg.Connection, card: Record) -> bool:
    # Only the card's own columns: `deleted` (sticky tombstone) and the comment count (ours) are untouched.
    return await upsert_if_newer(conn, "cards", card)


async def tombstone_card(conn: asyncpg.Connection, card_id: str, project_id: str, version: int) -> int:
    """Mark a card deleted for good and delete its comments; return how many comments went."""
    await upsert_if_newer(conn, "cards", {"id": card_id, "project_id": project_id, "version": version})
    # Taking the row lock here also waits for a comment being written on the card right now.
    await conn.execute("UPDATE cards SET deleted = true WHERE id = $1", card_id)
    await conn.execute("DELETE FROM card_comment_counts WHERE card_id = $1", card_id)
    return await conn.fetchval(
        "WITH gone AS (DELETE FROM comments WHERE card_id = $1 RETURNING 1) SELECT count(*) FROM gone", card_id
    )


# -- cards, as requests see them --------------------------------------------------------------------


async def visible_card(conn: asyncpg.Connection, card_id: str, user_id: str) -> Record | None:
    condition = _MEMBER_OF_LIVE_PROJECT.format(project="k.project_id", user="$2")
    return _row(
        await conn.fetchrow(
            f"SELECT {CARD_COUNT_COLUMNS} FROM cards k LEFT JOIN card_comment_counts n ON n.card_id = k.id "
            f"WHERE k.id = $1 AND NOT k.deleted AND {condition}",
            card_id,
            user_id,
        )
    )


async def count_comment(
    conn: asyncpg.Connection, card_id: str, delta: int, *, member_id: str | None = None
) -> Record | None:
    """Add `delta` to a live card's comment count and bump its counter; None if the card is not there.

    The card's replica row is share-locked (a concurrent deleteCard/deleteProject, which updates it,
    waits for this transaction and then sees its comment) and the count row is write-locked: concurrent
    comments on one card commit one after another, each publishing the exact count it produced. With
    `member_id`, the card also counts as not there unless that user is an active member.
    """
    condition, extra = "", []
    if member_id is not None:
        condition, extra = " AND " + _MEMBER_OF_LIVE_PROJECT.format(project="k.project_id", user="$2"), [member_id]
    card = await conn.fetchrow(
        f"SELECT {CARD_COLUMNS} FROM cards k WHERE k.id = $1 AND NOT k.deleted{condition} FOR SHARE OF k",
        card_id,
        *extra,
    )
    if card is None:
        return None
    counts = await conn.fetchrow(
        "INSERT INTO card_comment_counts AS n (card_id, total, version) VALUES ($1, greatest($2, 0), 1) "
        "ON CONFLICT (card_id) DO UPDATE SET total = n.total + $2, version = n.version + 1 "
        "RETURNING n.total AS total_comments, n.version AS total_comments_version",
        card_id,
        delta,
    )
    return {**dict(card), **dict(counts)}


async def card_counts(conn: asyncpg.Connection, card_id: str) -> Record:
    row = await conn.fetchrow(
        "SELECT total AS total_comments, version AS total_comments_version FROM card_comment_counts WHERE card_id = $1",
        card_id,
    )
    return dict(row) if row is not None else {"total_comments": 0, "total_comments_version": 0}


# Distinct authors one index probe each (a loose index scan: PostgreSQL has no skip scan), then each
# one's first comment: O(authors * log comments), where a GROUP BY read every comment of the card.
_COMMENTERS = """
WITH RECURSIVE authors (author_id) AS (
    (SELECT author_id FROM comments WHERE card_id = $1 ORDER BY author_id LIMIT 1)
    UNION ALL
    SELECT (SELECT c.author_id FROM comments c
            WHERE c.card_id = $1 AND c.author_id > authors.author_id ORDER BY c.author_id LIMIT 1)
    FROM authors WHERE authors.author_id IS NOT NULL
)
SELECT author_id,
       (SELECT min(c.created_at) FROM comments c WHERE c.card_id = $1 AND c.author_id = authors.author_id) AS first
FROM authors WHERE author_id IS NOT NULL
ORDER BY first, author_id
"""


async def commenters(conn: asyncpg.Connection, card_id: str) -> list[str]:
    """Everyone who has commented on the card, earliest first."""
    return [r["author_id"] for r in await conn.fetch(_COMMENTERS, card_id)]


async def active_members_among(conn: asyncpg.Connection, project_id: str, user_ids: Iterable[str | None]) -> set[str]:
    candidates = sorted({u for u in user_ids if u is not None})
    rows = await conn.fetch(
        "SELECT user_id FROM members WHERE project_id = $1 AND active AND user_id = ANY($2::uuid[])",
        project_id,
        candidates,
    )
    return {r["user_id"] for r in rows}


async def insert_comment(
    conn: asyncpg.Connection, comment_id: str, card_id: str, project_id: str, author_id: str, body: str
) -> Record:
    row = await conn.fetchrow(
        "INSERT INTO comments AS c (id, card_id, project_id, author_id, body) VALUES ($1, $2, $3, $4, $5) "
        f"RETURNING {COMMENT_COLUMNS}, (SELECT username FROM users WHERE id = $4) AS username",
        comment_id,
        card_id,
        project_id,
        author_id,
        body,
    )
    return dict(row)


async def visible_comment(
    conn: asyncpg.Connection, comment_id: str, user_id: str, *, for_update: bool = False
) -> Record | None:
    """The comment with its author's username and its project's owner, if `user_id` may see it."""
    condition = _MEMBER_OF_LIVE_PROJECT.format(project="c.project_id", user="$2")
    lock = " FOR UPDATE OF c" if for_update else ""
    return _row(
        await conn.fetchrow(
            f"SELECT {COMMENT_COLUMNS}, u.username, p.owner_id FROM comments c "
            "JOIN cards k ON k.id = c.card_id AND NOT k.deleted "
            "LEFT JOIN projects p ON p.id = c.project_id "
            "LEFT JOIN users u ON u.id = c.author_id "
            f"WHERE c.id = $1 AND {condition}{lock}",
            comment_id,
            user_id,
        )
    )


async def list_comments(
    conn: asyncpg.Connection, card_id: str, limit: int, after: tuple[datetime, str] | None
) -> list[Record]:
    """A card's comments oldest first, from just after the keyset position `after` (served by comments_feed)."""
    select = (
        f"SELECT {COMMENT_COLUMNS}, u.username FROM comments c LEFT JOIN users u ON u.id = c.author_id "
        "WHERE c.card_id = $1"
    )
    order = " ORDER BY c.created_at, c.id LIMIT $2"
    if after is None:
        rows = await conn.fetch(select + order, card_id, limit)
    else:
        rows = await conn.fetch(
            select + " AND (c.created_at, c.id) > ($3, $4::uuid)" + order, card_id, limit, after[0], after[1]
        )
    return [dict(r) for r in rows]


async def update_comment_body(conn: asyncpg.Connection, comment_id: str, body: str) -> Record:
    row = await conn.fetchrow(
        "UPDATE comments AS c SET body = $2, version = c.version + 1, updated_at = now() WHERE c.id = $1 "
        f"RETURNING {COMMENT_COLUMNS}, (SELECT username FROM users WHERE id = c.author_id) AS username",
        comment_id,
        body,
    )
    return dict(row)


async def delete_comment(conn: asyncpg.Connection, comment_id: str) -> Record | None:
    """Delete a comment; None if it was already gone (a concurrent delete won)."""
    return _row(
        await conn.fetchrow(f"DELETE FROM comments AS c WHERE c.id = $1 RETURNING {COMMENT_COLUMNS}", comment_id)
    )


async def comments_page(conn: asyncpg.Connection, after: str | None, limit: int) -> list[Record]:
    """Comments in id order with their card's current count (a snapshot page for swarm republish)."""
    rows = await conn.fetch(
        f"SELECT {COMMENT_COLUMNS}, coalesce(n.total, 0) AS total_comments, "
        "coalesce(n.version, 0) AS total_comments_version FROM comments c "
        "LEFT JOIN card_comment_counts n ON n.card_id = c.card_id "
        "WHERE $1::uuid IS NULL OR c.id > $1 ORDER BY c.id LIMIT $2",
        after,
        limit,
    )
    return [dict(r) for r in rows]


# -- what `swarm check` reads here: this service's replicas, its comment counts (the source of project_svc's
# card totals), and the invariants of its own tables -------------------------------------------------------

CHECK_QUERIES = {
    "users": USER_ROWS_SQL,
    "projects": "SELECT id, title, owner_id, version FROM projects WHERE NOT deleted ORDER BY id",
    "members": "SELECT project_id, user_id, role, version FROM members WHERE active ORDER BY 1, 2",
    "cards": "SELECT id, project_id, title, status, created_by, assignee_id, version FROM cards "
    "WHERE NOT deleted ORDER BY id",
    "comment_counts": "SELECT card_id, count(*)::int FROM comments GROUP BY card_id ORDER BY card_id",
    "miscounted_cards": "SELECT k.id, coalesce(n.total, 0), count(c.id) FROM cards k "
    "LEFT JOIN card_comment_counts n ON n.card_id = k.id LEFT JOIN comments c ON c.card_id = k.id "
    "WHERE NOT k.deleted GROUP BY k.id, n.total HAVING coalesce(n.total, 0) <> count(c.id)",
    "orphan_comments": "SELECT c.id, c.card_id FROM comments c LEFT JOIN cards k ON k.id = c.card_id "
    "WHERE k.id IS NULL OR k.deleted",
}
