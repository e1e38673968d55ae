"""GET /notifications/ws (the gateway's /api/v1/ws): each new notification of the caller, pushed as stored.

Authentication happens here, not in the auth middleware (the route is `@public`): browsers cannot set
headers on a WebSocket, so the token may also come as `?access_token=`. A bad token is a 401 JSON error
before the upgrade. Once open, the socket lives at most as long as its token:
- 4001 when the session is revoked (logout, password change, refresh reuse), announced by auth_svc on
  `common.redis.sessions.REVOCATIONS_CHANNEL`; after a pub/sub reconnection the deny-list is checked
  instead, as the announcement may have been missed;
- 4002 when the token expires (clients reconnect with a fresh one);
- 1001 when this process shuts down, 1013 when the client reads too slowly to keep up.
Client messages are ignored (a close ends the socket); aiohttp's heartbeat drops dead peers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import orjson
import structlog
from aiohttp import WSCloseCode, web

from common.core.errors import Unauthorized, ValidationFailed
from common.http.app import public, runtime_of
from common.http.docmarks import ACCESS_TOKEN_QUERY, BEARER, doc
from common.service.tokens import Principal, TokenVerifier, bearer_token
from notif_svc.live import Listener, LiveHub, Signal

log = structlog.get_logger("notif.ws")

LIVE_HUB = web.AppKey("live_hub", LiveHub)

HEARTBEAT_S = 30.0
CLOSE_REVOKED = 4001
CLOSE_EXPIRED = 4002


def _token(request: web.Request) -> str:
    token = bearer_token(request.headers.get("Authorization")) or request.query.get("access_token", "").strip()
    if not token:
        raise Unauthorized("missing bearer token", code="missing_token")
    return token


@doc(
    "WebSocket: my new notifications, pushed as they are stored",
    description='Each message is `{"type": "notification", "data": <Notification>}`. The token comes in '
    "`Authorization: Bearer` or, for browsers, `?access_token=`. Closed with 4001 when the session is revoked, "
    "4002 when the token expires, 1001 at shutdown, 1013 when the client reads too slowly.",
    status=101,
    security=(BEARER, ACCESS_TOKEN_QUERY),
    # The opening handshake (RFC 6455 §4.1): a GET without it is not a WebSocket request, a 400.
    parameters=(
        {"in": "header", "name": "Upgrade", "required": True, "schema": {"type": "string", "enum": ["websocket"]}},
        {"in": "header", "name": "Connection", "required": True, "schema": {"type": "string", "enum": ["Upgrade"]}},
        {
            "in": "header",
            "name": "Sec-WebSocket-Version",
            "required": True,
            "schema": {"type": "string", "enum": ["13"]},
        },
        {
            "in": "header",
            "name": "Sec-WebSocket-Key",
            "required": True,
            "description": "16 random bytes, base64",
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9+/]{22}==$"},
        },
    ),
    errors={400: "not a WebSocket opening handshake (`invalid_websocket_handshake`)"},
)
@public
async def notifications_ws(request: web.Request) -> web.StreamResponse:
    token = _token(request)
    verifier = runtime_of(request.app).token_verifier()
    claims = verifier.decode(token)  # signature and expiry; raises Unauthorized
    with request.app[LIVE_HUB].listen(claims["sub"], claims["sid"]) as listener:
        # Listening before the deny-list check: a logout between the two cannot slip through.
        caller = await verifier.verify(token)
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S)
        if not ws.can_prepare(request).ok:  # aiohttp's own refusal would be a bare 400 `bad_request`
            raise ValidationFailed("not a WebSocket opening handshake", code="invalid_websocket_handshake")
        await ws.prepare(request)
        log.info("ws.opened", user_id=caller.user_id)
        reader = asyncio.create_task(_read_until_closed(ws, listener))
        try:
            await _push(ws, listener, caller, verifier)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    return ws


async def _read_until_closed(ws: web.WebSocketResponse, listener: Listener) -> None:
    async for _message in ws:
        pass  # nothing to hear from clients; iterating handles pings, pongs and the close handshake
    listener.signal(Signal.CLIENT_GONE)


async def _push(ws: web.WebSocketResponse, listener: Listener, caller: Principal, verifier: TokenVerifier) -> None:
    while not ws.closed:
        remaining = caller.expires_at - time.time()
        if remaining <= 0:
            await ws.close(code=CLOSE_EXPIRED, message=b"token expired")
            return
        try:
            item = await asyncio.wait_for(listener.get(), remaining)
        except TimeoutError:
            continue
        if isinstance(item, str):
            if orjson.loads(item).get("type") == "notification":
                try:
                    await ws.send_str(item)  # already the frame: {"type": "notification", "data": ...}
                except ConnectionError:
                    return
        elif item is Signal.CLIENT_GONE:
            return
        elif item is Signal.REVOKED or (item is Signal.RESYNC and await verifier.is_revoked(caller.session_id)):
            await ws.close(code=CLOSE_REVOKED, message=b"session revoked")
            return
        elif item is Signal.CLOSING:
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
            return
        elif item is Signal.LAGGING:
            await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"too slow to keep up")
            return
