"""The application factory: error format, request ids, auth, limits, health and readiness."""

from __future__ import annotations

import io
import time
import uuid
from datetime import UTC, datetime

import aiohttp
import asyncpg
import jwt
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from marshmallow import Schema, fields

from common.core.errors import Conflict, ValidationFailed
from common.core.ids import decode_cursor, decode_keyset, encode_cursor, encode_keyset
from common.core.paging import CursorPageQuery
from common.core.settings import Settings
from common.http.app import create_app, json_response, public
from common.http.contexts import redis_context
from common.http.validation import parse_body, parse_query


class Thing(Schema):
    name = fields.Str(required=True)
    size = fields.Int()
    built = 0  # instances made: handlers pass the class, and one instance serves every request

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        type(self).built += 1


async def create_thing(request: web.Request) -> web.Response:
    body = await parse_body(request, Thing)
    structlog.get_logger("test").info("thing.created", name=body["name"])
    if body["name"] == "taken":
        raise Conflict("name taken")
    return json_response(body, status=201)


@public
async def list_things(request: web.Request) -> web.Response:
    query = parse_query(request, CursorPageQuery())
    if query["cursor"]:
        decode_cursor(query["cursor"], ("after",))
    return json_response({"items": [], "next_cursor": None})


@public
async def crash(request: web.Request) -> web.Response:
    raise RuntimeError("bug")


@public
async def hang_up(request: web.Request) -> web.Response:
    """What a client closing its connection mid-request looks like from inside: the socket is gone."""
    assert request.transport is not None
    request.transport.close()
    raise ConnectionResetError("Connection lost")


@public
async def lose_a_dependency(request: web.Request) -> web.Response:
    raise ConnectionResetError("Connection lost")  # e.g. an upstream's socket, the client still there


@pytest.fixture
async def client(make_settings, redis):  # type: ignore[no-untyped-def]
    app = create_app(make_settings(service_name="demo", max_body_bytes=1024))
    app.cleanup_ctx.append(redis_context)
    app.router.add_post("/things", create_thing)
    app.router.add_get("/things", list_things)
    app.router.add_get("/crash", crash)
    app.router.add_get("/hang-up", hang_up)
    app.router.add_get("/lose", lose_a_dependency)
    async with TestClient(TestServer(app)) as client:
        yield client


def token(servers, **overrides: object) -> str:  # type: ignore[no-untyped-def]
    now = int(time.time())
    claims = {
        "iss": "taskswarm",
        "sub": str(uuid.uuid4()),
        "sid": str(uuid.uuid4()),
        "jti": "j",
        "typ": "access",
        "iat": now,
        "exp": now + 60,
        **overrides,
    }
    return jwt.encode(claims, (servers.keys_dir / "jwt_private.pem").read_bytes(), algorithm="EdDSA")


async def error_of(response) -> dict:  # type: ignore[no-untyped-def, type-arg]
    assert response.content_type == "application/json"
    return (await response.json())["error"]


async def test_routes_need_a_bearer_token_unless_public(client, servers):
    assert (await client.post("/things", json={"name": "a"})).status == 401
    ok = await client.post("/things", json={"name": "a"}, headers={"Authorization": f"Bearer {token(servers)}"})
    assert ok.status == 201
    assert (await client.get("/things")).status == 200


async def test_domain_errors_and_bugs_use_the_error_format(client, servers):
    headers = {"Authorization": f"Bearer {token(servers)}"}
    conflict = await client.post("/things", json={"name": "taken"}, headers=headers)
    assert conflict.status == 409
    assert (await error_of(conflict))["code"] == "conflict"
    bug = await client.get("/crash")
    assert bug.status == 500
    assert (await error_of(bug)) == {"code": "internal_error", "message": "internal error", "details": {}}


async def test_validation_errors_name_each_field(client, servers):
    headers = {"Authorization": f"Bearer {token(servers)}"}
    response = await client.post("/things", json={"size": "big", "extra": 1}, headers=headers)
    error = await error_of(response)
    assert response.status == 400
    assert error["code"] == "validation_error"
    assert set(error["details"]) == {"name", "size", "extra"}


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=abc", "cursor=%%%", "cursor=bm90anNvbg"])
async def test_bad_pagination_is_a_400_never_a_500(client, query):
    response = await client.get(f"/things?{query}")
    assert response.status == 400
    assert (await error_of(response))["code"] == "validation_error"


def test_cursors_round_trip():
    assert decode_cursor(encode_cursor({"after": "x", "n": 1}), ("after",)) == {"after": "x", "n": 1}


