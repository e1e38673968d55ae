"""Sessions and tokens: refresh rotation, reuse detection, logout, password change, bad tokens."""

from __future__ import annotations

import base64
import time
import uuid

import jwt
import orjson

from common.redis.sessions import REVOCATIONS_CHANNEL
from tests.helpers import bearer


async def refresh(auth_client, token: str):  # type: ignore[no-untyped-def]
    return await auth_client.post("/auth/refresh", json={"refresh_token": token})


async def me_status(auth_client, access_token: str) -> int:  # type: ignore[no-untyped-def]
    return (await auth_client.get("/users/me", headers=bearer(access_token))).status


async def test_refresh_rotates_the_pair(auth_client, register):
    user = await register()
    response = await refresh(auth_client, user["refresh_token"])
    assert response.status == 200
    pair = await response.json()
    assert pair["refresh_token"] != user["refresh_token"]
    assert await me_status(auth_client, pair["access_token"]) == 200
    again = await refresh(auth_client, pair["refresh_token"])  # the new one is spendable once
    assert again.status == 200


async def test_reusing_a_spent_refresh_token_revokes_the_whole_session(auth_client, register):
    user = await register()
    rotated = await (await refresh(auth_client, user["refresh_token"])).json()
    reuse = await refresh(auth_client, user["refresh_token"])
    assert reuse.status == 401
    assert (await reuse.json())["error"]["code"] == "refresh_token_reused"
    # Everything the session minted is dead now, including the pair the thief or victim still holds.
    assert (await refresh(auth_client, rotated["refresh_token"])).status == 401
    assert await me_status(auth_client, rotated["access_token"]) == 401
    assert await me_status(auth_client, user["access_token"]) == 401


async def test_a_refresh_token_is_not_an_access_token_and_vice_versa(auth_client, register):
    user = await register()
    assert await me_status(auth_client, user["refresh_token"]) == 401
    assert (await refresh(auth_client, user["access_token"])).status == 401


async def test_logout_revokes_both_tokens(auth_client, register):
    user = await register()
    response = await auth_client.post("/auth/logout", headers=bearer(user["access_token"]))
    assert response.status == 204
    assert await me_status(auth_client, user["access_token"]) == 401
    assert (await refresh(auth_client, user["refresh_token"])).status == 401


async def test_logout_leaves_other_sessions_alone(auth_client, register):
    user = await register()
    other = await (
        await auth_client.post("/auth/login", json={"username": user["user"]["username"], "password": user["password"]})
    ).json()
    await auth_client.post("/auth/logout", headers=bearer(user["access_token"]))
    assert await me_status(auth_client, other["access_token"]) == 200


async def test_changing_the_password_revokes_the_other_sessions_only(auth_client, register):
    user = await register()
    name = user["user"]["username"]
    other = await (await auth_client.post("/auth/login", json={"username": name, "password": user["password"]})).json()
    wrong = await auth_client.post(
        "/users/me/password",
        json={"current_password": "not it at all", "new_password": "brand new pass"},
        headers=bearer(user["access_token"]),
    )
    assert wrong.status == 403
    assert (await wrong.json())["error"]["details"] == {"current_password": ["is not correct"]}
    response = await auth_client.post(
        "/users/me/password",
        json={"current_password": user["password"], "new_password": "brand new pass"},
        headers=bearer(user["access_token"]),
    )
    assert response.status == 204
    assert await me_status(auth_client, user["access_token"]) == 200
    assert await me_status(auth_client, other["access_token"]) == 401
    assert (await refresh(auth_client, other["refresh_token"])).status == 401
    old = await auth_client.post("/auth/login", json={"username": name, "password": user["password"]})
    new = await auth_client.post("/auth/login", json={"username": name, "password": "brand new pass"})
    assert (old.status, new.status) == (401, 200)


def _b64(data: dict) -> str:  # type: ignore[type-arg]
    return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()


def _claims(user: dict, **overrides: object) -> dict:  # type: ignore[type-arg]
    now = int(time.time())
    claims = {
        "iss": "taskswarm",
        "sub": user["user"]["id"],
        "sid": str(uuid.uuid4()),
        "jti": str(uuid.uuid4()),
        "typ": "access",
        "role": "superadmin",
        "username": "x",
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return claims


async def test_tampered_expired_foreign_and_unsigned_tokens_are_401(auth_client, register, servers):
    user = await register()
    header, _payload, signature = user["access_token"].split(".")
    tampered = ".".join([header, _b64(_claims(user)), signature])
    private_key = (servers.keys_dir / "jwt_private.pem").read_bytes()
    expired = jwt.encode(_claims(user, exp=int(time.time()) - 5), private_key, algorithm="EdDSA")
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(user))}."
    symmetric = jwt.encode(_claims(user), "a-guessed-shared-secret-of-32-bytes!", algorithm="HS256")
    wrong_issuer = jwt.encode(_claims(user, iss="someone-else"), private_key, algorithm="EdDSA")
    for token in (tampered, expired, unsigned, symmetric, wrong_issuer, "garbage"):
        response = await auth_client.get("/users/me", headers=bearer(token))
        assert response.status == 401, token
        assert (await response.json())["error"]["code"] in {"invalid_token", "token_expired"}
    assert (await auth_client.get("/users/me", headers={"Authorization": "Basic abc"})).status == 401


async def test_the_public_key_is_published_as_jwks(auth_client, register):
    user = await register()
    keys = (await (await auth_client.get("/auth/jwks.json")).json())["keys"]
    key = jwt.PyJWK.from_dict(keys[0])
    claims = jwt.decode(user["access_token"], key.key, algorithms=["EdDSA"], issuer="taskswarm")
    assert claims["sub"] == user["user"]["id"]


async def test_revocations_are_announced_for_long_lived_connections(auth_client, register, redis):
    user = await register()
    session_id = jwt.decode(user["access_token"], options={"verify_signature": False})["sid"]
    pubsub = redis.pubsub()
    await pubsub.subscribe(REVOCATIONS_CHANNEL)
    try:
        await pubsub.get_message(timeout=1)  # the subscribe confirmation
        assert (await auth_client.post("/auth/logout", headers=bearer(user["access_token"]))).status == 204
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
    finally:
        await pubsub.aclose()
    assert message is not None and message["data"] == session_id


async def test_every_answer_carrying_tokens_may_not_be_stored_by_any_cache(auth_client):
    name = f"user_{uuid.uuid4().hex[:10]}"
    credentials = {"username": name, "password": "correct horse battery"}
    registered = await auth_client.post("/auth/register", json={**credentials, "email": f"{name}@example.com"})
    logged_in = await auth_client.post("/auth/login", json=credentials)
    refreshed = await refresh(auth_client, (await logged_in.json())["refresh_token"])

    for response in (registered, logged_in, refreshed):
        assert response.status in (200, 201), await response.text()
        assert "access_token" in await response.json()
        assert response.headers.getall("Cache-Control") == ["no-store"], response.url
    me = await auth_client.get("/users/me", headers=bearer((await refreshed.json())["access_token"]))
    assert "Cache-Control" not in me.headers  # only where a token is in the answer
