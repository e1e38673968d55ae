"""What a handler says about itself for the API documents: `@doc(...)` next to its code.

    @doc("Create a card", request=CreateCardRequest, response=CardSchema, status=201, errors={403: ""})
    async def create_card(request): ...

A marker only: it records a `Doc` on the handler and nothing else, so an `api.py` loads no document
generator. `common.docs.openapi` reads the markers when a document is built. The page shapes
(`offset_page_of`, `cursor_page_of`) are marshmallow schemas of SPEC §3's pagination, for `response=`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from marshmallow import Schema, fields

from common.http.app import Handler

BEARER = "bearerAuth"


ACCESS_TOKEN_QUERY = "accessTokenQuery"  # `?access_token=`, for browsers' WebSockets


_DOC_ATTR = "__taskswarm_doc__"


SchemaLike = type[Schema] | Schema


# What a success answer may be described with: a marshmallow schema, a dataclass (answers dumped by
# orjson, e.g. `common.messaging.views`), or a JSON schema written out.
ResponseLike = SchemaLike | type | dict[str, Any]


@dataclass(frozen=True, slots=True)
class Doc:
    """What one operation takes and answers, beyond what its route and `@public` already say."""

    summary: str
    description: str = ""
    request: SchemaLike | None = None  # the JSON body
    response: ResponseLike | None = None  # the JSON body of the success answer (none: no body)
    content_type: str = "application/json"  # of that body
    status: int = 200
    query: SchemaLike | None = None
    errors: Mapping[int, str | None] = field(default_factory=dict)  # status → when ("": usual; None: never)
    responses: Mapping[int, str] = field(default_factory=dict)  # other answers without a body (304, 101)
    response_headers: Mapping[str, str] = field(default_factory=dict)  # of the success answer
    parameters: tuple[dict[str, Any], ...] = ()  # header or extra query parameters, as OpenAPI objects
    security: tuple[str, ...] | None = None  # schemes accepted (any of them); None: bearer unless @public
    tags: tuple[str, ...] = ()
    path_params: Mapping[str, str] = field(default_factory=dict)  # name → description (not a UUID)


def doc(summary: str, **details: Any) -> Callable[[Handler], Handler]:
    """Attach a `Doc` to a handler (order with `@public` does not matter)."""
    described = Doc(summary, **details)

    def mark(handler: Handler) -> Handler:
        setattr(handler, _DOC_ATTR, described)
        return handler

    return mark


def doc_of(handler: Any) -> Doc | None:
    found = getattr(handler, _DOC_ATTR, None)
    return found if isinstance(found, Doc) else None


_page_schemas: dict[tuple[str, type[Schema]], type[Schema]] = {}


def offset_page_of(item: type[Schema]) -> type[Schema]:
    """`{items, total, limit, offset}` of `item` (SPEC §3 offset pagination)."""
    return _page("OffsetPage", item)


def cursor_page_of(item: type[Schema]) -> type[Schema]:
    """`{items, next_cursor}` of `item` (SPEC §3 cursor pagination)."""
    return _page("CursorPage", item)


def _page(kind: str, item: type[Schema]) -> type[Schema]:
    # One class per (kind, item): two classes of one name would be two schemas to the generator.
    key = (kind, item)
    if key not in _page_schemas:
        shape: dict[str, fields.Field[Any]] = {"items": fields.List(fields.Nested(item), required=True)}
        if kind == "OffsetPage":
            shape |= {name: fields.Int(required=True) for name in ("total", "limit", "offset")}
        else:
            shape["next_cursor"] = fields.Str(
                required=True,
                allow_none=True,
                metadata={"description": "pass as `?cursor=` for the next page; null on the last page"},
            )
        _page_schemas[key] = Schema.from_dict(shape, name=_name_of(item) + kind)
    return _page_schemas[key]


def _name_of(schema_class: type[Schema]) -> str:
    """The component name the documents give a schema class: its name less `Schema`."""
    name = schema_class.__name__
    return name[:-6] if name.endswith("Schema") and len(name) > 6 else name
