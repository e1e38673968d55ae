"""project_svc's SQL: projects, memberships, cards, the user replica. Every function takes the
connection of the caller's transaction; nothing here decides rules."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import asyncpg

from common.contracts.users import USER_ROWS_SQL
from common.db.pool import like_pattern

PROJECT_COLUMNS = "id, title, description, owner_id, version, created_at, updated_at"
MEMBER_COLUMNS = "project_id, user_id, role, active, version, added_at, removed_at"
CARD_COLUMNS = (
    "id, project_id, title, description, status, priority, due_date, assignee_id, created_by, "
    "total_comments, version, created_at, updated_at"
)
_PROJECT_FIELDS = {"title", "description"}
_CARD_FIELDS = {"title", "description", "status", "priority", "due_date", "assignee_id"}

Record = dict[str, Any]
LockMode = Literal["UPDATE", "SHARE"]


def _prefixed(columns: str, alias: str) -> str:
    return ", ".join(f"{alias}.{column.strip()}" for column in columns.split(","))


P_PROJECT_COLUMNS = _prefixed(PROJECT_COLUMNS, "p")
C_CARD_COLUMNS = _prefixed(CARD_COLUMNS, "c")


def _row(record: asyncpg.Record | None) -> Record | None:
    return dict(record) if record is not None else None


def _assignments(changes: dict[str, Any], allowed: set[str]) -> str:
    assert set(changes) <= allowed, set(changes) - allowed
    return ", ".join(f"{column} = ${i}" for i, column in enumerate(changes, start=2))


# -- users (replica) --------------------------------------------------------------------------------


async def get_user(conn: asyncpg.Connection, user_id: str) -> Record | None:
    return _row(await conn.fetchrow("SELECT id, username FROM users WHERE id = $1", user_id))


# -- projects ---------------------------------------------------------------------------------------


async def insert_project(
    conn: asyncpg.Connection, project_id: str, title: str, description: str, owner_id: str
) -> Record:
    row = await conn.fetchrow(
        f"INSERT INTO projects (id, title, description, owner_id) VALUES ($1, $2, $3, $4) RETURNING {PROJECT_COLUMNS}",
        project_id,
        title,
        description,
        owner_id,
    )
    return dict(row)


async def lock_project(conn: asyncpg.Connection, project_id: str, mode: LockMode) -> Record | None:
    """Lock the project row: UPDATE for changes to the project or its memberships, SHARE for card
    changes. Taken first by every write, so writes on one project lock rows in one order (project,
    memberships, cards) and cannot deadlock; SHARE also keeps a kick from slipping between a card's
    "is the assignee a member" check and its commit."""
    return _row(await conn.fetchrow(f"SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1 FOR {mode}", project_id))


async def project_as_member(conn: asyncpg.Connection, project_id: str, user_id: str) -> Record | None:
    """The project with the caller's `role`, or None when it is unknown or the caller is not an active member."""
    return _row(
        await conn.fetchrow(
            f"SELECT {P_PROJECT_COLUMNS}, m.role "
            "FROM projects p JOIN members m ON m.project_id = p.id AND m.user_id = $2 AND m.active "
            "WHERE p.id = $1",
            project_id,
            user_id,
        )
    )


async def update_project(conn: asyncpg.Connection, project_id: str, changes: dict[str, Any]) -> Record:
    row = await conn.fetchrow(
        f"UPDATE projects SET {_assignments(changes, _PROJECT_FIELDS)}, version = version + 1, updated_at = now() "
        f"WHERE id = $1 RETURNING {PROJECT_COLUMNS}",
        project_id,
        *changes.values(),
    )
    return dict(row)


async def delete_project(conn: asyncpg.Connection, project_id: str) -> Record:
    """Delete the project; its memberships and cards go with it (ON DELETE CASCADE)."""
    return dict(await conn.fetchrow("DELETE FROM projects WHERE id = $1 RETURNING id, owner_id, version", project_id))


async def list_projects(
    conn: asyncpg.Connection, user_id: str, search: str | None, limit: int, offset: int
) -> tuple[list[Record], int]:
    pattern = like_pattern(search) if search else "%"
    where = "m.user_id = $1 AND m.active AND lower(p.title) LIKE $2"
    join = "FROM projects p JOIN members m ON m.project_id = p.id"
    total = await conn.fetchval(f"SELECT count(*) {join} WHERE {where}", user_id, pattern)
    rows = await conn.fetch(
        f"SELECT {P_PROJECT_COLUMNS} {join} WHERE {where} ORDER BY p.created_at DESC, p.id DESC LIMIT $3 OFFSET $4",
        user_id,
        pattern,
        limit,
        offset,
    )
    return [dict(r) for r in rows], total


# -- memberships ------------------------------------------------------------------------------------


async def member_role(conn: asyncpg.Connection, project_id: str, user_id: str) -> str | None:
    """The user's role if they are an active member of the project."""
    return await conn.fetchval(
        "SELECT role FROM members WHERE project_id = $1 AND user_id = $2 AND active", project_id, user_id
    )


