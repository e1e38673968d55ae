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
nothing runs while nobody looks and a value is never older than its scrape. Each number comes from the
mechanism that produces it (`NumberSource`: its `readings()`), registered with `watch` by whoever starts
it (`common.http.contexts`): a service samples its own group (a worker) and outbox (the relay); the
gateway samples every group of every stream (it sees the lag of a service that is down). Replicas of one
service report the same group and outbox, so aggregate them with `max`, not `sum`. A failed sample drops
its series (absent rather than stale) and counts in the errors counter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import NamedTuple, Protocol

import structlog
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

from common.messaging.readings import DeadLetters, GroupBacklog, OutboxBacklog, Reading
from common.redis.keys import stream_type

log = structlog.get_logger("metrics")

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
# Requests take milliseconds; long polls and WebSockets are the slow tail.
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# A method label must stay bounded too: aiohttp accepts any token as a method.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
SAMPLE_TIMEOUT_S = 2.0

# `*_created` series would double the series count for a timestamp nobody graphs.
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated


class RouteLabel(NamedTuple):
    route: str
    upstream: str = ""


Sample = tuple[Gauge, tuple[str, ...], float]
Sampler = Callable[[], Awaitable[Iterable[Sample]]]


class NumberSource(Protocol):
    """A producer of numbers this process reports (a consumer worker, the outbox relay, the gateway's view
    of every stream): it reads them when asked (`common.messaging.readings`)."""

    async def readings(self) -> Sequence[Reading]: ...


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
        self.events_published.labels(self.service, stream_type(stream)).inc(count)

    def consumed(self, group: str, stream: str, outcome: str, count: int = 1) -> None:
        self.events_consumed.labels(self.service, group, stream_type(stream), outcome).inc(count)

    # -- sampling ----------------------------------------------------------------------------------

    def add_sampler(self, source: str, sampler: Sampler) -> None:
        self._samplers[source] = sampler

    def watch(self, source: str, producer: NumberSource) -> None:
        """Sample `producer`'s readings at every scrape (the runtime registers what it starts)."""

        async def sampler() -> list[Sample]:
            return [sample for reading in await producer.readings() for sample in self._samples_of(reading)]

        self.add_sampler(source, sampler)

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

    def _samples_of(self, reading: Reading) -> list[Sample]:
        if isinstance(reading, GroupBacklog):
            group = (self.service, reading.stream, reading.group)
            return [
                (self.consumer_lag, group, float(reading.lag)),
                (self.consumer_pending, group, float(reading.pending)),
            ]
        if isinstance(reading, OutboxBacklog):
            labels = (self.service,)
            return [
                (self.outbox_backlog, labels, float(reading.rows)),
                (self.outbox_oldest_age, labels, reading.oldest_age_s),
            ]
        if isinstance(reading, DeadLetters):
            return [(self.dead_letters, (self.service,), float(reading.count))]
        raise TypeError(f"no metric for {reading!r}")
