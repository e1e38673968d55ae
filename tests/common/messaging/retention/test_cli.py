"""`swarm streams trim|archive` as an operator runs them: a subprocess finding Redis by REDIS_URL."""

from __future__ import annotations

import asyncio
import gzip
import json
import re

from common.messaging.retention import ArchiveWriter
from common.messaging.views import decode_entry
from tests.common.messaging.retention.conftest import add, consume, ids_of, swarm

CARDS, USERS, THINGS = "events:newCard", "events:newUser", "events:newThing"


def row_of(table: str, first_cell: str) -> list[str]:
    """The cells of the table row starting with `first_cell` (cells are two or more spaces apart)."""
    for line in table.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in:\n{table}")


async def scene(redis) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    """newCard: 4 old entries, comment_svc holds the third pending on a dead consumer, then a recent one.
    newUser: 2 old entries, fully consumed, and a recent one. newThing: old, but no group reads it."""
    cards = [await add(redis, "newCard", f"card{i}", days_ago=100 - i) for i in range(4)]
    cards.append(await add(redis, "newCard", "card-recent"))
    await consume(redis, CARDS, "comment_svc", "c-live", count=2)
    await consume(redis, CARDS, "comment_svc", "c-dead", count=1, ack=False)
    await consume(redis, CARDS, "comment_svc", "c-live")
    users = [await add(redis, "newUser", f"user{i}", days_ago=95 - i) for i in range(2)]
    users.append(await add(redis, "newUser", "user-recent"))
    for group in ("project_svc", "comment_svc"):
        await consume(redis, USERS, group, f"{group}-1")
    things = [await add(redis, "newThing", "thing", days_ago=300)]
    return {CARDS: cards, USERS: users, THINGS: things}


async def test_trim_reports_per_stream_what_went_and_why_it_stopped(redis, servers):
    ids = await scene(redis)
    url = servers.redis.url

    code, dry, err = await swarm("streams", "trim", "--older-than", "90d", "--dry-run", redis_url=url)
    assert code == 0, err
    assert {key: await ids_of(redis, key) for key in ids} == ids  # a dry run changes nothing

    code, out, err = await swarm("streams", "trim", "--older-than", "90d", redis_url=url)
    assert code == 0, err
    for key in ids:
        assert row_of(out, key) == row_of(dry, key)  # the dry run said what would happen
    assert "4 entries would be removed from 3 streams" in dry
    assert await ids_of(redis, CARDS) == ids[CARDS][2:]
    assert await ids_of(redis, USERS) == ids[USERS][2:]
    assert await ids_of(redis, THINGS) == ids[THINGS]
    assert row_of(out, CARDS)[1:4] == ["5", "2", "3"]  # before, removed, left
    assert f"group comment_svc has {ids[CARDS][2]} pending on c-dead (not acknowledged)" in out
    assert row_of(out, USERS)[1:4] == ["3", "2", "1"]
    assert "the next entry is younger than 90d" in row_of(out, USERS)[-1]
    assert row_of(out, THINGS)[1:4] == ["1", "0", "1"]
    assert "no consumer group: nobody has consumed it, so it is not trimmed" in out
    assert "4 entries removed from 3 streams" in out

    code, out, err = await swarm("streams", "trim", "--stream", "newUser", "--json", redis_url=url)
    assert code == 0, err
    [item] = json.loads(out)["items"]
    assert (item["stream"], item["removed"], item["left"], item["stopped_by"]) == (USERS, 1, 0, "end")
    assert await ids_of(redis, CARDS) == ids[CARDS][2:]  # only the stream asked for


