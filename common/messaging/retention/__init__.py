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

`swarm streams trim|archive` (`common/streams_cli.py`) and the automatic trimmer of the services
(`RetentionLoop`, installed by `common.http.contexts.retention_context`) call `apply_retention`: one
implementation.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import re
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import orjson
import redis.asyncio as aioredis
import structlog

from common.core.envelope import DEAD_LETTER_STREAM
from common.core.errors import Conflict, NotFound
from common.messaging.consumer import entry_key
from common.messaging.views import (
    Entry,
    EntryFilter,
    EntryRef,
    decode_entry,
    entry_ref,
    ms_to_time,
    stream_key,
    stream_keys,
)

log = structlog.get_logger("retention")

T = TypeVar("T")

LOCK_PREFIX = "retention:lock:"
LOCK_TTL_MS = 60_000
# Entries archived (read, written, fsynced, trimmed) per round; also what a dry run reads per page.
ARCHIVE_CHUNK = 1000
_READ_SIZE = 1 << 16

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

_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
_RENEW = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
)


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


# -- the safe point -------------------------------------------------------------------------------------


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


# -- reports --------------------------------------------------------------------------------------------


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


# -- trimming -------------------------------------------------------------------------------------------


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
        lock = await _Lock.acquire(redis, key)
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
    lock: _Lock | None,
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
    lock: _Lock | None,
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


async def _still_ours(lock: _Lock | None) -> None:
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


class _Lock:
    """`retention:lock:<stream>`: one trimmer per stream at a time (token-checked release and renewal)."""

    def __init__(self, redis: aioredis.Redis, key: str, token: str) -> None:
        self._redis, self.key, self._token = redis, key, token

    @classmethod
    async def acquire(cls, redis: aioredis.Redis, stream: str) -> _Lock | None:
        token = uuid.uuid4().hex
        key = LOCK_PREFIX + stream
        if await redis.set(key, token, nx=True, px=LOCK_TTL_MS):
            return cls(redis, key, token)
        return None

    async def renew(self) -> bool:
        client: Any = self._redis
        return bool(await client.eval(_RENEW, 1, self.key, self._token, LOCK_TTL_MS))

    async def release(self) -> None:
        client: Any = self._redis
        with contextlib.suppress(Exception):  # it expires anyway
            await client.eval(_RELEASE, 1, self.key, self._token)


# -- archive files --------------------------------------------------------------------------------------


class ArchiveError(Exception):
    """An archive file cannot be appended to safely."""


class ArchiveDamaged(ArchiveError):
    """The bytes of an archive file after `good_bytes` are not complete gzip members."""

    def __init__(self, path: Path, good_bytes: int, *, torn: bool, reason: str, partial: bytes = b"") -> None:
        self.path, self.good_bytes, self.torn = path, good_bytes, torn
        self.partial = partial  # torn: what the incomplete member decompresses to, as far as it goes
        what = "ends with an incomplete block" if torn else "is damaged"
        super().__init__(f"{path} {what} after byte {good_bytes}: {reason}")


def archive_path(directory: Path, stream: str, day: str) -> Path:
    """`<dir>/events_newCard/2026-11-21.jsonl.gz`."""
    return directory / stream_key(stream).replace(":", "_") / f"{day}.jsonl.gz"


def _members(path: Path, raw: BinaryIO) -> Iterator[tuple[bytes, int]]:
    """Each complete gzip member of `raw` as (its decompressed bytes, the file offset where it ends).
    Raises ArchiveDamaged after the last complete one when the rest is not a complete member."""
    good = 0  # end of the last complete member
    fed = 0  # bytes of the current member read so far
    out: list[bytes] = []
    decompressor = zlib.decompressobj(wbits=31)  # gzip container
    while chunk := raw.read(_READ_SIZE):
        data = chunk
        while data:
            try:
                out.append(decompressor.decompress(data))
            except zlib.error as exc:
                raise ArchiveDamaged(path, good, torn=False, reason=str(exc)) from exc
            if not decompressor.eof:
                fed += len(data)
                break
            good += fed + len(data) - len(decompressor.unused_data)
            yield b"".join(out), good
            data, fed, out = decompressor.unused_data, 0, []
            decompressor = zlib.decompressobj(wbits=31)
    if fed:
        raise ArchiveDamaged(
            path, good, torn=True, reason="the last block is incomplete (interrupted write)", partial=b"".join(out)
        )


