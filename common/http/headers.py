"""Response headers every answer of every process carries, or never carries, whatever produced it.

- `X-Content-Type-Options: nosniff`: a browser takes a JSON answer (an error quoting user input
  included) for JSON, and never sniffs it into HTML or script.
- No `Server` banner: aiohttp names itself and the Python version (`Python/3.11 aiohttp/3.x`) on every
  answer, which tells an attacker which advisories to try and tells a client nothing it needs.

Applied by one `on_response_prepare` hook (`secure_response`, installed by `common.http.app.create_app`): it
runs for every answer of a routed request (handlers, the error middleware, aiohttp's own 404/405, files,
streamed and proxied answers, WebSocket handshakes) after aiohttp has added its default headers and
before they are sent, so it can drop the banner. The header is *set*, not added: an answer the gateway
relays already carries it from the service, and the client still sees it once. Answers aiohttp's
protocol makes before any routing (unparsable requests) get the same headers from
`common.http.server`.

`NO_STORE` is for answers that carry a token (register, login, refresh): no cache, shared or the
browser's own, may keep a copy of them.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import hdrs, web
from multidict import CIMultiDict

NO_STORE: Mapping[str, str] = {hdrs.CACHE_CONTROL: "no-store"}


def secure_headers(headers: CIMultiDict[str]) -> None:
    """Make `headers` say nosniff once and name no server software."""
    headers[hdrs.X_CONTENT_TYPE_OPTIONS] = "nosniff"
    headers.popall(hdrs.SERVER, None)


async def secure_response(request: web.Request, response: web.StreamResponse) -> None:
    """The `on_response_prepare` hook: headers are final but not yet sent."""
    secure_headers(response.headers)
