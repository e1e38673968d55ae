"""auth_svc use cases: accounts, sessions and roles. Which events each change emits is decided here.

Every change and its events commit in one transaction (the outbox), so `newUser`/`updateUser`/
`newNotif` are published if and only if the change happened.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import structlog
from passlib.context import CryptContext

from auth_svc import store
from auth_svc.events import registration_notice, user_event
from auth_svc.schemas import UserSchema
from auth_svc.throttle import LoginThrottle
from auth_svc.tokens import TokenIssuer, TokenPair
from common.core.envelope import Event
from common.core.errors import Conflict, Forbidden, NotFound, Unauthorized
from common.core.formats import is_uuid
from common.messaging.outbox import enqueue
from common.service.runtime import Runtime
from common.service.tokens import REFRESH, Principal, TokenVerifier

log = structlog.get_logger("auth")

PRIVILEGED_ROLES = {"admin", "superadmin"}
_user_view = UserSchema()


class PasswordHasher:
    """passlib's API over argon2; hashing runs in a thread so it never blocks the event loop."""

    def __init__(self, scheme: str = "argon2") -> None:
        self._context = CryptContext(schemes=[scheme], deprecated="auto")
        # Verified against when the login name is unknown, so both failures cost the same time.
        self._decoy = self._context.hash(uuid.uuid4().hex)

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._context.hash, password)

    async def verify(self, password: str, password_hash: str | None) -> bool:
        ok = await asyncio.to_thread(self._context.verify, password, password_hash or self._decoy)
        return ok and password_hash is not None


def user_view(user: dict[str, Any]) -> dict[str, Any]:
    return _user_view.dump(user)


