"""OpenAPI 3 documents generated from the code: the route table, the handlers' `@doc` and the marshmallow
schemas the handlers already parse and dump with.

A handler says what it takes and answers next to its code (`api.py`):

    @doc("Create a card", request=CreateCardRequest, response=CardSchema, status=201, errors={403: ""})
    async def create_card(request): ...

and `OpenAPIBuilder.add_router` turns every documented route of a router into an operation. What every
route shares is added here, so no handler repeats it and no document forgets it:
- security: the bearer scheme, except on `@public` handlers (a `Doc` may name its own, e.g. the WebSocket);
- errors in the SPEC shape (`Error`, with the codes of `common.errors`): 400 when there is a body or a
  query, 401 when a token is needed, 404 when the path names something, 413 with a body, 503 always;
- path parameters (UUIDs for `*_id`), query parameters from the query schema (pagination included),
  `X-Request-ID` on every response.
Each service serves its own document at `/openapi.json` (`add_openapi_route`); the gateway puts the
services' routes under `/api/v1` in one document (`gateway.apidocs`), with the same builder.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.common import make_schema_key, resolve_schema_cls, resolve_schema_instance
from marshmallow import Schema, fields

from common import errors
from common.formats import UUID_PATTERN, string_rules
from common.web import _PUBLIC_ATTR, Handler, public

OPENAPI_VERSION = "3.0.3"  # what the bundled Swagger UI renders (it predates 3.1)
API_VERSION = "1.0.0"
BEARER = "bearerAuth"
ACCESS_TOKEN_QUERY = "accessTokenQuery"  # `?access_token=`, for browsers' WebSockets
_DOC_ATTR = "__taskswarm_doc__"
_PATH_PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")

SchemaLike = type[Schema] | Schema
# What a success answer may be described with: a marshmallow schema, a dataclass (answers dumped by
# orjson, e.g. `common.streams`), or a JSON schema written out.
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


def is_public(handler: Any) -> bool:
    return bool(getattr(handler, _PUBLIC_ATTR, False))


# -- shared schemas -----------------------------------------------------------------------------------


class ErrorDetailSchema(Schema):
    code = fields.Str(required=True, metadata={"description": "machine-readable, e.g. `validation_error`"})
    message = fields.Str(required=True, metadata={"description": "for humans"})
    details = fields.Dict(
        required=True,
        metadata={"description": "per-field messages for `validation_error`, otherwise context (may be empty)"},
    )


class ErrorSchema(Schema):
    """Every error answer of the API (SPEC §3)."""

    error = fields.Nested(ErrorDetailSchema, required=True)


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
        shape: dict[str, fields.Field] = {"items": fields.List(fields.Nested(item), required=True)}
        if kind == "OffsetPage":
            shape |= {name: fields.Int(required=True) for name in ("total", "limit", "offset")}
        else:
            shape["next_cursor"] = fields.Str(
                required=True,
                allow_none=True,
                metadata={"description": "pass as `?cursor=` for the next page; null on the last page"},
            )
        _page_schemas[key] = Schema.from_dict(shape, name=_schema_name(item) + kind)
    return _page_schemas[key]


# -- errors -------------------------------------------------------------------------------------------

_STATUS_MEANING = {
    400: "invalid input: malformed JSON (`invalid_json`) or invalid fields (`validation_error`, per field)",
    401: "missing, invalid, expired or revoked token",
    403: "authenticated but not allowed",
    404: "not found, or not visible to the caller",
    409: "conflict",
    413: "request body too large",
    415: "the body is not sent as `application/json` (code `unsupported_media_type`)",
    429: "rate limited: retry after `Retry-After` seconds",
    502: "the service answered badly",
    503: "a dependency (database, Redis, the service) is unavailable; retry",
    504: "the service did not answer in time",
}


def _error_classes() -> dict[int, list[type[errors.AppError]]]:
    found: dict[int, list[type[errors.AppError]]] = {}
    pending = [errors.AppError]
    while pending:
        cls = pending.pop(0)
        pending.extend(cls.__subclasses__())
        if cls is not errors.AppError:
            found.setdefault(cls.status, []).append(cls)
    return found


_ERRORS = _error_classes()


def error_response(status: int, description: str = "") -> dict[str, Any]:
    """An error answer with its example body (from `common.errors`)."""
    classes = _ERRORS.get(status, [])
    codes = ", ".join(f"`{cls.code}`" for cls in classes)
    text = description
    if not text:
        text = _STATUS_MEANING.get(status, "error")
        if codes and "`" not in text:
            text += f" (code {codes})"
    response: dict[str, Any] = {
        "description": text,
        "content": {"application/json": {"schema": ErrorSchema}},
    }
    named = re.findall(r"`([a-z_]+)`", description)
    if named:
        response["content"]["application/json"]["example"] = errors.AppError(code=named[0]).to_body()
    elif classes:
        example = classes[0]()
        if status == 400:  # the usual one
            example = errors.ValidationFailed(details={"title": ["Missing data for required field."]})
        response["content"]["application/json"]["example"] = example.to_body()
    if status == 429:
        response["headers"] = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
    return response


# -- names --------------------------------------------------------------------------------------------


def _schema_name(schema: Any) -> str:
    cls = resolve_schema_cls(schema)
    cls = cls[0] if isinstance(cls, list) else cls
    name = cls.__name__
    return name[:-6] if name.endswith("Schema") and len(name) > 6 else name


class SchemaNames:
    """Component names for schemas: the class name less `Schema`, qualified by the class's package when
    another class already took that name (two services may both have a `ProjectEventSchema`)."""

    def __init__(self) -> None:
        self.classes: dict[str, type] = {}
        self._by_key: dict[Any, str] = {}

    def __call__(self, schema: Any) -> str:
        instance = resolve_schema_instance(schema)
        key = make_schema_key(instance)
        if key in self._by_key:
            return self._by_key[key]
        cls = type(instance)
        taken = set(self._by_key.values())
        name = _schema_name(cls)
        if name in taken and self.classes.get(name) is not cls:
            name = f"{cls.__module__.partition('.')[0]}.{name}"
        while name in taken:  # the same class with other modifiers (only=, exclude=): another schema
            name += "_"
        self.classes[name] = cls
        self._by_key[key] = name
        return name


def describe_schemas(document: dict[str, Any], names: SchemaNames) -> None:
    """Use each schema class's own docstring as its description, and add its `json_schema` rules."""
    for name, component in document.get("components", {}).get("schemas", {}).items():
        cls = names.classes.get(name)
        component.update(getattr(cls, "json_schema", {}))
        text = cls.__dict__.get("__doc__") if cls is not None else None
        if text and "description" not in component:
            component["description"] = " ".join(text.split())


