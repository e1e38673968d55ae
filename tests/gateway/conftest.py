"""Gateway fixtures: real upstream servers standing in for the services, the gateway on a real socket,
and access tokens signed with this session's private key."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDictProxy

from common.core.settings import Settings
from common.http.server import AppRunner, server_options
from common.swarm.embedded import free_port
from gateway.app import create_app

SERVICES = ("auth_svc", "project_svc", "comment_svc", "notif_svc")
URL_SETTING = {
    "auth_svc": "auth_url",
    "project_svc": "project_url",
    "comment_svc": "comment_url",
    "notif_svc": "notif_url",
}


@dataclass
class Seen:
    """One request as a service received it, body complete."""

    method: str
    path: str  # raw, without the query
    query: str  # raw
    headers: CIMultiDictProxy[str]
    body: bytes


def pattern(size: int) -> bytes:
    """Deterministic, non-repeating-looking bytes, so a reordered or dropped chunk changes the hash."""
    block = hashlib.sha256(str(size).encode()).digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


class Upstream:
    """A real HTTP server in place of a service: records what reached it and echoes it back.

    Query parameters steer it: `sleep=S` holds the answer up to S seconds, `big=N` streams N bytes
    (with `sized=1`: with a Content-Length), `gzip=1` answers a gzip-encoded body, `cookie=1` sets one,
    `edge=1` answers with the headers a real service adds (nosniff, no-store) and a `Server` banner.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: list[Seen] = []
        self.began = asyncio.Event()  # a request reached the handler (its body may still be arriving)
        self.ready_status = 200
        self.ready_calls = 0
        self.release = asyncio.Event()  # set at teardown so held answers end at once
        app = web.Application()
        app.router.add_get("/ready", self._ready)
        app.router.add_route("*", "/{tail:.*}", self._echo)
        self.server = TestServer(app, host="127.0.0.1")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    async def _ready(self, request: web.Request) -> web.Response:
        self.ready_calls += 1
        return web.json_response({"status": "ready"}, status=self.ready_status)

    async def _echo(self, request: web.Request) -> web.StreamResponse:
        self.began.set()
        query = request.query
        if "sleep" in query:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.release.wait(), float(query["sleep"]))
        body = await request.read()
        path, _, raw_query = request.raw_path.partition("?")
        self.seen.append(Seen(request.method, path, raw_query, request.headers, body))
        if "big" in query:
            return await self._big(request, int(query["big"]), sized="sized" in query)
        echo = {"service": self.name, "method": request.method, "path": path, "query": raw_query}
        # Like every service (common.http.app), it answers with the request id it was given.
        headers = {"X-Upstream": self.name, "X-Request-ID": request.headers.get("X-Request-ID", "")}
        if "cookie" in query:
            headers["Set-Cookie"] = "upstream_session=secret; Path=/"
        if "edge" in query:
            headers.update({"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store", "Server": "upstream/1"})
        if "gzip" in query:
            headers["Content-Encoding"] = "gzip"
            return web.Response(body=gzip.compress(b"x" * 10_000), headers=headers, content_type="text/plain")
        return web.json_response(echo, headers=headers)

    async def _big(self, request: web.Request, size: int, *, sized: bool) -> web.StreamResponse:
        # No X-Request-ID echoed here, unlike `_echo`: the gateway must add it to a streamed answer itself.
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        if sized:
            response.content_length = size
        await response.prepare(request)
        data = pattern(size)
        for offset in range(0, size, 100_000):
            await response.write(data[offset : offset + 100_000])
        await response.write_eof()
        return response


class RawUpstream:
    """A TCP server that reads a request head, then answers `reply` (None: nothing) and hangs up."""

    def __init__(self, reply: bytes | None) -> None:
        self.reply = reply
        self.requests = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> RawUpstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            if self.reply is not None:
                writer.write(self.reply)
                await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


@pytest.fixture
def database_url() -> str:
    """The gateway owns no database: skip creating one per test (`make_settings` asks for it)."""
    return "postgresql://unused@127.0.0.1:1/unused"


@pytest.fixture
async def upstreams() -> AsyncIterator[dict[str, Upstream]]:
    """One running echo server per service."""
    found = {name: Upstream(name) for name in SERVICES}
    for upstream in found.values():
        await upstream.server.start_server()
    yield found
    for upstream in found.values():
        upstream.release.set()
        await upstream.server.close()


@pytest.fixture
async def raw_upstream() -> AsyncIterator[Callable[[bytes | None], Awaitable[RawUpstream]]]:
    started: list[RawUpstream] = []

    async def start(reply: bytes | None) -> RawUpstream:
        started.append(await RawUpstream(reply).start())
        return started[-1]

    yield start
    for server in started:
        await server.close()


@pytest.fixture
def closed_url() -> str:
    """A URL nothing listens on: connections are refused."""
    return f"http://127.0.0.1:{free_port()}"


MakeSettings = Callable[..., Settings]


@pytest.fixture
def gateway_settings(make_settings: MakeSettings, upstreams: dict[str, Upstream]) -> MakeSettings:
    """Settings routing every service to its echo server; keyword overrides win."""

    def make(**overrides: Any) -> Settings:
        urls = {URL_SETTING[name]: (upstream.url,) for name, upstream in upstreams.items()}
        return make_settings(service_name="gateway", **{**urls, **overrides})

    return make


StartGateway = Callable[..., Awaitable[TestClient]]


class ServedLikeProduction(TestServer):
    """A TestServer that runs its app as `common.serve` does: `common.http.server`'s protocol and options,
    and a handler is not cancelled when its client hangs up (aiohttp's test server would cancel it)."""

    def __init__(self, app: web.Application, settings: Settings) -> None:
        super().__init__(app, host="127.0.0.1")
        self._settings = settings

    async def _make_runner(self, **kwargs: Any) -> AppRunner:
        kwargs["handler_cancellation"] = False
        return AppRunner(self.app, **kwargs, **server_options(self._settings))


@pytest.fixture
async def start_gateway(gateway_settings: MakeSettings, redis: Any) -> AsyncIterator[StartGateway]:
    """Start a gateway (on an emptied Redis) with settings overrides; returns a client bound to it."""
    clients: list[TestClient] = []

    async def start(**overrides: Any) -> TestClient:
        settings = gateway_settings(**overrides)
        client = TestClient(ServedLikeProduction(create_app(settings), settings))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


@pytest.fixture
async def gateway(start_gateway: StartGateway) -> TestClient:
    return await start_gateway()


@dataclass(frozen=True)
class Token:
    value: str
    user_id: str
    session_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": "Bearer " + self.value}


MakeToken = Callable[..., Token]


@pytest.fixture
def make_token(make_settings: MakeSettings) -> MakeToken:
    """Sign an access token like auth_svc does; keyword overrides replace or add claims."""
    settings = make_settings()
    private_key = settings.read_private_key()

    def make(*, expires_in: int = 300, **overrides: Any) -> Token:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": settings.jwt_issuer,
            "sub": str(uuid.uuid4()),
            "sid": str(uuid.uuid4()),
            "jti": str(uuid.uuid4()),
            "typ": "access",
            "role": "user",
            "username": "user_" + uuid.uuid4().hex[:8],
            "iat": now,
            "exp": now + expires_in,
        }
        claims.update(overrides)
        value = jwt.encode(claims, private_key, algorithm="EdDSA")
        return Token(value, claims["sub"], claims["sid"])

    return make


def total_seen(upstreams: dict[str, Upstream]) -> int:
    return sum(len(upstream.seen) for upstream in upstreams.values())
