"""Archiving against a real Redis and a real folder: every entry that is trimmed is in a file first, once."""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis

from common.messaging import retention
from common.messaging.retention import ArchiveDamaged, ArchiveWriter, apply_retention, archive_path, read_archive, trim
from common.messaging.views import Entry, decode_entry
from tests.common.messaging.retention.conftest import DAY_MS, add, consume, ids_of, noon_days_ago

CARDS = "events:newCard"


async def archived(redis, directory: Path, **options) -> retention.StreamRetention:  # type: ignore[no-untyped-def]
    [item] = (await apply_retention(redis, streams=[CARDS], archive_dir=directory, **options)).items
    return item


def everything_in(directory: Path) -> list[Entry]:
    return [entry for path in sorted(directory.rglob("*.jsonl.gz")) for entry in read_archive(path)]


async def test_entries_go_to_one_file_per_day_and_read_back_as_they_were(redis, tmp_path):
    noon = await noon_days_ago(redis, 100)
    ids = [await add(redis, "newCard", f"c{i}", at_ms=noon + i // 2 * DAY_MS + i % 2) for i in range(6)]  # 2 a day
    recent = await add(redis, "newCard", "recent")
    await consume(redis, CARDS, "comment_svc", "c-1")
    originals = [decode_entry(CARDS, entry_id, fields) for entry_id, fields in await redis.xrange(CARDS)][:6]

    item = await archived(redis, tmp_path, older_than_s=retention.parse_age("90d"))

    assert await ids_of(redis, CARDS) == [recent]
    assert (item.archived, item.removed, item.stopped_by) == (6, 6, retention.AGE)
    days = sorted({entry.time[:10] for entry in originals})
    assert sorted(item.files) == [str(archive_path(tmp_path, CARDS, day)) for day in days]
    assert sorted(path.name for path in (tmp_path / "events_newCard").iterdir()) == [f"{d}.jsonl.gz" for d in days]
    assert everything_in(tmp_path) == originals
    first_day = [entry.id for entry in read_archive(archive_path(tmp_path, CARDS, days[0]))]
    assert first_day == ids[:2]
    # Plain gzip + JSON lines: readable without us.
    lines = gzip.decompress(archive_path(tmp_path, CARDS, days[0]).read_bytes()).decode().splitlines()
    assert '"data":{"name":"c0"}' in lines[0] and f'"id":"{ids[0]}"' in lines[0]


async def test_archiving_the_same_day_twice_appends_a_gzip_member(redis, tmp_path):
    ids = [await add(redis, "newCard", f"c{i}") for i in range(4)]
    await consume(redis, CARDS, "comment_svc", "c-1", count=2)
    await archived(redis, tmp_path)
    await consume(redis, CARDS, "comment_svc", "c-1")
    item = await archived(redis, tmp_path)

    [path] = [Path(name) for name in item.files]
    assert [entry.id for entry in read_archive(path)] == ids
    assert gzip.decompress(path.read_bytes()).count(b"\n") == 4  # two members, one stream of lines


async def test_entries_archived_by_a_run_that_died_before_trimming_are_not_written_twice(redis, tmp_path):
    ids = [await add(redis, "newCard", f"c{i}") for i in range(5)]
    await consume(redis, CARDS, "comment_svc", "c-1")
    entries = [decode_entry(CARDS, entry_id, fields) for entry_id, fields in await redis.xrange(CARDS)]
    ArchiveWriter(tmp_path, CARDS).write(entries[:3])  # written and fsynced; then the process died

    item = await archived(redis, tmp_path)

    assert (item.archived, item.already_archived, item.removed) == (2, 3, 5)
    assert [entry.id for entry in everything_in(tmp_path)] == ids


async def test_an_interrupted_write_is_cut_off_and_its_entries_archived_again(redis, tmp_path):
    ids = [await add(redis, "newCard", f"c{i}") for i in range(4)]
    await consume(redis, CARDS, "comment_svc", "c-1")
    entries = [decode_entry(CARDS, entry_id, fields) for entry_id, fields in await redis.xrange(CARDS)]
    writer = ArchiveWriter(tmp_path, CARDS)
    writer.write(entries[:1])
    [path] = list(tmp_path.rglob("*.jsonl.gz"))
    member = gzip.compress(b"".join(orjson.dumps(entry) + b"\n" for entry in entries[1:3]))
    with path.open("ab") as raw:
        raw.write(member[: len(member) // 2])  # the crash came mid-write, before the fsync and the trim

    with pytest.raises(ArchiveDamaged) as damage:
        list(read_archive(path))
    assert damage.value.torn
    assert [entry.id for entry in _readable(path)] == ids[:1]

    item = await archived(redis, tmp_path)

    assert (item.archived, item.already_archived, item.removed) == (3, 1, 4)
    assert [entry.id for entry in read_archive(path)] == ids


async def test_a_damaged_archive_file_is_left_alone_and_nothing_more_is_trimmed(redis, tmp_path):
    ids = [await add(redis, "newCard", f"c{i}") for i in range(3)]
    await consume(redis, CARDS, "comment_svc", "c-1", count=1)
    await archived(redis, tmp_path)  # ids[0] archived and trimmed
    await consume(redis, CARDS, "comment_svc", "c-1")
    [path] = list(tmp_path.rglob("*.jsonl.gz"))
    whole = path.read_bytes()
    for damaged in (
        whole[:20] + bytes(b ^ 0xFF for b in whole[20:30]) + whole[30:],  # flipped bits in a member
        whole[:-6],  # its end lost: it looks interrupted, but its entry was trimmed already
    ):
        path.write_bytes(damaged)

        item = await archived(redis, tmp_path)

        assert (item.stopped_by, item.removed) == (retention.ERROR, 0)
        assert item.error is not None and str(path) in item.error
        assert await ids_of(redis, CARDS) == ids[1:]
        assert path.read_bytes() == damaged


async def test_nothing_is_trimmed_when_the_archive_cannot_be_written(redis, tmp_path):
    ids = [await add(redis, "newCard", f"c{i}") for i in range(3)]
    await consume(redis, CARDS, "comment_svc", "c-1")
    not_a_folder = tmp_path / "archive"
    not_a_folder.write_text("a file where the archive folder should be")

    item = await archived(redis, not_a_folder)

    assert (item.stopped_by, item.removed, item.archived) == (retention.ERROR, 0, 0)
    assert await ids_of(redis, CARDS) == ids


async def test_archiving_stops_at_the_safe_point_like_trimming(redis, tmp_path):
    ids = [await add(redis, "newCard", f"c{i}") for i in range(5)]
    await consume(redis, CARDS, "comment_svc", "c-1", count=2)
    await consume(redis, CARDS, "project_svc", "p-1", count=1)
    await consume(redis, CARDS, "project_svc", "p-1", count=1, ack=False)

    item = await archived(redis, tmp_path, older_than_s=0)

    assert [entry.id for entry in everything_in(tmp_path)] == ids[:1]
    assert await ids_of(redis, CARDS) == ids[1:]
    assert item.holder is not None and (item.holder.group, item.holder.reason) == ("project_svc", "pending")


async def test_a_dry_run_names_the_files_and_writes_nothing(redis, tmp_path):
    ids = [await add(redis, "newCard", f"c{i}") for i in range(3)]
    await consume(redis, CARDS, "comment_svc", "c-1")

    item = await archived(redis, tmp_path, dry_run=True)

    assert (item.archived, item.removed, len(item.files)) == (3, 3, 1)
    assert list(tmp_path.iterdir()) == []
    assert await ids_of(redis, CARDS) == ids


async def test_concurrent_archivers_write_each_entry_once(redis, tmp_path, servers, monkeypatch):
    monkeypatch.setattr(trim, "ARCHIVE_CHUNK", 3)  # many rounds, so the runs overlap
    ids = [await add(redis, "newCard", f"c{i}", days_ago=3 - i / 20) for i in range(40)]
    await consume(redis, CARDS, "comment_svc", "c-1")
    clients = [aioredis.from_url(servers.redis.url, decode_responses=True) for _ in range(4)]
    try:
        reports = await asyncio.gather(
            *(apply_retention(client, streams=[CARDS], archive_dir=tmp_path) for client in clients)
        )
        # Whoever found the stream locked skipped it: the one holding the lock did everything.
        again = await apply_retention(redis, streams=[CARDS], archive_dir=tmp_path)
    finally:
        for client in clients:
            await client.aclose()

    assert [entry.id for entry in everything_in(tmp_path)] == ids
    assert sum(report.items[0].archived for report in reports) == len(ids)
    assert {report.items[0].stopped_by for report in reports} <= {retention.END, retention.LOCKED}
    assert again.items[0].removed == 0
    assert await ids_of(redis, CARDS) == []


def _readable(path: Path) -> list[Entry]:
    found = []
    try:
        for entry in read_archive(path):
            found.append(entry)
    except ArchiveDamaged:
        pass
    return found
