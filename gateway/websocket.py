"""WebSocket relay: a client's socket on the gateway, joined to one on a service replica.

Browsers cannot set headers on a WebSocket, so the access token may come as `?access_token=` as well
as `Authorization: Bearer`. Either way it is admitted like any token request (signature, deny-list,
per-user rate limit) before anything else happens, and the upstream gets it as a bearer header: the
query parameter is not forwarded, so the token stays out of the service's access logs.

Order of the handshake, so that a failure is still an ordinary JSON answer:
1. admit the token (401 / 429 / 503, the upstream never contacted);
2. connect to a replica, round-robin, trying the next one while connections are refused (none → 503);
   a replica that answers the upgrade with an HTTP status (401 for a token it refuses, ...) has that
   status and body relayed;
3. only then upgrade the client's connection (101) and pump messages both ways.

Once open, a socket has no read timeout (notifications may be hours apart); both legs send pings
instead (`WS_HEARTBEAT_S`), which also detects a peer that vanished without closing. When one side
closes, the other is closed with the same code and reason, so a service's application close codes
(e.g. 4001 "session revoked") reach the client. At gateway shutdown every open socket is closed with
1001 (going away), on both legs, so clients reconnect to another gateway.

A dedicated client session serves the upstream legs: it reads the body of a refused upgrade (aiohttp's
`ws_connect` otherwise discards it) through `raise_for_status`, a hook the hot HTTP path must not pay for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson
import structlog
from aiohttp import WSCloseCode, WSMsgType, hdrs, web
from multidict import CIMultiDictProxy
from yarl import URL

from common.core.errors import AppError, BadGateway, GatewayTimeout, ServiceUnavailable, ValidationFailed
from common.core.settings import Settings
from common.http.app import REQUEST_ID, REQUEST_ID_HEADER
from common.service.tokens import bearer_token
from gateway.admission import Admission
from gateway.routing import Target

log = structlog.get_logger("gateway.websocket")

# Pings on both legs this often; a peer that does not answer within half of it is considered gone.
WS_HEARTBEAT_S = 30.0
# How long a close handshake may take before the connection is simply dropped.
WS_CLOSE_TIMEOUT_S = 5.0
# A refusal's body is an error document; more than this is not worth relaying.
MAX_REFUSAL_BYTES = 64 * 1024
TOKEN_PARAM = "access_token"
# The request never reached a replica: trying another one is safe.
_NEVER_CONNECTED = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
# Headers of a refusal worth passing on to the client (how to authenticate, when to come back).
_REFUSAL_HEADERS = (hdrs.WWW_AUTHENTICATE, hdrs.RETRY_AFTER)
# Close codes that describe how a connection ended but may not be sent in a close frame (RFC 6455
# §7.4.1): "no code given" (0 is aiohttp's value for a close frame without one), and "no close frame
# at all" / reserved ones.
_NO_CODE = frozenset({0, 1005})
_NOT_SENDABLE = frozenset({1004, 1006, 1015})


class UpstreamRefused(Exception):
    """The replica answered the upgrade with an ordinary HTTP response instead of 101."""

    def __init__(self, status: int, reason: str | None, headers: CIMultiDictProxy[str], body: bytes) -> None:
        super().__init__(f"upgrade refused with HTTP {status}")
        self.status = status
        self.reason = reason or ""
        self.headers = headers
        self.body = body


async def _refuse_unless_upgraded(response: aiohttp.ClientResponse) -> None:
    """`raise_for_status` hook of the upstream session: keep the body of a refused upgrade."""
    if response.status == 101:
        return
    body = bytearray()
    try:
        while len(body) < MAX_REFUSAL_BYTES and (chunk := await response.content.read(MAX_REFUSAL_BYTES - len(body))):
            body += chunk
    except (aiohttp.ClientError, TimeoutError):
        body.clear()  # a truncated document is no document: one is made from the status instead
    raise UpstreamRefused(response.status, response.reason, response.headers, bytes(body))


def is_upgrade(request: web.Request) -> bool:
    """A WebSocket opening handshake (anything else on a WebSocket route is plain HTTP)."""
    return request.method == hdrs.METH_GET and request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"


def websocket_token(request: web.Request) -> str | None:
    """The access token: the bearer header when there is one, else the `access_token` query parameter."""
    return bearer_token(request.headers.get(hdrs.AUTHORIZATION)) or request.query.get(TOKEN_PARAM, "").strip() or None


def _upstream_query(query: str) -> str:
    """The client's raw query without the token (it travels upstream as a header instead)."""
    if TOKEN_PARAM not in query:
        return query
    return "&".join(pair for pair in query.split("&") if pair and pair.partition("=")[0] != TOKEN_PARAM)


