"""The opaque cursors of keyset pagination (whether a path id can name anything: `common.core.formats`).

No web framework here: the service layers check ids and decode cursors too, and a malformed cursor is
a `ValidationFailed` (400) wherever it is found.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

import orjson

from common.core.errors import ValidationFailed
from common.core.formats import canonical_uuid, utc_instant


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
        # In range for every store (common.core.formats.utc_instant), and an id in canonical form.
        created_at = utc_instant(datetime.fromisoformat(position["created_at"]))
        item_id = canonical_uuid(position["id"])
    except (TypeError, ValueError) as exc:
        raise ValidationFailed(details={"cursor": ["invalid cursor"]}) from exc
    return created_at, item_id
