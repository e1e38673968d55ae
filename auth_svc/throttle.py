"""Failed-login throttling per login name, so guessing one account's password is slow from any number of
addresses (the gateway's per-IP limit only slows down each address).

Counted per login name as typed (username or email, lower-cased as the lookup compares them), never per
account: counting per account would tell whoever hits the limit under an email that it belongs to a
user, whose username they may also be counting. So an unknown name is throttled exactly like a known
one, with the same 429, and the limit reveals nothing. An account thus gets at most twice the allowance
per window (once by username, once by email).

Each attempt is counted BEFORE its password is checked and given back when it succeeds, so the count is
the failures plus the checks in flight: a burst of parallel guesses gets no more checks than sequential
ones would. The window opens at the first counted attempt and is never extended by later ones, so an
attacker can keep a name throttled only by spending guesses in every window, never lock it for good.
"""

from __future__ import annotations

import hashlib

import structlog

from common.redis import ratelimit
from common.redis.client import REDIS_FAILURES, Client

log = structlog.get_logger("auth.throttle")


def failures_key(login: str) -> str:
    # Hashed: a key of fixed size whatever was typed, and no usernames or emails in Redis key names.
    return "auth:login-failures:" + hashlib.sha256(login.lower().encode()).hexdigest()


class LoginThrottle:
    def __init__(self, allowed: int, window_s: int) -> None:
        self._allowed = allowed
        self._window_ms = window_s * 1000

    async def attempt(self, redis: Client, login: str) -> None:
        """Count an attempt for `login`: 429 past the allowance, 503 when it cannot be counted."""
        if self._allowed > 0:
            await ratelimit.limit(redis, failures_key(login), self._allowed, window_ms=self._window_ms, what="login")

    async def succeeded(self, redis: Client, login: str) -> None:
        """Give back the attempt of a successful login: only failures use up the allowance."""
        if self._allowed <= 0:
            return
        try:
            await ratelimit.execute(redis, (ratelimit.forgive(failures_key(login)),))
        except REDIS_FAILURES as exc:
            # Not a check: the login stands, and the count stays one too high until the window ends.
            log.warning("auth.login_attempt_not_given_back", error=repr(exc))
