"""Names in Redis that more than one mechanism agrees on: event streams, replay markers, ack records.

The envelope (`common.core.envelope`) names a type's stream (`events:<type>`) and the dead-letter
stream; this module turns what people type into those names and back, and names what the worker
writes beside the streams for `swarm trace`.
"""

from __future__ import annotations

from common.core.envelope import STREAM_PREFIX


def stream_key(name: str) -> str:
    """`newCard` or `events:newCard` → `events:newCard`."""
    return name if name.startswith(STREAM_PREFIX) else STREAM_PREFIX + name


def stream_type(key: str) -> str:
    """`events:newCard` → `newCard`."""
    return key[len(STREAM_PREFIX) :] if key.startswith(STREAM_PREFIX) else key


# A dead letter replayed for one group is re-added to its stream with this field naming the group;
# the other groups of the stream (which had applied it already) acknowledge it without applying it.
REPLAY_FOR_FIELD = "replay_for"


# Redis keeps no acknowledgement times; for `swarm trace` (common/messaging/views/) the worker records, per
# event, when each group acknowledged it (or dead-lettered it), in the pipeline that acknowledges.
ACK_RECORD_PREFIX = "trace:acked:"


def ack_record_key(event_id: str) -> str:
    """Hash of group → epoch ms of the group's last acknowledgement of this event."""
    return ACK_RECORD_PREFIX + event_id
