"""Marshmallow schemas of project_svc: request bodies and queries, responses, event payloads."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from common.core.paging import CursorPageQuery, OffsetPageQuery

STATUSES = ("todo", "in_progress", "review", "done")
PRIORITIES = ("low", "medium", "high", "urgent")
MAX_TITLE = 200
MAX_DESCRIPTION = 10_000

# RFC 3339 wants a time of day: marshmallow alone would take a bare date as midnight.
_HAS_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("must not be blank")


class UtcDateTime(fields.DateTime):
    """An RFC 3339 date-time, normalised to UTC; a time without an offset is taken as UTC."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        if not isinstance(value, str) or not _HAS_TIME.match(value):
            raise ValidationError("Not a valid RFC 3339 date-time.")
        parsed: datetime = super()._deserialize(value, attr, data, **kwargs)
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        try:
            return parsed.astimezone(UTC)
        except OverflowError as exc:  # e.g. year 1 with a positive offset
            raise ValidationError("Date-time out of range.") from exc


def _title(required: bool) -> fields.Str:
    return fields.Str(required=required, validate=[validate.Length(1, MAX_TITLE), _not_blank])


def _description(**kwargs: Any) -> fields.Str:
    return fields.Str(validate=validate.Length(max=MAX_DESCRIPTION), **kwargs)


# -- requests ---------------------------------------------------------------------------------------


class CreateProjectRequest(Schema):
    title = _title(required=True)
    description = _description(load_default="")


class UpdateProjectRequest(Schema):
    title = _title(required=False)
    description = _description()


class AddMemberRequest(Schema):
    user_id = fields.UUID(required=True)


class ProjectListQuery(OffsetPageQuery):
    search = fields.Str(load_default=None, validate=validate.Length(max=MAX_TITLE))


class CreateCardRequest(Schema):
    title = _title(required=True)
    description = _description(load_default="")
    status = fields.Str(load_default="todo", validate=validate.OneOf(STATUSES))
    priority = fields.Str(load_default="medium", validate=validate.OneOf(PRIORITIES))
    due_date = UtcDateTime(load_default=None, allow_none=True)
    assignee_id = fields.UUID(load_default=None, allow_none=True)


class UpdateCardRequest(Schema):
    """Partial: only the fields present change; null clears due_date and unassigns."""

    title = _title(required=False)
    description = _description()
    status = fields.Str(validate=validate.OneOf(STATUSES))
    priority = fields.Str(validate=validate.OneOf(PRIORITIES))
    due_date = UtcDateTime(allow_none=True)
    assignee_id = fields.UUID(allow_none=True)


def _assignee_filter(value: str) -> None:
    if value == "me":
        return
    try:
        uuid.UUID(value)
    except ValueError as exc:
        raise ValidationError('must be a UUID or "me"') from exc


class CardListQuery(CursorPageQuery):
    status = fields.Str(load_default=None, validate=validate.OneOf(STATUSES))
    priority = fields.Str(load_default=None, validate=validate.OneOf(PRIORITIES))
    assignee_id = fields.Str(load_default=None, validate=_assignee_filter)
    q = fields.Str(load_default=None, validate=validate.Length(max=MAX_TITLE))  # empty: no filter
    due_before = UtcDateTime(load_default=None)


# -- responses --------------------------------------------------------------------------------------


class ProjectSchema(Schema):
    id = fields.Str()
    title = fields.Str()
    description = fields.Str()
    owner_id = fields.Str()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class MemberSchema(Schema):
    user_id = fields.Str()
    username = fields.Str(allow_none=True)
    role = fields.Str()
    added_at = fields.DateTime()


class ProjectDetailSchema(ProjectSchema):
    members = fields.List(fields.Nested(MemberSchema))


class CardSchema(Schema):
    id = fields.Str()
    project_id = fields.Str()
    title = fields.Str()
    description = fields.Str()
    status = fields.Str()
    priority = fields.Str()
    due_date = fields.DateTime(allow_none=True)
    assignee_id = fields.Str(allow_none=True)
    created_by = fields.Str()
    total_comments = fields.Int()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


# -- event payloads (docs/events.md) ----------------------------------------------------------------


class ProjectEventSchema(ProjectSchema):
    version = fields.Int()


class ProjectDeletedEventSchema(Schema):
    id = fields.Str()
    owner_id = fields.Str()
    version = fields.Int()


class MemberEventSchema(Schema):
    project_id = fields.Str()
    user_id = fields.Str()
    role = fields.Str()
    version = fields.Int()
    active = fields.Bool()


class CardEventSchema(CardSchema):
    # total_comments is comment_svc's data: it never travels in card events.
    class Meta:
        exclude = ("total_comments",)

    version = fields.Int()


class CardStatusEventSchema(CardEventSchema):
    old_status = fields.Str()
    new_status = fields.Str()


class CardDeletedEventSchema(Schema):
    id = fields.Str()
    project_id = fields.Str()
    version = fields.Int()


class CommentCountSchema(Schema):
    """What project_svc needs of newComment/updateComment/deleteComment: the card's comment count."""

    class Meta:
        unknown = EXCLUDE

    card_id = fields.UUID(required=True)
    total_comments = fields.Int(required=True, strict=True, validate=validate.Range(min=0))
    total_comments_version = fields.Int(required=True, strict=True)
