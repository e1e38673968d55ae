"""The HTTP server under every process (`common.serve`): aiohttp's, with what no middleware can reach.

aiohttp parses a request's line and headers before any middleware runs. When that fails (a URL or a
header past its limit, a bare CR or LF, Content-Length with Transfer-Encoding, TLS spoken to the plain
port) its protocol answers by itself: plain text quoting the offending input back, the `Server`
banner, no `X-Request-ID`, and a traceback in the log at ERROR. aiohttp 3 has no hook for that
answer (aiohttp 4 passes it through the middlewares), so `EdgeRequestHandler` overrides the protocol's
`handle_error` to answer in the SPEC error shape, with a request id and `common.http.headers`' headers,
quoting nothing; and `AppRunner` makes the server build its connections with it.

Status by cause: a request line past `MAX_REQUEST_LINE_BYTES` is 414 `uri_too_long`; a header field past
`MAX_HEADER_FIELD_BYTES`, or more than `MAX_HEADERS` of them, is 431 `request_header_too_large`; any
other unparsable request is 400 `bad_request`. The parser reports an over-long line by the limit it
passed (`LineTooLong`), so the two limits differ on purpose, and that is how 414 and 431 are told
apart (aiohttp's pure-Python parser, used only where its C extension is missing, may report a header line
still arriving against the request-line limit: 414 where 431 was due, a 4xx all the same). Every such
answer closes its connection, as aiohttp's does: the parser cannot resync after it.

Also set here, from `Settings`: the keep-alive timeout, which closes an idle connection and also one
whose request head has not fully arrived in that time (a slow head); slow bodies are `common.http.bodies`'.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import structlog
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError, LineTooLong

from common.core.errors import AppError, BadRequest, RequestHeaderTooLarge, UriTooLong
from common.core.settings import Settings
from common.http.app import REQUEST_ID_HEADER, new_request_id
from common.http.headers import secure_headers

log = structlog.get_logger("http")

MAX_REQUEST_LINE_BYTES = 8 * 1024
MAX_HEADER_FIELD_BYTES = 16 * 1024
MAX_HEADERS = 128  # aiohttp's default, named here because 431 covers it
_TOO_MANY_HEADERS = "Too many headers received"  # what aiohttp's parsers say when MAX_HEADERS is passed


def error_for(exc: BaseException | None, status: int) -> AppError:
    """The SPEC error for what aiohttp's protocol failed on: parsing the head (400), or an exception that
    escaped every middleware (500; cannot happen while `common.http.app.error_middleware` catches all)."""
    if isinstance(exc, LineTooLong):
        limit = int(exc.args[1]) if str(exc.args[1]).isdigit() else None
        if limit == MAX_REQUEST_LINE_BYTES:
            return UriTooLong(details={"max_bytes": MAX_REQUEST_LINE_BYTES})
        return RequestHeaderTooLarge(details={"max_bytes": MAX_HEADER_FIELD_BYTES})
    if isinstance(exc, HttpProcessingError) and exc.message == _TOO_MANY_HEADERS:
        return RequestHeaderTooLarge(details={"max_headers": MAX_HEADERS})
    if isinstance(exc, HttpProcessingError) or 400 <= status < 500:
        return BadRequest()
    error = AppError()
    error.status = status
    return error


class _BannerlessResponse(web.Response):
    # These answers are not routed, so the `on_response_prepare` hook that drops the banner everywhere
    # else does not run for them; aiohttp adds `Server` while preparing the headers, and this is the
    # step right after it.
    async def _prepare_headers(self) -> None:
        await super()._prepare_headers()
        secure_headers(self.headers)


class EdgeRequestHandler(web.RequestHandler):
    """aiohttp's protocol, answering what it cannot parse in the SPEC error shape."""

    __slots__ = ()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # as aiohttp: an answer has begun, a second cannot follow
            raise ConnectionError("Response is sent already, cannot send another response with the error message")
        error = error_for(exc, status)
        request_id = new_request_id()
        fields = {"request_id": request_id, "status": error.status, "remote": request.remote}
        if error.status >= 500:
            log.error("http.unhandled_error", **fields, exc_info=exc)
        elif isinstance(exc, BadHttpMethod) and self._request_count == 1:
            # Not HTTP at all (port scanners, TLS to the plain port): routine on a public port.
            log.debug("http.bad_request", **fields, error=type(exc).__name__)
        else:
            log.info("http.bad_request", **fields, error=type(exc).__name__)
        response = _BannerlessResponse(
            status=error.status,
            body=orjson.dumps(error.to_body()),
            content_type="application/json",
            headers={REQUEST_ID_HEADER: request_id},
        )
        response.force_close()
        return response


class _EdgeServer(web.Server):
    def __call__(self) -> web.RequestHandler:
        return EdgeRequestHandler(self, loop=self._loop, **self._kwargs)


class AppRunner(web.AppRunner):
    """`web.AppRunner` whose server speaks through `EdgeRequestHandler`."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # The application builds a plain `web.Server` (with its handler, request factory and protocol
        # options); only the protocol class it instantiates per connection changes. `_EdgeServer` adds
        # no state, so the object can simply become one.
        server.__class__ = _EdgeServer
        return server


def server_options(settings: Settings) -> dict[str, Any]:
    """What the protocol is built with: head limits and the keep-alive timeout."""
    return {
        "max_line_size": MAX_REQUEST_LINE_BYTES,
        "max_field_size": MAX_HEADER_FIELD_BYTES,
        "max_headers": MAX_HEADERS,
        "keepalive_timeout": settings.keepalive_timeout_s,
    }


@contextlib.asynccontextmanager
async def serving(app: web.Application, settings: Settings, *, shutdown_timeout: float) -> AsyncIterator[AppRunner]:
    """Start `app` (its cleanup contexts run) and listen on `settings.host:port` until the block ends;
    then stop taking connections, give requests `shutdown_timeout` to finish, and run the cleanups."""
    runner = AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout, **server_options(settings))
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port, reuse_port=settings.reuse_port or None)
        await site.start()
        yield runner
    finally:
        await runner.cleanup()


def listening_port(runner: AppRunner) -> int:
    """The port a runner's first site listens on (for `PORT=0`)."""
    address = runner.addresses[0]
    return int(address[1])
