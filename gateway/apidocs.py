"""The API documentation, answered by the gateway itself (no token, nothing fetched at request time):

- `GET /api/v1/openapi.json`: one OpenAPI 3 document of every public path. At start-up the gateway's
  own routes (the admin API of stream inspection, `gateway.admin`; `/health`; these) are built with the
  builder of `common.docs.openapi`, and merged (`common.docs.merge`) with each service's fragment,
  `gateway/openapi/<service>.json`: its route table and `@doc`s already built with the same builder,
  its paths under `/api/v1` the way `gateway.routing` routes them (notif_svc's `/notifications/ws` is
  `/api/v1/ws`). The fragments are written ahead of time (`python -m gateway.docfragments`, which says
  why) so this process imports no service's handlers, use cases or stores, only their manifests.
  A service whose package is missing, or that this gateway has no URL for, is left out: its paths
  answer 404 here.
- `GET /api/v1/asyncapi.json`: the AsyncAPI document of the event catalog (`common.docs.asyncapi`).
- `GET /docs`: Swagger UI on the OpenAPI document, its files served from the `swagger-ui-bundle`
  package under `/docs/static/`, so the page works with no network beyond this host; its
  Content-Security-Policy allows nothing else (`DOCS_HEADERS`), and it may not be framed.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import swagger_ui_bundle
from aiohttp import web

from common.contracts import topology
from common.core.errors import NotFound
from common.core.settings import Settings
from common.docs import asyncapi
from common.docs.merge import merge_documents
from common.docs.openapi import OpenAPIBuilder
from common.http.app import public
from common.http.docmarks import Doc, doc, doc_of
from gateway import admin, health
from gateway.routing import API_PREFIX

DOCS_PATH = "/docs"
STATIC_PREFIX = DOCS_PATH + "/static/"
OPENAPI_PATH = API_PREFIX + "/openapi.json"
ASYNCAPI_PATH = API_PREFIX + "/asyncapi.json"
SWAGGER_UI_DIR = Path(swagger_ui_bundle.swagger_ui_path)
FRAGMENTS_DIR = Path(__file__).parent / "openapi"  # the services' parts, written by `gateway.docfragments`
_ASSET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

TAGS = {
    "auth_svc": "Users, roles, sessions and tokens",
    "project_svc": "Projects, their members and cards",
    "comment_svc": "Comments on cards",
    "notif_svc": "Notification feeds: polling, long-polling, WebSocket push",
    "admin": "Stream inspection, for admins (answered by the gateway from Redis)",
    "gateway": "The gateway's own routes: health and these documents",
}

DESCRIPTION = """\
The public API of Taskswarm, generated from the services' code. Every path is under `/api/v1` except
`/health` and `/docs`.

- **Auth**: `Authorization: Bearer <access token>` (from `/auth/register`, `/auth/login` or
  `/auth/refresh`) on everything except register, login, refresh, the JWKS, health and these documents.
- **Errors**: `{"error": {"code", "message", "details"}}` (`Error`), with `X-Request-ID` on every answer.
- **Pagination**: offset (`?limit=&offset=` → `{items, total, limit, offset}`) or cursor (`?limit=&cursor=`
  → `{items, next_cursor}`); `limit` defaults to 20, at most 100.
- **Input**: bodies are JSON (`application/json` or `application/*+json`; anything else is a 415); a query
  parameter given twice is a 400; an empty optional text parameter (`?cursor=`) counts as not given;
  ids are UUIDs in their 8-4-4-4-12 form (any other spelling in a path is a 404).
- **Events**: what the services tell each other is described in the AsyncAPI document at
  `/api/v1/asyncapi.json`."""


@dataclass(frozen=True, slots=True)
class Documents:
    openapi: bytes
    asyncapi: bytes


DOCUMENTS = web.AppKey("api_documents", Documents)


def _admin_errors(method: str, path: str, secured: bool) -> dict[int, str]:
    return {403: "not an admin (`forbidden`)", 503: "Redis is unavailable"}


def documented_services(settings: Settings | None = None) -> tuple[str, ...]:
    """The services whose routes the documents show: their package is here, its manifest declares routes
    and (given settings) the gateway has a URL for them."""
    configured = settings.upstreams() if settings is not None else None
    return tuple(
        spec.name
        for spec in topology.services()
        if spec.manifest().routes is not None and (configured is None or spec.name in configured)
    )


def fragment_path(service: str) -> Path:
    return FRAGMENTS_DIR / f"{service}.json"


def add_gateway_operations(builder: OpenAPIBuilder) -> None:
    """The gateway's own routes: the admin API, `/health` and the documents."""
    builder.tag("admin", TAGS["admin"])
    for method, path, handler in admin.ROUTES:
        described = doc_of(handler)
        if described is not None:
            builder.add_operation(method, admin.ADMIN_PREFIX + path, handler, described, "admin", _admin_errors)
    builder.tag("gateway", TAGS["gateway"])
    builder.add_operation("GET", "/health", health.health, HEALTH_DOC, "gateway")
    for path, handler in ((OPENAPI_PATH, openapi_json), (ASYNCAPI_PATH, asyncapi_json), (DOCS_PATH, docs_page)):
        builder.add_operation("GET", path, handler, _doc(handler), "gateway")


