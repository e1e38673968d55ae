"""Retention without loss: trim the event streams only below what every group has delivered and
acknowledged, optionally writing what goes to compressed JSON-lines files first.

The safe point of a stream, from what Redis keeps per consumer group: entries after the group's
last-delivered id have not been handed to it yet; entries in its pending list (PEL) were handed out but
not acknowledged. So a group still needs everything from the oldest of its pending entries or, with
nothing pending, everything after its last-delivered id. The stream's safe point is the oldest of those
over its groups, and `XTRIM <stream> MINID <safe point>` removes only entries strictly below it. A stream
no group reads is never trimmed (nobody has consumed it), nor is `events:dlq` (dead letters leave by
replay or drop only). A group that does not exist yet cannot hold anything back: a service added later
catches up with a snapshot of the producer's entities, not with the trimmed history.

An age limit (`older_than_s`) lowers the point further to the entries whose id time is older than now
minus the age (Redis's clock: the one that made the ids).

Archiving writes each entry that is about to go to `<dir>/<stream, ':' → '_'>/<YYYY-MM-DD>.jsonl.gz`
(UTC day of the entry id), one JSON object per line: the decoded envelope of `common.messaging.views.Entry`
(stream, entry id and time, event id, type, ..., `data` parsed). Entries are read in chunks, oldest
first; each chunk is appended as one gzip member per day file (concatenated members are one valid gzip
file), fsynced, and only then trimmed up to its last entry. A crash between the two leaves entries that
are archived and still in the stream: the next run finds the last entry id a day file holds and skips
what it already has, so no line is ever written twice; a crash in the middle of a write leaves an
incomplete last member, which is cut off before the next append (its entries were never trimmed).

Several trimmers (service replicas, an operator's `swarm streams trim|archive`) may run at once: each
works on a stream only while holding `retention:lock:<stream>` (SET NX PX, renewed per chunk); the one
that does not get it skips the stream for this run. Trimming by MINID is idempotent anyway; the lock is
what keeps two archivers from appending the same entries to one file.

`swarm streams trim|archive` (`common/swarm/streams_cli/`) and the automatic trimmer of the services
(`RetentionLoop`, installed by `common.http.contexts.retention_context`) call `apply_retention`: one
implementation.
"""

from common.messaging.retention.archive import ArchiveDamaged, ArchiveError, ArchiveWriter, archive_path, read_archive
from common.messaging.retention.lock import LOCK_PREFIX
from common.messaging.retention.loop import RetentionLoop
from common.messaging.retention.trim import (
    AGE,
    EMPTY,
    END,
    ERROR,
    LOCKED,
    NO_GROUPS,
    SAFE_POINT,
    Holder,
    RetentionReport,
    SafePoint,
    StreamRetention,
    apply_retention,
    format_age,
    parse_age,
    safe_point,
)

__all__ = [
    "AGE",
    "EMPTY",
    "END",
    "ERROR",
    "LOCKED",
    "LOCK_PREFIX",
    "NO_GROUPS",
    "SAFE_POINT",
    "ArchiveDamaged",
    "ArchiveError",
    "ArchiveWriter",
    "Holder",
    "RetentionLoop",
    "RetentionReport",
    "SafePoint",
    "StreamRetention",
    "apply_retention",
    "archive_path",
    "format_age",
    "parse_age",
    "read_archive",
    "safe_point",
]
