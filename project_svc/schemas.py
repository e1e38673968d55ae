"""Marshmallow schemas of project_svc: request bodies and queries, responses, event payloads."""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from common.core.formats import UUID_FORM, OptionalQueryStr, PartialUpdate, UtcDateTime, Uuid, is_uuid, not_blank
from common.core.paging import CursorPageQuery, OffsetPageQuery

STATUSES = ("todo", "in_progress", "review", "done")
PRIORITIES = ("low", "medium", "high", "urgent")
MAX_TITLE = 200
MAX_DESCRIPTION = 10_000


def _title(required: bool) -> fields.Str:
    return fields.Str(required=required, validate=[validate.Length(1, MAX_TITLE), not_blank()])


def _description(**kwargs: Any) -> fields.Str:
    return fields.Str(validate=validate.Length(max=MAX_DESCRIPTION), **kwargs)


# -- requests ---------------------------------------------------------------------------------------


class CreateProjectRequest(Schema):
    title = _title(required=True)
    description = _description(load_default="")


class UpdateProjectRequest(PartialUpdate):
    title = _title(required=False)
    description = _description()


class AddMemberRequest(Schema):
    user_id = Uuid(required=True)


class ProjectListQuery(OffsetPageQuery):
    search = fields.Str(load_default=None, validate=validate.Length(max=MAX_TITLE))


class CreateCardRequest(Schema):
    title = _title(required=True)
    description = _description(load_default="")
    status = fields.Str(load_default="todo", validate=validate.OneOf(STATUSES))
    priority = fields.Str(load_default="medium", validate=validate.OneOf(PRIORITIES))
    due_date = UtcDateTime(load_default=None, allow_none=True)
    assignee_id = Uuid(load_default=None, allow_none=True)


class UpdateCardRequest(PartialUpdate):
    """Partial: only the fields present change; null clears due_date and unassigns."""

    title = _title(required=False)
    description = _description()
    status = fields.Str(validate=validate.OneOf(STATUSES))
    priority = fields.Str(validate=validate.OneOf(PRIORITIES))
    due_date = UtcDateTime(allow_none=True)
    assignee_id = Uuid(allow_none=True)


def _assignee_filter(value: str) -> None:
    if value != "me" and not is_uuid(value):
        raise ValidationError('must be a UUID or "me"')


class CardListQuery(CursorPageQuery):
    status = fields.Str(load_default=None, validate=validate.OneOf(STATUSES))
    priority = fields.Str(load_default=None, validate=validate.OneOf(PRIORITIES))
    assignee_id = OptionalQueryStr(
        validate=_assignee_filter,
        metadata={"pattern": f"^(?:me|{UUID_FORM})?$", "description": "`me` or a user id; empty: any assignee"},
    )
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

    card_id = Uuid(required=True)
    total_comments = fields.Int(required=True, strict=True, validate=validate.Range(min=0))
    total_comments_version = fields.Int(required=True, strict=True)
