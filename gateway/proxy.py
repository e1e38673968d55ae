"""The proxy handler: resolve the route, admit the request, forward it to a replica, relay the answer.

This is the hot path of the whole system (DESIGN.md, "Measured on this machine type"), so it does
no per-request setup: one `ClientSession` with keep-alive connections to every replica, created at
start-up; headers copied in one pass; small bodies buffered, large ones streamed through.

Upstream failures become the SPEC error shape: no connection (refused, nothing listening) → 503,
no answer in time → 504, a broken or garbled answer → 502. A client that hangs up mid-request breaks
the upstream exchange too; that is logged as `http.client_gone` and counted as 499, never as a failure
of the upstream. Nothing is retried once it may have
reached a service, except what aiohttp itself retries: an idempotent request whose reused keep-alive
connection turned out to be closed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import aiohttp
import structlog
from aiohttp import hdrs, web
from multidict import CIMultiDict
from yarl import URL

from common.core.errors import AppError, BadGateway, GatewayTimeout, MethodNotAllowed, NotFound, ServiceUnavailable
from common.core.settings import Settings
from common.http.app import REQUEST_ID, REQUEST_ID_HEADER, answer_nobody, client_gone, note_client_gone, public
from common.http.labels import label_route
from gateway.admission import Admission
from gateway.messages import (
    Body,
    LimitedBody,
    client_response_headers,
    request_body,
    upstream_request_headers,
)
from gateway.routing import API_PREFIX, Router, Target, access_of
from gateway.websocket import WebSocketProxy, is_upgrade

log = structlog.get_logger("gateway.proxy")

# Answers up to this size are read whole and sent in one write; larger or unsized ones are streamed.
SMALL_RESPONSE_BYTES = 1024 * 1024
# SPEC: notification long-polls wait at most 30 s; the upstream read timeout stretches by that much.
MAX_LONG_POLL_S = 30.0
# The request never reached a replica: trying another one is safe whatever the method.
_NEVER_CONNECTED = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)


class Proxy:
    """Forwards requests to upstream replicas over one shared keep-alive session."""

    def __init__(self, settings: Settings) -> None:
        self._max_body = settings.max_body_bytes
        self._read_timeout_s = settings.upstream_timeout_s
        self._connect_timeout_s = settings.upstream_connect_timeout_s
        self._timeout = self._timeout_with(0.0)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "Proxy.open was not called"
        return self._session

    async def open(self) -> None:
        self._session = aiohttp.ClientSession(
            # No connection cap: each one serves a client request the gateway already accepted.
            connector=aiohttp.TCPConnector(limit=0),
            timeout=self._timeout,
            # A shared jar would replay one user's cookies on everybody's requests.
            cookie_jar=aiohttp.DummyCookieJar(),
            # Bodies pass through as they are, compressed or not; Content-Encoding stays true.
            auto_decompress=False,
            # Send the client's headers, not the library's defaults in their place.
            skip_auto_headers=(hdrs.USER_AGENT, hdrs.ACCEPT, hdrs.ACCEPT_ENCODING, hdrs.CONTENT_TYPE),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _timeout_with(self, extra_s: float) -> aiohttp.ClientTimeout:
        # No total: a long streamed answer is fine as long as bytes keep coming (sock_read is per read).
        return aiohttp.ClientTimeout(
            total=None,
            connect=self._connect_timeout_s,
            sock_connect=self._connect_timeout_s,
            sock_read=self._read_timeout_s + extra_s,
        )

    def _timeout_for(self, target: Target, query: str) -> aiohttp.ClientTimeout:
        if target.long_poll and "wait=" in query:
            return self._timeout_with(long_poll_wait_s(query))
        return self._timeout

    async def forward(self, request: web.Request, target: Target, query: str) -> web.StreamResponse:
        body = await request_body(request, self._max_body)
        headers = upstream_request_headers(request)
        try:
            upstream = await self._send(request.method, target, query, headers, body)
            try:
                if _is_small(upstream, request.method):
                    return web.Response(
                        status=upstream.status,
                        reason=upstream.reason,
                        headers=client_response_headers(upstream.headers),
                        body=await upstream.read(),
                    )
                return await _stream(request, upstream)
            finally:
                upstream.release()
        except (aiohttp.ClientError, TimeoutError) as exc:
            if _our_abort(body) is None and client_gone(request):
                # Our client hung up mid-upload, which aborted the upstream request: nothing upstream failed.
                return answer_nobody(request, exc)
            raise _failure(exc, body, target.replicas.service) from exc

    async def _send(
        self,
        method: str,
        target: Target,
        query: str,
        headers: CIMultiDict[str],
        body: Body,
    ) -> aiohttp.ClientResponse:
        path_qs = target.path + "?" + query if query else target.path
        timeout = self._timeout_for(target, query)
        replicas = target.replicas
        urls = replicas.urls
        first = replicas.start()
        # A streamed body cannot be sent twice, so it gets one replica; a buffered one may fail over.
        tries = 1 if isinstance(body, LimitedBody) else len(urls)
        for attempt in range(tries):
            base = urls[(first + attempt) % len(urls)]
            try:
                return await self.session.request(
                    method,
                    URL(base + path_qs, encoded=True),  # forwarded exactly as received, no re-quoting
                    headers=headers,
                    data=body,
                    allow_redirects=False,
                    timeout=timeout,
                )
            except _NEVER_CONNECTED as exc:
                if attempt + 1 == tries:
                    raise
                log.warning("gateway.replica_unreachable", service=replicas.service, replica=base, error=repr(exc))
        raise AssertionError("unreachable")  # pragma: no cover


def long_poll_wait_s(query: str) -> float:
    """The `wait` a client asked for, clamped to the SPEC's maximum; 0 if absent or malformed."""
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if name == "wait":
            try:
                wait = float(value)
            except ValueError:
                return 0.0
            return min(wait, MAX_LONG_POLL_S) if math.isfinite(wait) and wait > 0 else 0.0
    return 0.0


