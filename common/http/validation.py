"""Request parsing with marshmallow, producing the SPEC's 400 errors.

Handlers call `await parse_body(request, SomeSchema)` / `parse_query(request, SomeSchema)` (the class:
one shared instance per class; an instance when it is configured) and get a plain dict back, or the
request ends with `invalid_json` / `validation_error` and per-field details.
Schemas reject unknown fields (marshmallow's default RAISE), so a typo is an error, not silence.
Ids and cursors, which the service layers check too, are `common.core.ids`; page queries `common.core.paging`.
A body must be sent as JSON (`application/json` or `application/*+json`, any parameters): anything else
is a 415. A query parameter given twice is a 400: no list-valued parameter exists, and picking one of
the values would answer a question the client did not ask.
What each id, number and time may be is `common.core.formats`.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson
from aiohttp import web
from marshmallow import Schema, ValidationError

from common.core.errors import InvalidJSON, UnsupportedMediaType, ValidationFailed
from common.http.bodies import read_body


def load(schema: Schema, data: Any, *, partial: bool = False) -> dict[str, Any]:
    """Validate already-decoded data; raise ValidationFailed with marshmallow's per-field messages."""
    if not isinstance(data, dict):
        raise ValidationFailed(details={"_schema": ["expected a JSON object"]})
    with_nul = [field for field, value in data.items() if _holds_nul(value)]
    if with_nul:
        # PostgreSQL cannot store NUL in text: refuse it here, for every field of every service.
        raise ValidationFailed(details={str(field): ["must not contain NUL characters"] for field in with_nul})
    try:
        loaded: dict[str, Any] = schema.load(data, partial=partial)
        return loaded
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
