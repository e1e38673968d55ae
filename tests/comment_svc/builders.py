"""A stand-in for project_svc: it keeps the source state (projects, members, cards) and produces the
events project_svc publishes for each change, field by field as docs/events.md fixes them.

comment_svc builds its replicas from these events only, so the tests drive it with them and compare
its replica tables with `expected_replica()`, the state the source ended in.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from comment_svc.consumers import HANDLERS
from common.core.envelope import Event

PRODUCER = "project_svc"


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _event(event_type: str, data: dict[str, Any], actor_id: str | None) -> Event:
    return Event.new(event_type, dict(data), producer=PRODUCER, actor_id=actor_id)


@dataclass
class ProjectSource:
    projects: dict[str, dict[str, Any]] = field(default_factory=dict)
    deleted_projects: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> deleteProject data
    members: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    cards: dict[str, dict[str, Any]] = field(default_factory=dict)
    deleted_cards: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> deleteCard data

    # -- projects -----------------------------------------------------------------------------------

    def create_project(self, owner_id: str, title: str | None = None) -> tuple[dict[str, Any], list[Event]]:
        """newProject, then addMember for the owner (role owner, membership version 1)."""
        now = _now()
        project: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "title": title or f"project {uuid.uuid4().hex[:6]}",
            "description": "",
            "owner_id": owner_id,
            "created_at": now,
            "updated_at": now,
            "version": 1,
        }
        self.projects[project["id"]] = project
        events = [_event("newProject", project, owner_id), *self._membership(project["id"], owner_id, "owner", True)]
        return project, events

    def update_project(self, project_id: str, **changes: Any) -> list[Event]:
        project = self.projects[project_id]
        project.update(changes, updated_at=_now(), version=project["version"] + 1)
        return [_event("updateProject", project, project["owner_id"])]

    def delete_project(self, project_id: str) -> list[Event]:
        """deleteProject only: consumers drop the project's members and cards themselves."""
        project = self.projects.pop(project_id)
        data = {"id": project_id, "owner_id": project["owner_id"], "version": project["version"] + 1}
        self.deleted_projects[project_id] = data
        for key in [key for key in self.members if key[0] == project_id]:
            del self.members[key]
        for card_id in [c["id"] for c in self.cards.values() if c["project_id"] == project_id]:
            del self.cards[card_id]
        return [_event("deleteProject", data, project["owner_id"])]

    # -- members ------------------------------------------------------------------------------------

    def _membership(self, project_id: str, user_id: str, role: str, active: bool) -> list[Event]:
        previous = self.members.get((project_id, user_id))
        membership = {
            "project_id": project_id,
            "user_id": user_id,
            "role": role,
            "version": previous["version"] + 1 if previous else 1,
            "active": active,
        }
        self.members[(project_id, user_id)] = membership
        owner = self.projects[project_id]["owner_id"]
        return [_event("addMember" if active else "removeMember", membership, owner)]

    def add_member(self, project_id: str, user_id: str) -> list[Event]:
        return self._membership(project_id, user_id, "member", True)

    def remove_member(self, project_id: str, user_id: str) -> list[Event]:
        """removeMember, then updateCard for each card of theirs in the project that gets unassigned."""
        events = self._membership(project_id, user_id, "member", False)
        for card in list(self.cards.values()):
            if card["project_id"] == project_id and card["assignee_id"] == user_id:
                events += self.update_card(card["id"], assignee_id=None)
        return events

    # -- cards --------------------------------------------------------------------------------------

    def create_card(
        self,
        project_id: str,
        created_by: str,
        *,
        assignee_id: str | None = None,
        status: str = "todo",
        title: str | None = None,
    ) -> tuple[dict[str, Any], list[Event]]:
        now = _now()
        card: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "project_id": project_id,
            "title": title or f"card {uuid.uuid4().hex[:6]}",
            "description": "",
            "status": status,
            "priority": "medium",
            "due_date": None,
            "assignee_id": assignee_id,
            "created_by": created_by,
            "created_at": now,
            "updated_at": now,
            "version": 1,
        }
        self.cards[card["id"]] = card
        return card, [_event("newCard", card, created_by)]

    def update_card(self, card_id: str, *, actor_id: str | None = None, **changes: Any) -> list[Event]:
        """updateCard; a status change also publishes changeCardStatus with the same version."""
        card = self.cards[card_id]
        old_status = card["status"]
        card.update(changes, updated_at=_now(), version=card["version"] + 1)
        events = [_event("updateCard", card, actor_id)]
        if card["status"] != old_status:
            status_change = {**card, "old_status": old_status, "new_status": card["status"]}
            events.append(_event("changeCardStatus", status_change, actor_id))
        return events

    def delete_card(self, card_id: str, *, actor_id: str | None = None) -> list[Event]:
        card = self.cards.pop(card_id)
        data = {"id": card_id, "project_id": card["project_id"], "version": card["version"] + 1}
        self.deleted_cards[card_id] = data
        return [_event("deleteCard", data, actor_id)]

    # -- what comment_svc's replica must end as -----------------------------------------------------

    def expected_replica(self) -> dict[str, Any]:
        """The source state in the shape of `replica_snapshot`."""
        projects: dict[str, Any] = {
            p["id"]: {"title": p["title"], "owner_id": p["owner_id"], "version": p["version"], "deleted": False}
            for p in self.projects.values()
        }
        for d in self.deleted_projects.values():
            projects[d["id"]] = {"owner_id": d["owner_id"], "version": d["version"], "deleted": True}
        members = {
            key: {"role": m["role"], "version": m["version"], "active": m["active"]} for key, m in self.members.items()
        }
        cards: dict[str, Any] = {
            c["id"]: {
                "project_id": c["project_id"],
                "title": c["title"],
                "status": c["status"],
                "created_by": c["created_by"],
                "assignee_id": c["assignee_id"],
                "version": c["version"],
                "deleted": False,
            }
            for c in self.cards.values()
        }
        for d in self.deleted_cards.values():
            if d["project_id"] not in self.deleted_projects:
                cards[d["id"]] = {"deleted": True, "version": d["version"]}
        return {"projects": projects, "members": members, "cards": cards}