def _is_small(upstream: aiohttp.ClientResponse, method: str) -> bool:
    if method == hdrs.METH_HEAD or upstream.status in (204, 304):  # no body follows, whatever the length
        return True
    length = upstream.content_length
    return length is not None and length <= SMALL_RESPONSE_BYTES


async def _stream(request: web.Request, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
    """Relay a large or unsized answer chunk by chunk. Never raises once the status line is sent:
    a second response cannot follow the first on the same connection."""
    response = web.StreamResponse(
        status=upstream.status, reason=upstream.reason, headers=client_response_headers(upstream.headers)
    )
    # The request-id middleware adds its header only to responses not yet sent; this one will be.
    response.headers[REQUEST_ID_HEADER] = request[REQUEST_ID]
    try:
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
    except ConnectionResetError as exc:  # our client went away; nobody is left to answer
        note_client_gone(request, exc)
    except (aiohttp.ClientError, TimeoutError) as exc:
        # The upstream broke off mid-answer. Close the client's connection without the final chunk,
        # so it sees a truncated response instead of a complete-looking short one.
        log.warning("gateway.upstream_stream_broken", path=request.path, error=repr(exc))
        response.force_close()
        if request.transport is not None:
            request.transport.close()
    return response


def _our_abort(body: Body) -> AppError | None:
    """Why we aborted the upload ourselves (the body was too large or too slow), if we did."""
    return body.error if isinstance(body, LimitedBody) else None


def _failure(exc: BaseException, body: Body, service: str) -> AppError:
    error = _our_abort(body)
    if error is not None:
        return error
    log.warning("gateway.upstream_failed", service=service, error=repr(exc))
    details = {"service": service}
    if isinstance(exc, TimeoutError):
        return GatewayTimeout(details=details)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ServiceUnavailable(f"{service} is unavailable", details=details)
    return BadGateway(details=details)


@dataclass(frozen=True, slots=True)
class Gateway:
    """Everything the handler needs, created before the app's state freezes; resources inside
    (Redis, the client session) are attached later by the app's cleanup context."""

    router: Router
    admission: Admission
    proxy: Proxy
    websockets: WebSocketProxy


GATEWAY = web.AppKey("gateway", Gateway)


async def _not_routed(request: web.Request) -> AppError:
    """404, or 405 with `Allow` when the path is one of the gateway's own routes under another method (this
    catch-all takes every method, so aiohttp's own 405 never happens for e.g. TRACE /api/v1/asyncapi.json)."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        match, methods = await resource.resolve(request)
        if match is None:
            allowed |= methods
    if allowed:
        return MethodNotAllowed(headers={hdrs.ALLOW: ",".join(sorted(allowed))})
    return NotFound()


@public  # who needs a token is decided per path by the routing table, in Admission, not per route
async def handle(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    raw = request.raw_path
    if not raw.startswith(API_PREFIX + "/"):  # e.g. a percent-encoded prefix: not ours to guess
        raise NotFound()
    path, _, query = raw[len(API_PREFIX) :].partition("?")
    target = gateway.router.resolve(path)
    if target is None:
        raise await _not_routed(request)
    label_route(request, API_PREFIX + target.prefix, target.replicas.service)
    if target.websocket and is_upgrade(request):  # its own admission (the token may be in the query)
        return await gateway.websockets.relay(request, target, query, gateway.admission)
    await gateway.admission.admit(request, access_of(request.method, path), path)
    return await gateway.proxy.forward(request, target, query)
