"""Accounts: registration, login, profile, listing and roles (SPEC §3 Auth)."""

from __future__ import annotations

import asyncio
import io

import pytest

from tests.helpers import bearer


async def test_register_returns_the_user_and_a_token_pair(auth_client):
    response = await auth_client.post(
        "/auth/register", json={"username": "alice", "email": "alice@example.com", "password": "s3cret-pass"}
    )
    assert response.status == 201
    body = await response.json()
    assert body["user"]["username"] == "alice"
    assert body["user"]["role"] == "user"
    assert set(body["user"]) == {"id", "username", "email", "full_name", "role", "created_at", "updated_at"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 15 * 60
    assert body["access_token"] and body["refresh_token"]
    assert response.headers["X-Request-ID"]


@pytest.mark.parametrize(
    "clash",
    [
        {"username": "Bob", "email": "other@example.com"},
        {"username": "bobby", "email": "BOB@example.com"},
    ],
    ids=["username-any-case", "email-any-case"],
)
async def test_a_taken_username_or_email_is_a_conflict(auth_client, register, clash):
    await register(username="bob", email="bob@example.com")
    response = await auth_client.post("/auth/register", json={**clash, "password": "long enough"})
    assert response.status == 409
    assert (await response.json())["error"]["code"] == "conflict"


async def test_concurrent_registrations_of_one_name_create_one_user(auth_client):
    body = {"username": "racer", "email": "racer@example.com", "password": "long enough"}
    responses = await asyncio.gather(*(auth_client.post("/auth/register", json=body) for _ in range(5)))
    assert sorted(r.status for r in responses) == [201, 409, 409, 409, 409]


BAD_REGISTRATIONS = [
    ("not json", b"{oops", "invalid_json", None),
    ("not an object", b"[1, 2]", "validation_error", "_schema"),
    ("missing fields", b"{}", "validation_error", "username"),
    ("wrong type", b'{"username": 42, "email": "a@b.co", "password": "long enough"}', "validation_error", "username"),
    (
        "bad characters",
        b'{"username": "no spaces", "email": "a@b.co", "password": "long enough"}',
        "validation_error",
        "username",
    ),
    ("too short", b'{"username": "ab", "email": "a@b.co", "password": "long enough"}', "validation_error", "username"),
    ("bad email", b'{"username": "okname", "email": "nope", "password": "long enough"}', "validation_error", "email"),
    (
        "short password",
        b'{"username": "okname", "email": "a@b.co", "password": "short"}',
        "validation_error",
        "password",
    ),
    (
        "unknown field",
        b'{"username": "okname", "email": "a@b.co", "password": "long enough", "role": "admin"}',
        "validation_error",
        "role",
    ),
]


@pytest.mark.parametrize(("case", "raw", "code", "field"), BAD_REGISTRATIONS, ids=[c[0] for c in BAD_REGISTRATIONS])
async def test_bad_registration_input_is_a_400_in_the_error_format(auth_client, case, raw, code, field):
    response = await auth_client.post("/auth/register", data=raw, headers={"Content-Type": "application/json"})
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == code
    assert error["message"]
    if field:
        assert field in error["details"]


async def test_an_oversized_body_is_a_413(auth_client):
    big = b'{"username": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    response = await auth_client.post(
        "/auth/register", data=io.BytesIO(big), headers={"Content-Type": "application/json"}
    )
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "payload_too_large"


async def test_unknown_routes_and_methods_answer_in_the_error_format(auth_client):
    missing = await auth_client.get("/nope")
    assert missing.status == 404
    assert (await missing.json())["error"]["code"] == "not_found"
    wrong_method = await auth_client.delete("/auth/register")
    assert wrong_method.status == 405
    assert (await wrong_method.json())["error"]["code"] == "method_not_allowed"


async def test_login_accepts_the_username_or_the_email(auth_client, register):
    user = await register()
    for name in (user["user"]["username"], user["user"]["email"].upper()):
        response = await auth_client.post("/auth/login", json={"username": name, "password": user["password"]})
        assert response.status == 200
        assert (await response.json())["access_token"]


async def test_a_wrong_password_and_an_unknown_user_get_the_same_401(auth_client, register):
    user = await register()
    wrong = await auth_client.post("/auth/login", json={"username": user["user"]["username"], "password": "bad guess"})
    unknown = await auth_client.post("/auth/login", json={"username": "nobody_here", "password": "bad guess"})
    assert wrong.status == unknown.status == 401
    assert await wrong.json() == await unknown.json()


async def test_me_requires_a_token_and_returns_the_caller(auth_client, register):
    user = await register()
    assert (await auth_client.get("/users/me")).status == 401
    response = await auth_client.get("/users/me", headers=bearer(user["access_token"]))
    assert response.status == 200
    assert (await response.json())["id"] == user["user"]["id"]


async def test_update_me_changes_the_email_and_refuses_a_taken_one(auth_client, register):
    me, other = await register(), await register()
    headers = bearer(me["access_token"])
    response = await auth_client.patch(
        "/users/me", json={"email": "new@example.com", "full_name": "Me"}, headers=headers
    )
    assert response.status == 200
    assert (await response.json())["email"] == "new@example.com"
    clash = await auth_client.patch("/users/me", json={"email": other["user"]["email"]}, headers=headers)
    assert clash.status == 409
    empty = await auth_client.patch("/users/me", json={}, headers=headers)
    assert empty.status == 400
    nul = await auth_client.patch("/users/me", json={"full_name": "M\u0000e"}, headers=headers)
    assert nul.status == 400  # PostgreSQL cannot store it: refused before it gets there
    assert (await nul.json())["error"]["details"] == {"full_name": ["must not contain NUL characters"]}


async def test_users_are_listed_with_search_and_offset_pagination(auth_client, register):
    caller = await register(username="zed")
    for name in ("team_ann", "team_bob", "team_cat", "solo_dan"):
        await register(username=name)
    headers = bearer(caller["access_token"])
    page = await (await auth_client.get("/users?search=TEAM_&limit=2&offset=1", headers=headers)).json()
    assert page["total"] == 3
    assert page["limit"] == 2 and page["offset"] == 1
    assert [u["username"] for u in page["items"]] == ["team_bob", "team_cat"]
    bad = await auth_client.get("/users?limit=1000", headers=headers)
    assert bad.status == 400
    assert "limit" in (await bad.json())["error"]["details"]


async def test_a_user_is_found_by_id_and_an_unknown_or_malformed_id_is_a_404(auth_client, register):
    caller, target = await register(), await register()
    headers = bearer(caller["access_token"])
    found = await auth_client.get(f"/users/{target['user']['id']}", headers=headers)
    assert (await found.json())["username"] == target["user"]["username"]
    for missing in ("00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        assert (await auth_client.get(f"/users/{missing}", headers=headers)).status == 404
