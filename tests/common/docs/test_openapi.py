"""The OpenAPI documents: valid OpenAPI 3 (openapi-spec-validator), generated from the code, and covering
every path the gateway routes, every admin route and every path of SPEC §3."""

from __future__ import annotations

import importlib
import re
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate

from common.contracts import topology
from common.core.formats import UUID_PATTERN
from common.docs.openapi import operations, service_document
from gateway import admin
from gateway.apidocs import build_openapi
from gateway.docfragments import public_path
from gateway.routing import API_PREFIX, ROUTES, Access, Rule, access_of
from tests.common.docs.spec_tables import SPEC_SECTION_3_ROUTES

SERVICES = ("auth_svc", "project_svc", "comment_svc", "notif_svc")
ERROR_REF = "#/components/schemas/Error"


def service_routes(service: str) -> web.UrlDispatcher:
    """The service's route table as its `api.add_routes` builds it."""
    app = web.Application()
    importlib.import_module(f"{service}.api").add_routes(app)
    return app.router


def route_pairs(router: web.UrlDispatcher) -> list[tuple[str, str]]:
    return [(r.method, r.resource.canonical) for r in router.routes() if r.method != "HEAD" and r.resource]


def shape(path: str) -> str:
    """A path with its parameters unnamed: `/cards/{card_id}` and `/cards/{id}` are the same path."""
    return re.sub(r"{[^}]*}", "{}", path)


@pytest.fixture(scope="module")
def merged() -> dict[str, Any]:
    document = build_openapi(SERVICES)
    validate(document)
    return document


def test_the_services_are_all_here() -> None:
    assert [spec.name for spec in topology.services()] == list(SERVICES)


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_document_is_valid_and_documents_every_route(service: str) -> None:
    router = service_routes(service)
    document = service_document(router, service)
    validate(document)
    assert set(operations(document)) == set(route_pairs(router))  # nothing undocumented, nothing invented


async def test_a_service_serves_its_document_without_a_token(make_settings, make_database, redis) -> None:  # type: ignore[no-untyped-def]
    from auth_svc.app import create_app

    settings = make_settings(service_name="auth_svc", database_url=await make_database())
    async with TestClient(TestServer(create_app(settings))) as client:
        response = await client.get("/openapi.json")
        assert response.status == 200, await response.text()
        document = await response.json()
    validate(document)
    assert ("POST", "/auth/register") in set(operations(document))
    assert "/health" not in document["paths"]  # its own infrastructure is not its API


def test_the_merged_document_has_every_route_the_gateway_routes(merged: dict[str, Any]) -> None:
    documented = set(operations(merged))
    expected = set()
    for service in SERVICES:
        for method, path in route_pairs(service_routes(service)):
            public = public_path(service, path)
            assert public is not None, f"{service} serves {method} {path}, which the gateway routes nowhere"
            expected.add((method, public))
    assert expected - documented == set()
    # and every routing rule is exercised by some documented path
    used = {rule_of(path.removeprefix(API_PREFIX)) for _, path in documented if path.startswith(API_PREFIX + "/")}
    assert set(ROUTES) - used == set()


def rule_of(path: str) -> Rule | None:
    """The first routing rule matching `path` (as `gateway.routing.Router` picks it)."""
    segments = re.sub(r"{[^}]+}", "x", path).split("/")
    for rule in ROUTES:
        parts = rule.prefix.split("/")
        if len(segments) >= len(parts) and all(p in ("*", s) for p, s in zip(parts, segments, strict=False)):
            return rule
    return None


def test_every_documented_api_path_reaches_a_real_route(merged: dict[str, Any]) -> None:
    """The other way round: nothing in the document that no code answers."""
    served = {("GET", "/health"), ("GET", "/docs")}
    served |= {(method, admin.ADMIN_PREFIX + path) for method, path, _ in admin.ROUTES}
    served |= {("GET", API_PREFIX + "/openapi.json"), ("GET", API_PREFIX + "/asyncapi.json")}
    for service in SERVICES:
        served |= {(m, public_path(service, p) or "") for m, p in route_pairs(service_routes(service))}
    assert set(operations(merged)) - served == set()


def test_the_websocket_is_documented_where_clients_connect(merged: dict[str, Any]) -> None:
    paths = merged["paths"]
    assert "/api/v1/ws" in paths and "/api/v1/notifications/ws" not in paths
    operation = paths["/api/v1/ws"]["get"]
    assert "101" in operation["responses"]
    assert {"accessTokenQuery": []} in operation["security"]


def test_every_admin_route_is_documented_and_tagged(merged: dict[str, Any]) -> None:
    for method, path, _ in admin.ROUTES:
        operation = merged["paths"][admin.ADMIN_PREFIX + path][method.lower()]
        assert operation["tags"] == ["admin"]
        assert {"401", "403"} <= set(operation["responses"])


def test_every_path_of_spec_section_3_is_documented(merged: dict[str, Any]) -> None:
    listed = SPEC_SECTION_3_ROUTES
    at_root = {"/health", "/docs"}
    wanted = {(m, shape(p if p in at_root or p.startswith(API_PREFIX) else API_PREFIX + p)) for m, p in listed}
    documented = {(m, shape(p)) for m, p in operations(merged)}
    assert wanted - documented == set()


