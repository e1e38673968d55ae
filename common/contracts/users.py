"""The user replica: what every service that keeps a copy of auth_svc's users agrees on.

A table `users` with the columns of `UserReplicaSchema`, kept by applying newUser and updateUser with
a version-guarded upsert (`common.db.upserts`), so duplicates and late events change nothing. Three
services keep one, so its schema and event handler live here, once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg
from marshmallow import EXCLUDE, Schema, fields

from common.core.envelope import Event
from common.core.formats import Uuid
from common.db.upserts import upsert_if_newer, upsert_many_if_newer
from common.messaging.handlers import BulkHandler


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


async def _apply_one_user(event: Event, conn: asyncpg.Connection) -> None:
    await upsert_if_newer(conn, "users", _user_row(event))


async def _apply_users(events: Sequence[Event], conn: asyncpg.Connection) -> None:
    await upsert_many_if_newer(conn, "users", [_user_row(event) for event in events])


# Handler for newUser and updateUser: both carry the whole user, so one version-guarded upsert; a run of
# them (a burst of sign-ups, a rebuild) is upserted in one round trip.
apply_user = BulkHandler(one=_apply_one_user, many=_apply_users)

USER_REPLICA_HANDLERS = {"newUser": apply_user, "updateUser": apply_user}

# What `swarm check` compares of a user replica with auth_svc's own users: the same columns on both
# sides, so each service's store declares this query of its own `users` table (`check_queries`).
USER_ROWS_SQL = "SELECT id, username, email, role, version FROM users ORDER BY id"


async def current_usernames(db: Any, user_ids: Iterable[str | None]) -> dict[str, str]:
    """user id → username, from the users replica, for the ids it knows (`db`: pool or connection)."""
    ids = sorted({user_id for user_id in user_ids if user_id is not None})
    if not ids:
        return {}
    rows = await db.fetch("SELECT id, username FROM users WHERE id = ANY($1::uuid[]) AND username IS NOT NULL", ids)
    return {r["id"]: r["username"] for r in rows}
