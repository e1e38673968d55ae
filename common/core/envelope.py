"""The event envelope (SPEC §4) and its flat Redis-stream encoding.

An entry in `events:<type>` holds the envelope as flat string fields so `redis-cli XRANGE` stays
readable: id, type, producer, occurred_at, correlation_id, actor_id, data (JSON text).
"""

from __future__ import annotations

import contextvars
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from common.core.formats import is_uuid

STREAM_PREFIX = "events:"
DEAD_LETTER_STREAM = "events:dlq"
ENVELOPE_FIELDS = ("id", "type", "producer", "occurred_at", "correlation_id", "actor_id", "data")

# The request id of the HTTP request being served, or the correlation id of the event being handled:
# events created while it is set inherit it, so a whole causal chain shares one correlation id.
correlation_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("correlation_id", default="")


class MalformedEvent(ValueError):
    """A stream entry that is not a valid envelope (no retry can fix it)."""


def stream_for(event_type: str) -> str:
    return f"{STREAM_PREFIX}{event_type}"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    data: dict[str, Any]
    producer: str
    actor_id: str = ""
    correlation_id: str = ""
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    occurred_at: str = field(default_factory=lambda: utcnow().isoformat().replace("+00:00", "Z"))

    @classmethod
    def new(cls, type: str, data: dict[str, Any], *, producer: str, actor_id: str | None = None) -> Event:
        """An event caused by the current request or event (its correlation id is inherited)."""
        return cls(
            type=type,
            data=data,
            producer=producer,
            actor_id=actor_id or "",
            correlation_id=correlation_id_var.get() or str(uuid.uuid4()),
        )

    @property
    def stream(self) -> str:
        return stream_for(self.type)

    def to_fields(self) -> dict[str, str]:
        return {
            "id": self.id,
            "type": self.type,
            "producer": self.producer,
            "occurred_at": self.occurred_at,
            "correlation_id": self.correlation_id,
            "actor_id": self.actor_id,
            "data": orjson.dumps(self.data, option=orjson.OPT_UTC_Z).decode(),
        }

    @classmethod
    def from_fields(cls, fields: dict[Any, Any]) -> Event:
        """Decode stream fields (bytes or str); raise MalformedEvent if they are not an envelope."""
        decoded = {_text(k): _text(v) for k, v in fields.items()}
        missing = [name for name in ("id", "type", "data") if not decoded.get(name)]
        if missing:
            raise MalformedEvent(f"envelope lacks {', '.join(missing)}")
        try:
            data = orjson.loads(decoded["data"])
        except orjson.JSONDecodeError as exc:
            raise MalformedEvent(f"data is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise MalformedEvent("data is not a JSON object")
        if not is_uuid(decoded["id"]):
            # Consumers key their inbox (and traces) by this id: an entry without a real one is unusable.
            # Only the 8-4-4-4-12 form (any case): the one PostgreSQL's uuid type and every producer share.
            raise MalformedEvent(f"id {decoded['id'][:64]!r} is not a UUID")
        return cls(
            id=decoded["id"],
            type=decoded["type"],
            producer=decoded.get("producer", ""),
            occurred_at=decoded.get("occurred_at", ""),
            correlation_id=decoded.get("correlation_id", ""),
            actor_id=decoded.get("actor_id", ""),
            data=data,
        )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
