"""Trimming a stream below its safe point (and an age), archiving what goes first when asked: `apply_retention`.

The safe point, the age cut-off, the lock and the archive's crash safety are explained in
`common.messaging.retention`; this module is the one implementation the CLI and the services' loop call.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import redis.asyncio as aioredis
import structlog

from common.core.envelope import DEAD_LETTER_STREAM
from common.core.errors import Conflict, NotFound
from common.messaging.retention.archive import ArchiveError, ArchiveWriter
from common.messaging.retention.lock import StreamLock
from common.messaging.views.entries import decode_entry
from common.messaging.views.reading import stream_keys
from common.redis.ids import EntryRef, entry_key, entry_ref, ms_to_time
from common.redis.keys import stream_key

log = structlog.get_logger("retention")

T = TypeVar("T")


# Entries archived (read, written, fsynced, trimmed) per round; also what a dry run reads per page.
ARCHIVE_CHUNK = 1000


_AGE = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")


_AGE_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


# Why trimming a stream stopped where it did.
NO_GROUPS = "no_groups"  # no consumer group reads it: nothing trimmed


SAFE_POINT = "safe_point"  # the next entry is still needed by a group (not delivered, or pending)


AGE = "age"  # the next entry is younger than the retention age


END = "end"  # every entry was consumed by every group (and old enough): none left


EMPTY = "empty"  # nothing in the stream


LOCKED = "locked"  # another trimmer holds the stream's lock: skipped this time


ERROR = "error"  # archiving failed: nothing more trimmed


def parse_age(text: str) -> int:
    """`90d`, `12h`, `30m`, `45s`, `2w` or plain seconds (`3600`) → seconds."""
    match = _AGE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not an age: a number with an optional unit s, m, h, d or w (e.g. 90d)")
    return int(match.group(1)) * _AGE_UNITS[match.group(2)]


def format_age(seconds: int) -> str:
    for unit, size in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _id(key: tuple[int, int]) -> str:
    return f"{key[0]}-{key[1]}"


def _after(entry_id: str) -> str:
    """The smallest id greater than `entry_id`: MINID of it removes `entry_id` and everything before."""
    ms, seq = entry_key(entry_id)
    return _id((ms, seq + 1))


@dataclass(slots=True)
class Holder:
    """The group that holds a stream's safe point back, and why."""

    group: str
    reason: str  # "pending": delivered, not acknowledged | "not_delivered": after its last-delivered id
    entry_id: str  # pending: the oldest pending entry; not_delivered: the group's last-delivered id
    consumer: str | None = None  # pending: who holds the entry
    idle_ms: int | None = None


@dataclass(slots=True)
class SafePoint:
    stream: str
    keep_from: str | None  # entries strictly below this id are consumed by every group; None: no group
    holder: Holder | None
    groups: list[str]


async def safe_point(redis: aioredis.Redis, name: str) -> SafePoint:
    """The oldest entry id some consumer group of the stream still needs (see the module docstring)."""
    key = stream_key(name)
    client: Any = redis
    best: tuple[tuple[int, int], Holder] | None = None
    names = []
    for group in await client.xinfo_groups(key):
        names.append(group["name"])
        if int(group["pending"]):
            summary = await client.xpending(key, group["name"])
            oldest = summary["min"]
            held = await client.xpending_range(key, group["name"], min=oldest, max=oldest, count=1)
            holder = Holder(
                group["name"],
                "pending",
                oldest,
                consumer=held[0]["consumer"] if held else None,
                idle_ms=int(held[0]["time_since_delivered"]) if held else None,
            )
            needed = entry_key(oldest)
        else:
            delivered = group.get("last-delivered-id") or "0-0"
            holder = Holder(group["name"], "not_delivered", delivered)
            needed = entry_key(_after(delivered))
        if best is None or needed < best[0]:
            best = (needed, holder)
    if best is None:
        return SafePoint(key, None, None, [])
    return SafePoint(key, _id(best[0]), best[1], sorted(names))


