"""Archive files: one gzip-compressed JSON-lines file per stream and UTC day, appended durably, read back.

Each chunk of entries is one gzip member appended to its day file and fsynced before those entries are
trimmed; a file holding an incomplete last member (an interrupted write) is repaired only when that
provably loses nothing (see `ArchiveWriter`). The format, and why, is in `common.messaging.retention`.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import BinaryIO

import orjson
import structlog

from common.messaging.views.entries import Entry, EntryFilter
from common.redis.ids import entry_key
from common.redis.keys import stream_key

log = structlog.get_logger("retention")

_READ_SIZE = 1 << 16


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