# -- dataclasses --------------------------------------------------------------------------------------


def dataclass_schema(cls: type, components: dict[str, dict[str, Any]], ref: str) -> dict[str, Any]:
    """A JSON schema of a dataclass answer (nested dataclasses become components, `ref` is their prefix)."""
    if cls.__name__ not in components:
        components[cls.__name__] = {}  # placeholder: recursion stops here
        hints = typing.get_type_hints(cls)
        properties = {f.name: _type_schema(hints[f.name], components, ref) for f in dataclasses.fields(cls)}
        components[cls.__name__] = {
            "type": "object",
            "properties": properties,
            "required": [f.name for f in dataclasses.fields(cls)],
        }
        if cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "("):
            components[cls.__name__]["description"] = " ".join(cls.__doc__.split())
    return {"$ref": ref + cls.__name__}


def _type_schema(hint: Any, components: dict[str, dict[str, Any]], ref: str) -> dict[str, Any]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        kinds = [arg for arg in args if arg is not type(None)]
        inner = _type_schema(kinds[0], components, ref) if len(kinds) == 1 else {}
        if type(None) in args:
            return {"allOf": [inner], "nullable": True} if "$ref" in inner else {**inner, "nullable": True}
        return inner
    if origin is list:
        return {"type": "array", "items": _type_schema(args[0], components, ref)}
    if origin is dict:
        return {"type": "object", "additionalProperties": _type_schema(args[1], components, ref)}
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return dataclass_schema(hint, components, ref)
    simple = {str: {"type": "string"}, int: {"type": "integer"}, bool: {"type": "boolean"}, float: {"type": "number"}}
    return dict(simple.get(hint, {}))


