"""Pagination (SPEC §3): the query parameters of both kinds, their limits, and the offset page's shape.

Offset pagination (`?limit=&offset=` → `{items, total, limit, offset}`) and cursor pagination
(`?limit=&cursor=` → `{items, next_cursor}`; cursors are `common.core.ids`). Plain marshmallow: the
services' `schemas.py` extend these without loading a web framework.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from common.core.formats import MAX_BIGINT, OptionalQueryStr

MAX_PAGE_SIZE = 100


DEFAULT_PAGE_SIZE = 20


class OffsetPageQuery(Schema):
    limit = fields.Int(load_default=DEFAULT_PAGE_SIZE, validate=validate.Range(1, MAX_PAGE_SIZE))
    # Past the end is an empty page; past PostgreSQL's bigint it would be a DataError (a 500).
    offset = fields.Int(load_default=0, validate=validate.Range(0, MAX_BIGINT))


class CursorPageQuery(Schema):
    limit = fields.Int(load_default=DEFAULT_PAGE_SIZE, validate=validate.Range(1, MAX_PAGE_SIZE))
    cursor = OptionalQueryStr(
        metadata={"description": "a `next_cursor` from the previous page; absent or empty: the first page"}
    )


def offset_page(items: list[Any], total: int, limit: int, offset: int) -> dict[str, Any]:
    return {"items": items, "total": total, "limit": limit, "offset": offset}
