"""auth_svc's SQL: users and refresh sessions. Every function takes the connection of the caller's
transaction; nothing here decides rules."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from common.contracts.users import USER_ROWS_SQL
from common.db.pool import like_pattern

# Never select password_hash into anything that might be returned or published.
USER_COLUMNS = "id, username, email, full_name, role, version, created_at, updated_at"

Record = dict[str, Any]


def _row(record: asyncpg.Record | None) -> Record | None:
    return dict(record) if record is not None else None


async def find_taken(conn: asyncpg.Connection, username: str, email: str) -> set[str]:
    """Which of username/email already belong to someone (case-insensitive)."""
    row = await conn.fetchrow(
        "SELECT bool_or(lower(username) = lower($1)) AS username, bool_or(lower(email) = lower($2)) AS email "
        "FROM users WHERE lower(username) = lower($1) OR lower(email) = lower($2)",
        username,
        email,
    )
    return {field for field in ("username", "email") if row[field]}


async def email_taken(conn: asyncpg.Connection, email: str, *, by_other_than: str) -> bool:
    return bool(
        await conn.fetchval("SELECT 1 FROM users WHERE lower(email) = lower($1) AND id <> $2", email, by_other_than)
    )


async def insert_user(
    conn: asyncpg.Connection, user_id: str, username: str, email: str, password_hash: str, role: str = "user"
) -> Record:
    row = await conn.fetchrow(
        f"INSERT INTO users (id, username, email, password_hash, role) VALUES ($1, $2, $3, $4, $5) "
        f"RETURNING {USER_COLUMNS}",
        user_id,
        username,
        email,
        password_hash,
        role,
    )
    return dict(row)


async def get_user(conn: asyncpg.Connection, user_id: str, *, for_update: bool = False) -> Record | None:
    lock = " FOR UPDATE" if for_update else ""
    return _row(await conn.fetchrow(f"SELECT {USER_COLUMNS} FROM users WHERE id = $1{lock}", user_id))


async def get_user_by_username(conn: asyncpg.Connection, username: str) -> Record | None:
    return _row(await conn.fetchrow(f"SELECT {USER_COLUMNS} FROM users WHERE lower(username) = lower($1)", username))


async def get_credentials(conn: asyncpg.Connection, login: str) -> Record | None:
    """The user and password hash for a login name, which may be the username or the email."""
    return _row(
        await conn.fetchrow(
            f"SELECT {USER_COLUMNS}, password_hash FROM users "
            "WHERE lower(username) = lower($1) OR lower(email) = lower($1) "
            "ORDER BY lower(username) = lower($1) DESC LIMIT 1",
            login,
        )
    )


async def get_password_hash(conn: asyncpg.Connection, user_id: str) -> str | None:
    return await conn.fetchval("SELECT password_hash FROM users WHERE id = $1", user_id)


async def update_user(conn: asyncpg.Connection, user_id: str, changes: dict[str, Any]) -> Record:
    """Apply column changes, bump version and updated_at; return the new state."""
    allowed = {"email", "full_name", "role"}
    assert set(changes) <= allowed, set(changes) - allowed
    assignments = ", ".join(f"{column} = ${i}" for i, column in enumerate(changes, start=2))
    row = await conn.fetchrow(
        f"UPDATE users SET {assignments}, version = version + 1, updated_at = now() "
        f"WHERE id = $1 RETURNING {USER_COLUMNS}",
        user_id,
        *changes.values(),
    )
    return dict(row)


async def set_password_hash(conn: asyncpg.Connection, user_id: str, password_hash: str) -> None:
    # Not a visible change of the user: no version bump, no updateUser event.
    await conn.execute("UPDATE users SET password_hash = $2 WHERE id = $1", user_id, password_hash)


async def list_users(conn: asyncpg.Connection, search: str | None, limit: int, offset: int) -> tuple[list[Record], int]:
    pattern = like_pattern(search) if search else "%"
    total = await conn.fetchval("SELECT count(*) FROM users WHERE lower(username) LIKE $1", pattern)
    rows = await conn.fetch(
        f"SELECT {USER_COLUMNS} FROM users WHERE lower(username) LIKE $1 ORDER BY lower(username) LIMIT $2 OFFSET $3",
        pattern,
        limit,
        offset,
    )
    return [dict(r) for r in rows], total


# -- sessions ---------------------------------------------------------------------------------------


async def insert_session(
    conn: asyncpg.Connection, session_id: str, user_id: str, refresh_jti: str, expires_at: datetime
) -> None:
    await conn.execute(
        "INSERT INTO sessions (id, user_id, refresh_jti, expires_at) VALUES ($1, $2, $3, $4)",
        session_id,
        user_id,
        refresh_jti,
        expires_at,
    )


async def lock_session(conn: asyncpg.Connection, session_id: str) -> Record | None:
    return _row(
        await conn.fetchrow(
            "SELECT id, user_id, refresh_jti, expires_at, revoked_at FROM sessions WHERE id = $1 FOR UPDATE",
            session_id,
        )
    )


async def rotate_session(conn: asyncpg.Connection, session_id: str, refresh_jti: str, expires_at: datetime) -> None:
    await conn.execute(
        "UPDATE sessions SET refresh_jti = $2, expires_at = $3, last_used_at = now() WHERE id = $1",
        session_id,
        refresh_jti,
        expires_at,
    )


async def revoke_session(conn: asyncpg.Connection, session_id: str, reason: str) -> None:
    await conn.execute(
        "UPDATE sessions SET revoked_at = now(), revoked_reason = $2 WHERE id = $1 AND revoked_at IS NULL",
        session_id,
        reason,
    )


async def live_session_ids(conn: asyncpg.Connection, user_id: str, *, except_id: str | None = None) -> list[str]:
    rows = await conn.fetch(
        "SELECT id FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now() "
        "AND id IS DISTINCT FROM $2",
        user_id,
        except_id,
    )
    return [r["id"] for r in rows]


async def revoke_sessions(conn: asyncpg.Connection, session_ids: list[str], reason: str) -> None:
    await conn.execute(
        "UPDATE sessions SET revoked_at = now(), revoked_reason = $2 WHERE id = ANY($1::uuid[]) AND revoked_at IS NULL",
        session_ids,
        reason,
    )


async def users_page(conn: asyncpg.Connection, after: str | None, limit: int) -> list[Record]:
    """Users in id order after `after` (a snapshot page: `snapshot_users` in service.py)."""
    rows = await conn.fetch(
        f"SELECT {USER_COLUMNS} FROM users WHERE $1::uuid IS NULL OR id > $1 ORDER BY id LIMIT $2", after, limit
    )
    return [dict(r) for r in rows]


# -- what `swarm check` reads here (auth_svc holds the users every replica copies) ----------------------

CHECK_QUERIES = {"users": USER_ROWS_SQL}
