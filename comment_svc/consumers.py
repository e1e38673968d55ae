"""comment_svc's event handlers: the replicas of users, projects, members and cards it decides from.

Events arrive at least once and in any order across streams and consumer replicas, so each handler is
correct when applied twice and in any order (docs/events.md "Why replicas stay exact"):
- entity events are version-guarded upserts (an older or repeated event writes nothing);
- deletes are sticky tombstones: `deleted` is set unconditionally and no update ever writes it, so a
  late update, whatever its version, never brings a card or project back;
- a tombstoned project swallows later member and card events of its own, and its delete drops its
  members, hides its cards and deletes its comments (which publishes nothing: they are gone for all).
"""

from __future__ import annotations

import asyncpg
import structlog

from comment_svc import store
from comment_svc.schemas import (
    CardDeletedEventSchema,
    CardEventSchema,
    MemberEventSchema,
    ProjectDeletedEventSchema,
    ProjectEventSchema,
)
from common.contracts.users import USER_REPLICA_HANDLERS
from common.core.envelope import Event
from common.messaging.handlers import Handler

log = structlog.get_logger("comment.replica")

_project = ProjectEventSchema()
_project_deleted = ProjectDeletedEventSchema()
_member = MemberEventSchema()
_card = CardEventSchema()
_card_deleted = CardDeletedEventSchema()


async def apply_project(event: Event, conn: asyncpg.Connection) -> None:
    """newProject, updateProject."""
    await store.upsert_project(conn, _project.load(event.data))


async def apply_project_deleted(event: Event, conn: asyncpg.Connection) -> None:
    data = _project_deleted.load(event.data)
    await store.lock_project(conn, data["id"], exclusive=True)
    await store.tombstone_project(conn, data["id"], data["owner_id"], data["version"])
    dropped = await store.drop_project_contents(conn, data["id"])
    log.info("replica.project_deleted", project_id=data["id"], version=data["version"], **dropped)


async def apply_membership(event: Event, conn: asyncpg.Connection) -> None:
    """addMember, removeMember: both carry the membership's state (`active`) and its own version."""
    membership = _member.load(event.data)
    await store.lock_project(conn, membership["project_id"], exclusive=False)
    if await store.project_tombstoned(conn, membership["project_id"]):
        return
    await store.upsert_member(conn, membership)


async def apply_card(event: Event, conn: asyncpg.Connection) -> None:
    """newCard, updateCard, changeCardStatus (the latter repeats updateCard's version: a no-op after it)."""
    card = _card.load(event.data)
    await store.lock_project(conn, card["project_id"], exclusive=False)
    if await store.project_tombstoned(conn, card["project_id"]):
        return
    await store.upsert_card(conn, card)


async def apply_card_deleted(event: Event, conn: asyncpg.Connection) -> None:
    data = _card_deleted.load(event.data)
    comments = await store.tombstone_card(conn, data["id"], data["project_id"], data["version"])
    log.info("replica.card_deleted", card_id=data["id"], version=data["version"], comments=comments)


HANDLERS: dict[str, Handler] = {
    **USER_REPLICA_HANDLERS,
    "newProject": apply_project,
    "updateProject": apply_project,
    "deleteProject": apply_project_deleted,
    "addMember": apply_membership,
    "removeMember": apply_membership,
    "newCard": apply_card,
    "updateCard": apply_card,
    "changeCardStatus": apply_card,
    "deleteCard": apply_card_deleted,
}
