"""The `newNotif` event: how a producing service asks notif_svc to tell people something.

Three services produce it (auth_svc, project_svc, comment_svc) and notif_svc consumes it, so its
shape is defined once, here. Who receives which notice is each producer's decision (SPEC §3
Notifications); this module only enforces the rule that holds for every type: the actor who caused
a notice does not receive it, except for the types that confirm the actor's own action.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from marshmallow import EXCLUDE, Schema, fields, validate

from common.core.envelope import Event

NOTICE_EVENT = "newNotif"
NOTICE_TYPES = (
    "registration",
    "project_created",
    "project_deleted",
    "member_added",
    "member_removed",
    "card_created",
    "card_status_changed",
    "card_assigned",
    "comment_created",
    "card_due_soon",
)
# These confirm the actor's own action, so the actor is (the only) recipient.
SELF_ADDRESSED = frozenset({"registration", "project_created"})
# The actor of notices nobody caused (reminders): the system itself, with no user id.
SYSTEM_ACTOR: dict[str, Any] = {"id": None, "username": "taskswarm"}


class ActorSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    id = fields.Str(required=True, allow_none=True)  # None: SYSTEM_ACTOR
    username = fields.Str(load_default=None, allow_none=True)


class NoticeSchema(Schema):
    """`newNotif` data, as notif_svc validates it."""

    class Meta:
        unknown = EXCLUDE

    type = fields.Str(required=True, validate=validate.OneOf(NOTICE_TYPES))
    recipients = fields.List(fields.Str(), required=True, validate=validate.Length(min=1))
    actor = fields.Nested(ActorSchema, required=True)
    project_id = fields.Str(load_default=None, allow_none=True)
    card_id = fields.Str(load_default=None, allow_none=True)
    comment_id = fields.Str(load_default=None, allow_none=True)
    message = fields.Str(required=True)


def notice(
    kind: str,
    *,
    recipients: Iterable[str | None],
    actor: dict[str, Any],
    message: str,
    producer: str,
    project_id: str | None = None,
    card_id: str | None = None,
    comment_id: str | None = None,
) -> Event | None:
    """The newNotif event for `recipients` (deduplicated, the actor left out unless self-addressed).

    None when nobody is left to notify: an event nobody receives is not worth publishing.
    """
    if kind not in NOTICE_TYPES:
        raise ValueError(f"unknown notice type {kind!r}")
    actor_id = actor["id"]
    chosen: list[str] = []
    for recipient in recipients:
        if recipient is None or recipient in chosen:
            continue
        if recipient == actor_id and kind not in SELF_ADDRESSED:
            continue
        chosen.append(recipient)
    if not chosen:
        return None
    data = {
        "type": kind,
        "recipients": chosen,
        "actor": {"id": actor_id, "username": actor.get("username")},
        "project_id": project_id,
        "card_id": card_id,
        "comment_id": comment_id,
        "message": message,
    }
    return Event.new(NOTICE_EVENT, data, producer=producer, actor_id=actor_id or "")
