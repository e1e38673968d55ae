"""Hostile input through the gateway, against real processes (issue 13 items 3, 4, 5, 11, 12): what a
fuzzer or an attacker sends is a 4xx in the SPEC error shape, never a 500 or a 503, and the answers agree
with what the OpenAPI document says (tests/common/docs/test_openapi_rules.py is the document side)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from common.core.ids import encode_cursor
from tests.e2e.client import PASSWORD, Api

pytestmark = pytest.mark.e2e

OUT_OF_RANGE_TIMES = ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00")
TOO_BIG = "18446744073709551616"  # 2^64: no part of a Redis stream id may be this large


@pytest.fixture
async def api(system: Any) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(http, system.gateway_url)


def refused(status: int, body: Any, expected: int, code: str) -> bool:
    return status == expected and body["error"]["code"] == code and set(body["error"]) == {"code", "message", "details"}


# -- item 3: numbers, times and ids the stores cannot take ----------------------------------------------


async def test_an_offset_past_postgresql_bigint_is_a_400_and_the_largest_one_an_empty_page(api: Api) -> None:
    alice = await api.register("alice")
    for path in ("/users", "/projects"):
        status, body = await api.call("GET", path, alice, offset=str(2**63))
        assert refused(status, body, 400, "validation_error"), (path, status, body)
        assert "offset" in body["error"]["details"]
        page = await api.ok("GET", path, alice, offset=str(2**63 - 1))
        assert page["items"] == [] and page["offset"] == 2**63 - 1


async def test_a_cursor_holding_a_time_outside_every_store_is_a_400_on_every_cursor_listing(api: Api) -> None:
    alice = await api.register("alice")
    project = await api.ok("POST", "/projects", alice, json={"title": "Apollo"})
    card = await api.ok("POST", f"/projects/{project['id']}/cards", alice, json={"title": "Land"})
    listings = ("/notifications", "/cards", f"/projects/{project['id']}/cards", f"/cards/{card['id']}/comments")
    for created_at in OUT_OF_RANGE_TIMES:
        cursor = encode_cursor({"created_at": created_at, "id": str(uuid.uuid4())})
        for path in listings:
            status, body = await api.call("GET", path, alice, cursor=cursor)
            assert refused(status, body, 400, "validation_error"), (path, created_at, status, body)
            assert body["error"]["details"] == {"cursor": ["invalid cursor"]}


async def test_an_id_in_any_other_form_than_8_4_4_4_12_names_nothing(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    project = await api.ok("POST", "/projects", alice, json={"title": "Apollo"})
    card = await api.ok("POST", f"/projects/{project['id']}/cards", alice, json={"title": "Land"})
    comment_id = str(uuid.uuid4())
    for spell in (lambda i: f"urn:uuid:{i}", lambda i: "{" + i + "}", lambda i: i.replace("-", "")):
        paths = (
            ("GET", f"/users/{spell(alice.id)}"),
            ("GET", f"/projects/{spell(project['id'])}"),
            ("GET", f"/projects/{spell(project['id'])}/cards"),
            ("DELETE", f"/projects/{project['id']}/members/{spell(bob.id)}"),
            ("GET", f"/cards/{spell(card['id'])}"),
            ("GET", f"/cards/{spell(card['id'])}/comments"),
            ("GET", f"/comments/{spell(comment_id)}"),
            ("POST", f"/notifications/{spell(comment_id)}/read"),
        )
        for method, path in paths:
            status, body = await api.call(method, path, alice)
            assert refused(status, body, 404, "not_found"), (method, path, status, body)
        bodies = (
            (f"/projects/{project['id']}/members", {"user_id": spell(bob.id)}, "user_id"),
            (f"/projects/{project['id']}/cards", {"title": "x", "assignee_id": spell(alice.id)}, "assignee_id"),
        )
        for path, payload, field in bodies:
            status, body = await api.call("POST", path, alice, json=payload)
            assert refused(status, body, 400, "validation_error"), (path, payload, status, body)
            assert field in body["error"]["details"]
        status, body = await api.call("GET", "/cards", alice, assignee_id=spell(alice.id))
        assert refused(status, body, 400, "validation_error"), (status, body)
    # Upper case is the same id (the canonical form, any case).
    assert (await api.ok("GET", f"/cards/{card['id'].upper()}", alice))["id"] == card["id"]


# -- item 4: look-alike usernames ------------------------------------------------------------------------


async def test_a_username_ending_in_a_newline_cannot_register(api: Api) -> None:
    name = f"alice_{uuid.uuid4().hex[:6]}"
    payload = {"username": name + "\n", "email": f"{name}@example.com", "password": PASSWORD}
    status, body = await api.call("POST", "/auth/register", json=payload)
    assert refused(status, body, 400, "validation_error"), (status, body)
    assert "username" in body["error"]["details"]
    status, _ = await api.call("POST", "/auth/login", json={"username": name + "\n", "password": PASSWORD})
    assert status == 401


# -- item 5: stream ids beyond 64 bits on the admin routes ------------------------------------------------


async def test_stream_ids_of_2_to_the_64_are_a_400_or_a_404_never_a_503(api: Api, system: Any) -> None:
    admin = await api.admin("admin", system.config.data_dir)
    for path in ("/admin/streams/newUser/entries", "/admin/dlq"):
        for start in (f"{TOO_BIG}-0", f"0-{TOO_BIG}", TOO_BIG, "1-0\n", "\u0661-0"):
            status, body = await api.call("GET", path, admin, **{"from": start})
            assert refused(status, body, 400, "validation_error"), (path, start, status, body)
            assert "from" in body["error"]["details"]
        largest = "18446744073709551615-18446744073709551615"
        assert (await api.ok("GET", path, admin, **{"from": largest}))["items"] == []
    for letter in (f"{TOO_BIG}-0", f"1-{TOO_BIG}", "1-0%0A", "1"):
        for method, path in (("GET", f"/admin/dlq/{letter}"), ("POST", f"/admin/dlq/{letter}/replay")):
            status, body = await api.call(method, path, admin)
            assert refused(status, body, 404, "not_found"), (method, path, status, body)
        status, body = await api.call("DELETE", f"/admin/dlq/{letter}", admin)
        assert refused(status, body, 404, "not_found"), (letter, status, body)


# -- item 11: the answers the OpenAPI document describes --------------------------------------------------


async def test_an_empty_cursor_start_or_assignee_filter_means_none_was_given(api: Api, system: Any) -> None:
    alice = await api.register("alice")
    project = await api.ok("POST", "/projects", alice, json={"title": "Apollo"})
    card = await api.ok("POST", f"/projects/{project['id']}/cards", alice, json={"title": "Land"})
    first_page = await api.ok("GET", "/cards", alice)
    assert await api.ok("GET", "/cards", alice, cursor="", assignee_id="") == first_page
    assert (await api.ok("GET", f"/projects/{project['id']}/cards", alice, cursor="", assignee_id=""))["items"]
    assert "items" in await api.ok("GET", "/notifications", alice, cursor="")
    status, body = await api.call("GET", f"/cards/{card['id']}/comments", alice, cursor="")
    assert status in (200, 404), body  # 404 until comment_svc has replicated the card: never a 400
    admin = await api.admin("admin", system.config.data_dir)
    assert "items" in await api.ok("GET", "/admin/dlq", admin, **{"from": ""})
    assert "items" in await api.ok("GET", "/admin/streams/newUser/entries", admin, **{"from": ""})


async def test_a_patch_that_changes_nothing_is_refused_as_the_document_says(api: Api) -> None:
    alice = await api.register("alice")
    project = await api.ok("POST", "/projects", alice, json={"title": "Apollo"})
    card = await api.ok("POST", f"/projects/{project['id']}/cards", alice, json={"title": "Land"})
    for path in ("/users/me", f"/projects/{project['id']}", f"/cards/{card['id']}"):
        status, body = await api.call("PATCH", path, alice, json={})
        assert refused(status, body, 400, "validation_error"), (path, status, body)
        assert body["error"]["details"] == {"_schema": ["nothing to update"]}


async def test_an_event_search_without_its_correlation_id_names_the_missing_parameter(api: Api, system: Any) -> None:
    admin = await api.admin("admin", system.config.data_dir)
    status, body = await api.call("GET", "/admin/events", admin)
    assert refused(status, body, 400, "validation_error"), (status, body)
    assert "correlation_id" in body["error"]["details"]
    assert "items" in await api.ok("GET", "/admin/events", admin, correlation_id="no-such-request")


async def test_a_plain_get_of_the_websocket_route_is_an_invalid_handshake(api: Api) -> None:
    alice = await api.register("alice")
    status, body = await api.call("GET", "/ws", alice)
    assert refused(status, body, 400, "invalid_websocket_handshake"), (status, body)


# -- item 12: media types and repeated parameters ---------------------------------------------------------


async def test_a_json_body_sent_as_another_media_type_is_a_415(api: Api) -> None:
    alice = await api.register("alice")
    headers = {"Authorization": f"Bearer {alice.token}"}
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/octet-stream"):
        async with api.http.post(
            f"{api.base}/projects", data=b'{"title": "Apollo"}', headers={**headers, "Content-Type": content_type}
        ) as response:
            body = await response.json()
            assert refused(response.status, body, 415, "unsupported_media_type"), (content_type, body)
            assert response.headers["X-Request-ID"]
    for content_type in ("application/json; charset=utf-8", "application/vnd.taskswarm+json", "Application/JSON"):
        async with api.http.post(
            f"{api.base}/projects", data=b'{"title": "Apollo"}', headers={**headers, "Content-Type": content_type}
        ) as response:
            assert response.status == 201, (content_type, await response.text())


async def test_a_post_that_takes_no_body_still_works_without_one_or_a_content_type(api: Api) -> None:
    alice = await api.register("alice")
    async with aiohttp.ClientSession(skip_auto_headers=("Content-Type",)) as bare:
        headers = {"Authorization": f"Bearer {alice.token}"}
        async with bare.post(f"{api.base}/notifications/read-all", headers=headers) as response:
            assert response.status == 204
        async with bare.post(f"{api.base}/auth/logout", headers=headers) as response:
            assert response.status == 204


async def test_a_query_parameter_given_twice_is_a_400_naming_it(api: Api) -> None:
    alice = await api.register("alice")
    async with api.http.get(
        f"{api.base}/users?limit=1&limit=100&search=a", headers={"Authorization": f"Bearer {alice.token}"}
    ) as response:
        body = await response.json()
    assert refused(response.status, body, 400, "validation_error"), body
    assert body["error"]["details"] == {"limit": ["given more than once"]}