def _sendable(code: int | None) -> int:
    """`code` as it may be sent on in a close frame: 1000 when the peer gave none, 1001 when it vanished."""
    if code is None or code in _NO_CODE:
        return WSCloseCode.OK
    if code in _NOT_SENDABLE or not 1000 <= code < 5000:
        return WSCloseCode.GOING_AWAY
    return code


Socket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


class _Relay:
    """One client socket joined to one upstream socket.

    One pump per direction. When either source closes, the other pump is cancelled *before* the close
    is passed on: aiohttp drops a connection without waiting for the peer's close reply when `close()`
    races a `receive()` on the same socket, and the client would see 1006 instead of the real code.
    """

    __slots__ = ("client", "forced", "pumps", "upstream")

    def __init__(self, client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse) -> None:
        self.client = client
        self.upstream = upstream
        self.forced: tuple[int, bytes] | None = None  # the gateway's own close, which wins over the peers'
        self.pumps: dict[asyncio.Task[tuple[int, bytes] | None], Socket] = {}  # pump → the socket it feeds

    async def run(self) -> None:
        """Pump both ways until one side closes, then close the other. Never raises (the 101 is sent)."""
        self.pumps = {
            asyncio.create_task(self._pump(self.client, self.upstream)): self.upstream,
            asyncio.create_task(self._pump(self.upstream, self.client)): self.client,
        }
        first: asyncio.Task[tuple[int, bytes] | None] | None = None
        try:
            done, _ = await asyncio.wait(self.pumps, return_when=asyncio.FIRST_COMPLETED)
            first = done.pop()
        finally:
            for pump in self.pumps:
                pump.cancel()
            await asyncio.gather(*self.pumps, return_exceptions=True)
            await self._close_legs(first)

    async def _close_legs(self, first: asyncio.Task[tuple[int, bytes] | None] | None) -> None:
        if self.forced is not None or first is None or first.cancelled() or first.exception() is not None:
            code, message = self.forced or (WSCloseCode.GOING_AWAY, b"")
            legs: list[tuple[Socket, int, bytes]] = [(self.upstream, code, message), (self.client, code, message)]
        else:
            sink = self.pumps[first]
            source = self.upstream if sink is self.client else self.client
            closed_by_source = first.result()
            if closed_by_source is not None:  # the source closed: the sink gets the same code
                legs = [(sink, *closed_by_source)]
            else:  # the sink could not take a message: it is going; tell the source how it went
                legs = [(source, _sendable(sink.close_code), b"")]
        for leg, code, message in legs:
            if not leg.closed:
                try:
                    await leg.close(code=code, message=message)
                except (ConnectionError, aiohttp.ClientError, RuntimeError) as exc:
                    log.info("gateway.websocket_close_failed", error=repr(exc))
        if not self.upstream.closed:  # whatever happened, leave no upstream socket behind
            await self.upstream.close(code=WSCloseCode.GOING_AWAY)

    def close(self, code: int, message: bytes) -> None:
        """End both legs with `code` (gateway shutdown); `run` does the closing once the pumps stopped."""
        self.forced = (code, message)
        for pump in self.pumps:
            pump.cancel()

    async def _pump(self, source: Socket, sink: Socket) -> tuple[int, bytes] | None:
        """Forward `source`'s messages to `sink` until `source` closes; return the close to pass on, or
        None when `sink` could not take a message (it is closing)."""
        reason = ""
        try:
            while True:
                message = await source.receive()  # pings and pongs are answered by the library
                if message.type is WSMsgType.TEXT:
                    await sink.send_str(message.data)
                elif message.type is WSMsgType.BINARY:
                    await sink.send_bytes(message.data)
                else:  # CLOSE (the peer's, already answered), CLOSING (we close it), CLOSED, ERROR (dead peer)
                    if message.type is WSMsgType.CLOSE:
                        reason = message.extra or ""
                    break
        except (ConnectionError, aiohttp.ClientError, RuntimeError) as exc:
            # RuntimeError: aiohttp's "cannot write to closing transport" on some paths.
            log.info("gateway.websocket_send_failed", error=repr(exc))
            return None
        return _sendable(source.close_code), reason.encode()[:123]


