"""Marshmallow schemas of comment_svc: request bodies, responses, our event payloads and the payloads of
the project_svc events we replicate (docs/events.md)."""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, fields, validate

from common.core.formats import Uuid, not_blank
from common.core.paging import CursorPageQuery

BODY_MAX = 10_000


Body = fields.Str(required=True, validate=[validate.Length(1, BODY_MAX), not_blank()])


class CommentRequest(Schema):
    """POST /cards/{card_id}/comments and PATCH /comments/{id}: the body is the only editable field."""

    body = Body


class CommentListQuery(CursorPageQuery):
    pass


# -- responses -------------------------------------------------------------------------------------


class AuthorSchema(Schema):
    id = fields.Str()
    username = fields.Str(allow_none=True)


class CommentSchema(Schema):
    """A comment as the API shows it. `author.username` comes from the users replica (null if unknown)."""

    id = fields.Str()
    card_id = fields.Str()
    project_id = fields.Str()
    author_id = fields.Str()
    author = fields.Method(
        "_author",
        metadata={  # a computed field: its shape, for the API documentation (AuthorSchema)
            "type": "object",
            "properties": {"id": {"type": "string"}, "username": {"type": "string", "nullable": True}},
        },
    )
    body = fields.Str()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()

    def _author(self, comment: dict[str, Any]) -> dict[str, Any]:
        return {"id": comment["author_id"], "username": comment.get("username")}


class CommentPageSchema(Schema):
    items = fields.List(fields.Nested(CommentSchema))
    next_cursor = fields.Str(allow_none=True)


# -- events we publish -----------------------------------------------------------------------------


class CardCountSchema(Schema):
    """The card's comment count right after the change, and the counter that orders counts."""

    total_comments = fields.Int()
    total_comments_version = fields.Int()


class CommentEventSchema(CardCountSchema):
    """newComment, updateComment."""

    id = fields.Str()
    card_id = fields.Str()
    project_id = fields.Str()
    author_id = fields.Str()
    body = fields.Str()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    version = fields.Int()


class CommentDeletedEventSchema(CardCountSchema):
    """deleteComment: the version is the comment's last version + 1."""

    id = fields.Str()
    card_id = fields.Str()
    project_id = fields.Str()
    author_id = fields.Str()
    version = fields.Int()


# -- events we replicate (project_svc) -------------------------------------------------------------


class _Replicated(Schema):
    """Unknown fields are ignored: a producer may add fields without breaking us."""

    class Meta:
        unknown = EXCLUDE

    version = fields.Int(required=True, strict=True)


class ProjectEventSchema(_Replicated):
    """newProject, updateProject: what we keep of a project."""

    id = Uuid(required=True)
    title = fields.Str(load_default=None, allow_none=True)
    owner_id = Uuid(load_default=None, allow_none=True)


class ProjectDeletedEventSchema(_Replicated):
    id = Uuid(required=True)
    owner_id = Uuid(load_default=None, allow_none=True)


class MemberEventSchema(_Replicated):
    """addMember, removeMember (the version is the membership's own)."""

    project_id = Uuid(required=True)
    user_id = Uuid(required=True)
    role = fields.Str(required=True)
    active = fields.Bool(required=True)


class CardEventSchema(_Replicated):
    """newCard, updateCard, changeCardStatus: the card's own columns (never its comment count)."""

    id = Uuid(required=True)
    project_id = Uuid(required=True)
    title = fields.Str(load_default=None, allow_none=True)
    status = fields.Str(load_default=None, allow_none=True)
    created_by = Uuid(load_default=None, allow_none=True)
    assignee_id = Uuid(load_default=None, allow_none=True)


class CardDeletedEventSchema(_Replicated):
    id = Uuid(required=True)
    project_id = Uuid(required=True)
