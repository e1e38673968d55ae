"""The aiohttp application factory every service and the gateway start from.

It installs, in this order (outermost first):
- request id: reuse a sane incoming `X-Request-ID` or make one, bind it to the log context and the
  event correlation id, echo it on every response (errors included);
- metrics: count and time every request by route template and final status (`common.service.metrics`);
- errors: every exception becomes the SPEC error shape; unknown routes, wrong methods (with `Allow`)
  and oversized bodies too, so no HTML error page ever leaves a service; a client that hung up is
  logged as `http.client_gone` and counted as 499, never as a failure of ours;
- auth: every route needs a verified bearer token unless its handler is marked `@public`.
and `GET /health` (alive), `GET /ready` (every registered readiness check passes) and `GET /metrics`
(Prometheus text, on its own port: `common.http.metrics_endpoint`); every answer gets the headers of
`common.http.headers` (nosniff, no `Server` banner).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import asyncpg
import orjson
import structlog
from aiohttp import hdrs, web
from redis.exceptions import RedisError

from common.core.envelope import correlation_id_var
from common.core.errors import (
    AppError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    ServiceUnavailable,
    Unauthorized,
)
from common.core.settings import Settings
from common.http.headers import secure_response
from common.http.labels import route_of
from common.http.metrics_endpoint import METRICS_PATH, metrics_handler, metrics_server
from common.service.runtime import Runtime
from common.service.tokens import Principal, bearer_token

log = structlog.get_logger("http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

RUNTIME = web.AppKey("runtime", Runtime)
REQUEST_ID = web.RequestKey("request_id", str)
PRINCIPAL = web.RequestKey("principal", Principal)
_CLIENT_GONE = web.RequestKey("client_gone", bool)

# nginx's status for "the client closed the connection before its answer": logged and counted, never sent.
CLIENT_GONE = 499

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_PUBLIC_ATTR = "__taskswarm_public__"


def public(handler: Handler) -> Handler:
    """Mark a handler as reachable without a bearer token."""
    setattr(handler, _PUBLIC_ATTR, True)
    return handler


def is_public(handler: Any) -> bool:
    """Whether a handler was marked `@public`."""
    return bool(getattr(handler, _PUBLIC_ATTR, False))


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    body = orjson.dumps(data, option=orjson.OPT_UTC_Z)
    return web.Response(body=body, status=status, headers=headers, content_type="application/json")


def error_response(error: AppError) -> web.Response:
    return json_response(error.to_body(), status=error.status, headers=error.headers)


def runtime_of(app: web.Application) -> Runtime:
    """The `Runtime` of a service's application (created by `create_app`, filled by its cleanup contexts)."""
    return app[RUNTIME]


def client_gone(request: web.Request) -> bool:
    """Whether the caller's connection is gone (it hung up, or we are closing it)."""
    transport = request.transport
    return transport is None or transport.is_closing()


def note_client_gone(request: web.Request, error: BaseException) -> None:
    """The caller hung up mid-request: nothing of ours failed. Logged as such and counted as 499."""
    log.info("http.client_gone", error=repr(error))
    request[_CLIENT_GONE] = True


def answer_nobody(request: web.Request, error: BaseException) -> web.Response:
    """What a handler returns when the caller hung up: nobody will read it, the status is for the books."""
    note_client_gone(request, error)
    return web.Response(status=CLIENT_GONE)


def status_of(request: web.Request, response: web.StreamResponse) -> int:
    """The status a request is logged and counted with: its answer's, or 499 if the caller hung up."""
    return CLIENT_GONE if request.get(_CLIENT_GONE) else response.status


def principal(request: web.Request) -> Principal:
    """The authenticated caller (set by the auth middleware)."""
    return request[PRINCIPAL]


def new_request_id() -> str:
    return uuid.uuid4().hex


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = incoming if _SANE_REQUEST_ID.fullmatch(incoming) else new_request_id()
    request[REQUEST_ID] = request_id
    token = correlation_id_var.set(request_id)
    started = time.perf_counter()
    with structlog.contextvars.bound_contextvars(request_id=request_id):
        try:
            response = await handler(request)
        finally:
            correlation_id_var.reset(token)
        if not response.prepared:
            response.headers[REQUEST_ID_HEADER] = request_id
        log.info(
            "http.request",
            method=request.method,
            path=request.path,
            status=status_of(request, response),
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        return response


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = status_of(request, response)
        return response
    except web.HTTPException as exc:  # redirects and 304s: errors became responses further in
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = CLIENT_GONE  # the client went away (where that cancels handlers), or a shutdown did not wait
        raise
    finally:
        elapsed = time.perf_counter() - started
        request.app[RUNTIME].metrics.observe_request(request.method, route_of(request), status, elapsed)


_HTTP_ERRORS: dict[int, type[AppError]] = {404: NotFound, 405: MethodNotAllowed, 413: PayloadTooLarge}


# A dependency that is down, going down or not up yet: 503, never 500. PostgreSQL answers
# "the database system is starting up" (CannotConnectNow) while it recovers after a restart.
_DEPENDENCY_DOWN: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    RedisError,
)