_ENTRY_FIELDS = {f.name for f in fields(Entry)}
_FIRST_ID = re.compile(rb'"id":"(\d+-\d+)"')


def _entry_of(path: Path, good: int, line: bytes) -> Entry:
    try:
        value = orjson.loads(line)
        if not isinstance(value, dict) or "id" not in value:
            raise ValueError("not an archived entry")
        return Entry(**{name: item for name, item in value.items() if name in _ENTRY_FIELDS})
    except (ValueError, TypeError) as exc:
        raise ArchiveDamaged(path, good, torn=False, reason=f"a line is not an archived entry ({exc})") from exc


def read_archive(path: Path | str, where: EntryFilter | None = None) -> Iterator[Entry]:
    """The entries of an archive file, in the order they were written (oldest first), as decoded
    envelopes. An incomplete last block (an interrupted archive run, whose entries were therefore not
    trimmed) or damage raises ArchiveDamaged after every readable entry was yielded."""
    path = Path(path)
    where = where or EntryFilter()
    with path.open("rb") as raw:
        for content, end in _members(path, raw):
            for line in content.splitlines():
                if line.strip():
                    entry = _entry_of(path, end, line)
                    if where.matches(entry):
                        yield entry


@dataclass(slots=True)
class _DayFile:
    path: Path
    last: tuple[int, int] | None  # the newest entry id it holds


