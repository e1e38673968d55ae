"""project_svc use cases: projects, memberships and cards. Rules and permissions live here.

Visibility: whoever is not an active member of a project gets 404 for it and everything in it, as if
it did not exist (SPEC §3: never leak other people's projects). Members who may see but not do get 403.

Every change and its events commit in one transaction (the outbox). Writes lock the project row first
(`store.lock_project`), so rows of one project are always locked in the same order, and a kick cannot
interleave with a card write that checked the assignee's membership.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import structlog

from common.core.envelope import Event
from common.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from common.core.formats import is_uuid
from common.core.ids import decode_keyset, encode_keyset
from common.messaging.outbox import enqueue
from common.service.runtime import Runtime
from common.service.tokens import Principal
from project_svc import events, store
from project_svc.store import LockMode, Record

log = structlog.get_logger("project")


def _check_ids(*ids: str, what: str) -> None:
    """Path ids that are not UUIDs name nothing: 404, like any unknown id (never a 500)."""
    if not all(is_uuid(value) for value in ids):
        raise NotFound(f"{what} not found")


def _changed(current: Record, wanted: dict[str, Any]) -> dict[str, Any]:
    return {field: value for field, value in wanted.items() if current[field] != value}


class ProjectService:
    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime

    # -- projects ----------------------------------------------------------------------------------

    async def create_project(self, actor: Principal, title: str, description: str) -> Record:
        project_id = str(uuid.uuid4())
        async with self._rt.db().acquire() as conn, conn.transaction():
            project = await store.insert_project(conn, project_id, title, description, actor.user_id)
            owner = await store.insert_owner(conn, project_id, actor.user_id)
            await enqueue(
                conn,
                [
                    events.project_event("newProject", project, actor),
                    events.member_event(owner, actor),
                    *events.project_created_notice(project, actor),
                ],
            )
            detail = await self._detail(conn, project)
        log.info("project.created", project_id=project_id)
        return detail

    async def list_projects(
        self, actor: Principal, search: str | None, limit: int, offset: int
    ) -> tuple[list[Record], int]:
        async with self._rt.db().acquire() as conn:
            return await store.list_projects(conn, actor.user_id, search, limit, offset)

    async def get_project(self, actor: Principal, project_id: str) -> Record:
        _check_ids(project_id, what="project")
        async with self._rt.db().acquire() as conn:
            project = await store.project_as_member(conn, project_id, actor.user_id)
            if project is None:
                raise NotFound("project not found")
            return await self._detail(conn, project)

    async def update_project(self, actor: Principal, project_id: str, wanted: dict[str, Any]) -> Record:
        _check_ids(project_id, what="project")
        async with self._rt.db().acquire() as conn, conn.transaction():
            project = await self._enter(conn, project_id, actor, "UPDATE", owner_only=True)
            changes = _changed(project, wanted)
            if changes:  # a PATCH that changes nothing is not a change: no version, no event
                project = await store.update_project(conn, project_id, changes)
                await enqueue(conn, [events.project_event("updateProject", project, actor)])
            return await self._detail(conn, project)

    async def delete_project(self, actor: Principal, project_id: str) -> None:
        _check_ids(project_id, what="project")
        async with self._rt.db().acquire() as conn, conn.transaction():
            project = await self._enter(conn, project_id, actor, "UPDATE", owner_only=True)
            member_ids = await store.active_member_ids(conn, project_id)
            deleted = await store.delete_project(conn, project_id)
            await enqueue(
                conn,
                [events.project_deleted(deleted, actor), *events.project_deleted_notice(project, member_ids, actor)],
            )
        log.info("project.deleted", project_id=project_id)

    async def _detail(self, conn: asyncpg.Connection, project: Record) -> Record:
        return {**project, "members": await store.list_members(conn, project["id"])}

    async def _enter(
        self, conn: asyncpg.Connection, project_id: str, actor: Principal, lock: LockMode, *, owner_only: bool = False
    ) -> Record:
        """Lock the project and check the caller may act on it: 404 for outsiders, 403 for non-owners."""
        project = await store.lock_project(conn, project_id, lock)
        # Read after the lock: a membership change that committed while we waited is seen.
        role = await store.member_role(conn, project_id, actor.user_id) if project is not None else None
        if project is None or role is None:
            raise NotFound("project not found")
        if owner_only and role != "owner":
            raise Forbidden("only the project owner can do this")
        return project

    # -- memberships -------------------------------------------------------------------------------

    async def add_member(self, actor: Principal, project_id: str, user_id: str) -> Record:
        _check_ids(project_id, what="project")
        async with self._rt.db().acquire() as conn, conn.transaction():
            project = await self._enter(conn, project_id, actor, "UPDATE", owner_only=True)
            if await store.get_user(conn, user_id) is None:
                raise NotFound("user not found", code="user_not_found")
            member = await store.add_member(conn, project_id, user_id)
            if member is None:
                raise Conflict("user is already a member of this project", code="already_member")
            await enqueue(
                conn,
                [events.member_event(member, actor), *events.member_added_notice(project, user_id, actor)],
            )
            view = await store.member_with_username(conn, project_id, user_id)
        log.info("project.member_added", project_id=project_id, member_id=user_id, version=member["version"])
        return view

    async def remove_member(self, actor: Principal, project_id: str, user_id: str) -> None:
        """Kick: the membership turns inactive (version + 1) and the member's cards here are unassigned."""
        _check_ids(project_id, user_id, what="member")
        async with self._rt.db().acquire() as conn, conn.transaction():
            project = await self._enter(conn, project_id, actor, "UPDATE", owner_only=True)
            if user_id == project["owner_id"]:
                raise Conflict("the project owner cannot be removed", code="owner_cannot_be_removed")
            member = await store.remove_member(conn, project_id, user_id)
            if member is None:
                raise NotFound("member not found")
            unassigned = await store.unassign_cards(conn, project_id, user_id)
            await enqueue(
                conn,
                [
                    events.member_event(member, actor),
                    *(events.card_event("updateCard", card, actor) for card in unassigned),
                    *events.member_removed_notice(project, user_id, actor),
                ],
            )
        log.info("project.member_removed", project_id=project_id, member_id=user_id, unassigned=len(unassigned))

    # -- cards -------------------------------------------------------------------------------------

    async def create_card(self, actor: Principal, project_id: str, body: dict[str, Any]) -> Record:
        _check_ids(project_id, what="project")
        card_id = str(uuid.uuid4())
        async with self._rt.db().acquire() as conn, conn.transaction():
            project = await self._enter(conn, project_id, actor, "SHARE")
            assignee = body.get("assignee_id")
            await self._check_assignee(conn, project_id, assignee)
            values = {**body, "assignee_id": assignee, "id": card_id, "project_id": project_id}
            card = await store.insert_card(conn, {**values, "created_by": actor.user_id})
            member_ids = await store.active_member_ids(conn, project_id)
            notices = events.card_created_notice(project, card, member_ids, actor)
            if assignee is not None:
                notices += events.card_assigned_notice(card, actor)
            await enqueue(conn, [events.card_event("newCard", card, actor), *notices])
        log.info("card.created", card_id=card_id, project_id=project_id)
        return card

    async def list_cards(
        self, actor: Principal, project_id: str | None, query: dict[str, Any]
    ) -> tuple[list[Record], str | None]:
        """Newest first; `project_id` None means every project the caller is an active member of."""
        if project_id is not None:
            _check_ids(project_id, what="project")
        after = decode_keyset(query["cursor"]) if query.get("cursor") else None
        filters = dict(query)
        if filters.get("assignee_id") == "me":
            filters["assignee_id"] = actor.user_id
        limit = query["limit"]
        async with self._rt.db().acquire() as conn:
            if project_id is not None and await store.project_as_member(conn, project_id, actor.user_id) is None:
                raise NotFound("project not found")
            cards = await store.list_cards(
                conn, project_id=project_id, member_id=actor.user_id, filters=filters, after=after, limit=limit + 1
            )
        if len(cards) <= limit:
            return cards, None
        last = cards[limit - 1]
        return cards[:limit], encode_keyset(last["created_at"], last["id"])

    async def get_card(self, actor: Principal, card_id: str) -> Record:
        _check_ids(card_id, what="card")
        async with self._rt.db().acquire() as conn:
            card = await store.card_as_member(conn, card_id, actor.user_id)
        if card is None:
            raise NotFound("card not found")
        return card

    async def update_card(self, actor: Principal, card_id: str, wanted: dict[str, Any]) -> Record:
        async with self._rt.db().acquire() as conn, conn.transaction():
            _project, card = await self._enter_card(conn, card_id, actor)
            changes = _changed(card, wanted)
            if not changes:
                return card
            if "assignee_id" in changes:
                await self._check_assignee(conn, card["project_id"], changes["assignee_id"])
            updated = await store.update_card(conn, card_id, changes)
            batch: list[Event] = [events.card_event("updateCard", updated, actor)]
            if "status" in changes:
                batch += [events.card_status_changed(updated, card["status"], actor)]
                batch += events.card_status_notice(updated, card["status"], actor)
            if changes.get("assignee_id") is not None:
                batch += events.card_assigned_notice(updated, actor)
            await enqueue(conn, batch)
        log.info("card.updated", card_id=card_id, fields=sorted(changes), version=updated["version"])
        return updated

    async def delete_card(self, actor: Principal, card_id: str) -> None:
        async with self._rt.db().acquire() as conn, conn.transaction():
            project, card = await self._enter_card(conn, card_id, actor)
            if actor.user_id not in (card["created_by"], project["owner_id"]):
                raise Forbidden("only the card's creator or the project owner can delete it")
            deleted = await store.delete_card(conn, card_id)
            await enqueue(conn, [events.card_deleted(deleted, actor)])
        log.info("card.deleted", card_id=card_id, project_id=card["project_id"])

    async def _enter_card(self, conn: asyncpg.Connection, card_id: str, actor: Principal) -> tuple[Record, Record]:
        """Lock the card's project (SHARE) then the card, after checking the caller is a member: 404 otherwise."""
        _check_ids(card_id, what="card")
        project_id = await store.card_project_id(conn, card_id)  # never changes: safe to read unlocked
        if project_id is None:
            raise NotFound("card not found")
        try:
            project = await self._enter(conn, project_id, actor, "SHARE")
        except NotFound:
            raise NotFound("card not found") from None
        card = await store.get_card(conn, card_id, for_update=True)
        if card is None:  # deleted while we waited for the lock
            raise NotFound("card not found")
        return project, card

    async def _check_assignee(self, conn: asyncpg.Connection, project_id: str, assignee_id: str | None) -> None:
        if assignee_id is not None and await store.member_role(conn, project_id, assignee_id) is None:
            raise ValidationFailed(details={"assignee_id": ["is not a member of this project"]})


# -- snapshots (swarm republish; declared in manifest.py) -----------------------------------------------


async def snapshot_projects(conn: asyncpg.Connection, after: str | None, limit: int) -> tuple[list[Event], str | None]:
    """Each project, then all its memberships (removed ones as removeMember), with their versions."""
    projects = await store.projects_page(conn, after, limit)
    memberships = await store.memberships_of(conn, [p["id"] for p in projects])
    batch = [events.project_event("newProject", project, None) for project in projects]
    batch += [events.member_event(member, None) for member in memberships]
    return batch, projects[-1]["id"] if len(projects) == limit else None


async def snapshot_cards(conn: asyncpg.Connection, after: str | None, limit: int) -> tuple[list[Event], str | None]:
    cards = await store.cards_page(conn, after, limit)
    return [events.card_event("newCard", card, None) for card in cards], cards[-1]["id"] if len(
        cards
    ) == limit else None
