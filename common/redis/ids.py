"""Stream entry ids (`<ms>-<seq>`) and the times they carry.

Redis makes an entry's id from its clock when the entry is added: the milliseconds part is when, and
ids sort in the order entries were added to one stream. Views show that time next to every id.
What a valid id is (each part below 2^64): `common.core.formats.is_entry_id`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


def entry_key(ms_seq: str) -> tuple[int, int]:
    """A stream entry id (`<ms>-<seq>`) as a sortable pair."""
    ms, _, seq = ms_seq.partition("-")
    return int(ms), int(seq or 0)


def entry_ms(entry_id: str) -> int:
    return entry_key(entry_id)[0]


def ms_to_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def entry_time(entry_id: str) -> str:
    """The time an entry was added, from its id (RFC 3339 UTC, milliseconds)."""
    return ms_to_time(entry_ms(entry_id))


@dataclass(frozen=True, slots=True)
class EntryRef:
    id: str
    time: str


def entry_ref(entry_id: str | None) -> EntryRef | None:
    if not entry_id or entry_id == "0-0":
        return None
    return EntryRef(entry_id, entry_time(entry_id))