class _LastResponse(web.Response):
    """An answer that ends its connection as soon as it is sent. After a body that did not arrive in time,
    aiohttp would otherwise keep reading (and dropping) the rest of it for up to 10 s (its lingering time)."""

    def __init__(self, transport: asyncio.BaseTransport | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._transport = transport
        self.force_close()  # `Connection: close`

    async def write_eof(self, data: bytes = b"") -> None:
        await super().write_eof(data)
        if self._transport is not None:
            self._transport.close()


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RequestTimeout as exc:  # the body is still arriving, slowly: answer, then hang up
        body = orjson.dumps(exc.to_body())
        return _LastResponse(request.transport, body=body, status=exc.status, content_type="application/json")
    except AppError as exc:
        if exc.status >= 500:
            log.warning("http.dependency_error", code=exc.code, error=exc.message)
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and 304s are answers, not errors
        error_type = _HTTP_ERRORS.get(exc.status)
        error = error_type() if error_type else AppError(exc.reason, code=exc.reason.lower().replace(" ", "_"))
        error.status = exc.status
        if hdrs.ALLOW in exc.headers:  # a 405 says which methods the resource has (RFC 9110 §15.5.6)
            error.headers[hdrs.ALLOW] = exc.headers[hdrs.ALLOW]
        return error_response(error)
    except _DEPENDENCY_DOWN as exc:
        if client_gone(request):
            # Reading the caller's body or writing to it failed because it hung up: nothing of ours is down.
            return answer_nobody(request, exc)
        # A dependency is down or went away mid-request: say so, with a retryable status.
        log.warning("http.dependency_unavailable", error=repr(exc))
        return error_response(ServiceUnavailable())
    except asyncpg.TooManyConnectionsError:
        return error_response(ServiceUnavailable("database is overloaded"))
    except Exception:
        log.exception("http.unhandled_error", method=request.method, path=request.path)
        return error_response(AppError())


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    match_info = request.match_info
    route_handler = getattr(match_info, "handler", None)
    if route_handler is None or getattr(route_handler, _PUBLIC_ATTR, False):
        return await handler(request)
    if match_info.http_exception is not None:  # unknown route / method: let it be a 404/405
        return await handler(request)
    token = bearer_token(request.headers.get("Authorization"))
    if token is None:
        raise Unauthorized("missing bearer token", code="missing_token")
    request[PRINCIPAL] = await request.app[RUNTIME].token_verifier().verify(token)
    with structlog.contextvars.bound_contextvars(user_id=request[PRINCIPAL].user_id):
        return await handler(request)


@public
async def health(request: web.Request) -> web.Response:
    return json_response({"status": "ok", "service": request.app[RUNTIME].settings.service_name})


@public
async def ready(request: web.Request) -> web.Response:
    checks = request.app[RUNTIME].readiness
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            await check()
            results[name] = "ok"
        except Exception as exc:
            results[name] = f"failing: {type(exc).__name__}: {exc}"
    ok = all(value == "ok" for value in results.values())
    return json_response({"status": "ready" if ok else "not_ready", "checks": results}, 200 if ok else 503)


def create_app(settings: Settings, *, health_handler: Handler = health) -> web.Application:
    """A bare service application: middlewares, health and readiness, nothing service-specific.

    Resources (pool, Redis, verifier) are opened later by the cleanup contexts of `common.http.contexts`
    and stored on the app's `Runtime`, created here because the app's own state freezes at start-up.
    `health_handler` replaces the plain liveness answer (the gateway aggregates its upstreams' instead);
    aiohttp cannot unregister a route afterwards, so the choice is made here. Mark it `@public`.
    """
    app = web.Application(
        middlewares=[request_id_middleware, metrics_middleware, error_middleware, auth_middleware],
        client_max_size=settings.max_body_bytes,
    )
    app[RUNTIME] = runtime = Runtime(settings)
    app.on_response_prepare.append(secure_response)
    app.router.add_get("/health", health_handler)
    app.router.add_get("/ready", ready)
    if settings.metrics_port:
        app.cleanup_ctx.append(metrics_server(runtime))
    else:
        app.router.add_get(METRICS_PATH, public(metrics_handler(runtime)))
    return app