@dataclass(slots=True)
class StreamRetention:
    """What trimming (and archiving) did to one stream, or would do in a dry run."""

    stream: str
    length: int  # entries before
    removed: int  # entries trimmed
    archived: int  # entries written to the archive by this run
    already_archived: int  # entries the archive held already (a previous run stopped before trimming them)
    left: int  # entries after
    stopped_by: str  # no_groups | safe_point | age | end | empty | locked | error
    first_kept: EntryRef | None  # the oldest entry left
    holder: Holder | None  # safe_point: the group that still needs first_kept
    files: list[str] = field(default_factory=list)  # archive files written
    error: str | None = None


@dataclass(slots=True)
class RetentionReport:
    dry_run: bool
    older_than_s: int | None
    cutoff: EntryRef | None  # entries before this time were old enough (None: no age limit)
    archive_dir: str | None
    items: list[StreamRetention]

    @property
    def removed(self) -> int:
        return sum(item.removed for item in self.items)


async def apply_retention(
    redis: aioredis.Redis,
    *,
    streams: Sequence[str] | None = None,
    older_than_s: int | None = None,
    archive_dir: Path | str | None = None,
    dry_run: bool = False,
    skip_missing: bool = False,
) -> RetentionReport:
    """Trim `streams` (default: every event stream) below their safe point and, with `older_than_s`, to
    the entries older than that; archive them to `archive_dir` first when given.

    A named stream that does not exist is 404 (skipped with `skip_missing`); `events:dlq` is refused."""
    if streams is None:
        keys = await stream_keys(redis)
    else:
        keys = []
        for name in streams:
            key = stream_key(name)
            if key == DEAD_LETTER_STREAM:
                raise Conflict(f"{DEAD_LETTER_STREAM} is never trimmed: dead letters leave by replay or drop only")
            if await redis.type(key) != "stream":
                if skip_missing:
                    continue
                raise NotFound(f"no stream {key}", details={"stream": key})
            if key not in keys:
                keys.append(key)
    cutoff = None
    if older_than_s is not None:
        seconds, micros = await redis.time()
        cutoff = f"{max(0, seconds * 1000 + micros // 1000 - older_than_s * 1000)}-0"
    directory = Path(archive_dir) if archive_dir else None
    items = [await _retain(redis, key, cutoff, directory, dry_run) for key in keys]
    return RetentionReport(
        dry_run=dry_run,
        older_than_s=older_than_s,
        cutoff=EntryRef(cutoff, ms_to_time(entry_key(cutoff)[0])) if cutoff else None,
        archive_dir=str(directory) if directory else None,
        items=items,
    )


async def _retain(
    redis: aioredis.Redis, key: str, cutoff: str | None, directory: Path | None, dry_run: bool
) -> StreamRetention:
    length = await redis.xlen(key)
    result = StreamRetention(key, length, 0, 0, 0, length, EMPTY, None, None)
    lock = None
    if not dry_run:
        lock = await StreamLock.acquire(redis, key)
        if lock is None:
            result.stopped_by = LOCKED
            result.first_kept = entry_ref(await _first_at_or_after(redis, key, "-"))
            return result
    try:
        await _retain_locked(redis, key, cutoff, directory, dry_run, lock, result)
    finally:
        if lock is not None:
            await lock.release()
    return result


async def _retain_locked(
    redis: aioredis.Redis,
    key: str,
    cutoff: str | None,
    directory: Path | None,
    dry_run: bool,
    lock: StreamLock | None,
    result: StreamRetention,
) -> None:
    point = await safe_point(redis, key)
    if point.keep_from is None:
        result.stopped_by = NO_GROUPS
        result.first_kept = entry_ref(await _first_at_or_after(redis, key, "-"))
        return
    minid, result.stopped_by, result.holder = point.keep_from, SAFE_POINT, point.holder
    if cutoff is not None and entry_key(cutoff) < entry_key(minid):
        minid, result.stopped_by, result.holder = cutoff, AGE, None
    try:
        if directory is None:
            await _trim(redis, key, minid, dry_run, result)
        else:
            await _archive_and_trim(redis, key, minid, directory, dry_run, lock, result)
    except (OSError, ArchiveError) as exc:
        result.stopped_by, result.holder, result.error = ERROR, None, f"{type(exc).__name__}: {exc}"
        log.error("retention.archive_failed", stream=key, error=result.error, action="the rest is not trimmed")
    # What is left (would be left, in a dry run) starts here.
    first = await _first_at_or_after(redis, key, minid if dry_run and result.stopped_by != ERROR else "-")
    result.first_kept = entry_ref(first)
    result.left = result.length - result.removed if dry_run else await redis.xlen(key)
    if first is None and result.stopped_by != ERROR:
        result.stopped_by, result.holder = (END if result.length else EMPTY), None