def test_security_follows_the_gateways_access_table(merged: dict[str, Any]) -> None:
    for method, path in operations(merged):
        operation = merged["paths"][path][method.lower()]
        if not path.startswith(API_PREFIX + "/") or path.startswith(admin.ADMIN_PREFIX):
            continue
        public = access_of(method, path.removeprefix(API_PREFIX)) is not Access.TOKEN
        assert (operation["security"] == []) == public, f"{method} {path}"
        assert ("401" in operation["responses"]) == (not public or path.endswith(("/login", "/refresh")))
    for path in ("/health", "/docs", "/api/v1/openapi.json", "/api/v1/asyncapi.json"):
        assert merged["paths"][path]["get"]["security"] == []
    bearer = merged["components"]["securitySchemes"]["bearerAuth"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")


def test_errors_have_the_spec_shape(merged: dict[str, Any]) -> None:
    error = merged["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    detail = merged["components"]["schemas"]["ErrorDetail"]
    assert set(detail["required"]) == {"code", "message", "details"}
    for method, path in operations(merged):
        for status, response in merged["paths"][path][method.lower()]["responses"].items():
            assert "X-Request-ID" in response["headers"], f"{method} {path} {status}"
            if int(status) >= 400 and path != "/health":
                assert response["content"]["application/json"]["schema"] == {"$ref": ERROR_REF}
    login = merged["paths"]["/api/v1/auth/login"]["post"]["responses"]
    assert {"400", "401", "429"} <= set(login)
    assert "Retry-After" in login["429"]["headers"]


def test_request_bodies_and_answers_come_from_the_marshmallow_schemas(merged: dict[str, Any]) -> None:
    from project_svc.schemas import STATUSES

    schemas = merged["components"]["schemas"]
    create = merged["paths"]["/api/v1/projects/{project_id}/cards"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CreateCardRequest"
    }
    body = schemas["CreateCardRequest"]
    assert body["required"] == ["title"]
    assert body["additionalProperties"] is False  # unknown fields are a 400
    assert body["properties"]["status"]["enum"] == list(STATUSES)
    assert body["properties"]["title"]["maxLength"] == 200
    assert set(create["responses"]) >= {"201", "400", "401", "404", "413"}
    assert create["responses"]["201"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Card"}
    register = schemas["RegisterRequest"]["properties"]
    assert register["password"]["writeOnly"] is True and register["password"]["minLength"] == 8


def test_list_endpoints_document_their_pagination(merged: dict[str, Any]) -> None:
    def params(path: str) -> dict[str, Any]:
        return {p["name"]: p for p in merged["paths"][path]["get"]["parameters"] if p["in"] == "query"}

    def items(path: str) -> str:
        ref = merged["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        return ref.rsplit("/", 1)[1]

    schemas = merged["components"]["schemas"]
    for path in ("/api/v1/users", "/api/v1/projects"):
        query = params(path)
        assert query["limit"]["schema"] == {"type": "integer", "default": 20, "minimum": 1, "maximum": 100}
        assert query["offset"]["schema"]["default"] == 0
        assert set(schemas[items(path)]["properties"]) == {"items", "total", "limit", "offset"}
    for path in ("/api/v1/cards", "/api/v1/projects/{project_id}/cards", "/api/v1/cards/{card_id}/comments"):
        query = params(path)
        assert {"limit", "cursor"} <= set(query)
        assert set(schemas[items(path)]["properties"]) == {"items", "next_cursor"}
    feed = params("/api/v1/notifications")
    assert {"limit", "cursor", "unread", "wait"} <= set(feed)
    assert "304" in merged["paths"]["/api/v1/notifications"]["get"]["responses"]
    assert {"status", "priority", "assignee_id", "q", "due_before"} <= set(params("/api/v1/cards"))


def test_path_ids_are_documented_as_uuids(merged: dict[str, Any]) -> None:
    card = merged["paths"]["/api/v1/cards/{card_id}"]["get"]["parameters"]
    assert card == [
        {
            "in": "path",
            "name": "card_id",
            "required": True,
            "schema": {"type": "string", "format": "uuid", "pattern": UUID_PATTERN},
            "description": "a UUID (anything else is a 404)",
        }
    ]
    dlq = merged["paths"]["/api/v1/admin/dlq/{id}"]["get"]["parameters"][0]
    assert dlq["schema"] == {"type": "string"}  # an entry id, not a UUID


async def test_the_gateway_serves_the_merged_document_without_a_token(gateway: TestClient) -> None:
    response = await gateway.get("/api/v1/openapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    assert response.headers["X-Request-ID"]
    document = await response.json()
    validate(document)
    assert set(operations(document)) == set(operations(build_openapi(SERVICES)))


async def test_a_gateway_leaves_out_the_services_it_has_no_url_for(make_settings, redis) -> None:  # type: ignore[no-untyped-def]
    from gateway.app import create_app

    settings = make_settings(service_name="gateway", auth_url=("http://127.0.0.1:9",))
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1")) as client:
        document = await (await client.get("/api/v1/openapi.json")).json()
    paths = set(document["paths"])
    assert "/api/v1/auth/login" in paths and "/api/v1/admin/streams" in paths
    assert not any(path.startswith(("/api/v1/projects", "/api/v1/cards", "/api/v1/notifications")) for path in paths)
