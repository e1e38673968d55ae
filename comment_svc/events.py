"""The events comment_svc publishes (docs/events.md), built from store rows, and its notices.

Comment events carry the card's comment count after the change with its own counter
(`total_comments_version`), so project_svc applies counts in order whatever order they arrive in. Who
receives which notice is decided here (SPEC §3 Notifications); `common.contracts.notices.notice` drops
the actor and empty notices.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from comment_svc.schemas import CommentDeletedEventSchema, CommentEventSchema
from common.contracts.notices import notice
from common.core.envelope import Event
from common.service.tokens import Principal

PRODUCER = "comment_svc"

_comment_event = CommentEventSchema()
_comment_deleted_event = CommentDeletedEventSchema()


def comment_event(event_type: str, comment: dict[str, Any], counts: dict[str, int], actor_id: str) -> Event:
    return Event.new(event_type, _comment_event.dump({**comment, **counts}), producer=PRODUCER, actor_id=actor_id)


def comment_deleted_event(comment: dict[str, Any], counts: dict[str, int], actor_id: str) -> Event:
    # The delete carries the highest version the comment ever has, so no late update outranks it.
    data = _comment_deleted_event.dump({**comment, "version": comment["version"] + 1, **counts})
    return Event.new("deleteComment", data, producer=PRODUCER, actor_id=actor_id)


def comment_created_notice(
    comment: dict[str, Any], card_title: str, recipients: Iterable[str], caller: Principal
) -> list[Event]:
    """`comment_created` for the card's creator, assignee and earlier commenters (the members among them)."""
    actor = {"id": caller.user_id, "username": comment["username"] or caller.username}
    notif = notice(
        "comment_created",
        recipients=recipients,
        actor=actor,
        message=f'{actor["username"]} commented on "{card_title}"',
        producer=PRODUCER,
        project_id=comment["project_id"],
        card_id=comment["card_id"],
        comment_id=comment["id"],
    )
    return [notif] if notif is not None else []
