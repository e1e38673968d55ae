"""Token issuing: only auth_svc holds the private key. Verification lives in common.service.tokens."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from common.service.tokens import ACCESS, ALGORITHM, REFRESH


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int

    def to_dict(self) -> dict[str, object]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        }


class TokenIssuer:
    def __init__(self, private_key: bytes, issuer: str, access_ttl_s: int, refresh_ttl_s: int) -> None:
        self._key = private_key
        self._issuer = issuer
        self.access_ttl_s = access_ttl_s
        self.refresh_ttl_s = refresh_ttl_s

    def refresh_expiry(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.refresh_ttl_s)

    def pair(self, user: dict, session_id: str, refresh_jti: str) -> TokenPair:
        now = int(time.time())
        access = {
            "iss": self._issuer,
            "sub": user["id"],
            "sid": session_id,
            "jti": str(uuid.uuid4()),
            "typ": ACCESS,
            "role": user["role"],
            "username": user["username"],
            "iat": now,
            "exp": now + self.access_ttl_s,
        }
        refresh = {
            "iss": self._issuer,
            "sub": user["id"],
            "sid": session_id,
            "jti": refresh_jti,
            "typ": REFRESH,
            "iat": now,
            "exp": now + self.refresh_ttl_s,
        }
        return TokenPair(
            access_token=jwt.encode(access, self._key, algorithm=ALGORITHM),
            refresh_token=jwt.encode(refresh, self._key, algorithm=ALGORITHM),
            expires_in=self.access_ttl_s,
        )
