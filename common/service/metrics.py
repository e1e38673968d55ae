"""Prometheus metrics: every metric of the system, defined once, on one registry per application.

| metric | type | labels | what |
|---|---|---|---|
| `taskswarm_http_requests_total` | counter | service, method, route, upstream, status | requests answered |
| `taskswarm_http_request_duration_seconds` | histogram | service, method, route, upstream, status | time to answer |
| `taskswarm_events_published_total` | counter | service, event_type | events the outbox relay XADDed |
| `taskswarm_events_consumed_total` | counter | service, group, event_type, outcome | entries the worker settled |
| `taskswarm_consumer_lag` | gauge | service, stream, group | entries the group has not been handed yet |
| `taskswarm_consumer_pending` | gauge | service, stream, group | entries handed out, not acknowledged |
| `taskswarm_dead_letters` | gauge | service | entries in `events:dlq` (gateway only) |
| `taskswarm_outbox_backlog` | gauge | service | outbox rows not relayed yet |
| `taskswarm_outbox_oldest_age_seconds` | gauge | service | age of the oldest of them (0: none) |
| `taskswarm_metrics_sample_errors_total` | counter | service, source | failed or timed-out samples |
| `taskswarm_process_info` | gauge (1) | service, consumer | which process this is |

`route` is a template, never a raw path (unbounded): the matched resource's canonical path
(`/cards/{card_id}`), `unmatched` for a 404/405 no route matched, and on the gateway the routing rule that
took the request (`/api/v1/cards/*/comments`) with its service as `upstream` (empty elsewhere). `outcome`
is `applied`, `duplicate` (already in the inbox), `retried` (the handler failed; delivered again later),
`dead_lettered` (moved to `events:dlq`) or `skipped` (trimmed entry, no handler, a replay for another group).

Every process serves its own `/metrics` (`common.http.app`), and Prometheus scrapes each replica as its own
target, telling them apart by its `instance` label: replicas never share a counter, so none clobbers
another's. The registry is the application's, not prometheus_client's global one, because tests run
several applications in one process. A process is one event loop (one worker, one relay); were it ever to
fork several workers behind one port, prometheus_client's multiprocess mode would be needed.

Gauges read from Redis or PostgreSQL are sampled when Prometheus scrapes, with a timeout, not by a loop:
nothing runs while nobody looks and a value is never older than its scrape. A service samples its own
group and outbox; the gateway samples every group of every stream (it sees the lag of a service that is
down). Replicas of one service report the same group and outbox, so aggregate them with `max`, not `sum`.
A failed sample drops its series (absent rather than stale) and counts in the errors counter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, NamedTuple

import redis.asyncio as aioredis
import structlog
from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from redis.exceptions import ResponseError

from common.core.envelope import DEAD_LETTER_STREAM, STREAM_PREFIX
from common.messaging.views import group_lag, stream_keys

if TYPE_CHECKING:
    from common.http.contexts import Runtime

log = structlog.get_logger("metrics")

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
# Requests take milliseconds; long polls and WebSockets are the slow tail.
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# A method label must stay bounded too: aiohttp accepts any token as a method.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
SAMPLE_TIMEOUT_S = 2.0
UNMATCHED = "unmatched"

# `*_created` series would double the series count for a timestamp nobody graphs.
disable_created_metrics()


class RouteLabel(NamedTuple):
    route: str
    upstream: str = ""


# Set by a handler that knows better than the aiohttp route which template it served (the gateway's proxy).
ROUTE_LABEL = web.RequestKey("metrics_route", RouteLabel)


def label_route(request: web.Request, route: str, upstream: str = "") -> None:
    request[ROUTE_LABEL] = RouteLabel(route, upstream)


def route_of(request: web.Request) -> RouteLabel:
    label = request.get(ROUTE_LABEL)
    if label is not None:
        return label
    resource = request.match_info.route.resource
    return RouteLabel(resource.canonical if resource is not None else UNMATCHED)


def event_type_of(stream: str) -> str:
    return stream[len(STREAM_PREFIX) :] if stream.startswith(STREAM_PREFIX) else stream


Sample = tuple[Gauge, tuple[str, ...], float]
Sampler = Callable[[], Awaitable[Iterable[Sample]]]


class Metrics:
    """The metrics of one application (one process), on their own registry."""

    def __init__(self, service: str, consumer: str = "") -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        http_labels = ("service", "method", "route", "upstream", "status")
        self.http_requests = Counter(
            "taskswarm_http_requests", "HTTP requests answered.", http_labels, registry=registry
        )
        self.http_duration = Histogram(
            "taskswarm_http_request_duration_seconds",
            "Time to answer an HTTP request (a WebSocket: its lifetime).",
            http_labels,
            buckets=HTTP_BUCKETS,
            registry=registry,
        )
        self.events_published = Counter(
            "taskswarm_events_published",
            "Events relayed from the outbox to their stream.",
            ("service", "event_type"),
            registry=registry,
        )
        self.events_consumed = Counter(
            "taskswarm_events_consumed",
            "Stream entries settled by the consumer worker, by outcome.",
            ("service", "group", "event_type", "outcome"),
            registry=registry,
        )
        group_labels = ("service", "stream", "group")
        self.consumer_lag = Gauge(
            "taskswarm_consumer_lag",
            "Entries of the stream not yet delivered to the group.",
            group_labels,
            registry=registry,
        )
        self.consumer_pending = Gauge(
            "taskswarm_consumer_pending",
            "Entries delivered to the group and not acknowledged yet.",
            group_labels,
            registry=registry,
        )
        self.dead_letters = Gauge(
            "taskswarm_dead_letters", "Entries in the dead-letter stream events:dlq.", ("service",), registry=registry
        )
        self.outbox_backlog = Gauge(
            "taskswarm_outbox_backlog", "Outbox rows not relayed yet.", ("service",), registry=registry
        )
        self.outbox_oldest_age = Gauge(
            "taskswarm_outbox_oldest_age_seconds",
            "Age of the oldest outbox row (0 when empty).",
            ("service",),
            registry=registry,
        )
        self.sample_errors = Counter(
            "taskswarm_metrics_sample_errors",
            "Samples of Redis or PostgreSQL that failed or timed out.",
            ("service", "source"),
            registry=registry,
        )
        info = Gauge(
            "taskswarm_process_info", "Always 1: who this process is.", ("service", "consumer"), registry=registry
        )
        info.labels(service, consumer).set(1)
        ProcessCollector(registry=registry)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
        self._http: dict[tuple[str, str, str, int], tuple[Counter, Histogram]] = {}
        self._samplers: dict[str, Sampler] = {}
        self._sampled: dict[str, set[tuple[Gauge, tuple[str, ...]]]] = {}

    # -- recording ---------------------------------------------------------------------------------

    def observe_request(self, method: str, route: RouteLabel, status: int, seconds: float) -> None:
        method = method if method in _METHODS else "other"
        key = (method, route.route, route.upstream, status)
        children = self._http.get(key)
        if children is None:  # labels() takes a lock and builds a tuple: once per series, not per request
            labels = (self.service, method, route.route, route.upstream, str(status))
            children = self._http[key] = (self.http_requests.labels(*labels), self.http_duration.labels(*labels))
        children[0].inc()
        children[1].observe(seconds)

    def published(self, stream: str, count: int = 1) -> None:
        self.events_published.labels(self.service, event_type_of(stream)).inc(count)

    def consumed(self, group: str, stream: str, outcome: str, count: int = 1) -> None:
        self.events_consumed.labels(self.service, group, event_type_of(stream), outcome).inc(count)

    # -- sampling ----------------------------------------------------------------------------------

    def add_sampler(self, source: str, sampler: Sampler) -> None:
        self._samplers[source] = sampler

    def watch_runtime(self, rt: Runtime) -> None:
        """Sample what this process runs, once it runs it: its consumer group, its outbox."""
        self.add_sampler("consumer_group", lambda: self._sample_own_group(rt))
        self.add_sampler("outbox", lambda: self._sample_outbox(rt))

    def watch_all_groups(self, rt: Runtime) -> None:
        """Sample every consumer group of every event stream, and the dead letters (the gateway)."""
        self.add_sampler("all_groups", lambda: self._sample_all_groups(rt))

    async def sample(self) -> None:
        await asyncio.gather(*(self._run_sampler(source, sampler) for source, sampler in self._samplers.items()))

    async def render(self) -> bytes:
        """Sample, then the whole registry in the Prometheus text format."""
        await self.sample()
        return generate_latest(self.registry)

    async def _run_sampler(self, source: str, sampler: Sampler) -> None:
        try:
            samples = list(await asyncio.wait_for(sampler(), SAMPLE_TIMEOUT_S))
        except Exception as exc:
            self.sample_errors.labels(self.service, source).inc()
            log.warning("metrics.sample_failed", source=source, error=repr(exc))
            samples = []
        # No await from here on: a concurrent scrape never sees half of a sample.
        current = {(gauge, labels) for gauge, labels, _ in samples}
        for gauge, labels in self._sampled.get(source, set()) - current:
            gauge.remove(*labels)
        for gauge, labels, value in samples:
            gauge.labels(*labels).set(value)
        self._sampled[source] = current

    async def _sample_own_group(self, rt: Runtime) -> list[Sample]:
        if not rt.workers or rt.redis is None:
            return []
        worker = rt.workers[0]  # all of them read the same streams for the same group
        return await self._group_samples(rt.redis, worker.streams, worker.group)

    async def _sample_all_groups(self, rt: Runtime) -> list[Sample]:
        if rt.redis is None:
            return []
        samples = await self._group_samples(rt.redis, await stream_keys(rt.redis), None)
        samples.append((self.dead_letters, (self.service,), float(await rt.redis.xlen(DEAD_LETTER_STREAM))))
        return samples

    async def _group_samples(self, redis: aioredis.Redis, streams: Iterable[str], only: str | None) -> list[Sample]:
        samples: list[Sample] = []
        for stream in streams:
            try:
                groups = await redis.xinfo_groups(stream)
            except ResponseError:  # no such stream (yet)
                continue
            for group in groups:
                name = group["name"]
                if only is not None and name != only:
                    continue
                lag, _source = await group_lag(redis, stream, group)
                labels = (self.service, stream, name)
                samples.append((self.consumer_lag, labels, float(lag)))
                samples.append((self.consumer_pending, labels, float(group["pending"])))
        return samples

    async def _sample_outbox(self, rt: Runtime) -> list[Sample]:
        if rt.relay is None or rt.pool is None:
            return []
        async with rt.pool.acquire(timeout=SAMPLE_TIMEOUT_S) as conn:
            row = await conn.fetchrow(
                "SELECT count(*) AS backlog, EXTRACT(EPOCH FROM clock_timestamp() - min(created_at)) AS age FROM outbox"
            )
        labels = (self.service,)
        return [
            (self.outbox_backlog, labels, float(row["backlog"])),
            (self.outbox_oldest_age, labels, max(float(row["age"] or 0), 0.0)),
        ]
