"""Version-guarded upserts: how a replica stays exact when events arrive twice and out of order (SPEC §5).

Every write is guarded by the entity's `version` (it increases with every change at the source):
- `upsert_if_newer` inserts the row, or overwrites it only when the incoming version is higher,
  so an old event arriving late changes nothing, and the same event applied twice changes nothing;
- a delete is a tombstone: the row stays with `deleted = true` and the delete's version (the highest
  the entity ever had), so a late update, which carries a lower version, cannot resurrect it.
Replica tables therefore have a `version bigint NOT NULL` column and nullable payload columns (a
tombstone or an update may be the first thing a replica hears of an entity).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg


def _upsert_sql(table: str, columns: Sequence[str], key: Sequence[str]) -> str:
    placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    updates = ", ".join(f"{column} = excluded.{column}" for column in columns if column not in key)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders}) "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates} "
        f"WHERE {table}.version < excluded.version"
    )


async def upsert_if_newer(
    conn: asyncpg.Connection, table: str, row: Mapping[str, Any], *, key: Sequence[str] = ("id",)
) -> bool:
    """Insert `row`, or update the existing one if `row["version"]` is newer. True if it was written.

    `table` and the column names come from code, never from event data (they are interpolated).
    """
    written = await conn.fetchval(_upsert_sql(table, list(row), key) + " RETURNING true", *row.values())
    return bool(written)


async def upsert_many_if_newer(
    conn: asyncpg.Connection, table: str, rows: Sequence[Mapping[str, Any]], *, key: Sequence[str] = ("id",)
) -> None:
    """`upsert_if_newer` for each row in order, in one pipelined round trip (rows share their columns)."""
    if not rows:
        return
    columns = list(rows[0])
    await conn.executemany(_upsert_sql(table, columns, key), [[row[c] for c in columns] for row in rows])
