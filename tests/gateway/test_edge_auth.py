"""Tokens are checked at the edge: a bad one is a 401 that never reaches a service."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import aiohttp
import jwt
import pytest

from common.redis.sessions import DenyList
from common.service.tokens import TokenVerifier
from tests.gateway.conftest import MakeToken, total_seen
from tests.helpers import eventually


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def tampered(token: str) -> str:
    """The same signature over a payload that now claims the admin role."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "admin"
    return ".".join([header, b64(json.dumps(claims).encode()), signature])


def unsigned(token: str) -> str:
    """The same claims with `alg: none` and no signature."""
    claims = jwt.decode(token, options={"verify_signature": False})
    return jwt.encode(claims, "", algorithm="none")


def hmac_with_public_key(token: str, public_pem: bytes) -> str:
    """The classic algorithm-confusion forgery: HS256 keyed with the (public) verification key."""
    claims = jwt.decode(token, options={"verify_signature": False})
    signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(json.dumps(claims).encode())
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(signature)


async def assert_refused(gateway, upstreams, headers: dict[str, str], code: str) -> None:
    response = await gateway.get("/api/v1/users/me", headers=headers)
    assert response.status == 401, await response.text()
    assert (await response.json())["error"]["code"] == code
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert total_seen(upstreams) == 0


async def test_a_request_without_a_token_is_refused_at_the_edge(gateway, upstreams):
    await assert_refused(gateway, upstreams, {}, "missing_token")


async def test_a_non_bearer_authorization_is_refused_at_the_edge(gateway, upstreams):
    await assert_refused(gateway, upstreams, {"Authorization": "Basic dXNlcjpwYXNz"}, "missing_token")


async def test_an_expired_token_is_refused_at_the_edge(gateway, upstreams, make_token: MakeToken):
    await assert_refused(gateway, upstreams, make_token(expires_in=-60).headers, "token_expired")


@pytest.mark.parametrize(
    "forge",
    [
        lambda token, pem: "not-a-jwt",
        lambda token, pem: tampered(token),
        lambda token, pem: unsigned(token),
        lambda token, pem: hmac_with_public_key(token, pem),
    ],
    ids=["garbage", "tampered-payload", "alg-none", "hs256-with-public-key"],
)
async def test_a_forged_token_is_refused_at_the_edge(gateway, upstreams, make_token: MakeToken, make_settings, forge):
    token = forge(make_token().value, make_settings().read_public_key())
    await assert_refused(gateway, upstreams, {"Authorization": "Bearer " + token}, "invalid_token")


@pytest.mark.parametrize("claims", [{"typ": "refresh"}, {"iss": "someone-else"}], ids=["refresh-token", "other-issuer"])
async def test_a_token_not_meant_for_api_calls_is_refused(gateway, upstreams, make_token: MakeToken, claims):
    await assert_refused(gateway, upstreams, make_token(**claims).headers, "invalid_token")


async def test_a_token_of_a_revoked_session_is_refused_but_other_sessions_go_through(
    gateway, upstreams, redis, make_token: MakeToken
):
    revoked = make_token()
    other_session = make_token(sub=revoked.user_id)
    await DenyList(redis).deny([revoked.session_id], ttl_s=60)

    await assert_refused(gateway, upstreams, revoked.headers, "token_revoked")
    response = await gateway.get("/api/v1/users/me", headers=other_session.headers)
    assert response.status == 200


async def test_a_valid_token_is_passed_to_the_service_unchanged(gateway, upstreams, make_token: MakeToken):
    token = make_token()

    response = await gateway.get("/api/v1/users/me", headers=token.headers)

    assert response.status == 200
    (seen,) = upstreams["auth_svc"].seen
    assert seen.headers["Authorization"] == "Bearer " + token.value


PUBLIC = [
    ("POST", "/api/v1/auth/register"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),
    ("GET", "/api/v1/auth/jwks.json"),
]


@pytest.mark.parametrize(("method", "path"), PUBLIC, ids=[p for _, p in PUBLIC])
async def test_public_endpoints_reach_the_service_without_a_token(gateway, upstreams, method, path):
    response = await gateway.request(method, path, json={} if method == "POST" else None)

    assert response.status == 200
    assert len(upstreams["auth_svc"].seen) == 1


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/v1/auth/login"), ("POST", "/api/v1/auth/login/extra"), ("POST", "/api/v1/auth/logout")],
)
async def test_only_the_exact_public_endpoints_skip_the_token(gateway, upstreams, method, path):
    response = await gateway.request(method, path)

    assert response.status == 401
    assert total_seen(upstreams) == 0


async def test_the_gateway_health_needs_no_token(gateway):
    response = await gateway.get("/health")

    assert response.status == 200


async def test_a_session_revoked_after_its_token_was_seen_is_refused_from_then_on(
    gateway, upstreams, redis, make_token: MakeToken
):
    token = make_token()
    assert (await gateway.get("/api/v1/users/me", headers=token.headers)).status == 200

    await DenyList(redis).deny([token.session_id], ttl_s=60)

    response = await gateway.get("/api/v1/users/me", headers=token.headers)
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "token_revoked"
    assert len(upstreams["auth_svc"].seen) == 1


async def test_a_token_seen_before_is_refused_once_it_expires(gateway, upstreams, make_token: MakeToken):
    token = make_token(expires_in=1)
    assert (await gateway.get("/api/v1/users/me", headers=token.headers)).status == 200

    async def refused() -> aiohttp.ClientResponse | None:
        response = await gateway.get("/api/v1/users/me", headers=token.headers)
        return response if response.status == 401 else None

    response = await eventually(refused, timeout=5, interval=0.1, what="the remembered token to expire")
    assert (await response.json())["error"]["code"] == "token_expired"


def test_remembered_tokens_are_bounded(make_token: MakeToken, make_settings):
    settings = make_settings()
    verifier = TokenVerifier(settings.read_public_key(), settings.jwt_issuer, None, remembered_tokens=2)

    identities = [verifier.access_claims(make_token().value)["sid"] for _ in range(5)]

    assert len(set(identities)) == 5
    assert verifier.remembered <= 2
