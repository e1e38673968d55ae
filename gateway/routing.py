"""THE routing table of the public API: which service owns a path, and who may call it.

Clients see every path under `/api/v1`; each service serves the same paths without that prefix
(`/api/v1/users/me` is auth_svc's `/users/me`). Routing works on the raw (still percent-encoded) path
and forwards that same raw path, so what the gateway checked is byte for byte what the service gets.

A service that is not configured in this deployment has no routes here: its paths answer 404, like
any path nobody serves. 404 rather than 503 because it is a fact about the deployment, not an outage a
client should retry. Its rules stay in the table all the same, so `/cards/{id}/comments` never falls
through to project_svc's `/cards` when comment_svc is absent.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

API_PREFIX = "/api/v1"


@dataclass(frozen=True, slots=True)
class Rule:
    """Paths starting with `prefix` (segment by segment; `*` is any one segment) go to `service`."""

    prefix: str
    service: str
    rewrite: str | None = None  # upstream prefix replacing `prefix`; only for prefixes without `*`
    long_poll: bool = False  # clients may ask the service to hold the answer (`?wait=N`)
    websocket: bool = False  # a GET with `Upgrade: websocket` is relayed as a WebSocket (gateway.websocket)


# First match wins: the more specific rule comes first.
ROUTES: tuple[Rule, ...] = (
    Rule("/auth", "auth_svc"),
    Rule("/users", "auth_svc"),
    Rule("/projects", "project_svc"),
    Rule("/cards/*/comments", "comment_svc"),
    Rule("/cards", "project_svc"),
    Rule("/comments", "comment_svc"),
    Rule("/notifications", "notif_svc", long_poll=True),
    Rule("/ws", "notif_svc", rewrite="/notifications/ws", websocket=True),
)


class Access(enum.Enum):
    TOKEN = "token"  # a valid, unrevoked access token; rate limited per user
    PUBLIC = "public"  # no token, no limit
    PUBLIC_PER_IP = "public_per_ip"  # no token; rate limited per client IP (no user to count yet)


# Everything not listed needs a token (SPEC §3). Exact (method, path) pairs: a path that merely starts
# like a public one is not public.
ACCESS: Mapping[tuple[str, str], Access] = {
    ("POST", "/auth/register"): Access.PUBLIC_PER_IP,
    ("POST", "/auth/login"): Access.PUBLIC_PER_IP,
    ("POST", "/auth/refresh"): Access.PUBLIC_PER_IP,
    ("GET", "/auth/jwks.json"): Access.PUBLIC,
    # Answered by the gateway itself (gateway.apidocs, like `/docs`), listed so this table names them all.
    ("GET", "/openapi.json"): Access.PUBLIC,
    ("GET", "/asyncapi.json"): Access.PUBLIC,
}


def access_of(method: str, path: str) -> Access:
    return ACCESS.get((method, path), Access.TOKEN)


class Replicas:
    """The base URLs of one service's replicas, handed out round-robin."""

    __slots__ = ("_next", "service", "urls")

    def __init__(self, service: str, urls: tuple[str, ...]) -> None:
        if not urls:
            raise ValueError(f"{service} has no replica URL")
        self.service = service
        self.urls = tuple(url.rstrip("/") for url in urls)
        self._next = 0

    def start(self) -> int:
        """Index of the replica this request tries first; the next request starts one further."""
        index = self._next
        self._next = (index + 1) % len(self.urls)
        return index


class Target(NamedTuple):
    replicas: Replicas
    path: str  # on the upstream, without API_PREFIX
    long_poll: bool
    websocket: bool
    prefix: str = ""  # of the rule that matched: the route template in metrics, never the raw path


class _Compiled:
    __slots__ = ("parts", "prefix_len", "replicas", "rule")

    def __init__(self, rule: Rule, replicas: Replicas | None) -> None:
        if rule.rewrite is not None and "*" in rule.prefix:
            raise ValueError(f"rule {rule.prefix!r}: a rewritten prefix cannot hold wildcards")
        self.rule = rule
        self.parts = rule.prefix.split("/")  # "/cards/*/comments" → ["", "cards", "*", "comments"]
        self.prefix_len = len(rule.prefix)
        self.replicas = replicas

    def matches(self, segments: list[str]) -> bool:
        parts = self.parts
        if len(segments) < len(parts):
            return False
        for index in range(2, len(parts)):  # parts[1] already matched through the index
            part = parts[index]
            if part != segments[index] and not (part == "*" and segments[index]):
                return False
        return True


class Router:
    """Resolves a public path (after API_PREFIX) to its service's replicas and upstream path."""

    def __init__(self, upstreams: Mapping[str, tuple[str, ...]], routes: tuple[Rule, ...] = ROUTES) -> None:
        self.services = {name: Replicas(name, urls) for name, urls in upstreams.items() if urls}
        # Rules indexed by their first segment: one dict lookup, then the few rules sharing it.
        self._by_head: dict[str, list[_Compiled]] = {}
        for rule in routes:
            compiled = _Compiled(rule, self.services.get(rule.service))
            self._by_head.setdefault(compiled.parts[1], []).append(compiled)

    def resolve(self, path: str) -> Target | None:
        """Where `path` goes, or None when no configured service serves it."""
        segments = path.split("/")
        if len(segments) < 2 or segments[0]:
            return None
        for compiled in self._by_head.get(segments[1], ()):
            if not compiled.matches(segments):
                continue
            if compiled.replicas is None:
                return None
            rule = compiled.rule
            upstream_path = path if rule.rewrite is None else rule.rewrite + path[compiled.prefix_len :]
            return Target(compiled.replicas, upstream_path, rule.long_poll, rule.websocket, rule.prefix)
        return None
