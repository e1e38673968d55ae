"""Access-token verification: a token's signature is checked once, its expiry and session every time."""

from __future__ import annotations

import time
import uuid

import pytest

from auth_svc.tokens import TokenIssuer
from common.core.errors import Unauthorized
from common.redis.sessions import DenyList
from common.service.tokens import TokenVerifier
from tests.helpers import eventually


def issue(make_settings, ttl_s: int = 300) -> str:  # type: ignore[no-untyped-def]
    settings = make_settings()
    issuer = TokenIssuer(settings.read_private_key(), settings.jwt_issuer, ttl_s, 3600)
    user = {"id": str(uuid.uuid4()), "role": "user", "username": "ada"}
    return issuer.pair(user, str(uuid.uuid4()), str(uuid.uuid4())).access_token


def verifier(make_settings, redis=None) -> TokenVerifier:  # type: ignore[no-untyped-def]
    settings = make_settings()
    return TokenVerifier(settings.read_public_key(), settings.jwt_issuer, redis)


async def test_a_token_is_verified_once_then_remembered(make_settings, redis):  # type: ignore[no-untyped-def]
    tokens = verifier(make_settings, redis)
    decoded: list[str] = []
    decode = tokens.decode

    def counting_decode(token: str, expected_type: str = "access") -> dict:
        decoded.append(token)
        return decode(token, expected_type)

    tokens.decode = counting_decode  # type: ignore[method-assign]
    token = issue(make_settings)
    first, second = await tokens.verify(token), await tokens.verify(token)
    assert first == second and first.username == "ada"
    assert decoded == [token]
    with pytest.raises(Unauthorized):
        await tokens.verify(token[:-2] + ("AA" if not token.endswith("AA") else "BB"))  # forged signature


async def test_a_remembered_token_is_refused_once_expired(make_settings, redis):  # type: ignore[no-untyped-def]
    tokens = verifier(make_settings, redis)
    token = issue(make_settings, ttl_s=1)
    await tokens.verify(token)
    started = time.monotonic()

    async def refused() -> str | None:
        try:
            await tokens.verify(token)
        except Unauthorized as exc:
            return exc.code
        return None

    assert await eventually(refused, timeout=5, interval=0.1, what="the token to expire") == "token_expired"
    assert time.monotonic() - started < 3


async def test_a_remembered_token_of_a_revoked_session_is_refused(make_settings, redis):  # type: ignore[no-untyped-def]
    tokens = verifier(make_settings, redis)
    token = issue(make_settings)
    principal = await tokens.verify(token)
    await DenyList(redis).deny([principal.session_id], 60)
    with pytest.raises(Unauthorized) as refused:
        await tokens.verify(token)
    assert refused.value.code == "token_revoked"