class WebSocketProxy:
    """Relays WebSocket routes (`Rule.websocket`) to the owning service's replicas."""

    def __init__(self, settings: Settings) -> None:
        # Same limits as HTTP for the handshake; after the 101 no read timeout applies (ws_receive=None).
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=settings.upstream_connect_timeout_s,
            sock_connect=settings.upstream_connect_timeout_s,
            sock_read=settings.upstream_timeout_s,
        )
        self._ws_timeout = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=WS_CLOSE_TIMEOUT_S)
        self._session: aiohttp.ClientSession | None = None
        self._open: dict[_Relay, asyncio.Task[None]] = {}

    @property
    def open_count(self) -> int:
        return len(self._open)

    async def open(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),  # every connection is a socket already accepted
            timeout=self._timeout,
            cookie_jar=aiohttp.DummyCookieJar(),
            raise_for_status=_refuse_unless_upgraded,
            skip_auto_headers=(hdrs.USER_AGENT,),
        )

    async def shutdown(self) -> None:
        """Close every open socket, both legs, with 1001: the gateway is going away."""
        relays = list(self._open)
        if relays:
            log.info("gateway.websockets_closing", count=len(relays))
            for relay in relays:
                relay.close(WSCloseCode.GOING_AWAY, b"gateway shutting down")
            await asyncio.wait(list(self._open.values()), timeout=2 * WS_CLOSE_TIMEOUT_S)

    async def close(self) -> None:
        await self.shutdown()
        tasks = list(self._open.values())
        if tasks:  # closing handshakes still in flight; a peer that does not answer is cut off
            _, late = await asyncio.wait(tasks, timeout=2 * WS_CLOSE_TIMEOUT_S)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def relay(self, request: web.Request, target: Target, query: str, admission: Admission) -> web.StreamResponse:
        token = websocket_token(request)
        await admission.admit_token(token)
        assert token is not None  # admit_token refuses a missing one
        # A handshake the client library would refuse to complete is refused before any upstream work.
        if not web.WebSocketResponse().can_prepare(request).ok:
            raise ValidationFailed("invalid WebSocket handshake", code="invalid_websocket_handshake")
        protocols = _requested_protocols(request)
        upstream, replica = await self._connect(request, target, query, token, protocols)
        # The upstream accepted: now, and only now, the client's connection is upgraded, with the
        # subprotocol the service chose (if any).
        client = web.WebSocketResponse(
            heartbeat=WS_HEARTBEAT_S,
            timeout=WS_CLOSE_TIMEOUT_S,
            protocols=(upstream.protocol,) if upstream.protocol else (),
        )
        client.headers[REQUEST_ID_HEADER] = request[REQUEST_ID]  # the middleware cannot: it is sent here
        try:
            await client.prepare(request)
        except BaseException:
            await upstream.close(code=WSCloseCode.GOING_AWAY)
            raise
        # The relay runs in a task of its own: aiohttp may cancel this handler as soon as the client's
        # connection drops, and the upstream leg must still be closed properly (with the client's code).
        relay = _Relay(client, upstream)
        task = asyncio.create_task(self._serve(relay, target.replicas.service, replica), name="websocket-relay")
        self._open[relay] = task
        await asyncio.shield(task)
        return client

    async def _serve(self, relay: _Relay, service: str, replica: str) -> None:
        started = time.monotonic()
        log.info("gateway.websocket_opened", service=service, replica=replica)
        try:
            await relay.run()
        finally:
            del self._open[relay]
            log.info(
                "gateway.websocket_closed",
                service=service,
                replica=replica,
                client_code=relay.client.close_code,
                upstream_code=relay.upstream.close_code,
                duration_s=round(time.monotonic() - started, 3),
            )

    async def _connect(
        self, request: web.Request, target: Target, query: str, token: str, protocols: tuple[str, ...]
    ) -> tuple[aiohttp.ClientWebSocketResponse, str]:
        assert self._session is not None, "WebSocketProxy.open was not called"
        headers = {hdrs.AUTHORIZATION: "Bearer " + token, REQUEST_ID_HEADER: request[REQUEST_ID]}
        if request.remote:
            previous = request.headers.get("X-Forwarded-For")
            headers["X-Forwarded-For"] = previous + ", " + request.remote if previous else request.remote
        upstream_query = _upstream_query(query)
        path_qs = target.path + "?" + upstream_query if upstream_query else target.path
        replicas = target.replicas
        urls = replicas.urls
        first = replicas.start()
        for attempt in range(len(urls)):
            base = urls[(first + attempt) % len(urls)]
            try:
                socket = await self._session.ws_connect(
                    URL(base + path_qs, encoded=True),
                    headers=headers,
                    protocols=protocols,
                    heartbeat=WS_HEARTBEAT_S,
                    timeout=self._ws_timeout,
                )
                return socket, base
            except _NEVER_CONNECTED as exc:
                log.warning("gateway.replica_unreachable", service=replicas.service, replica=base, error=repr(exc))
                if attempt + 1 == len(urls):
                    raise ServiceUnavailable(
                        f"{replicas.service} is unavailable", details={"service": replicas.service}
                    ) from exc
            except UpstreamRefused as refused:
                log.info("gateway.websocket_refused", service=replicas.service, replica=base, status=refused.status)
                raise _refusal_error(refused, replicas.service) from None
            except TimeoutError as exc:
                log.warning("gateway.upstream_failed", service=replicas.service, error=repr(exc))
                raise GatewayTimeout(details={"service": replicas.service}) from exc
            except aiohttp.ClientError as exc:  # a broken or garbled answer to the handshake
                log.warning("gateway.upstream_failed", service=replicas.service, error=repr(exc))
                raise BadGateway(details={"service": replicas.service}) from exc
        raise AssertionError("unreachable")  # pragma: no cover


