"""What a request must pass before it is forwarded: its token, checked at the edge, and its rate limit.

The services verify the token again; checking it here too turns a bad token into an early 401 that
costs no upstream work. For an authenticated request the session deny-list lookup and the user's
rate-limit hit share one Redis round trip. When Redis is down the deny-list fails closed (503: a
logged-out token must not come back to life), so the user limit, in the same pipeline, fails with it;
the per-IP limit on the public endpoints fails open (see `gateway.ratelimit`).

The token's signature is checked once per token (`TokenVerifier.access_claims` remembers it); the
deny-list and the rate limit on every request.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError

from common.core.errors import ServiceUnavailable, Unauthorized
from common.core.settings import Settings
from common.service.runtime import Runtime
from common.service.tokens import TokenVerifier, bearer_token, revoked_session_key
from gateway import ratelimit
from gateway.routing import Access


class Admission:
    """Applies the routing table's access rule of a path: token + user limit, IP limit, or nothing."""

    def __init__(self, settings: Settings) -> None:
        self._per_ip = settings.rate_limit_auth_per_minute
        self._per_user = settings.rate_limit_user_per_minute
        self._redis: aioredis.Redis | None = None
        self._tokens: TokenVerifier | None = None

    def bind(self, runtime: Runtime) -> None:
        """Use the runtime's Redis client and verifier (they exist once `redis_context` has run)."""
        self._redis = runtime.redis_client()
        self._tokens = runtime.token_verifier()

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
        claims = self._tokens.access_claims(token)
        user_id, session_id = claims["sub"], claims["sid"]
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
