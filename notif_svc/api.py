"""notif_svc HTTP handlers: the feed with its polling contract, read marks, the count, the WebSocket.

Polling contract (SPEC §3, modelled on GitHub's notifications API): feed answers carry a strong `ETag`
made of the user's feed version and the query, `Last-Modified` (the feed state's time) and
`X-Poll-Interval`. A poll whose `If-None-Match` matches (or, without one, whose `If-Modified-Since` is
not older than the feed state) gets 304 from the feed state alone: one key lookup, no feed query.
With `?wait=N` such a poll is held until the feed changes (200) or N seconds pass (304).
"""

from __future__ import annotations

import functools
import hashlib
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from common.http.app import json_response, principal, runtime_of
from common.http.docmarks import doc
from common.http.validation import parse_query
from notif_svc.schemas import FeedQuery, NotificationPageSchema, UnreadCountSchema
from notif_svc.service import NotificationService
from notif_svc.store import FeedState
from notif_svc.websocket import notifications_ws

NOTIFICATION_SERVICE = web.AppKey("notification_service", NotificationService)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # Last-Modified of a feed that never changed


def _service(request: web.Request) -> NotificationService:
    return request.app[NOTIFICATION_SERVICE]


def feed_etag(state: FeedState, user_id: str, query: dict[str, Any]) -> str:
    """Changes whenever the feed changes (version) and differs between pages, filters and users.

    `wait` is left out: it changes how long we answer, not what.
    """
    shape = f"{user_id}|{query['limit']}|{query['cursor'] or ''}|{int(query['unread'])}"
    return f"{state.version}-{hashlib.blake2b(shape.encode(), digest_size=8).hexdigest()}"


def _last_modified(state: FeedState) -> datetime:
    return state.modified_at or EPOCH


def not_modified(request: web.Request, etag: str, state: FeedState) -> bool:
    """RFC 9110 §13.2.2: If-None-Match (weak comparison) decides when present, else If-Modified-Since.

    HTTP dates have whole seconds: Last-Modified is the feed state's time rounded up (aiohttp), so the
    date a client echoes is never older than the state it saw. A change within that same second goes
    unseen by a client validating with dates only; clients should prefer the ETag (we send both).
    """
    candidates = request.if_none_match
    if candidates is not None:
        return any(candidate.value in (etag, "*") for candidate in candidates)
    since = request.if_modified_since
    if since is None:
        return False
    return since >= _last_modified(state)


def _validators(response: web.StreamResponse, request: web.Request, etag: str, state: FeedState) -> None:
    response.etag = etag  # quoted by aiohttp: a strong validator
    response.last_modified = _last_modified(state)
    response.headers["X-Poll-Interval"] = str(runtime_of(request.app).settings.notif_poll_interval_s)
    # The feed is personal, and must be revalidated each time (cheap: that is the 304 path).
    response.headers["Cache-Control"] = "private, no-cache"


@functools.cache
def _feed_query(max_wait_s: int) -> FeedQuery:
    """One schema per limit: building a marshmallow schema on every poll cost a tenth of a 304."""
    return FeedQuery(max_wait_s=max_wait_s)


@doc(
    "My notifications, newest first",
    description="Polling contract: answers carry `ETag`, `Last-Modified` and `X-Poll-Interval`; send the ETag "
    "back as `If-None-Match` (or the date as `If-Modified-Since`) and an unchanged feed answers 304 without "
    "touching the feed. `?wait=N` (N ≤ `NOTIF_MAX_WAIT_S`, 30 by default) holds a not-modified poll until "
    "a notification arrives (200) or N seconds pass (304). `?unread=true` lists unread ones only.",
    query=FeedQuery(max_wait_s=30),
    response=NotificationPageSchema,
    responses={304: "not modified since the `If-None-Match` / `If-Modified-Since` sent (no body)"},
    response_headers={
        "ETag": "the feed's version for this page and filter (strong validator)",
        "Last-Modified": "when the feed last changed",
        "X-Poll-Interval": "seconds to wait before the next poll",
    },
    parameters=(
        {"in": "header", "name": "If-None-Match", "schema": {"type": "string"}, "description": "a feed ETag"},
        {"in": "header", "name": "If-Modified-Since", "schema": {"type": "string"}, "description": "an HTTP date"},
    ),
)
async def list_notifications(request: web.Request) -> web.Response:
    settings = runtime_of(request.app).settings
    query = parse_query(request, _feed_query(settings.notif_max_wait_s))
    user_id = principal(request).user_id
    service = _service(request)
    # The state is read BEFORE the feed: if a notification lands in between, the ETag is older than
    # the items (the next poll refetches once) and never newer (which would hide that notification).
    state = await service.feed_state(user_id)
    etag = feed_etag(state, user_id, query)
    if not_modified(request, etag, state):
        changed = await service.wait_for_change(user_id, state.version, query["wait"]) if query["wait"] else None
        if changed is None:
            response = web.Response(status=304)
            _validators(response, request, etag, state)
            return response
        state, etag = changed, feed_etag(changed, user_id, query)
    page = await service.feed(user_id, limit=query["limit"], cursor=query["cursor"], unread_only=query["unread"])
    response = json_response(page)
    _validators(response, request, etag, state)
    return response


@doc("How many of my notifications are unread", response=UnreadCountSchema)
async def unread_count(request: web.Request) -> web.Response:
    return json_response({"unread": await _service(request).unread_count(principal(request).user_id)})


@doc("Mark a notification read", status=204)
async def mark_read(request: web.Request) -> web.Response:
    await _service(request).mark_read(principal(request).user_id, request.match_info["notification_id"])
    return web.Response(status=204)


@doc("Mark everything up to now read", status=204)
async def mark_all_read(request: web.Request) -> web.Response:
    await _service(request).mark_all_read(principal(request).user_id)
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/notifications", list_notifications)
    app.router.add_get("/notifications/unread-count", unread_count)
    app.router.add_get("/notifications/ws", notifications_ws)
    app.router.add_post("/notifications/read-all", mark_all_read)
    app.router.add_post("/notifications/{notification_id}/read", mark_read)
