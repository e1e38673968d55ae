"""Which route a request is counted under in the metrics: a template, never a raw path (unbounded)."""

from __future__ import annotations

from aiohttp import web

from common.service.metrics import RouteLabel

UNMATCHED = "unmatched"

# Set by a handler that knows better than the aiohttp route which template it served (the gateway's proxy).
ROUTE_LABEL = web.RequestKey("metrics_route", RouteLabel)


def label_route(request: web.Request, route: str, upstream: str = "") -> None:
    request[ROUTE_LABEL] = RouteLabel(route, upstream)


def route_of(request: web.Request) -> RouteLabel:
    label: RouteLabel | None = request.get(ROUTE_LABEL)
    if label is not None:
        return label
    resource = request.match_info.route.resource
    return RouteLabel(resource.canonical if resource is not None else UNMATCHED)
