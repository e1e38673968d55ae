"""Reading a request's body within a time bound (`BODY_READ_TIMEOUT_S`).

aiohttp bounds the size of a body (`MAX_BODY_BYTES`), never the time it takes to arrive: a client that
sends its headers, then a byte every few seconds, holds a connection, a handler and its buffers for as
long as it likes. Every body is read through here, whole (`read_body`: the services' JSON, the
gateway's sized bodies) or chunk by chunk under one deadline (`read_chunks`: the gateway's chunked
uploads, streamed on). Past the bound the request ends with 408 `request_timeout`, and the error middleware
(`common.http.app`) closes the connection as soon as that answer is out, rather than reading the rest.

A slow request head is bounded by the server's keep-alive timeout (`common.http.server`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import StreamReader, web

from common.core.errors import RequestTimeout
from common.http.app import RUNTIME


def body_timeout_s(request: web.Request) -> float:
    return request.app[RUNTIME].settings.body_read_timeout_s


def too_slow(timeout_s: float) -> RequestTimeout:
    return RequestTimeout(details={"timeout_s": timeout_s})


async def read_body(request: web.Request) -> bytes:
    """The whole body, or 408 if it has not arrived within the bound."""
    timeout_s = body_timeout_s(request)
    try:
        async with asyncio.timeout(timeout_s):
            return await request.read()
    except TimeoutError as exc:
        raise too_slow(timeout_s) from exc


async def read_chunks(content: StreamReader, timeout_s: float) -> AsyncIterator[bytes]:
    """A streamed body chunk by chunk as it arrives, all of it within `timeout_s` of the first read:
    RequestTimeout (408) past that."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            async with asyncio.timeout_at(deadline):
                chunk = await content.readany()
        except TimeoutError as exc:
            raise too_slow(timeout_s) from exc
        if not chunk:
            return
        yield chunk