class ArchiveWriter:
    """Appends the entries of one stream to its day files, skipping what a file holds already.

    The first time it touches a file it reads it through, to learn the newest entry id in it (entries go
    in oldest first, so anything at or below that is there already) and to cut off an incomplete last
    member left by an interrupted write. A damaged file is not touched: ArchiveError."""

    def __init__(self, directory: Path, stream: str) -> None:
        self._directory = directory
        self._stream = stream
        self._files: dict[str, _DayFile] = {}

    def _day_file(self, day: str, still_from: str | None) -> _DayFile:
        """The day's file and the newest entry it holds. With `still_from` (the oldest entry id still in the
        stream), an incomplete last member is cut off, but only if it provably holds no trimmed entry."""
        known = self._files.get(day)
        if known is not None:
            return known
        path = archive_path(self._directory, self._stream, day)
        last: tuple[int, int] | None = None
        if path.exists():
            try:
                with path.open("rb") as raw:
                    for content, end in _members(path, raw):
                        for line in content.splitlines():
                            if line.strip():
                                last = max(last or (0, 0), entry_key(_entry_of(path, end, line).id))
            except ArchiveDamaged as exc:
                if not exc.torn:
                    raise ArchiveError(f"{exc}; not appending to it (move it aside to archive this day again)") from exc
                if still_from is not None:
                    self._cut_torn_tail(exc, still_from)
        found = _DayFile(path, last)
        self._files[day] = found
        return found

    @staticmethod
    def _cut_torn_tail(damage: ArchiveDamaged, still_from: str) -> None:
        """Entries are trimmed only after their member was written whole and fsynced, and a stream is only
        ever trimmed from its oldest end. So if the first entry of the incomplete member is still in the
        stream, nothing in it (or after it) was trimmed: cutting it loses nothing, it is archived again.
        Otherwise it may be a damaged member of trimmed entries: leave the file alone."""
        found = _FIRST_ID.search(damage.partial)
        first = found.group(1).decode() if found else None
        if first is None or entry_key(first) < entry_key(still_from):
            raise ArchiveError(
                f"{damage}; its entries may be trimmed already, so it is left as it is "
                "(move it aside to archive this day again)"
            ) from damage
        log.warning("retention.archive_repaired", path=str(damage.path), cut_at=damage.good_bytes, first_entry=first)
        with damage.path.open("r+b") as raw:
            raw.truncate(damage.good_bytes)
            raw.flush()
            os.fsync(raw.fileno())

    def _split(self, entries: Sequence[Entry], repair: bool) -> tuple[dict[str, list[Entry]], int]:
        fresh: dict[str, list[Entry]] = {}
        known = 0
        # `entries` are read from the stream's oldest end: the first is the oldest entry still in it.
        still_from = entries[0].id if repair and entries else None
        for entry in entries:
            day = entry.time[:10]
            day_file = self._day_file(day, still_from)
            if day_file.last is not None and entry_key(entry.id) <= day_file.last:
                known += 1
            else:
                fresh.setdefault(day, []).append(entry)
        return fresh, known

    def plan(self, entries: Sequence[Entry]) -> tuple[int, int, list[Path]]:
        """What `write` would do: (entries to write, entries already archived, files to write)."""
        fresh, known = self._split(entries, repair=False)
        for day, items in fresh.items():
            self._files[day].last = entry_key(items[-1].id)
        return sum(map(len, fresh.values())), known, [self._files[day].path for day in fresh]

    def write(self, entries: Sequence[Entry]) -> tuple[int, int, list[Path]]:
        """Append `entries` (the oldest entries of the stream, oldest first) to their day files and fsync
        them; (written, already there, files)."""
        fresh, known = self._split(entries, repair=True)
        paths = []
        for day, items in fresh.items():
            day_file = self._files[day]
            payload = b"".join(orjson.dumps(entry) + b"\n" for entry in items)
            _append_durably(day_file.path, gzip.compress(payload, mtime=0))
            day_file.last = entry_key(items[-1].id)
            paths.append(day_file.path)
        return sum(map(len, fresh.values())), known, paths


def _append_durably(path: Path, member: bytes) -> None:
    """Append one gzip member and fsync it (and the folders, when the file or a folder is new)."""
    created = [parent for parent in (path.parent, path.parent.parent) if not parent.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(member)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    for folder in ([path.parent] if new else []) + [p.parent for p in created]:
        _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- the automatic trimmer ------------------------------------------------------------------------------


class RetentionLoop:
    """Every `interval_s`, trim `streams` to `older_than_s` (archiving to `archive_dir` when set).

    A failed pass (Redis unreachable, a disk error) is logged and retried at the next interval; nothing
    is trimmed that was not archived first."""

    def __init__(
        self,
        redis: aioredis.Redis,
        streams: Sequence[str],
        *,
        older_than_s: int,
        interval_s: float,
        archive_dir: Path | str | None = None,
    ) -> None:
        self._redis = redis
        self.streams = [stream_key(name) for name in streams if stream_key(name) != DEAD_LETTER_STREAM]
        self._older_than_s = older_than_s
        self._interval_s = interval_s
        self._archive_dir = archive_dir or None
        self._stopping = asyncio.Event()
        self.passes = 0
        self.last_report: RetentionReport | None = None

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            await self.run_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval_s)

    async def run_once(self) -> RetentionReport | None:
        try:
            report = await apply_retention(
                self._redis,
                streams=self.streams,
                older_than_s=self._older_than_s,
                archive_dir=self._archive_dir,
                skip_missing=True,
            )
        except Exception as exc:  # next pass will try again; a trimmer must not take the service down
            log.warning("retention.pass_failed", error=repr(exc), retry_in_s=self._interval_s)
            return None
        self.passes += 1
        self.last_report = report
        if report.removed:
            log.info("retention.pass", removed=report.removed, streams=len(report.items))
        return report