async def insert_owner(conn: asyncpg.Connection, project_id: str, user_id: str) -> Record:
    row = await conn.fetchrow(
        f"INSERT INTO members (project_id, user_id, role) VALUES ($1, $2, 'owner') RETURNING {MEMBER_COLUMNS}",
        project_id,
        user_id,
    )
    return dict(row)


async def add_member(conn: asyncpg.Connection, project_id: str, user_id: str) -> Record | None:
    """Add the user, or reactivate their old membership with its version bumped; None if already active."""
    return _row(
        await conn.fetchrow(
            "INSERT INTO members (project_id, user_id, role) VALUES ($1, $2, 'member') "
            "ON CONFLICT (project_id, user_id) DO UPDATE "
            "SET active = true, role = 'member', added_at = now(), removed_at = NULL, version = members.version + 1 "
            f"WHERE NOT members.active RETURNING {MEMBER_COLUMNS}",
            project_id,
            user_id,
        )
    )


async def remove_member(conn: asyncpg.Connection, project_id: str, user_id: str) -> Record | None:
    """Deactivate an active membership (the row stays, its version goes up); None if not active."""
    return _row(
        await conn.fetchrow(
            "UPDATE members SET active = false, removed_at = now(), version = version + 1 "
            f"WHERE project_id = $1 AND user_id = $2 AND active RETURNING {MEMBER_COLUMNS}",
            project_id,
            user_id,
        )
    )


async def list_members(conn: asyncpg.Connection, project_id: str) -> list[Record]:
    rows = await conn.fetch(
        "SELECT m.user_id, u.username, m.role, m.added_at FROM members m LEFT JOIN users u ON u.id = m.user_id "
        "WHERE m.project_id = $1 AND m.active ORDER BY m.added_at, m.user_id",
        project_id,
    )
    return [dict(r) for r in rows]


async def member_with_username(conn: asyncpg.Connection, project_id: str, user_id: str) -> Record:
    row = await conn.fetchrow(
        "SELECT m.user_id, u.username, m.role, m.added_at FROM members m LEFT JOIN users u ON u.id = m.user_id "
        "WHERE m.project_id = $1 AND m.user_id = $2",
        project_id,
        user_id,
    )
    return dict(row)


async def active_member_ids(conn: asyncpg.Connection, project_id: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT user_id FROM members WHERE project_id = $1 AND active ORDER BY added_at, user_id", project_id
    )
    return [r["user_id"] for r in rows]


# -- cards ------------------------------------------------------------------------------------------


async def insert_card(conn: asyncpg.Connection, card: dict[str, Any]) -> Record:
    columns = list(card)
    placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    row = await conn.fetchrow(
        f"INSERT INTO cards ({', '.join(columns)}) VALUES ({placeholders}) RETURNING {CARD_COLUMNS}",
        *card.values(),
    )
    return dict(row)


async def card_project_id(conn: asyncpg.Connection, card_id: str) -> str | None:
    return await conn.fetchval("SELECT project_id FROM cards WHERE id = $1", card_id)


async def get_card(conn: asyncpg.Connection, card_id: str, *, for_update: bool = False) -> Record | None:
    lock = " FOR UPDATE" if for_update else ""
    return _row(await conn.fetchrow(f"SELECT {CARD_COLUMNS} FROM cards WHERE id = $1{lock}", card_id))


async def card_as_member(conn: asyncpg.Connection, card_id: str, user_id: str) -> Record | None:
    """The card, or None when it is unknown or the caller is not an active member of its project."""
    return _row(
        await conn.fetchrow(
            f"SELECT {C_CARD_COLUMNS} FROM cards c "
            "JOIN members m ON m.project_id = c.project_id AND m.user_id = $2 AND m.active WHERE c.id = $1",
            card_id,
            user_id,
        )
    )


async def update_card(conn: asyncpg.Connection, card_id: str, changes: dict[str, Any]) -> Record:
    row = await conn.fetchrow(
        f"UPDATE cards SET {_assignments(changes, _CARD_FIELDS)}, version = version + 1, updated_at = now() "
        f"WHERE id = $1 RETURNING {CARD_COLUMNS}",
        card_id,
        *changes.values(),
    )
    return dict(row)


async def delete_card(conn: asyncpg.Connection, card_id: str) -> Record:
    return dict(await conn.fetchrow("DELETE FROM cards WHERE id = $1 RETURNING id, project_id, version", card_id))


async def unassign_cards(conn: asyncpg.Connection, project_id: str, user_id: str) -> list[Record]:
    rows = await conn.fetch(
        "UPDATE cards SET assignee_id = NULL, version = version + 1, updated_at = now() "
        f"WHERE project_id = $1 AND assignee_id = $2 RETURNING {CARD_COLUMNS}",
        project_id,
        user_id,
    )
    return sorted((dict(r) for r in rows), key=lambda card: (card["created_at"], card["id"]))