async def _first_at_or_after(redis: aioredis.Redis, key: str, start: str) -> str | None:
    client: Any = redis
    found = await client.xrange(key, min=start, max="+", count=1)
    return found[0][0] if found else None


async def _trim(redis: aioredis.Redis, key: str, minid: str, dry_run: bool, result: StreamRetention) -> None:
    if dry_run:
        async for page in _pages_below(redis, key, minid):
            result.removed += len(page)
        return
    client: Any = redis
    result.removed = int(await client.xtrim(key, minid=minid, approximate=False))
    if result.removed:
        log.info("retention.trimmed", stream=key, removed=result.removed, minid=minid, stopped_by=result.stopped_by)


async def _pages_below(redis: aioredis.Redis, key: str, minid: str) -> Any:
    """Every entry below `minid` (exclusive), oldest first, `ARCHIVE_CHUNK` at a time (no trimming)."""
    client: Any = redis
    cursor = "-"
    while True:
        page = list(await client.xrange(key, min=cursor, max="(" + minid, count=ARCHIVE_CHUNK) or [])
        if not page:
            return
        yield page
        if len(page) < ARCHIVE_CHUNK:
            return
        cursor = "(" + page[-1][0]


async def _archive_and_trim(
    redis: aioredis.Redis,
    key: str,
    minid: str,
    directory: Path,
    dry_run: bool,
    lock: StreamLock | None,
    result: StreamRetention,
) -> None:
    writer = ArchiveWriter(directory, key)
    client: Any = redis
    if dry_run:
        async for page in _pages_below(redis, key, minid):
            entries = [decode_entry(key, entry_id, fields) for entry_id, fields in page]
            fresh, known, paths = await _in_thread(partial(writer.plan, entries))
            result.archived += fresh
            result.already_archived += known
            result.removed += len(page)
            result.files.extend(str(path) for path in paths if str(path) not in result.files)
        return
    while True:
        await _still_ours(lock)
        page = list(await client.xrange(key, min="-", max="(" + minid, count=ARCHIVE_CHUNK) or [])
        if not page:
            return
        entries = [decode_entry(key, entry_id, fields) for entry_id, fields in page]
        # Written and fsynced before anything is trimmed; if this raises, the chunk stays in the stream.
        fresh, known, paths = await _in_thread(partial(writer.write, entries))
        result.archived += fresh
        result.already_archived += known
        result.files.extend(str(path) for path in paths if str(path) not in result.files)
        await _still_ours(lock)
        removed = int(await client.xtrim(key, minid=_after(page[-1][0]), approximate=False))
        result.removed += removed
        log.info(
            "retention.archived",
            stream=key,
            archived=fresh,
            already_archived=known,
            removed=removed,
            upto=page[-1][0],
        )
        if len(page) < ARCHIVE_CHUNK:
            return


async def _still_ours(lock: StreamLock | None) -> None:
    """Renew the stream's lock; if it expired meanwhile, another archiver may be at work: stop."""
    if lock is not None and not await lock.renew():
        raise ArchiveError("lost the retention lock (it expired mid-run); stopped before trimming more")


async def _in_thread(work: Callable[[], T]) -> T:
    """File work off the event loop. If the caller is cancelled, the write still completes before the
    cancellation goes on: the lock must not be released while a member is half written."""
    task = asyncio.ensure_future(asyncio.to_thread(work))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await asyncio.wait({task})
        raise
