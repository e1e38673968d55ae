"""auth_svc HTTP handlers: parse and validate, call the service, shape the response."""

from __future__ import annotations

from aiohttp import web

from auth_svc.schemas import (
    ChangePasswordRequest,
    ChangeRoleRequest,
    JwksSchema,
    LoginRequest,
    RefreshRequest,
    RegisterRequest,
    RegisterResponse,
    TokenPairSchema,
    UpdateMeRequest,
    UserListQuery,
    UserSchema,
)
from auth_svc.service import AuthService, user_view
from common.core.keys import public_jwk
from common.core.paging import offset_page
from common.http.app import json_response, principal, public, runtime_of
from common.http.docmarks import doc, offset_page_of
from common.http.headers import NO_STORE
from common.http.validation import parse_body, parse_query

AUTH_SERVICE = web.AppKey("auth_service", AuthService)
JWKS_KEY_ID = "taskswarm-1"


def _service(request: web.Request) -> AuthService:
    return request.app[AUTH_SERVICE]


@doc(
    "Register a new user",
    description="Answers the user and a token pair. Rate limited per client IP at the gateway.",
    request=RegisterRequest,
    response=RegisterResponse,
    status=201,
    errors={409: "username or email already taken (case-insensitive)"},
)
@public
async def register(request: web.Request) -> web.Response:
    body = await parse_body(request, RegisterRequest)
    user, tokens = await _service(request).register(body["username"], body["email"], body["password"])
    return json_response({"user": user_view(user), **tokens.to_dict()}, status=201, headers=NO_STORE)


@doc(
    "Log in",
    description="`username` may be the email. Rate limited per client IP at the gateway, and per login name: "
    "past `LOGIN_FAILURES_PER_NAME` failures (10) in a window (`LOGIN_FAILURE_WINDOW_S`, 15 min), 429 until it "
    "ends, whether or not the name exists.",
    request=LoginRequest,
    response=TokenPairSchema,
    errors={
        401: "bad credentials, the same answer for an unknown user and a wrong password (`invalid_credentials`)",
        429: "too many failed logins for this login name (`rate_limited`), whether or not it exists",
    },
)
@public
async def login(request: web.Request) -> web.Response:
    body = await parse_body(request, LoginRequest)
    tokens = await _service(request).login(body["username"], body["password"])
    return json_response(tokens.to_dict(), headers=NO_STORE)


@doc(
    "Exchange a refresh token for a new token pair",
    description="Refresh tokens rotate: reusing a spent one is a 401 and revokes that whole session. "
    "Rate limited per client IP at the gateway.",
    request=RefreshRequest,
    response=TokenPairSchema,
    errors={401: "invalid, expired, revoked or already used refresh token"},
)
@public
async def refresh(request: web.Request) -> web.Response:
    body = await parse_body(request, RefreshRequest)
    verifier = runtime_of(request.app).token_verifier()
    tokens = await _service(request).refresh(body["refresh_token"], verifier)
    return json_response(tokens.to_dict(), headers=NO_STORE)


@doc("The public key that verifies access tokens (JWKS)", response=JwksSchema)
@public
async def jwks(request: web.Request) -> web.Response:
    public_pem = runtime_of(request.app).settings.read_public_key()
    return json_response({"keys": [public_jwk(public_pem, JWKS_KEY_ID)]})


@doc("Log out: revoke this session (its refresh token and access token)", status=204)
async def logout(request: web.Request) -> web.Response:
    await _service(request).logout(principal(request))
    return web.Response(status=204)


@doc("The current user", response=UserSchema)
async def get_me(request: web.Request) -> web.Response:
    return json_response(user_view(await _service(request).get_user(principal(request).user_id)))


@doc(
    "Update my profile",
    description="Publishes `updateUser`.",
    request=UpdateMeRequest,
    response=UserSchema,
    errors={409: "email already taken"},
)
async def update_me(request: web.Request) -> web.Response:
    changes = await parse_body(request, UpdateMeRequest)
    return json_response(user_view(await _service(request).update_me(principal(request), changes)))


@doc(
    "Change my password",
    description="Revokes every other session of the user.",
    request=ChangePasswordRequest,
    status=204,
    errors={403: "`current_password` is not the caller's password (`invalid_credentials`)"},
)
async def change_password(request: web.Request) -> web.Response:
    body = await parse_body(request, ChangePasswordRequest)
    await _service(request).change_password(principal(request), body["current_password"], body["new_password"])
    return web.Response(status=204)


@doc("List users", description="`?search=` on username.", query=UserListQuery, response=offset_page_of(UserSchema))
async def list_users(request: web.Request) -> web.Response:
    query = parse_query(request, UserListQuery)
    users, total = await _service(request).list_users(query["search"], query["limit"], query["offset"])
    return json_response(offset_page([user_view(u) for u in users], total, query["limit"], query["offset"]))


@doc("One user", response=UserSchema)
async def get_user(request: web.Request) -> web.Response:
    return json_response(user_view(await _service(request).get_user(request.match_info["user_id"])))


@doc(
    "Change a user's role",
    description="Admins only; only a superadmin grants or removes admin rights; nobody changes their own role.",
    request=ChangeRoleRequest,
    response=UserSchema,
    errors={403: ""},
)
async def change_role(request: web.Request) -> web.Response:
    body = await parse_body(request, ChangeRoleRequest)
    user = await _service(request).change_role(principal(request), request.match_info["user_id"], body["role"])
    return json_response(user_view(user))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/auth/register", register)
    app.router.add_post("/auth/login", login)
    app.router.add_post("/auth/refresh", refresh)
    app.router.add_post("/auth/logout", logout)
    app.router.add_get("/auth/jwks.json", jwks)
    app.router.add_get("/users/me", get_me)
    app.router.add_patch("/users/me", update_me)
    app.router.add_post("/users/me/password", change_password)
    app.router.add_get("/users", list_users)
    app.router.add_get("/users/{user_id}", get_user)
    app.router.add_patch("/users/{user_id}/role", change_role)
