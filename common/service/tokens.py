"""Access-token verification with the public key, checked against the session deny-list
(`common.redis.sessions`).

Only auth_svc holds the private key; every other process verifies with the public one. A token is
accepted when its signature, issuer, type and expiry are right *and* its session is not on the
deny-list. The deny-list is keyed by session id rather than token id: revoking a session (logout,
refresh-token reuse, password change) must kill every access token that session ever minted,
including ones issued before a rotation, and their ids are not all known at revocation time.
Entries live as long as the longest-lived access token, then expire by themselves.

Verifying an EdDSA signature costs more CPU than all the rest of a small request, and a client sends
the same access token for its whole lifetime. So the claims of access tokens verified once are
remembered (by the exact token string: same bytes, same signature, same verdict) until they expire;
the expiry is checked again on every use, the deny-list on every request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt
import redis.asyncio as aioredis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from common.core.errors import ServiceUnavailable, Unauthorized
from common.redis.client import REDIS_FAILURES
from common.redis.sessions import DenyList

ALGORITHM = "EdDSA"
ACCESS = "access"
REFRESH = "refresh"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as proven by a verified access token."""

    user_id: str
    session_id: str
    role: str
    username: str
    token_id: str
    expires_at: int

    @property
    def is_admin(self) -> bool:
        return self.role in {"admin", "superadmin"}


# Enough for every active client of a busy process; ~1 KiB each. When full it starts over, which costs
# one verification per live token, instead of tracking recency on every hit.
MAX_REMEMBERED_TOKENS = 10_000


class TokenVerifier:
    def __init__(
        self,
        public_key: bytes,
        issuer: str,
        redis: aioredis.Redis | None,
        *,
        remembered_tokens: int = MAX_REMEMBERED_TOKENS,
    ) -> None:
        # Parsed once: PyJWT would otherwise re-parse the PEM on every request.
        key = serialization.load_pem_public_key(public_key)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the token public key must be an Ed25519 key")
        self._key = key
        self._issuer = issuer
        # The deny-list this verifier checks (None: signature only, for tools without Redis).
        self.deny_list = DenyList(redis) if redis is not None else None
        self._capacity = remembered_tokens
        self._verified: dict[str, dict[str, Any]] = {}  # access token → its claims (checked out)

    @property
    def remembered(self) -> int:
        return len(self._verified)

    def access_claims(self, token: str) -> dict[str, Any]:
        """`decode(token)` for an access token, remembered until the token expires. Raises Unauthorized."""
        claims = self._verified.get(token)
        if claims is not None:
            if claims["exp"] > time.time():
                return claims
            del self._verified[token]  # expired: decode() below says so in the usual words
        claims = self.decode(token)
        if len(self._verified) >= self._capacity:
            self._verified.clear()
        self._verified[token] = claims
        return claims

    def decode(self, token: str, expected_type: str = ACCESS) -> dict[str, Any]:
        """Check signature, issuer, expiry and type; return the claims. Raises Unauthorized."""
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],  # never "none", never a symmetric algorithm
                issuer=self._issuer,
                options={"require": ["exp", "iat", "sub", "sid", "jti", "typ"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("token expired", code="token_expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized("invalid token", code="invalid_token") from exc
        if claims.get("typ") != expected_type:
            raise Unauthorized("invalid token", code="invalid_token")
        return claims

    async def verify(self, token: str) -> Principal:
        claims = self.access_claims(token)
        if self.deny_list is not None and await self.is_revoked(claims["sid"]):
            raise Unauthorized("token revoked", code="token_revoked")
        return Principal(
            user_id=claims["sub"],
            session_id=claims["sid"],
            role=claims.get("role", "user"),
            username=claims.get("username", ""),
            token_id=claims["jti"],
            expires_at=int(claims["exp"]),
        )

    async def is_revoked(self, session_id: str) -> bool:
        assert self.deny_list is not None
        try:
            return await self.deny_list.is_revoked(session_id)
        except REDIS_FAILURES as exc:
            # Fail closed: without the deny-list we cannot tell a logged-out token from a live one.
            raise ServiceUnavailable("token deny-list unavailable") from exc


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
