"""OpenAPI 3 documents generated from the code: the route table, the handlers' `@doc` and the marshmallow
schemas the handlers already parse and dump with.

A handler says what it takes and answers next to its code (`api.py`, with `common.http.docmarks.doc`):

    @doc("Create a card", request=CreateCardRequest, response=CardSchema, status=201, errors={403: ""})
    async def create_card(request): ...

and `OpenAPIBuilder.add_router` turns every documented route of a router into an operation. What every
route shares is added here, so no handler repeats it and no document forgets it:
- security: the bearer scheme, except on `@public` handlers (a `Doc` may name its own, e.g. the WebSocket);
- errors in the SPEC shape (`Error`, with the codes of `common.core.errors`): 400 when there is a body or a
  query, 401 when a token is needed, 404 when the path names something, 413 with a body, 503 always;
- path parameters (UUIDs for `*_id`), query parameters from the query schema (pagination included),
  `X-Request-ID` on every response.
Each service serves its own document at `/openapi.json` (`add_openapi_route`); the gateway puts the
services' routes under `/api/v1` in one document (`gateway.apidocs`), with the same builder, run ahead of
time for the services (`gateway.docfragments`) and merged at the JSON level (`common.docs.merge`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from common.core.formats import UUID_PATTERN, string_rules
from common.docs.components import SchemaNames, dataclass_schema, describe_schemas, error_response
from common.http.app import is_public, public
from common.http.docmarks import ACCESS_TOKEN_QUERY, BEARER, Doc, ResponseLike, doc_of

OPENAPI_VERSION = "3.0.3"  # what the bundled Swagger UI renders (it predates 3.1)


API_VERSION = "1.0.0"


_PATH_PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")


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
        plugin.converter.add_attribute_function(string_rules)  # type: ignore[no-untyped-call]  # apispec leaves it unannotated
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
