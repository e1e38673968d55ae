"""What crosses the gateway in each direction: which headers pass, and how request bodies are bounded
(in size by MAX_BODY_BYTES, in time by BODY_READ_TIMEOUT_S: `common.http.bodies`).

Header work is kept to one pass over the headers: copy everything except the hop-by-hop ones, which
describe a single connection and must not be forwarded (RFC 9110 §7.6.1), including any header the
sender names in `Connection`.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

from aiohttp import StreamReader, web
from multidict import CIMultiDict, CIMultiDictProxy

from common.core.errors import PayloadTooLarge, RequestTimeout
from common.http.app import REQUEST_ID, REQUEST_ID_HEADER
from common.http.bodies import body_timeout_s, read_body, read_chunks

_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}
)
# Also not forwarded upstream: the client's Host (the upstream has its own), Content-Length (the
# client library sets it from the body we actually send) and Expect (we answered 100-continue here).
_REQUEST_DROP = _HOP_BY_HOP | {"host", "content-length", "expect"}
_RESPONSE_DROP = _HOP_BY_HOP


@functools.lru_cache(maxsize=64)
def _dropped(base: frozenset[str], connection: str) -> frozenset[str]:
    # Cached: clients send the same few `Connection` values ("keep-alive", "close") over and over.
    named = {token.strip().lower() for token in connection.split(",")}
    return base | named


def _filtered(headers: CIMultiDictProxy[str], base: frozenset[str]) -> CIMultiDict[str]:
    connection = headers.get("Connection")
    drop = _dropped(base, connection) if connection else base
    kept: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        lowered = name.lower()
        if lowered not in drop and not lowered.startswith("proxy-"):
            kept.add(name, value)
    return kept


def upstream_request_headers(request: web.Request) -> CIMultiDict[str]:
    """The client's headers as the service should see them; Authorization passes unchanged."""
    headers = _filtered(request.headers, _REQUEST_DROP)
    headers[REQUEST_ID_HEADER] = request[REQUEST_ID]
    remote = request.remote
    if remote:
        previous = headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = previous + ", " + remote if previous else remote
    return headers


def client_response_headers(headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    """The service's response headers as the client should see them (Content-Length kept: bodies
    pass through byte for byte, still compressed if they were)."""
    return _filtered(headers, _RESPONSE_DROP)


class LimitedBody:
    """A request body of unknown length, streamed upstream chunk by chunk until it passes `limit` bytes
    or `timeout_s` seconds (BODY_READ_TIMEOUT_S).

    Past either the stream fails, which aborts the upstream request mid-body: the service never sees a
    complete request. The client library reports that abort as a connection error; `error` tells the
    proxy it was our doing, to be answered 413 or 408 rather than 502.
    """

    __slots__ = ("_content", "_limit", "_timeout_s", "error")

    def __init__(self, content: StreamReader, limit: int, timeout_s: float) -> None:
        self._content = content
        self._limit = limit
        self._timeout_s = timeout_s
        self.error: PayloadTooLarge | RequestTimeout | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        try:
            async for chunk in read_chunks(self._content, self._timeout_s):
                seen += len(chunk)
                if seen > self._limit:
                    raise PayloadTooLarge(details={"max_bytes": self._limit})
                yield chunk
        except (PayloadTooLarge, RequestTimeout) as exc:
            self.error = exc
            raise


Body = bytes | LimitedBody | None


async def request_body(request: web.Request, limit: int) -> Body:
    """The body to forward: read whole when its length is announced, streamed when it is not."""
    length = request.content_length
    if length is not None:
        if length > limit:  # refuse before reading a byte of it
            raise PayloadTooLarge(details={"max_bytes": limit})
        return await read_body(request)
    if request.body_exists:  # chunked: the size is known only at its end
        return LimitedBody(request.content, limit, body_timeout_s(request))
    return None
