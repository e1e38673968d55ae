"""Request parsing with marshmallow, producing the SPEC's 400 errors.

Handlers call `await parse_body(request, SomeSchema)` / `parse_query(request, SomeSchema)` (the class:
one shared instance per class; an instance when it is configured) and get a plain dict back, or the
request ends with `invalid_json` / `validation_error` and per-field details.
Schemas reject unknown fields (marshmallow's default RAISE), so a typo is an error, not silence.
A body must be sent as JSON (`application/json` or `application/*+json`, any parameters): anything else
is a 415. A query parameter given twice is a 400: no list-valued parameter exists, and picking one of
the values would answer a question the client did not ask.
What each id, number and time may be is `common.formats`.
"""

from __future__ import annotations

import base64
import binascii
import functools
from datetime import datetime
from typing import Any, ClassVar

import orjson
from aiohttp import web
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from common.bodies import read_body
from common.errors import InvalidJSON, UnsupportedMediaType, ValidationFailed
from common.formats import MAX_BIGINT, OptionalQueryStr, canonical_uuid, utc_instant

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20


def load(schema: Schema, data: Any, *, partial: bool = False) -> dict[str, Any]:
    """Validate already-decoded data; raise ValidationFailed with marshmallow's per-field messages."""
    if not isinstance(data, dict):
        raise ValidationFailed(details={"_schema": ["expected a JSON object"]})
    with_nul = [field for field, value in data.items() if _holds_nul(value)]
    if with_nul:
        # PostgreSQL cannot store NUL in text: refuse it here, for every field of every service.
        raise ValidationFailed(details={str(field): ["must not contain NUL characters"] for field in with_nul})
    try:
        return schema.load(data, partial=partial)
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        raise ValidationFailed(details=messages) from exc


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


def is_json_media_type(content_type: str) -> bool:
    """`application/json` or `application/<anything>+json` (aiohttp already dropped the parameters)."""
    kind, _, subtype = content_type.lower().partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


async def read_json(request: web.Request) -> Any:
    """The decoded JSON body. An empty body counts as `{}` so "missing fields" errors name the fields;
    a body in another media type is a 415 (a form or `text/plain` is not read as JSON by guesswork)."""
    raw = await read_body(request)  # within BODY_READ_TIMEOUT_S, or 408
    if not raw.strip():
        return {}
    if not is_json_media_type(request.content_type):
        raise UnsupportedMediaType(
            f"send the body as application/json, not {request.content_type}",
            details={"content_type": request.content_type},
        )
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidJSON(details={"position": exc.pos}) from exc


SchemaArg = Schema | type[Schema]


@functools.cache
def _instance(schema_class: type[Schema]) -> Schema:
    # Loading keeps no state in the schema, and building one costs more than a small load: one per class.
    return schema_class()


def _schema(schema: SchemaArg) -> Schema:
    return _instance(schema) if isinstance(schema, type) else schema


async def parse_body(request: web.Request, schema: SchemaArg, *, partial: bool = False) -> dict[str, Any]:
    """The JSON body loaded by `schema` (a class: its shared instance), else 400 in the error format."""
    return load(_schema(schema), await read_json(request), partial=partial)


def parse_query(request: web.Request, schema: SchemaArg) -> dict[str, Any]:
    """The query string loaded by `schema`. No parameter of the API takes a list, so a repeated one is a
    400 (`?limit=1&limit=100` would otherwise quietly mean one of them)."""
    query = request.query
    repeated = sorted({name for name in query if len(query.getall(name)) > 1})
    if repeated:
        raise ValidationFailed(details={name: ["given more than once"] for name in repeated})
    return load(_schema(schema), dict(query))


class OffsetPageQuery(Schema):
    limit = fields.Int(load_default=DEFAULT_PAGE_SIZE, validate=validate.Range(1, MAX_PAGE_SIZE))
    # Past the end is an empty page; past PostgreSQL's bigint it would be a DataError (a 500).
    offset = fields.Int(load_default=0, validate=validate.Range(0, MAX_BIGINT))


class CursorPageQuery(Schema):
    limit = fields.Int(load_default=DEFAULT_PAGE_SIZE, validate=validate.Range(1, MAX_PAGE_SIZE))
    cursor = OptionalQueryStr(
        metadata={"description": "a `next_cursor` from the previous page; absent or empty: the first page"}
    )


class PartialUpdate(Schema):
    """A PATCH body: only the fields present change, and at least one must be present (`{}` is a 400
    "nothing to update", shown as `minProperties: 1` in the document)."""

    json_schema: ClassVar[dict[str, Any]] = {"minProperties": 1}

    @validates_schema
    def _something(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if not data:
            raise ValidationError("nothing to update")


def encode_cursor(position: dict[str, Any]) -> str:
    """An opaque cursor for keyset pagination (clients must not rely on its contents)."""
    return base64.urlsafe_b64encode(orjson.dumps(position)).rstrip(b"=").decode()


def decode_cursor(cursor: str, required_keys: tuple[str, ...]) -> dict[str, Any]:
    """Decode a cursor made by `encode_cursor`; anything else is a 400, never a 500."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        position = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, orjson.JSONDecodeError) as exc:
        raise ValidationFailed(details={"cursor": ["invalid cursor"]}) from exc
    if not isinstance(position, dict) or any(key not in position for key in required_keys):
        raise ValidationFailed(details={"cursor": ["invalid cursor"]})
    return position


def encode_keyset(created_at: datetime, item_id: str) -> str:
    """The cursor after an item of a feed ordered by (created_at, id), either direction."""
    return encode_cursor({"created_at": created_at.isoformat(), "id": item_id})


def decode_keyset(cursor: str) -> tuple[datetime, str]:
    """(created_at, id) from `encode_keyset`'s cursor; a cursor that is not one is a 400."""
    position = decode_cursor(cursor, ("created_at", "id"))
    try:
        # In range for every store (common.formats.utc_instant), and an id in canonical form.
        created_at = utc_instant(datetime.fromisoformat(position["created_at"]))
        item_id = canonical_uuid(position["id"])
    except (TypeError, ValueError) as exc:
        raise ValidationFailed(details={"cursor": ["invalid cursor"]}) from exc
    return created_at, item_id


def offset_page(items: list[Any], total: int, limit: int, offset: int) -> dict[str, Any]:
    return {"items": items, "total": total, "limit": limit, "offset": offset}
