"""The events project_svc publishes (docs/events.md), built from store rows, and its notices.

Entity events are dumped with the schemas of `schemas.py`, the same ones the API answers with, so an
event's fields and formats are exactly those of the entity a client reads. Who receives which notice
is decided here (SPEC §3 Notifications); `common.contracts.notices.notice` drops the actor and empty notices.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC
from typing import Any

from common.contracts.notices import SYSTEM_ACTOR, notice
from common.core.envelope import Event
from common.service.tokens import Principal
from project_svc.schemas import (
    CardDeletedEventSchema,
    CardEventSchema,
    CardStatusEventSchema,
    MemberEventSchema,
    ProjectDeletedEventSchema,
    ProjectEventSchema,
)

PRODUCER = "project_svc"

Record = dict[str, Any]

_project = ProjectEventSchema()
_project_deleted = ProjectDeletedEventSchema()
_member = MemberEventSchema()
_card = CardEventSchema()
_card_status = CardStatusEventSchema()
_card_deleted = CardDeletedEventSchema()


def _event(kind: str, data: dict[str, Any], actor: Principal | None) -> Event:
    # No actor: a snapshot re-published by an operator (swarm republish), not anyone's change.
    return Event.new(kind, data, producer=PRODUCER, actor_id=actor.user_id if actor else "")


def project_event(kind: str, project: Record, actor: Principal | None) -> Event:
    return _event(kind, _project.dump(project), actor)


def project_deleted(deleted: Record, actor: Principal) -> Event:
    # The version after deletion is one past the last, so a replica's tombstone outranks every update.
    return _event("deleteProject", _project_deleted.dump({**deleted, "version": deleted["version"] + 1}), actor)


def member_event(member: Record, actor: Principal | None) -> Event:
    kind = "addMember" if member["active"] else "removeMember"
    return _event(kind, _member.dump(member), actor)


def card_event(kind: str, card: Record, actor: Principal | None) -> Event:
    return _event(kind, _card.dump(card), actor)


def card_status_changed(card: Record, old_status: str, actor: Principal) -> Event:
    data = _card_status.dump({**card, "old_status": old_status, "new_status": card["status"]})
    return _event("changeCardStatus", data, actor)


def card_deleted(deleted: Record, actor: Principal) -> Event:
    return _event("deleteCard", _card_deleted.dump({**deleted, "version": deleted["version"] + 1}), actor)


# -- notices ----------------------------------------------------------------------------------------


def _notice(
    kind: str,
    actor: Principal,
    recipients: Iterable[str | None],
    message: str,
    project_id: str,
    card_id: str | None = None,
) -> list[Event]:
    event = notice(
        kind,
        recipients=recipients,
        actor={"id": actor.user_id, "username": actor.username},
        message=message,
        producer=PRODUCER,
        project_id=project_id,
        card_id=card_id,
    )
    return [event] if event is not None else []


def project_created_notice(project: Record, actor: Principal) -> list[Event]:
    message = f'{actor.username} created project "{project["title"]}"'
    return _notice("project_created", actor, [actor.user_id], message, project["id"])


def project_deleted_notice(project: Record, member_ids: Iterable[str], actor: Principal) -> list[Event]:
    message = f'{actor.username} deleted project "{project["title"]}"'
    return _notice("project_deleted", actor, member_ids, message, project["id"])


def member_added_notice(project: Record, user_id: str, actor: Principal) -> list[Event]:
    message = f'{actor.username} added you to project "{project["title"]}"'
    return _notice("member_added", actor, [user_id], message, project["id"])


def member_removed_notice(project: Record, user_id: str, actor: Principal) -> list[Event]:
    message = f'{actor.username} removed you from project "{project["title"]}"'
    return _notice("member_removed", actor, [user_id], message, project["id"])


def card_created_notice(project: Record, card: Record, member_ids: Iterable[str], actor: Principal) -> list[Event]:
    message = f'{actor.username} created card "{card["title"]}" in project "{project["title"]}"'
    return _notice("card_created", actor, member_ids, message, project["id"], card["id"])


def card_assigned_notice(card: Record, actor: Principal) -> list[Event]:
    message = f'{actor.username} assigned you to card "{card["title"]}"'
    return _notice("card_assigned", actor, [card["assignee_id"]], message, card["project_id"], card["id"])


def card_status_notice(card: Record, old_status: str, actor: Principal) -> list[Event]:
    message = f'{actor.username} moved card "{card["title"]}" from {old_status} to {card["status"]}'
    recipients = [card["created_by"], card["assignee_id"]]
    return _notice("card_status_changed", actor, recipients, message, card["project_id"], card["id"])


def card_due_soon_notice(card: Record) -> list[Event]:
    """The reminder for the card's assignee; nobody caused it, so the actor is the system."""
    due = card["due_date"].astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    event = notice(
        "card_due_soon",
        recipients=[card["assignee_id"]],
        actor=SYSTEM_ACTOR,
        message=f'Card "{card["title"]}" is due {due}',
        producer=PRODUCER,
        project_id=card["project_id"],
        card_id=card["id"],
    )
    return [event] if event is not None else []
