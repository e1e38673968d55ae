"""Ids and cursors: whether a path id can name anything, and the opaque cursors of keyset pagination.

No web framework here: the service layers check ids and decode cursors too, and a malformed cursor is
a `ValidationFailed` (400) wherever it is found.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Any

import orjson

from common.core.errors import ValidationFailed


def is_uuid(value: str) -> bool:
    """Whether a path id can name anything; callers answer 404 (not 500) when it cannot."""
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def encode_cursor(position: dict[str, Any]) -> str:
    """An opaque cursor for keyset pagination (clients must not rely on its contents)."""
    return base64.urlsafe_b64encode(orjson.dumps(position)).rstrip(b"=").decode()


def decode_cursor(cursor: str, required_keys: tuple[str, ...]) -> dict[str, Any]:
    """Decode a cursor made by `encode_cursor`; anything else is a 400, never a 500."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        position = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, orjson.JSONDecodeError) as exc:
        raise ValidationFailed(details={"cursor": ["invalid cursor"]}) from exc
    if not isinstance(position, dict) or any(key not in position for key in required_keys):
        raise ValidationFailed(details={"cursor": ["invalid cursor"]})
    return position


def encode_keyset(created_at: datetime, item_id: str) -> str:
    """The cursor after an item of a feed ordered by (created_at, id), either direction."""
    return encode_cursor({"created_at": created_at.isoformat(), "id": item_id})


def decode_keyset(cursor: str) -> tuple[datetime, str]:
    """(created_at, id) from `encode_keyset`'s cursor; a cursor that is not one is a 400."""
    position = decode_cursor(cursor, ("created_at", "id"))
    try:
        created_at = datetime.fromisoformat(position["created_at"])
        item_id = str(uuid.UUID(position["id"]))
    except (TypeError, ValueError, AttributeError) as exc:
        raise ValidationFailed(details={"cursor": ["invalid cursor"]}) from exc
    if created_at.tzinfo is None:
        raise ValidationFailed(details={"cursor": ["invalid cursor"]})
    return created_at, item_id