def build_openapi(services: tuple[str, ...]) -> dict[str, Any]:
    """The gateway's own part, built now, merged with the services' fragments (read, not built: building
    them would import the services' handlers, use cases and stores)."""
    builder = OpenAPIBuilder("Taskswarm API", description=DESCRIPTION)
    add_gateway_operations(builder)
    fragments = [orjson.loads(fragment_path(service).read_bytes()) for service in services]
    return merge_documents(builder.to_dict(), fragments)


@functools.lru_cache(maxsize=8)
def build_documents(services: tuple[str, ...]) -> Documents:
    """Both documents, once per process and set of services (every gateway app of a test run shares them).
    The event catalog is the whole system's, whichever services this gateway routes to."""
    return Documents(openapi=orjson.dumps(build_openapi(services)), asyncapi=orjson.dumps(asyncapi.document()))


def _doc(handler: Any) -> Doc:
    described = doc_of(handler)
    assert described is not None, f"{handler.__name__} has no @doc"
    return described


HEALTH_DOC = Doc(
    "Readiness of the gateway and of every service replica behind it",
    description=(
        "Without a token, or with a non-admin's: only the overall `status`. With an admin's bearer token:"
        " also `services` and `gateway`, what is failing and why. Probed at most once a second, whoever asks."
    ),
    response={
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "degraded"]},
            "services": {
                "type": "object",
                "description": "admins only; per service: `status` (`ok` or `failing`) and each replica's answer"
                " by URL",
                "additionalProperties": {"type": "object"},
            },
            "gateway": {"type": "object", "description": "admins only; the gateway's own checks (Redis)"},
        },
    },
    responses={503: "something is not ready: the body (the same shape as the 200) says what"},
)


# -- handlers -----------------------------------------------------------------------------------------

_STATIC = {503: None}  # built at start-up: nothing to be unavailable


@doc("This document (OpenAPI 3)", response={"type": "object"}, errors=_STATIC)
@public
async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=request.app[DOCUMENTS].openapi, content_type="application/json")


@doc(
    "The event catalog (AsyncAPI 3.0): streams, envelope, each event's data",
    response={"type": "object"},
    errors=_STATIC,
)
@public
async def asyncapi_json(request: web.Request) -> web.Response:
    return web.Response(body=request.app[DOCUMENTS].asyncapi, content_type="application/json")


_STYLE = "body { margin: 0; } .events { font-family: sans-serif; padding: 8px 20px; }"
_INIT_SCRIPT = f"""
    window.ui = SwaggerUIBundle({{
      url: "{OPENAPI_PATH}",
      dom_id: "#swagger-ui",
      deepLinking: true,
      validatorUrl: null,
      presets: [SwaggerUIBundle.presets.apis],
      layout: "BaseLayout",
    }});
"""

DOCS_HTML = f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Taskswarm API</title>
  <link rel="stylesheet" href="{STATIC_PREFIX}swagger-ui.css">
  <link rel="icon" type="image/png" href="{STATIC_PREFIX}favicon-32x32.png" sizes="32x32">
  <style>{_STYLE}</style>
</head>
<body>
  <p class="events">Events: <a href="{ASYNCAPI_PATH}">{ASYNCAPI_PATH}</a> (AsyncAPI 3.0)</p>
  <div id="swagger-ui"></div>
  <script src="{STATIC_PREFIX}swagger-ui-bundle.js"></script>
  <script>{_INIT_SCRIPT}</script>
</body>
</html>
"""


def _sha256(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


# The page runs only this host's files and its own two inline blocks (allowed by their hashes, so an
# injected script or style would not run); it fetches only from this host (the documents, "Try it out");
# Swagger UI draws its icons as data: images and sets element styles from script (not inline markup,
# which `style-src` would govern). Nobody may frame it (clickjacking "Try it out" with a victim's token).
DOCS_HEADERS = {
    "Content-Security-Policy": "; ".join(
        [
            "default-src 'none'",
            f"script-src 'self' {_sha256(_INIT_SCRIPT)}",
            f"style-src 'self' {_sha256(_STYLE)}",
            "img-src 'self' data:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    ),
    "X-Frame-Options": "DENY",
}


@doc(
    "The API documentation, rendered (Swagger UI, served from this host)",
    response={"type": "string"},
    content_type="text/html",
    errors=_STATIC,
)
@public
async def docs_page(request: web.Request) -> web.Response:
    return web.Response(text=DOCS_HTML, content_type="text/html", headers=DOCS_HEADERS)


@public
async def docs_asset(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    path = SWAGGER_UI_DIR / name
    if not _ASSET_NAME.fullmatch(name) or not path.is_file():
        raise NotFound()
    return web.FileResponse(path, headers={"Cache-Control": "public, max-age=86400"})


def add_docs_routes(app: web.Application, settings: Settings) -> None:
    """Mount the documents and the docs page; call before the gateway's catch-all proxy route."""
    app[DOCUMENTS] = build_documents(documented_services(settings))
    app.router.add_get(OPENAPI_PATH, openapi_json)
    app.router.add_get(ASYNCAPI_PATH, asyncapi_json)
    app.router.add_get(DOCS_PATH, docs_page)
    app.router.add_get(STATIC_PREFIX + "{name}", docs_asset)
