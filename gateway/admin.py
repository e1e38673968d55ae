"""Stream inspection for admins (SPEC §3 "Stream inspection"): local routes of the gateway.

No service owns the streams, and the gateway already holds Redis and the token verifier, so these are
answered here rather than proxied. Every query is `common.messaging.views` (the same functions `swarm streams`,
`swarm dlq` and `swarm trace` call); the handlers only check the caller, parse the query and answer.

Auth: the common auth middleware verifies the token as on any service route (401 without one, or when
expired or revoked); every handler then requires an admin (403 `forbidden`), the catch-all of
`/api/v1/admin/...` included, so a non-admin learns nothing, not even which admin paths exist.
"""

from __future__ import annotations

import functools
import re

from aiohttp import web
from marshmallow import Schema, ValidationError, fields, validate

from common.core.errors import Forbidden, MethodNotAllowed, NotFound
from common.core.formats import ENTRY_ID_FORM, OptionalQueryStr, is_entry_id
from common.http.app import Handler, json_response, principal, runtime_of
from common.http.docmarks import doc
from common.http.validation import parse_query
from common.messaging import views as streams
from common.redis.client import Client
from gateway.routing import API_PREFIX

ADMIN_PREFIX = API_PREFIX + "/admin"


def admin_only(handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def checked(request: web.Request) -> web.StreamResponse:
        if not principal(request).is_admin:
            raise Forbidden("stream inspection is for admins only")
        return await handler(request)

    return checked


def _redis(request: web.Request) -> Client:
    return runtime_of(request.app).redis_client()


def _entry_id(value: str) -> None:
    if not is_entry_id(value):
        raise ValidationError("not a stream entry id (<ms>-<seq> or <ms>, each below 2^64)")


def _start() -> OptionalQueryStr:
    """`?from=`: where a page starts (an entry id); absent or empty: the first entry."""
    return OptionalQueryStr(
        data_key="from",
        validate=_entry_id,
        metadata={"pattern": f"^(?:{ENTRY_ID_FORM})?$", "description": "an entry id; empty: from the first"},
    )


_COUNT = validate.Range(1, streams.MAX_COUNT)
# Anything that is not `<ms>-<seq>` (each part below 2^64) names no dead letter: a 404, never sent to Redis.
_DLQ_ID = {"id": "the dead letter's entry id in `events:dlq` (`<ms>-<seq>`)"}


class EntriesQuery(Schema):
    start = _start()
    count = fields.Int(load_default=20, validate=_COUNT)
    reverse = fields.Bool(load_default=False)


class PendingQuery(Schema):
    count = fields.Int(load_default=100, validate=_COUNT)
    consumer = fields.Str(load_default=None, validate=validate.Length(1, 200))


class EventQuery(Schema):
    limit = fields.Int(load_default=100, validate=_COUNT)


class EventSearchQuery(EventQuery):
    # Required: a search without it has nothing to look for (one event by id is /admin/events/{event_id}).
    correlation_id = fields.Str(required=True, validate=validate.Length(1, 200))


class DeadLetterQuery(Schema):
    start = _start()
    count = fields.Int(load_default=20, validate=_COUNT)
    stream = fields.Str(load_default=None, validate=validate.Length(1, 200))
    group = fields.Str(load_default=None, validate=validate.Length(1, 200))


@doc(
    "Every event stream: length, first/last entry, groups, lag, pending, dead letters", response=streams.StreamsOverview
)
@admin_only
async def list_streams(request: web.Request) -> web.Response:
    return json_response(await streams.list_streams(_redis(request)))


@doc(
    "One stream: its groups (pending, lag, last delivered id) and their consumers (pending, idle)",
    response=streams.StreamDetail,
    path_params={"stream": "a stream: `newCard` or `events:newCard`"},
)
@admin_only
async def show_stream(request: web.Request) -> web.Response:
    return json_response(await streams.show_stream(_redis(request), request.match_info["stream"]))


@doc(
    "Browse a stream's entries as decoded envelopes",
    description="`next_from` is the `from` of the next page (same direction).",
    query=EntriesQuery,
    response=streams.EntryPage,
    path_params={"stream": "a stream: `newCard` or `events:newCard`"},
)
@admin_only
async def stream_entries(request: web.Request) -> web.Response:
    query = parse_query(request, EntriesQuery)
    page = await streams.read_entries(_redis(request), request.match_info["stream"], **query)
    return json_response(page)


@doc(
    "A group's pending entries: who holds each, idle time, deliveries",
    query=PendingQuery,
    response=streams.PendingPage,
    path_params={"stream": "a stream: `newCard` or `events:newCard`", "group": "a consumer group (a service name)"},
)
@admin_only
async def pending_entries(request: web.Request) -> web.Response:
    query = parse_query(request, PendingQuery)
    stream, group = request.match_info["stream"], request.match_info["group"]
    return json_response(await streams.pending_entries(_redis(request), stream, group, **query))


@doc(
    "Find an event by id across every stream, with each group's state for it",
    query=EventQuery,
    response=streams.EventSearch,
    path_params={"event_id": "the event's id (its envelope `id`)"},
)
@admin_only
async def find_event(request: web.Request) -> web.Response:
    query = parse_query(request, EventQuery)
    event_id = request.match_info["event_id"]
    found = await streams.find_events(_redis(request), event_id=event_id, limit=query["limit"])
    if not found.items and not found.dead_letters:
        raise NotFound(f"no event {event_id} in any stream", details={"event_id": event_id})
    return json_response(found)


@doc(
    "Every event a request caused (`?correlation_id=<X-Request-ID>`), in order",
    query=EventSearchQuery,
    response=streams.EventSearch,
)
@admin_only
async def search_events(request: web.Request) -> web.Response:
    """`?correlation_id=<X-Request-ID>`: every event a request caused, in order (what `swarm trace` shows)."""
    query = parse_query(request, EventSearchQuery)
    return json_response(await streams.find_events(_redis(request), **query))


@doc("Dead letters in `events:dlq`", query=DeadLetterQuery, response=streams.DeadLetterPage)
@admin_only
async def list_dead_letters(request: web.Request) -> web.Response:
    query = parse_query(request, DeadLetterQuery)
    return json_response(await streams.list_dead_letters(_redis(request), **query))


@doc("One dead letter, with its envelope", response=streams.DeadLetter, path_params=_DLQ_ID)
@admin_only
async def show_dead_letter(request: web.Request) -> web.Response:
    return json_response(await streams.get_dead_letter(_redis(request), request.match_info["id"]))


@doc(
    "Put a dead letter back on its stream, for its group only",
    response=streams.ReplayResult,
    path_params=_DLQ_ID,
)
@admin_only
async def replay_dead_letter(request: web.Request) -> web.Response:
    return json_response(await streams.replay_dead_letter(_redis(request), request.match_info["id"]))


@doc("Drop a dead letter", status=204, path_params=_DLQ_ID)
@admin_only
async def drop_dead_letter(request: web.Request) -> web.Response:
    await streams.drop_dead_letter(_redis(request), request.match_info["id"])
    return web.Response(status=204)


@admin_only
async def unknown(request: web.Request) -> web.Response:
    allowed = _methods_of(request.path)
    if allowed:  # a route of ours, another method: say which ones it takes (RFC 9110 §15.5.6)
        raise MethodNotAllowed(headers={"Allow": ",".join(allowed)})
    raise NotFound()


def _methods_of(path: str) -> list[str]:
    methods = {method for method, template in _TEMPLATES if template.fullmatch(path)}
    return sorted(methods | ({"HEAD"} if "GET" in methods else set()))


# (method, path under /api/v1/admin, handler): the whole admin API.
ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/streams", list_streams),
    ("GET", "/streams/{stream}", show_stream),
    ("GET", "/streams/{stream}/entries", stream_entries),
    ("GET", "/streams/{stream}/pending/{group}", pending_entries),
    ("GET", "/events", search_events),
    ("GET", "/events/{event_id}", find_event),
    ("GET", "/dlq", list_dead_letters),
    ("GET", "/dlq/{id}", show_dead_letter),
    ("POST", "/dlq/{id}/replay", replay_dead_letter),
    ("DELETE", "/dlq/{id}", drop_dead_letter),
)


# Each route's path as a pattern (a `{name}` is one path segment), for the methods a path takes.
_TEMPLATES = tuple(
    (method, re.compile(re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(ADMIN_PREFIX + path)))) for method, path, _ in ROUTES
)


def add_admin_routes(router: web.UrlDispatcher) -> None:
    """Mount the admin routes; call before the gateway's catch-all proxy route."""
    for method, path, handler in ROUTES:
        router.add_route(method, ADMIN_PREFIX + path, handler)
    # Anything else under /admin (a typo, a wrong method): 404 for admins, 403 for everyone else.
    router.add_route("*", ADMIN_PREFIX + "/{tail:.*}", unknown)
