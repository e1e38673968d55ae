"""PostgreSQL connections: the asyncpg pool of a service, and single connections with the same codecs."""

from __future__ import annotations

import asyncpg
import orjson


async def _init_connection(conn: asyncpg.Connection) -> None:
    # UUIDs as plain strings and JSON via orjson: rows go straight into responses and events.
    await conn.set_type_codec("uuid", encoder=str, decoder=str, schema="pg_catalog", format="text")
    for json_type in ("json", "jsonb"):
        await conn.set_type_codec(
            json_type,
            encoder=lambda value: orjson.dumps(value).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


def like_pattern(search: str) -> str:
    """A case-insensitive `LIKE` pattern matching `search` anywhere (compare with `lower(column)`).

    `%`, `_` and `\\` in the user's text are escaped, so they match themselves, not anything.
    """
    escaped = search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool release: no reset query. asyncpg's default (advisory unlock all, CLOSE ALL, UNLISTEN *,
    RESET ALL) costs a round trip on every release, for session state this code never leaves on a
    pooled connection: no SET, no LISTEN (the outbox listens on its own connection), only transaction
    advisory locks. asyncpg still rolls back a transaction left open before calling this."""


async def create_pool(dsn: str, min_size: int = 2, max_size: int = 20) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, reset=_keep_session
    )
    assert pool is not None
    return pool


async def connect(dsn: str) -> asyncpg.Connection:
    """A single connection with the same codecs as the pool's (for CLIs and listeners)."""
    conn = await asyncpg.connect(dsn)
    await _init_connection(conn)
    return conn