async def replica_snapshot(conn: asyncpg.Connection) -> dict[str, Any]:
    """comment_svc's replica tables, normalised to what must equal the source whatever the event order.

    Tombstones are compared by version only (their other columns depend on what arrived before the
    delete). A deleted project's cards must be hidden (deleted, or never written): they are left out.
    """
    projects: dict[str, Any] = {}
    for r in await conn.fetch("SELECT * FROM projects"):
        if r["deleted"]:
            projects[r["id"]] = {"owner_id": r["owner_id"], "version": r["version"], "deleted": True}
        else:
            projects[r["id"]] = {
                "title": r["title"],
                "owner_id": r["owner_id"],
                "version": r["version"],
                "deleted": False,
            }
    members = {
        (r["project_id"], r["user_id"]): {"role": r["role"], "version": r["version"], "active": r["active"]}
        for r in await conn.fetch("SELECT * FROM members")
    }
    cards: dict[str, Any] = {}
    for r in await conn.fetch("SELECT * FROM cards"):
        if projects.get(r["project_id"], {}).get("deleted"):
            assert r["deleted"], f"card {r['id']} of a deleted project is still visible"
            continue
        if r["deleted"]:
            cards[r["id"]] = {"deleted": True, "version": r["version"]}
        else:
            cards[r["id"]] = {
                key: r[key]
                for key in (
                    "project_id",
                    "title",
                    "status",
                    "created_by",
                    "assignee_id",
                    "version",
                    "deleted",
                )
            }
    return {"projects": projects, "members": members, "cards": cards}


async def apply_directly(conn: asyncpg.Connection, events: Iterable[Event]) -> None:
    """Run comment_svc's handlers as its worker does (one transaction each), minus the inbox dedup."""
    for event in events:
        async with conn.transaction():
            await HANDLERS[event.type](event, conn)
