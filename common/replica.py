"""Replicas: local copies of another service's entities, kept by applying its events.

Events can arrive twice and out of order (SPEC §5). A replica stays exact because every write is
guarded by the entity's `version` (it increases with every change at the source):
- `upsert_if_newer` inserts the row, or overwrites it only when the incoming version is higher,
  so an old event arriving late changes nothing, and the same event applied twice changes nothing;
- a delete is a tombstone: the row stays with `deleted = true` and the delete's version (the highest
  the entity ever had), so a late update, which carries a lower version, cannot resurrect it.
Replica tables therefore have a `version bigint NOT NULL` column and nullable payload columns (a
tombstone or an update may be the first thing a replica hears of an entity).

The user replica is the same in every service that keeps one (a table `users` with the columns of
`UserReplicaSchema`), so its event handler lives here too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
from marshmallow import EXCLUDE, Schema, fields

from common.events import Event
from common.formats import Uuid
from common.worker import BulkHandler


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


class UserReplicaSchema(Schema):
    """What a service keeps of a user (from newUser/updateUser); extra fields are ignored."""

    class Meta:
        unknown = EXCLUDE

    id = Uuid(required=True)
    username = fields.Str(required=True)
    email = fields.Str(load_default=None)
    full_name = fields.Str(load_default=None)
    role = fields.Str(load_default="user")
    version = fields.Int(required=True, strict=True)
    created_at = fields.AwareDateTime(load_default=None)
    updated_at = fields.AwareDateTime(load_default=None)


_user_replica = UserReplicaSchema()


def _user_row(event: Event) -> dict[str, Any]:
    user: dict[str, Any] = _user_replica.load(event.data)
    return user


async def _replicate_one_user(event: Event, conn: asyncpg.Connection) -> None:
    await upsert_if_newer(conn, "users", _user_row(event))


async def _replicate_users(events: Sequence[Event], conn: asyncpg.Connection) -> None:
    await upsert_many_if_newer(conn, "users", [_user_row(event) for event in events])


# Handler for newUser and updateUser: both carry the whole user, so one version-guarded upsert; a run of
# them (a burst of sign-ups, a rebuild) is upserted in one round trip.
replicate_user = BulkHandler(one=_replicate_one_user, many=_replicate_users)

USER_REPLICA_HANDLERS = {"newUser": replicate_user, "updateUser": replicate_user}