class AuthService:
    def __init__(self, runtime: Runtime, issuer: TokenIssuer, hasher: PasswordHasher) -> None:
        self._rt = runtime
        self._issuer = issuer
        self._hasher = hasher
        settings = runtime.settings
        self._throttle = LoginThrottle(settings.login_failures_per_name, settings.login_failure_window_s)

    # -- accounts ----------------------------------------------------------------------------------

    async def register(self, username: str, email: str, password: str) -> tuple[dict, TokenPair]:
        password_hash = await self._hasher.hash(password)
        user_id, session_id, refresh_jti = (str(uuid.uuid4()) for _ in range(3))
        async with self._rt.db().acquire() as conn, conn.transaction():
            taken = await store.find_taken(conn, username, email)
            if taken:
                raise Conflict(
                    "username or email already taken",
                    details={field: ["already taken"] for field in sorted(taken)},
                )
            try:
                user = await store.insert_user(conn, user_id, username, email, password_hash)
            except asyncpg.UniqueViolationError as exc:  # lost a race with a concurrent registration
                raise Conflict("username or email already taken") from exc
            await store.insert_session(conn, session_id, user_id, refresh_jti, self._issuer.refresh_expiry())
            await enqueue(conn, [user_event("newUser", user, user_id), registration_notice(user)])
        log.info("auth.registered", user_id=user_id)
        return user, self._issuer.pair(user, session_id, refresh_jti)

    async def get_user(self, user_id: str) -> dict:
        if not is_uuid(user_id):
            raise NotFound("user not found")
        async with self._rt.db().acquire() as conn:
            user = await store.get_user(conn, user_id)
        if user is None:
            raise NotFound("user not found")
        return user

    async def list_users(self, search: str | None, limit: int, offset: int) -> tuple[list[dict], int]:
        async with self._rt.db().acquire() as conn:
            return await store.list_users(conn, search, limit, offset)

    async def update_me(self, caller: Principal, changes: dict[str, Any]) -> dict:
        async with self._rt.db().acquire() as conn, conn.transaction():
            if "email" in changes and await store.email_taken(conn, changes["email"], by_other_than=caller.user_id):
                raise Conflict("email already taken", details={"email": ["already taken"]})
            try:
                user = await store.update_user(conn, caller.user_id, changes)
            except asyncpg.UniqueViolationError as exc:
                raise Conflict("email already taken", details={"email": ["already taken"]}) from exc
            await enqueue(conn, [user_event("updateUser", user, caller.user_id)])
        return user

    async def change_role(self, caller: Principal, target_id: str, role: str) -> dict:
        """Admins change roles; granting or removing admin/superadmin takes a superadmin."""
        if not is_uuid(target_id):
            raise NotFound("user not found")
        if target_id == caller.user_id:
            raise Forbidden("you cannot change your own role")
        async with self._rt.db().acquire() as conn, conn.transaction():
            actor = await store.get_user(conn, caller.user_id)
            if actor is None or actor["role"] not in PRIVILEGED_ROLES:
                raise Forbidden("only admins can change roles")
            target = await store.get_user(conn, target_id, for_update=True)
            if target is None:
                raise NotFound("user not found")
            touches_privilege = role in PRIVILEGED_ROLES or target["role"] in PRIVILEGED_ROLES
            if touches_privilege and actor["role"] != "superadmin":
                raise Forbidden("only a superadmin grants or removes admin rights")
            return await self._set_role(conn, target, role, actor_id=caller.user_id)

    async def promote(self, username: str, role: str) -> dict:
        """Operator bootstrap (`swarm users promote`): no caller, no rule but the role list."""
        async with self._rt.db().acquire() as conn, conn.transaction():
            target = await store.get_user_by_username(conn, username)
            if target is None:
                raise NotFound(f"no user named {username!r}")
            return await self._set_role(conn, target, role, actor_id="")

    async def _set_role(self, conn: asyncpg.Connection, target: dict, role: str, actor_id: str) -> dict:
        if target["role"] == role:
            return target
        demoted = _rank(role) < _rank(target["role"])
        user = await store.update_user(conn, target["id"], {"role": role})
        await enqueue(conn, [user_event("updateUser", user, actor_id)])
        if demoted:
            # Access tokens carry the role: end the sessions so stale rights die now, not at expiry.
            await self._revoke_all(conn, target["id"], reason="role_lowered")
        return user

    # -- sessions ----------------------------------------------------------------------------------

    async def login(self, login: str, password: str) -> TokenPair:
        redis = self._rt.redis_client()
        await self._throttle.attempt(redis, login)  # 429 / 503 before anything is looked up
        async with self._rt.db().acquire() as conn:
            credentials = await store.get_credentials(conn, login)
        stored_hash = credentials["password_hash"] if credentials else None
        if not await self._hasher.verify(password, stored_hash) or credentials is None:
            raise Unauthorized("invalid username or password", code="invalid_credentials")
        await self._throttle.succeeded(redis, login)
        session_id, refresh_jti = str(uuid.uuid4()), str(uuid.uuid4())
        async with self._rt.db().acquire() as conn:
            await store.insert_session(conn, session_id, credentials["id"], refresh_jti, self._issuer.refresh_expiry())
        return self._issuer.pair(credentials, session_id, refresh_jti)

    async def refresh(self, refresh_token: str, verifier: TokenVerifier) -> TokenPair:
        token = refresh_token.removeprefix("Bearer ").strip()
        claims = verifier.decode(token, expected_type=REFRESH)
        reused = False
        async with self._rt.db().acquire() as conn, conn.transaction():
            session = await store.lock_session(conn, claims["sid"])
            if session is None or session["revoked_at"] is not None:
                raise Unauthorized("session revoked", code="session_revoked")
            if session["refresh_jti"] != claims["jti"]:
                # A spent refresh token came back: whoever holds the newer one, the session leaked.
                # The revocation must commit, so the 401 is raised after the transaction.
                await self._deny([session["id"]])
                await store.revoke_session(conn, session["id"], "refresh_token_reuse")
                reused = True
            else:
                user = await store.get_user(conn, session["user_id"])
                new_jti = str(uuid.uuid4())
                await store.rotate_session(conn, session["id"], new_jti, self._issuer.refresh_expiry())
        if reused or user is None:
            log.warning("auth.refresh_token_reused", session_id=session["id"], user_id=session["user_id"])
            raise Unauthorized("refresh token already used; session revoked", code="refresh_token_reused")
        return self._issuer.pair(user, session["id"], new_jti)

    async def logout(self, caller: Principal) -> None:
        # Deny-list first: if Redis is down we answer 503 and nothing changed, rather than revoking the
        # session in the database while its access token keeps working.
        await self._deny([caller.session_id])
        async with self._rt.db().acquire() as conn:
            await store.revoke_session(conn, caller.session_id, "logout")

    async def change_password(self, caller: Principal, current: str, new: str) -> None:
        async with self._rt.db().acquire() as conn:
            stored_hash = await store.get_password_hash(conn, caller.user_id)
        if stored_hash is None or not await self._hasher.verify(current, stored_hash):
            # Well-formed but not the caller's password: not allowed (403), like any right the caller lacks.
            raise Forbidden(
                "the current password is not correct",
                code="invalid_credentials",
                details={"current_password": ["is not correct"]},
            )
        new_hash = await self._hasher.hash(new)
        async with self._rt.db().acquire() as conn, conn.transaction():
            await store.set_password_hash(conn, caller.user_id, new_hash)
            await self._revoke_all(conn, caller.user_id, reason="password_changed", keep=caller.session_id)

    async def _deny(self, session_ids: list[str]) -> None:
        """Deny-list sessions for an access token's lifetime (the verifier's deny-list: this process's pool)."""
        deny_list = self._rt.token_verifier().deny_list
        assert deny_list is not None, "redis_context not installed"
        await deny_list.deny(session_ids, self._issuer.access_ttl_s)

    async def _revoke_all(self, conn: asyncpg.Connection, user_id: str, reason: str, keep: str | None = None) -> None:
        session_ids = await store.live_session_ids(conn, user_id, except_id=keep)
        await self._deny(session_ids)
        await store.revoke_sessions(conn, session_ids, reason)


async def snapshot_users(conn: asyncpg.Connection, after: str | None, limit: int) -> tuple[list[Event], str | None]:
    users = await store.users_page(conn, after, limit)
    last = users[-1]["id"] if len(users) == limit else None
    return [user_event("newUser", user, "") for user in users], last


def _rank(role: str) -> int:
    return {"user": 0, "admin": 1, "superadmin": 2}[role]
