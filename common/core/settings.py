"""Typed settings, read once from environment variables.

Every value has a default that works for `swarm up` on one machine, so a service started with no
configuration at all comes up; a value that is present but malformed fails fast at start-up with the
variable's name, instead of surfacing later as a confusing runtime error.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, get_type_hints


class SettingsError(ValueError):
    """A configuration variable is present but cannot be used."""


def _cast(name: str, raw: str, kind: Any) -> Any:
    try:
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(raw)
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        if kind == tuple[str, ...]:
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        return raw
    except ValueError as exc:
        raise SettingsError(f"environment variable {name}={raw!r} is not a valid {kind}") from exc


def _default_consumer_name(service: str) -> str:
    return f"{service}-{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class Settings:
    """All knobs of one process. Field `foo_bar` is read from `FOO_BAR`."""

    service_name: str = "taskswarm"
    host: str = "127.0.0.1"
    port: int = 8080
    # Several processes on one port (SO_REUSEPORT; the kernel spreads connections): `swarm up --gateway-workers`.
    reuse_port: bool = False
    # `GET /metrics` on this port, never on `port` (common/http/metrics_endpoint.py); 0: on `port` after all.
    metrics_port: int = 9464
    # A request body must arrive within this many seconds, or the answer is 408 and the connection closes.
    body_read_timeout_s: float = 15.0
    # Idle keep-alive connections close after this long, and so does one whose request head (line and
    # headers) has not fully arrived by then. Longer than the keep-alive of the clients' pools (aiohttp's:
    # 15 s; load balancers': 60 s), so a client never sends on a connection the server is closing.
    keepalive_timeout_s: float = 75.0

    database_url: str = "postgresql://postgres@127.0.0.1:5432/taskswarm"
    db_pool_min: int = 2
    db_pool_max: int = 20
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Each process's Redis connections (common.redis.client.make_redis). A command holds one for a round trip
    # (well under a millisecond), so 50 carry thousands of concurrent requests; past them requests queue,
    # and one that waits longer than the timeout answers 503 (Redis is stuck: a healthy queue drains in ms).
    redis_pool_max: int = 50
    redis_pool_timeout_s: float = 5.0
    # Durable publish (common/redis/replicas.py): the outbox relay marks rows published only once `WAIT`
    # confirms its entries on this many replicas. "auto": 1 when the primary has replicas, else 0.
    redis_min_replicas_ack: str = "auto"
    redis_wait_timeout_ms: int = 1000  # past it, the batch stays in the outbox for the next pass

    log_level: str = "info"
    log_format: str = "json"  # json | console

    # Tokens: auth_svc signs with the private key, everyone verifies with the public one.
    jwt_private_key_file: str = ".swarm/keys/jwt_private.pem"
    jwt_public_key_file: str = ".swarm/keys/jwt_public.pem"
    jwt_issuer: str = "taskswarm"
    access_token_ttl_s: int = 15 * 60
    refresh_token_ttl_s: int = 7 * 24 * 3600
    password_hash_scheme: str = "argon2"

    max_body_bytes: int = 1024 * 1024

    # Consumer-group worker (common/messaging/consumer.py).
    consumer_name: str = ""
    consumer_concurrency: int = 2  # consumer loops per process (common.http.contexts.consumer_context)
    consumer_batch_size: int = 100
    consumer_block_ms: int = 2000
    consumer_claim_idle_ms: int = 30_000
    consumer_claim_interval_ms: int = 5_000
    consumer_retry_delay_ms: int = 500
    consumer_max_deliveries: int = 5
    consumer_shutdown_grace_s: float = 10.0
    consumer_delete_idle_ms: int = 3_600_000  # remove group members idle this long with nothing pending; 0: never
    # How long the worker keeps each event's ack times (`trace:acked:<event id>`, for `swarm trace`); 0: off.
    trace_retention_s: int = 7 * 24 * 3600

    # Transactional outbox relay (common/messaging/outbox.py).
    outbox_poll_interval_ms: int = 1000
    outbox_batch_size: int = 500

    # notif_svc: notifications go to MongoDB when a mongodb:// URL is set, else to its PostgreSQL database.
    mongo_url: str = ""
    mongo_database: str = "taskswarm_notif"
    notif_poll_interval_s: int = 30  # X-Poll-Interval: how often feed pollers should come back
    notif_max_wait_s: int = 30  # longest ?wait= long-poll

    # project_svc's due-date reminders (card_due_soon).
    reminder_interval_s: float = 60.0  # how often open cards are scanned
    reminder_window_s: int = 24 * 3600  # a card is "due soon" this long before its due date

    # Gateway.
    auth_url: tuple[str, ...] = ("http://127.0.0.1:8081",)
    project_url: tuple[str, ...] = ()
    comment_url: tuple[str, ...] = ()
    notif_url: tuple[str, ...] = ()
    upstream_timeout_s: float = 10.0
    upstream_connect_timeout_s: float = 2.0
    rate_limit_auth_per_minute: int = 20
    rate_limit_user_per_minute: int = 1200
    rate_limit_refresh_per_minute: int = 60  # per IP: a client refreshes once per access-token lifetime

    # auth_svc: failed logins per login name (username or email) and window; past them (attempts count as
    # they start, successes are given back), 429 until the window (opened by the first, never extended)
    # ends, whether or not the name exists. 0: no limit.
    login_failures_per_name: int = 10
    login_failure_window_s: int = 900

    # Stream retention (common/messaging/retention/), for the services that install `retention_context`: trim the
    # streams they produce to entries younger than this (never what a group has not acknowledged); 0: off.
    stream_retention_s: int = 90 * 24 * 3600
    stream_retention_interval_s: float = 3600.0  # how often the trimmer runs
    stream_archive_dir: str = ""  # when set, entries are archived there (JSON lines, gzip) before trimming

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from `env` (default: `os.environ`), then apply keyword overrides."""
        env = os.environ if env is None else env
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f.name.upper())
            if raw is not None:
                values[f.name] = _cast(f.name.upper(), raw, hints[f.name])
        values.update(overrides)
        settings = cls(**values)
        if not settings.consumer_name:
            object.__setattr__(settings, "consumer_name", _default_consumer_name(settings.service_name))
        if settings.consumer_concurrency < 1:
            raise SettingsError(f"CONSUMER_CONCURRENCY must be at least 1, not {settings.consumer_concurrency}")
        if settings.redis_pool_max < 1 or settings.redis_pool_timeout_s <= 0:
            raise SettingsError("REDIS_POOL_MAX must be at least 1 and REDIS_POOL_TIMEOUT_S above 0")
        for name in ("body_read_timeout_s", "keepalive_timeout_s"):
            if getattr(settings, name) <= 0:
                raise SettingsError(f"{name.upper()} must be more than 0, not {getattr(settings, name)}")
        settings.replicas_to_ack()  # fails fast on a malformed REDIS_MIN_REPLICAS_ACK
        if settings.redis_wait_timeout_ms < 1:
            raise SettingsError(f"REDIS_WAIT_TIMEOUT_MS must be at least 1, not {settings.redis_wait_timeout_ms}")
        if settings.log_format not in {"json", "console"}:
            raise SettingsError(f"LOG_FORMAT must be json or console, not {settings.log_format!r}")
        return settings

    def replicas_to_ack(self) -> int | None:
        """REDIS_MIN_REPLICAS_ACK as a count, or None for "auto" (decided from the primary's replicas)."""
        raw = self.redis_min_replicas_ack.strip().lower()
        if raw == "auto":
            return None
        if raw.isdigit():
            return int(raw)
        raise SettingsError(f"REDIS_MIN_REPLICAS_ACK must be auto or a count of replicas (0, 1, ...), not {raw!r}")

    def upstreams(self) -> dict[str, tuple[str, ...]]:
        """Service name → base URLs of its replicas, for the services that are configured."""
        table = {
            "auth_svc": self.auth_url,
            "project_svc": self.project_url,
            "comment_svc": self.comment_url,
            "notif_svc": self.notif_url,
        }
        return {name: urls for name, urls in table.items() if urls}

    def read_public_key(self) -> bytes:
        return Path(self.jwt_public_key_file).read_bytes()

    def read_private_key(self) -> bytes:
        return Path(self.jwt_private_key_file).read_bytes()
