"""What a request must pass before it is forwarded: its token, checked at the edge, and its rate limit.

The services verify the token again; checking it here too turns a bad token into an early 401 that
costs no upstream work. For an authenticated request the session deny-list lookup and the user's
rate-limit hit share one Redis round trip. When Redis is down the deny-list fails closed (503: a
logged-out token must not come back to life), so the user limit, in the same pipeline, fails with it;
the per-IP limit on the public endpoints fails open (see `gateway.ratelimit`).

Verifying an EdDSA token with PyJWT costs ~200 µs of CPU, more than all the rest of a proxied request,
and a client sends the same access token for its whole lifetime. So the claims of tokens verified
once are remembered (by the exact token string: same bytes, same signature, same verdict) until they
expire; the expiry is checked again on every use, the deny-list on every request.
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError

from common.errors import ServiceUnavailable, Unauthorized
from common.runtime import Runtime
from common.settings import Settings
from common.tokens import TokenVerifier, bearer_token, revoked_session_key
from gateway import ratelimit
from gateway.routing import Access

# Enough for every active client of a busy gateway; ~1 KiB each. When full it starts over, which costs
# one verification per live token, instead of tracking recency on every hit.
MAX_REMEMBERED_TOKENS = 10_000


class VerifiedTokens:
    """(user id, session id) of tokens whose signature, issuer and type already checked out."""

    def __init__(self, verifier: TokenVerifier, capacity: int = MAX_REMEMBERED_TOKENS) -> None:
        self._verifier = verifier
        self._capacity = capacity
        self._known: dict[str, tuple[str, str, float]] = {}

    def __len__(self) -> int:
        return len(self._known)

    def identify(self, token: str) -> tuple[str, str]:
        """The token's (user id, session id); raises Unauthorized if it is not a valid access token."""
        known = self._known.get(token)
        if known is not None:
            if known[2] > time.time():
                return known[0], known[1]
            del self._known[token]  # expired: decode() below says so in the usual words
        claims = self._verifier.decode(token)
        if len(self._known) >= self._capacity:
            self._known.clear()
        self._known[token] = (claims["sub"], claims["sid"], claims["exp"])
        return claims["sub"], claims["sid"]


class Admission:
    """Applies the routing table's access rule of a path: token + user limit, IP limit, or nothing."""

    def __init__(self, settings: Settings) -> None:
        self._per_ip = settings.rate_limit_auth_per_minute
        self._per_user = settings.rate_limit_user_per_minute
        self._redis: aioredis.Redis | None = None
        self._tokens: VerifiedTokens | None = None

    def bind(self, runtime: Runtime) -> None:
        """Use the runtime's Redis client and verifier (they exist once `redis_context` has run)."""
        self._redis = runtime.redis_client()
        self._tokens = VerifiedTokens(runtime.token_verifier())

    async def admit(self, request: web.Request, access: Access, path: str) -> None:
        """Return if the request may go on; raise 401 / 429 / 503 otherwise."""
        if access is Access.TOKEN:
            await self.admit_token(bearer_token(request.headers.get("Authorization")))
        elif access is Access.PUBLIC_PER_IP:
            assert self._redis is not None, "Admission.bind was not called"
            await ratelimit.limit_ip(self._redis, path, request.remote or "unknown", self._per_ip)

    async def admit_token(self, token: str | None) -> None:
        """Admit an access token however it came (header, or a WebSocket's query): 401 / 429 / 503 if not."""
        assert self._redis is not None and self._tokens is not None, "Admission.bind was not called"
        if token is None:
            raise Unauthorized("missing bearer token", code="missing_token")
        user_id, session_id = self._tokens.identify(token)
        commands: list[ratelimit.Command] = [("EXISTS", revoked_session_key(session_id))]
        if self._per_user > 0:
            commands.append(ratelimit.hit(ratelimit.user_key(user_id)))
        try:
            results = await ratelimit.execute(self._redis, commands)
        except RedisError as exc:
            raise ServiceUnavailable("token deny-list unavailable") from exc
        if results[0]:
            raise Unauthorized("token revoked", code="token_revoked")
        if self._per_user > 0:
            ratelimit.enforce(results[1], self._per_user)
