"""HTTP over a raw socket, for what a client library will not send: malformed heads, bodies dribbled a
byte at a time, uploads abandoned halfway. Answers are parsed by hand, headers kept as sent (repeats
included), and whether the server closed the connection afterwards is checked."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    closed: bool  # the server closed the connection after this answer
    elapsed_s: float  # from the first byte sent to the whole answer read

    def values(self, name: str) -> list[str]:
        """Every value of header `name`, in order, however often it was sent."""
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def header(self, name: str) -> str | None:
        found = self.values(name)
        assert len(found) <= 1, f"{name} sent {len(found)} times: {found}"
        return found[0] if found else None

    def json(self) -> Any:
        return json.loads(self.body)


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.started = time.monotonic()

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, timeout_s: float = 10.0) -> RawResponse:
        """The next answer, and whether the server hangs up after it (waiting up to a second to see)."""
        async with asyncio.timeout(timeout_s):
            head = await self.reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ")[1])
            headers = [(k, v.strip()) for k, _, v in (line.partition(":") for line in lines[1:] if line)]
            length = next((int(v) for k, v in headers if k.lower() == "content-length"), 0)
            body = await self.reader.readexactly(length)
        elapsed = time.monotonic() - self.started
        return RawResponse(status, headers, body, await self.closed_by_server(1.0), elapsed)

    async def closed_by_server(self, within_s: float) -> bool:
        """Whether the server closes the connection within `within_s` (nothing more arrives before)."""
        try:
            async with asyncio.timeout(within_s):
                rest = await self.reader.read(1)
        except TimeoutError:
            return False
        except ConnectionError:
            return True
        return rest == b""

    def abort(self) -> None:
        """Hang up at once, as a client that gives up mid-request does."""
        self.writer.transport.abort()


@contextlib.asynccontextmanager
async def connect(host: str, port: int) -> AsyncIterator[Connection]:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        yield Connection(reader, writer)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def exchange(host: str, port: int, data: bytes, timeout_s: float = 10.0) -> RawResponse:
    """Send `data` at once and read the answer."""
    async with connect(host, port) as conn:
        await conn.send(data)
        return await conn.response(timeout_s)


async def dribble(conn: Connection, data: bytes, every_s: float) -> None:
    """Send `data` one byte every `every_s` seconds (a slow-loris), until done or the server hangs up."""
    with contextlib.suppress(ConnectionError):
        for byte in data:
            await conn.send(bytes([byte]))
            await asyncio.sleep(every_s)


async def answer_to_dribbled(conn: Connection, head: bytes, body: bytes, every_s: float) -> RawResponse:
    """Send `head` at once, then `body` a byte every `every_s` seconds, and read the answer the server
    gives meanwhile (the sender stops once the answer is in)."""
    await conn.send(head)
    sender = asyncio.create_task(dribble(conn, body, every_s))
    try:
        return await conn.response()
    finally:
        sender.cancel()


# Heads the parser refuses, by name: each must be answered in the SPEC error shape, quoting none of it.
LONG = "x" * 20_000
MALFORMED: dict[str, tuple[bytes, int, str]] = {
    "url too long": (f"GET /{LONG} HTTP/1.1\r\nHost: t\r\n\r\n".encode(), 414, "uri_too_long"),
    "header too long": (
        f"GET / HTTP/1.1\r\nHost: t\r\nX-Big: {LONG}\r\n\r\n".encode(),
        431,
        "request_header_too_large",
    ),
    "too many headers": (
        b"GET / HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-%d: xxxx\r\n" % i for i in range(300)) + b"\r\n",
        431,
        "request_header_too_large",
    ),
    "bare CR in a header": (b"GET / HTTP/1.1\r\nHost: t\r\nX-A: xxxx\rxxxx\r\n\r\n", 400, "bad_request"),
    "bare LF line ends": (b"GET / HTTP/1.1\nHost: t\nX-A: xxxx\n\n", 400, "bad_request"),
    "content-length with transfer-encoding": (
        b"POST / HTTP/1.1\r\nHost: t\r\nX-Mark: xxxx\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n",
        400,
        "bad_request",
    ),
    "TLS to the plain port": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfcxxxx\r\n\r\n", 400, "bad_request"),
}


def assert_spec_error(response: RawResponse, status: int, code: str, sent: bytes) -> None:
    """The SPEC error shape with a request id and the edge headers, quoting nothing of what was sent."""
    assert response.status == status, response
    assert response.header("Content-Type") == "application/json"
    error = response.json()["error"]
    assert error["code"] == code and set(error) == {"code", "message", "details"}
    assert response.header("X-Request-ID")
    assert response.header("X-Content-Type-Options") == "nosniff"
    assert response.values("Server") == []
    assert b"xxxx" not in response.body and b"xxxx" in sent  # nothing of the input comes back
    assert response.closed  # the parser cannot resync after a bad head