def _requested_protocols(request: web.Request) -> tuple[str, ...]:
    header = request.headers.get(hdrs.SEC_WEBSOCKET_PROTOCOL, "")
    return tuple(p.strip() for p in header.split(",") if p.strip())


class _Refusal(AppError):
    """A replica's error answer to the upgrade, passed on: its status, and its error document when it
    sent one in the SPEC shape (else one made here)."""

    def __init__(self, refused: UpstreamRefused, service: str) -> None:
        super().__init__(
            f"{service} refused the WebSocket upgrade",
            code=_code_of(refused),
            details={"service": service, "status": refused.status},
            headers={name: refused.headers[name] for name in _REFUSAL_HEADERS if name in refused.headers},
        )
        self.status = refused.status
        self.document = _error_document(refused)

    def to_body(self) -> dict[str, Any]:
        return self.document if self.document is not None else super().to_body()


def _refusal_error(refused: UpstreamRefused, service: str) -> AppError:
    if 400 <= refused.status < 600:
        return _Refusal(refused, service)
    # A success or a redirect in answer to an upgrade: whatever answered does not speak WebSocket there.
    return BadGateway(details={"service": service, "status": refused.status})


def _code_of(refused: UpstreamRefused) -> str:
    return refused.reason.lower().replace(" ", "_") or "upstream_refused"


def _error_document(refused: UpstreamRefused) -> dict[str, Any] | None:
    """The replica's body if it is an error document in the SPEC shape, else None."""
    if "json" not in refused.headers.get(hdrs.CONTENT_TYPE, ""):
        return None
    try:
        document = orjson.loads(refused.body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(document, Mapping) and isinstance(document.get("error"), Mapping):
        return dict(document)
    return None