def test_keyset_cursors_round_trip_and_reject_what_they_did_not_make():
    created_at, item_id = datetime(2026, 11, 21, 12, 0, tzinfo=UTC), str(uuid.uuid4())
    assert decode_keyset(encode_keyset(created_at, item_id)) == (created_at, item_id)
    for forged in (
        encode_cursor({"created_at": "yesterday", "id": item_id}),
        encode_cursor({"created_at": "2026-11-21T12:00:00", "id": item_id}),  # no offset: ambiguous
        encode_cursor({"created_at": created_at.isoformat(), "id": "' OR 1=1 --"}),
        encode_cursor({"created_at": created_at.isoformat()}),
    ):
        with pytest.raises(ValidationFailed):
            decode_keyset(forged)


async def test_nul_characters_anywhere_in_input_are_a_400(client, servers):
    # PostgreSQL cannot store NUL in text; without this check it would surface as a 500.
    headers = {"Authorization": f"Bearer {token(servers)}"}
    response = await client.post("/things", json={"name": "a\u0000b", "size": 1}, headers=headers)
    assert response.status == 400
    assert (await error_of(response))["details"] == {"name": ["must not contain NUL characters"]}


async def test_bodies_over_the_limit_are_a_413(client, servers):
    headers = {"Authorization": f"Bearer {token(servers)}", "Content-Type": "application/json"}
    response = await client.post("/things", data=io.BytesIO(b'{"name": "' + b"x" * 2048 + b'"}'), headers=headers)
    assert response.status == 413
    assert (await error_of(response))["code"] == "payload_too_large"


async def test_the_request_id_is_kept_or_made_and_echoed(client):
    kept = await client.get("/things", headers={"X-Request-ID": "abc-123"})
    assert kept.headers["X-Request-ID"] == "abc-123"
    made = await client.get("/things", headers={"X-Request-ID": "bad id with spaces\u00e9"})
    assert made.headers["X-Request-ID"] != "bad id with spaces\u00e9"
    assert len(made.headers["X-Request-ID"]) == 32
    assert (await client.get("/nowhere")).headers["X-Request-ID"]


async def test_every_log_line_of_a_request_carries_its_request_id(client, servers):
    headers = {"Authorization": f"Bearer {token(servers)}", "X-Request-ID": "req-log-1"}
    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        await client.post("/things", json={"name": "logged"}, headers=headers)
    lines = [entry for entry in logs if entry["event"] in {"thing.created", "http.request"}]
    assert len(lines) == 2
    assert all(entry["request_id"] == "req-log-1" for entry in lines)


async def test_health_is_alive_and_ready_checks_dependencies(client):
    assert (await client.get("/health")).status == 200
    ready = await client.get("/ready")
    assert ready.status == 200
    assert (await ready.json())["checks"] == {"redis": "ok"}


async def test_ready_is_503_when_a_dependency_is_down(make_settings, tmp_path):
    from common.swarm.embedded import EmbeddedRedis

    server = EmbeddedRedis(tmp_path / "r").start()
    app = create_app(make_settings(service_name="demo", redis_url=server.url))
    app.cleanup_ctx.append(redis_context)
    try:
        async with TestClient(TestServer(app)) as client:
            server.stop()
            response = await client.get("/ready")
            assert response.status == 503
            assert (await response.json())["checks"]["redis"].startswith("failing")
    finally:
        server.stop()


async def test_a_database_still_starting_up_is_a_503_not_a_500(servers):
    async def starting(request: web.Request) -> web.Response:
        raise asyncpg.CannotConnectNowError("the database system is starting up")

    app = create_app(Settings.from_env({}, log_level="warning"))
    app.router.add_get("/starting", public(starting))
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/starting")
        assert response.status == 503
        assert (await error_of(response))["code"] == "service_unavailable"


async def test_a_schema_passed_as_a_class_is_built_once_for_every_request(client, servers):  # type: ignore[no-untyped-def]
    built_before = Thing.built
    headers = {"Authorization": f"Bearer {token(servers)}"}
    for name in ("one", "two", "three"):
        assert (await client.post("/things", json={"name": name}, headers=headers)).status == 201
    assert Thing.built - built_before <= 1  # 0 if an earlier test of this process built it already


async def test_a_client_hanging_up_is_not_logged_as_a_dependency_down(client):  # type: ignore[no-untyped-def]
    with structlog.testing.capture_logs() as logs:
        with pytest.raises(aiohttp.ClientError):
            await client.get("/hang-up")
        lost = await client.get("/lose")
    assert lost.status == 503
    events = [entry["event"] for entry in logs]
    assert events.count("http.client_gone") == 1
    assert events.count("http.dependency_unavailable") == 1