async def test_archive_writes_day_files_before_trimming_and_reads_them_back(redis, servers, tmp_path):
    ids = await scene(redis)
    originals = {
        key: [decode_entry(key, entry_id, fields) for entry_id, fields in await redis.xrange(key)] for key in ids
    }
    url = servers.redis.url
    archive = tmp_path / "archive"

    code, out, err = await swarm("streams", "archive", "--older-than", "90d", "--to", str(archive), redis_url=url)

    assert code == 0, err
    assert await ids_of(redis, CARDS) == ids[CARDS][2:] and await ids_of(redis, USERS) == ids[USERS][2:]
    files = sorted(archive.rglob("*.jsonl.gz"))
    assert [path.parent.name for path in files] == ["events_newCard"] * 2 + ["events_newUser"] * 2
    assert [path.name for path in files[:2]] == [f"{entry.time[:10]}.jsonl.gz" for entry in originals[CARDS][:2]]
    assert row_of(out, CARDS)[1:5] == ["5", "2", "2", "3"]  # before, removed, archived, left
    assert "wrote:" in out and all(str(path) in out for path in files)

    reads = await asyncio.gather(
        swarm("streams", "archive", "--read", str(files[0]), redis_url=url),
        swarm("streams", "archive", "--read", str(archive / "events_newCard"), "--json", redis_url=url),
        swarm("streams", "archive", "--read", str(archive), "--json", "--actor", "actor-user1", redis_url=url),
    )
    assert all(code == 0 for code, _out, _err in reads), reads
    table, cards_json, filtered = (out for _code, out, _err in reads)
    first = originals[CARDS][0]
    assert row_of(table, first.time[:23].replace("T", " "))[1:4] == [first.id, "newCard", first.event_id]
    assert '{"name":"card0"}' in table and f"1 archived entry of {CARDS} from 1 file" in table
    assert [json.loads(line) for line in cards_json.splitlines()] == [
        json.loads(_dumps(entry)) for entry in originals[CARDS][:2]
    ]
    assert [json.loads(line)["id"] for line in filtered.splitlines()] == [ids[USERS][1]]


async def test_the_commands_refuse_what_they_must_not_do(redis, servers, tmp_path):
    await scene(redis)
    url = servers.redis.url
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("x")
    entries = [decode_entry(USERS, entry_id, fields) for entry_id, fields in await redis.xrange(USERS)]
    ArchiveWriter(tmp_path / "torn", USERS).write(entries[:1])
    [torn] = list((tmp_path / "torn").rglob("*.jsonl.gz"))
    with torn.open("ab") as raw:
        raw.write(gzip.compress(b'{"stream":"events:newUser","id":"1-0"}\n')[:20])  # a write cut short
    results = await asyncio.gather(
        swarm("streams", "trim", "--stream", "dlq", redis_url=url),
        swarm("streams", "trim", "--stream", "noSuchStream", redis_url=url),
        swarm("streams", "trim", "--older-than", "ninety days", redis_url=url),
        swarm("streams", "archive", redis_url=url),
        swarm("streams", "archive", "--to", str(blocked), "--stream", "newUser", redis_url=url),
        swarm("streams", "archive", "--read", str(tmp_path / "missing.jsonl.gz"), redis_url=url),
        swarm("streams", "archive", "--read", str(torn), "--json", redis_url=url),
    )
    (dlq, missing, bad_age, nowhere, unwritable, unreadable, interrupted) = results
    assert dlq[0] == 1 and "events:dlq is never trimmed" in dlq[2]
    assert missing[0] == 1 and "no stream events:noSuchStream" in missing[2]
    assert bad_age[0] == 2 and "is not an age" in bad_age[2]
    assert nowhere[0] == 2 and "--to" in nowhere[2]
    assert unwritable[0] == 1 and "archive failed, nothing more trimmed" in unwritable[1]
    assert row_of(unwritable[1], USERS)[1:5] == ["3", "0", "0", "3"]
    assert unreadable[0] == 1 and "no archive file or folder" in unreadable[2]
    assert await redis.xlen(USERS) == 3
    assert interrupted[0] == 0 and "warning" in interrupted[2] and "incomplete" in interrupted[2]
    assert [json.loads(line)["id"] for line in interrupted[1].splitlines()] == [entries[0].id]


def _dumps(entry: object) -> str:
    from common.messaging.views import dumps

    return dumps(entry)
