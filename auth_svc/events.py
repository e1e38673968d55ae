"""The events auth_svc publishes (docs/events.md), built from store rows, and its notices.

A user event carries the whole user (`UserEventSchema`) with its version, so every replica applies it
with a version-guarded upsert. Who receives which notice is decided here (SPEC §3 Notifications).
"""

from __future__ import annotations

from typing import Any

from auth_svc.schemas import UserEventSchema
from common.contracts.notices import notice
from common.core.envelope import Event

PRODUCER = "auth_svc"

_user_event = UserEventSchema()


def user_event(event_type: str, user: dict[str, Any], actor_id: str) -> Event:
    return Event.new(event_type, _user_event.dump(user), producer=PRODUCER, actor_id=actor_id)


def registration_notice(user: dict[str, Any]) -> Event:
    event = notice(
        "registration",
        recipients=[user["id"]],
        actor=user,
        message=f"Welcome to Taskswarm, {user['username']}!",
        producer=PRODUCER,
    )
    assert event is not None  # self-addressed: the new user always receives it
    return event
