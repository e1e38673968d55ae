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


async def upsert_if_newer(
    conn: asyncpg.Connection, table: str, row: Mapping[str, Any], *, key: Sequence[str] = ("id",)
) -> bool:
    """Insert `row`, or update the existing one if `row["version"]` is newer. True if it was written.

    `table` and the column names come from code, never from event data (they are interpolated).
    """
    columns = list(row)
    placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    updates = ", ".join(f"{column} = excluded.{column}" for column in columns if column not in key)
    written = await conn.fetchval(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders}) "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates} "
        f"WHERE {table}.version < excluded.version RETURNING true",
        *row.values(),
    )
    return bool(written)


class UserReplicaSchema(Schema):
    """What a service keeps of a user (from newUser/updateUser); extra fields are ignored."""

    class Meta:
        unknown = EXCLUDE

    id = fields.UUID(required=True)
    username = fields.Str(required=True)
    email = fields.Str(load_default=None)
    full_name = fields.Str(load_default=None)
    role = fields.Str(load_default="user")
    version = fields.Int(required=True, strict=True)
    created_at = fields.AwareDateTime(load_default=None)
    updated_at = fields.AwareDateTime(load_default=None)


_user_replica = UserReplicaSchema()


async def replicate_user(event: Event, conn: asyncpg.Connection) -> None:
    """Handler for newUser and updateUser: both carry the whole user, so one version-guarded upsert."""
    user = _user_replica.load(event.data)
    user["id"] = str(user["id"])
    await upsert_if_newer(conn, "users", user)


USER_REPLICA_HANDLERS = {"newUser": replicate_user, "updateUser": replicate_user}