async def list_cards(
    conn: asyncpg.Connection,
    *,
    project_id: str | None,
    member_id: str,
    filters: dict[str, Any],
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[Record]:
    """Newest first, keyset-paginated on (created_at, id), `limit` rows at most.

    Without `project_id`, the cards of every project `member_id` is an active member of.
    """
    params: list[Any] = []

    def param(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    if project_id is not None:
        where = [f"c.project_id = {param(project_id)}"]
    else:
        where = [f"c.project_id IN (SELECT project_id FROM members WHERE user_id = {param(member_id)} AND active)"]
    for column in ("status", "priority", "assignee_id"):
        if filters.get(column) is not None:
            where.append(f"c.{column} = {param(filters[column])}")
    if filters.get("q"):
        pattern = param(like_pattern(filters["q"]))
        where.append(f"(lower(c.title) LIKE {pattern} OR lower(c.description) LIKE {pattern})")
    if filters.get("due_before") is not None:
        where.append(f"c.due_date < {param(filters['due_before'])}")
    if after is not None:
        where.append(f"(c.created_at, c.id) < ({param(after[0])}, {param(after[1])}::uuid)")
    rows = await conn.fetch(
        f"SELECT {C_CARD_COLUMNS} FROM cards c "
        f"WHERE {' AND '.join(where)} ORDER BY c.created_at DESC, c.id DESC LIMIT {param(limit)}",
        *params,
    )
    return [dict(r) for r in rows]


# -- comment counts (from comment_svc's events) -----------------------------------------------------


async def apply_comment_count(conn: asyncpg.Connection, card_id: str, total: int, total_version: int) -> bool:
    """Set the card's comment count if this one is newer than what we have; False for stale or unknown cards."""
    written = await conn.fetchval(
        "UPDATE cards SET total_comments = $2, total_comments_version = $3 "
        "WHERE id = $1 AND total_comments_version < $3 RETURNING true",
        card_id,
        total,
        total_version,
    )
    return bool(written)


# -- due-date reminders -----------------------------------------------------------------------------


async def claim_cards_due(conn: asyncpg.Connection, after: datetime, until: datetime, limit: int) -> list[Record]:
    """Lock up to `limit` open, assigned cards due in (`after`, `until`] whose assignee was not yet
    reminded of that due date, soonest first (served by the `cards_awaiting_reminder` index).

    SKIP LOCKED: cards another replica is reminding right now are left to it; once it commits, they
    no longer match (the marker is set), so a card is never reminded twice for one due date.
    """
    rows = await conn.fetch(
        "SELECT id, project_id, title, due_date, assignee_id FROM cards "
        "WHERE status <> 'done' AND assignee_id IS NOT NULL AND due_date > $1 AND due_date <= $2 "
        "AND reminded_due_date IS DISTINCT FROM due_date "
        "ORDER BY due_date LIMIT $3 FOR UPDATE SKIP LOCKED",
        after,
        until,
        limit,
    )
    return [dict(r) for r in rows]


async def mark_reminded(conn: asyncpg.Connection, card_ids: list[str]) -> None:
    """Remember the due date each card was reminded of. Not a change of the card: no version bump."""
    await conn.execute("UPDATE cards SET reminded_due_date = due_date WHERE id = ANY($1::uuid[])", card_ids)


# -- snapshots (swarm republish) --------------------------------------------------------------------


async def projects_page(conn: asyncpg.Connection, after: str | None, limit: int) -> list[Record]:
    rows = await conn.fetch(
        f"SELECT {PROJECT_COLUMNS} FROM projects WHERE $1::uuid IS NULL OR id > $1 ORDER BY id LIMIT $2", after, limit
    )
    return [dict(r) for r in rows]


async def memberships_of(conn: asyncpg.Connection, project_ids: list[str]) -> list[Record]:
    """Every membership of these projects, removed ones too (their removal must replicate as well)."""
    rows = await conn.fetch(
        f"SELECT {MEMBER_COLUMNS} FROM members WHERE project_id = ANY($1::uuid[]) ORDER BY project_id, user_id",
        project_ids,
    )
    return [dict(r) for r in rows]


async def cards_page(conn: asyncpg.Connection, after: str | None, limit: int) -> list[Record]:
    rows = await conn.fetch(
        f"SELECT {CARD_COLUMNS} FROM cards WHERE $1::uuid IS NULL OR id > $1 ORDER BY id LIMIT $2", after, limit
    )
    return [dict(r) for r in rows]


# -- what `swarm check` reads here: the sources of comment_svc's replicas, and this service's own copies --

CHECK_QUERIES = {
    "projects": "SELECT id, title, owner_id, version FROM projects ORDER BY id",
    "members": "SELECT project_id, user_id, role, version FROM members WHERE active ORDER BY 1, 2",
    "cards": "SELECT id, project_id, title, status, created_by, assignee_id, version FROM cards ORDER BY id",
    "users": USER_ROWS_SQL,
    "card_comment_totals": "SELECT id, total_comments FROM cards WHERE total_comments <> 0 ORDER BY id",
}
