"""Marshmallow schemas of notif_svc: the feed query and the notification as the API (and the socket)
shows it. The newNotif payload is common.contracts.notices.NoticeSchema (one contract for its three producers)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from common.core.paging import CursorPageQuery


class FeedQuery(CursorPageQuery):
    """GET /notifications: `?limit&cursor&unread=true&wait=N` (N: seconds to hold a not-modified poll)."""

    unread = fields.Bool(load_default=False)
    wait = fields.Int(load_default=0, strict=False)

    def __init__(self, *, max_wait_s: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # A validator of this instance's field (marshmallow copies the declared fields per instance), so the
        # document shows the bound as minimum/maximum.
        wait = self.fields["wait"]
        wait.validators = [*wait.validators, validate.Range(0, max_wait_s, error=f"must be between 0 and {max_wait_s}")]


class ActorSchema(Schema):
    id = fields.Str(allow_none=True)  # null: the system (reminders)
    username = fields.Str(allow_none=True)


class NotificationSchema(Schema):
    """A notification as the feed and the WebSocket show it."""

    id = fields.Str()
    type = fields.Str()
    message = fields.Str()
    actor = fields.Nested(ActorSchema)
    project_id = fields.Str(allow_none=True)
    card_id = fields.Str(allow_none=True)
    comment_id = fields.Str(allow_none=True)
    read = fields.Bool()
    created_at = fields.DateTime()


class NotificationPageSchema(Schema):
    items = fields.List(fields.Nested(NotificationSchema))
    next_cursor = fields.Str(allow_none=True)


class UnreadCountSchema(Schema):
    unread = fields.Int()
