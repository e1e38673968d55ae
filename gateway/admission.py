"""What a request must pass before it is forwarded: its token, checked at the edge, and its rate limit.

The services verify the token again; checking it here too turns a bad token into an early 401 that
costs no upstream work. For an authenticated request the session deny-list lookup and the user's
rate-limit hit share one Redis round trip. The public endpoints that cost the most (sign-up, login,
refresh: a password hash or a signature check and a database write each) are limited per client IP,
each with its own allowance. Counting is `common.redis.ratelimit`'s fixed-window mechanism, the
lookup and the user's hit `common.redis.sessions.DenyList.check`: no Redis command is written here.

Every check here fails closed: when Redis cannot answer (down, or its connection pool exhausted past
its timeout) the answer is 503 with `Retry-After`, never a request let through uncounted or with an
unchecked token (a logged-out token must not come back to life).

The token's signature is checked once per token (`TokenVerifier.access_claims` remembers it); the
deny-list and the rate limit on every request.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from common.core.errors import ServiceUnavailable, Unauthorized
from common.core.settings import Settings
from common.redis import ratelimit
from common.redis.client import REDIS_FAILURES, Client
from common.redis.sessions import DenyList
from common.service.runtime import Runtime
from common.service.tokens import TokenVerifier, bearer_token
from gateway.routing import Access

log = structlog.get_logger("gateway.admission")


def ip_key(path: str, ip: str) -> str:
    # One counter per endpoint: a burst of sign-ups from a shared address does not lock its logins.
    return "gateway:ratelimit:ip:" + path + ":" + ip


def user_key(user_id: str) -> str:
    return "gateway:ratelimit:user:" + user_id


class Admission:
    """Applies the routing table's access rule of a path: token + user limit, IP limit, or nothing."""

    def __init__(self, settings: Settings) -> None:
        self._per_ip = settings.rate_limit_auth_per_minute
        # Refreshing is a client's routine (every access-token lifetime), not a guess: its own allowance.
        self._per_ip_of = {"/auth/refresh": settings.rate_limit_refresh_per_minute}
        self._per_user = settings.rate_limit_user_per_minute
        self._redis: Client | None = None
        self._tokens: TokenVerifier | None = None
        self._deny_list: DenyList | None = None

    def bind(self, runtime: Runtime) -> None:
        """Use the runtime's Redis client and verifier (they exist once `redis_context` has run)."""
        self._redis = runtime.redis_client()
        self._tokens = runtime.token_verifier()
        self._deny_list = self._tokens.deny_list

    async def admit(self, request: web.Request, access: Access, path: str) -> None:
        """Return if the request may go on; raise 401 / 429 / 503 otherwise."""
        if access is Access.TOKEN:
            await self.admit_token(bearer_token(request.headers.get("Authorization")))
        elif access is Access.PUBLIC_PER_IP:
            await self.limit_ip(path, request.remote or "unknown")

    async def limit_ip(self, path: str, ip: str) -> None:
        """Count a public request against its client IP's allowance for `path`: 429 past it, 503 if unsure."""
        assert self._redis is not None, "Admission.bind was not called"
        allowed = self._per_ip_of.get(path, self._per_ip)
        if allowed > 0:
            await ratelimit.limit(self._redis, ip_key(path, ip), allowed, what="ip")

    async def admit_token(self, token: str | None) -> None:
        """Admit an access token however it came (header, or a WebSocket's query): 401 / 429 / 503 if not."""
        assert self._tokens is not None and self._deny_list is not None, "Admission.bind was not called"
        if token is None:
            raise Unauthorized("missing bearer token", code="missing_token")
        claims = self._tokens.access_claims(token)
        user_id, session_id = claims["sub"], claims["sid"]
        hit = ratelimit.hit(user_key(user_id)) if self._per_user > 0 else None
        try:
            revoked, hits = await self._deny_list.check(session_id, hit=hit)  # one round trip for both
        except REDIS_FAILURES as exc:
            log.warning("gateway.admission_unavailable", error=repr(exc))
            raise ServiceUnavailable("token deny-list unavailable") from exc
        if revoked:
            raise Unauthorized("token revoked", code="token_revoked")
        if hits is not None:
            ratelimit.enforce(hits, self._per_user)
