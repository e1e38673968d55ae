"""Stream inspection: what the event streams, their consumer groups and the dead-letter stream hold.

A mechanism, like the worker it looks into: it knows the envelope (`common.core.envelope`), consumer groups,
`events:dlq` and the worker's ack records (`trace:acked:<event id>`), nothing of any service's business.
Every function takes a redis.asyncio client made with `decode_responses=True` (`common.redis.client.make_redis`)
and returns dataclasses that orjson serialises as they are (`dumps`, `common.http.app.json_response`). The
gateway's admin API (`gateway/admin.py`) and `swarm streams|dlq|trace` (`common/swarm/streams_cli/`) both
call these functions, so a view never differs between the two.

Stream names are accepted with or without the `events:` prefix. Entry ids come with their time (the
milliseconds part of the id, as RFC 3339). What "consumed" means for one entry and one group, from what
Redis keeps: delivered when the id is at or below the group's last-delivered id; still held when it is
in the group's pending list (PEL); acknowledged when delivered and no longer pending. Redis keeps no ack
times, so the worker records them (`common.messaging.consumer`, `ack_record_key`).

The lookups that scan (`find_events`, the dead-letter counts) read whole streams page by page: fine for
debugging, bounded by `limit` / `scan_limit`, never for a request path of the product.

Removing entries (trimming below what every group has acknowledged, archiving them first) is
`common/messaging/retention/`, on top of these names and decoded entries.

One module per concern: `entries` (pages, tail, follow), `groups` (streams, lag, consumers), `pending`,
`dead_letters` (list, show, replay, drop), `trace` (find events, where each stands per group); what they
share is `reading`. This package gathers their public names, so callers write `views.list_streams`.
"""

from common.core.formats import is_entry_id
from common.messaging.views.dead_letters import (
    DeadLetter,
    DeadLetterPage,
    ReplayResult,
    decode_dead_letter,
    drop_dead_letter,
    get_dead_letter,
    list_dead_letters,
    replay_dead_letter,
)
from common.messaging.views.entries import (
    Entry,
    EntryFilter,
    EntryPage,
    decode_entry,
    follow,
    last_entry_id,
    read_entries,
    tail_entries,
)
from common.messaging.views.groups import (
    ConsumerInfo,
    GroupInfo,
    StreamDetail,
    StreamsOverview,
    StreamSummary,
    group_lag,
    list_streams,
    show_stream,
)
from common.messaging.views.pending import PendingEntry, PendingPage, pending_entries
from common.messaging.views.reading import MAX_COUNT, SCAN_LIMIT, dumps, stream_keys
from common.messaging.views.trace import EventHit, EventSearch, GroupState, find_events, trace_request
from common.redis.ids import EntryRef, entry_ms, entry_ref, entry_time, ms_to_time
from common.redis.keys import stream_key, stream_type

__all__ = [
    "MAX_COUNT",
    "SCAN_LIMIT",
    "ConsumerInfo",
    "DeadLetter",
    "DeadLetterPage",
    "Entry",
    "EntryFilter",
    "EntryPage",
    "EntryRef",
    "EventHit",
    "EventSearch",
    "GroupInfo",
    "GroupState",
    "PendingEntry",
    "PendingPage",
    "ReplayResult",
    "StreamDetail",
    "StreamSummary",
    "StreamsOverview",
    "decode_dead_letter",
    "decode_entry",
    "drop_dead_letter",
    "dumps",
    "entry_ms",
    "entry_ref",
    "entry_time",
    "find_events",
    "follow",
    "get_dead_letter",
    "group_lag",
    "is_entry_id",
    "last_entry_id",
    "list_dead_letters",
    "list_streams",
    "ms_to_time",
    "pending_entries",
    "read_entries",
    "replay_dead_letter",
    "show_stream",
    "stream_key",
    "stream_keys",
    "stream_type",
    "tail_entries",
    "trace_request",
]
