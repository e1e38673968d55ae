"""The merged OpenAPI document states the rules the code applies, where a fuzzer found them apart (issue
13): what a PATCH needs, which query values may be empty, what `/admin/events` requires, what makes a
WebSocket request, which media type a body takes, how large an offset may be, and which strings are
refused (NUL, blank, a username with anything else). The behaviour side is tests/e2e/test_hostile_input.py."""

from __future__ import annotations

import re
from typing import Any

import pytest
from openapi_spec_validator import validate

from common.core.formats import MAX_BIGINT, NO_NUL_PATTERN, NOT_BLANK_PATTERN, USERNAME_PATTERN
from common.docs.openapi import operations
from gateway.apidocs import build_openapi

SERVICES = ("auth_svc", "project_svc", "comment_svc", "notif_svc")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    merged = build_openapi(SERVICES)
    validate(merged)
    return merged


def query_of(document: dict[str, Any], path: str) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in document["paths"][path]["get"]["parameters"] if p["in"] == "query"}


def test_a_patch_body_must_change_something(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for name in ("UpdateMeRequest", "UpdateProjectRequest", "UpdateCardRequest"):
        assert schemas[name]["minProperties"] == 1, name


def test_cursors_starts_and_the_assignee_filter_may_be_empty(document: dict[str, Any]) -> None:
    empty_allowed = {
        "/api/v1/cards": ("cursor", "assignee_id"),
        "/api/v1/projects/{project_id}/cards": ("cursor", "assignee_id"),
        "/api/v1/cards/{card_id}/comments": ("cursor",),
        "/api/v1/notifications": ("cursor",),
        "/api/v1/admin/dlq": ("from",),
        "/api/v1/admin/streams/{stream}/entries": ("from",),
    }
    for path, names in empty_allowed.items():
        query = query_of(document, path)
        for name in names:
            schema = query[name]["schema"]
            assert schema.get("minLength", 0) == 0, (path, name)
            assert re.fullmatch(schema["pattern"], ""), (path, name)
    assert re.fullmatch(query_of(document, "/api/v1/cards")["assignee_id"]["schema"]["pattern"], "me")


def test_an_event_search_requires_its_correlation_id(document: dict[str, Any]) -> None:
    query = query_of(document, "/api/v1/admin/events")
    assert query["correlation_id"]["required"] is True
    assert set(query) == {"correlation_id", "limit"}  # one event by id: /admin/events/{event_id}


def test_the_websocket_route_requires_the_opening_handshake(document: dict[str, Any]) -> None:
    ws = document["paths"]["/api/v1/ws"]["get"]
    headers = {p["name"]: p for p in ws["parameters"] if p["in"] == "header"}
    assert {"Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version"} <= set(headers)
    assert all(headers[name]["required"] for name in ("Upgrade", "Connection", "Sec-WebSocket-Key"))
    assert ws["responses"]["400"]["content"]["application/json"]["example"]["error"]["code"] == (
        "invalid_websocket_handshake"
    )


def test_every_operation_with_a_body_answers_415_to_another_media_type(document: dict[str, Any]) -> None:
    with_body = [
        (method, path)
        for method, path in operations(document)
        if "requestBody" in document["paths"][path][method.lower()]
    ]
    assert len(with_body) >= 10
    for method, path in with_body:
        refused = document["paths"][path][method.lower()]["responses"]["415"]
        assert refused["content"]["application/json"]["example"]["error"]["code"] == "unsupported_media_type"


def test_numbers_show_their_bounds(document: dict[str, Any]) -> None:
    for path in ("/api/v1/users", "/api/v1/projects"):
        assert query_of(document, path)["offset"]["schema"]["maximum"] == MAX_BIGINT
    wait = query_of(document, "/api/v1/notifications")["wait"]["schema"]
    assert (wait["minimum"], wait["maximum"]) == (0, 30)


def test_strings_say_which_characters_they_refuse(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert schemas["RegisterRequest"]["properties"]["username"]["pattern"] == USERNAME_PATTERN
    assert schemas["LoginRequest"]["properties"]["password"]["pattern"] == NO_NUL_PATTERN
    assert schemas["CreateProjectRequest"]["properties"]["description"]["pattern"] == NO_NUL_PATTERN
    for schema, field in (("CreateProjectRequest", "title"), ("CreateCardRequest", "title"), ("Comment", "body")):
        if schema == "Comment":
            schema = next(name for name in schemas if name.startswith("CommentRequest"))
        assert schemas[schema]["properties"][field]["pattern"] == NOT_BLANK_PATTERN, (schema, field)
    # A pattern the document shows must mean the same to a client's (ECMA-262) regex engine: no \Z, \A.
    for name, schema in schemas.items():
        for field, spec in schema.get("properties", {}).items():
            assert not re.search(r"\\[AZz]", spec.get("pattern", "")), (name, field)
