"""Marshmallow schemas of comment_svc: request bodies, responses, our event payloads and the payloads of
the project_svc events we replicate (docs/events.md)."""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from common.core.paging import CursorPageQuery

BODY_MAX = 10_000


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("must not be blank")


Body = fields.Str(required=True, validate=[validate.Length(1, BODY_MAX), _not_blank])


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


class UuidStr(fields.UUID):
    """A UUID validated as such but kept as its canonical string (the form our rows and events use)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:  # type: ignore[override]
        return str(super()._deserialize(value, attr, data, **kwargs))


class _Replicated(Schema):
    """Unknown fields are ignored: a producer may add fields without breaking us."""

    class Meta:
        unknown = EXCLUDE

    version = fields.Int(required=True, strict=True)


class ProjectEventSchema(_Replicated):
    """newProject, updateProject: what we keep of a project."""

    id = UuidStr(required=True)
    title = fields.Str(load_default=None, allow_none=True)
    owner_id = UuidStr(load_default=None, allow_none=True)


class ProjectDeletedEventSchema(_Replicated):
    id = UuidStr(required=True)
    owner_id = UuidStr(load_default=None, allow_none=True)


class MemberEventSchema(_Replicated):
    """addMember, removeMember (the version is the membership's own)."""

    project_id = UuidStr(required=True)
    user_id = UuidStr(required=True)
    role = fields.Str(required=True)
    active = fields.Bool(required=True)


class CardEventSchema(_Replicated):
    """newCard, updateCard, changeCardStatus: the card's own columns (never its comment count)."""

    id = UuidStr(required=True)
    project_id = UuidStr(required=True)
    title = fields.Str(load_default=None, allow_none=True)
    status = fields.Str(load_default=None, allow_none=True)
    created_by = UuidStr(load_default=None, allow_none=True)
    assignee_id = UuidStr(load_default=None, allow_none=True)


class CardDeletedEventSchema(_Replicated):
    id = UuidStr(required=True)
    project_id = UuidStr(required=True)