# -- the builder --------------------------------------------------------------------------------------


class OpenAPIBuilder:
    """One OpenAPI document, filled route by route (from one or several routers)."""

    def __init__(self, title: str, *, description: str = "", version: str = API_VERSION) -> None:
        self.names = SchemaNames()
        plugin = MarshmallowPlugin(schema_name_resolver=self.names)
        self.spec = APISpec(
            title=title,
            version=version,
            openapi_version=OPENAPI_VERSION,
            plugins=[plugin],
            info={"description": description},
        )
        assert plugin.converter is not None  # made by APISpec's init
        plugin.converter.add_attribute_function(string_rules)
        self.spec.components.security_scheme(
            BEARER,
            {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "an access token from `/auth/login`, `/auth/register` or `/auth/refresh`",
            },
        )
        self.spec.components.security_scheme(
            ACCESS_TOKEN_QUERY,
            {"type": "apiKey", "in": "query", "name": "access_token", "description": "WebSocket only"},
        )
        self.spec.components.header(
            "X-Request-ID",
            {
                "description": "the request's id (the client's own when it sent a sane one)",
                "schema": {"type": "string"},
            },
        )
        self._dataclasses: dict[str, dict[str, Any]] = {}
        self._paths: dict[str, dict[str, Any]] = {}
        self.tags: dict[str, str] = {}

    def security_scheme(self, name: str, scheme: dict[str, Any]) -> None:
        self.spec.components.security_scheme(name, scheme)

    def tag(self, name: str, description: str) -> None:
        self.tags.setdefault(name, description)

    def add_router(
        self,
        router: web.UrlDispatcher,
        *,
        tag: str,
        path_of: Callable[[str], str | None] = lambda path: path,
        extra_errors: Callable[[str, str, bool], Mapping[int, str | None]] | None = None,
    ) -> list[tuple[str, str]]:
        """Document every route of `router` that has a `Doc`; returns the (method, path) pairs left out
        for lack of one. `path_of` maps a route's path to the document's (None: leave it out);
        `extra_errors(method, path, secured)` adds error answers (the gateway's 429 and 502/504)."""
        undocumented = []
        for route in router.routes():
            if route.method == "HEAD":  # aiohttp's companion of every GET
                continue
            path = route.resource.canonical if route.resource is not None else ""
            described = doc_of(route.handler)
            if described is None:
                undocumented.append((route.method, path))
                continue
            public_path = path_of(path)
            if public_path is None:
                continue
            self.add_operation(route.method, public_path, route.handler, described, tag, extra_errors)
        return undocumented

    def add_operation(
        self,
        method: str,
        path: str,
        handler: Any,
        described: Doc,
        tag: str,
        extra_errors: Callable[[str, str, bool], Mapping[int, str | None]] | None = None,
    ) -> None:
        schemes = described.security if described.security is not None else (() if is_public(handler) else (BEARER,))
        secured = bool(schemes)
        path_names = _PATH_PARAM.findall(path)
        operation: dict[str, Any] = {
            "operationId": handler.__name__,
            "summary": described.summary,
            "tags": list(described.tags or (tag,)),
            "security": [{scheme: []} for scheme in schemes],
        }
        if described.description:
            operation["description"] = described.description
        parameters: list[dict[str, Any]] = [self._path_parameter(name, described) for name in path_names]
        if described.query is not None:
            parameters.append({"in": "query", "schema": described.query})
        parameters.extend(described.parameters)
        if parameters:
            operation["parameters"] = parameters
        if described.request is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": described.request}},
            }
        operation["responses"] = self._responses(method, path, described, secured, bool(path_names), extra_errors)
        self._paths.setdefault(path, {})[method.lower()] = operation

    def _path_parameter(self, name: str, described: Doc) -> dict[str, Any]:
        if name in described.path_params:
            return {"in": "path", "name": name, "required": True, "description": described.path_params[name],
                    "schema": {"type": "string"}}  # fmt: skip
        return {
            "in": "path",
            "name": name,
            "required": True,
            "schema": {"type": "string", "format": "uuid", "pattern": UUID_PATTERN},
            "description": "a UUID (anything else is a 404)",
        }

    def _responses(
        self,
        method: str,
        path: str,
        described: Doc,
        secured: bool,
        names_something: bool,
        extra_errors: Callable[[str, str, bool], Mapping[int, str | None]] | None,
    ) -> dict[str, Any]:
        request_id = {"X-Request-ID": {"$ref": "#/components/headers/X-Request-ID"}}
        success: dict[str, Any] = {"description": HTTPStatus(described.status).phrase, "headers": dict(request_id)}
        for name, text in described.response_headers.items():
            success["headers"][name] = {"description": text, "schema": {"type": "string"}}
        if described.response is not None:
            success["content"] = {described.content_type: {"schema": self._response_schema(described.response)}}
        responses: dict[str, Any] = {str(described.status): success}
        for status, text in described.responses.items():
            responses[str(status)] = {"description": text, "headers": dict(request_id)}
        wanted: dict[int, str | None] = {}
        if described.request is not None or described.query is not None:
            wanted[400] = ""
        if secured:
            wanted[401] = ""
        if names_something:
            wanted[404] = ""
        if described.request is not None:
            wanted[413] = wanted[415] = ""
        wanted[503] = ""
        if extra_errors is not None:
            wanted.update(extra_errors(method, path, secured))
        wanted.update(described.errors)
        for status, when in sorted(wanted.items()):
            if when is None or str(status) in responses:
                continue
            response = error_response(status, when)
            response.setdefault("headers", {}).update(request_id)
            responses[str(status)] = response
        return responses

    def _response_schema(self, response: ResponseLike) -> Any:
        if isinstance(response, dict):
            return response
        if dataclasses.is_dataclass(response) and isinstance(response, type):
            return dataclass_schema(response, self._dataclasses, "#/components/schemas/")
        return response

    def to_dict(self) -> dict[str, Any]:
        for name, schema in self._dataclasses.items():
            self.spec.components.schema(name, component=schema)
        self._dataclasses = {}
        for path in sorted(self._paths):
            self.spec.path(path=path, operations=self._paths[path])
        self._paths = {}
        for name, text in self.tags.items():
            self.spec.tag({"name": name, "description": text})
        self.tags = {}
        document = self.spec.to_dict()
        describe_schemas(document, self.names)
        return document


# -- a service's own document -------------------------------------------------------------------------

_OPENAPI_CACHE = web.AppKey("openapi_document", dict)


def service_document(router: web.UrlDispatcher, service: str, description: str = "") -> dict[str, Any]:
    """A service's document: its documented routes under their own paths (no `/api/v1`)."""
    builder = OpenAPIBuilder(f"{service} API", description=description or f"The routes of {service} itself.")
    builder.add_router(router, tag=service)
    return builder.to_dict()


def add_openapi_route(app: web.Application, service: str, description: str = "") -> None:
    """Serve the service's document at `GET /openapi.json` (public), built on first request."""
    cache: dict[str, bytes] = {}
    app[_OPENAPI_CACHE] = cache

    @public
    async def openapi_json(request: web.Request) -> web.Response:
        if "body" not in cache:
            document = service_document(request.app.router, service, description)
            cache["body"] = orjson.dumps(document)
        return web.Response(body=cache["body"], content_type="application/json")

    app.router.add_get("/openapi.json", openapi_json)


def operations(document: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    """Every (METHOD, path) the document describes."""
    for path, item in document.get("paths", {}).items():
        for method in item:
            if method in ("get", "put", "post", "delete", "patch", "head", "options", "trace"):
                yield method.upper(), path
