"""`swarm streams|dlq|trace` as an operator runs them: a subprocess finding Redis by REDIS_URL."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import signal
import subprocess
import time

from common.core.envelope import Event
from tests.common.messaging.views.conftest import AUDIT_CONSUMER, AUDIT_GROUP, SWARM, Scenario, cli_env, swarm

ANSI_ESCAPE = "\x1b["


async def test_each_view_shows_the_scenario_as_tables_and_as_json(scenario: Scenario, servers):
    url = servers.redis.url
    card_entry = (await scenario.system.redis.xrange("events:newCard", count=1))[0]
    card_event_id = card_entry[1]["id"]
    comment_request = scenario.request_ids["comment"]
    commands = {
        "overview_json": ("streams", "--json"),
        "overview": ("streams",),
        "show": ("streams", "show", "newCard"),
        "show_json": ("streams", "show", "events:newCard", "--json"),
        "pending": ("streams", "pending", "newCard", AUDIT_GROUP),
        "event_json": ("streams", "event", card_event_id, "--json"),
        "event": ("streams", "event", card_event_id),
        "tail": ("streams", "tail", "newCard", "--count", "5"),
        "dlq": ("dlq", "list"),
        "dlq_show_json": ("dlq", "show", scenario.dead_letter_id, "--json"),
        "trace": ("trace", comment_request),
        "trace_json": ("trace", comment_request, "--json"),
    }
    results = await asyncio.gather(*(swarm(*args, redis_url=url) for args in commands.values()))
    out: dict[str, str] = {}
    for name, (code, stdout, stderr) in zip(commands, results, strict=True):
        assert code == 0, (name, stdout, stderr)
        assert ANSI_ESCAPE not in stdout, f"{name}: colours on a pipe"
        out[name] = stdout

    overview = {item["stream"]: item for item in json.loads(out["overview_json"])["items"]}
    assert (overview["events:newCard"]["length"], overview["events:newCard"]["lag"]) == (2, 1)
    assert (overview["events:newCard"]["pending"], overview["events:newCard"]["dead_letters"]) == (1, 1)
    assert (overview["events:newUser"]["length"], overview["events:newUser"]["lag"]) == (2, 0)
    assert row_of(out["overview"], "events:newCard")[1:2] == ["2"]
    assert "1 dead letter in events:dlq" in out["overview"]

    groups = {group["name"]: group for group in json.loads(out["show_json"])["groups"]}
    assert (groups[AUDIT_GROUP]["pending"], groups[AUDIT_GROUP]["lag"]) == (1, 1)
    assert (groups["comment_svc"]["pending"], groups["comment_svc"]["lag"]) == (0, 0)
    assert row_of(out["show"], AUDIT_GROUP)[1:4] == ["1", "1", "1"]  # consumers, pending, lag
    assert AUDIT_CONSUMER in out["show"]

    assert f"group {AUDIT_GROUP}: 1 pending ({AUDIT_CONSUMER}: 1)" in out["pending"]
    assert card_event_id in out["pending"]

    [hit] = json.loads(out["event_json"])["items"]
    assert {state["group"]: state["state"] for state in hit["groups"]} == {
        AUDIT_GROUP: "pending",
        "comment_svc": "acknowledged",
    }
    assert "Fix the flux capacitor" in out["event"]
    assert "acknowledged" in out["event"] and f"pending on {AUDIT_CONSUMER}, 1 delivery" in out["event"]

    tail_lines = out["tail"].splitlines()
    assert len(tail_lines) == 2 and "Fix the flux capacitor" in tail_lines[0]
    assert "MALFORMED" in tail_lines[1]

    assert scenario.dead_letter_id in out["dlq"] and "malformed envelope" in out["dlq"]
    letter = json.loads(out["dlq_show_json"])
    assert (letter["stream"], letter["group"], letter["entry_id"]) == (
        "events:newCard",
        "comment_svc",
        scenario.malformed_entry,
    )

    trace = json.loads(out["trace_json"])
    assert trace["items"][0]["entry"]["type"] == "newComment"
    assert all(hit["entry"]["correlation_id"] == comment_request for hit in trace["items"])
    assert f"Request {comment_request}: {len(trace['items'])} events, 0 dead letters" in out["trace"]
    assert "newComment" in out["trace"] and "project_svc" in out["trace"] and "notif_svc" in out["trace"]
    assert out["trace"].count("acknowledged") == sum(len(hit["groups"]) for hit in trace["items"])


def row_of(table: str, first_cell: str) -> list[str]:
    """The cells of the table row starting with `first_cell` (cells are two or more spaces apart)."""
    for line in table.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in:\n{table}")


async def test_tail_follow_prints_an_event_published_after_it_started_and_stops_cleanly(redis, servers):
    old = Event(type="newThing", data={"n": "old"}, producer="test", actor_id="ann")
    await redis.xadd(old.stream, old.to_fields())  # type: ignore[arg-type]
    process = await asyncio.create_subprocess_exec(
        *SWARM,
        "streams",
        "tail",
        "newThing",
        "-f",
        "--count",
        "1",
        "--actor",
        "ann",
        "--json",
        env=cli_env(servers.redis.url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        first = json.loads(await asyncio.wait_for(process.stdout.readline(), 20))
        assert first["event_id"] == old.id  # the recent entries come first; it is following from here
        ignored = Event(type="newThing", data={"n": "bob's"}, producer="test", actor_id="bob")
        new = Event(type="newThing", data={"n": "new"}, producer="test", actor_id="ann")
        await redis.xadd(ignored.stream, ignored.to_fields())  # type: ignore[arg-type]
        await redis.xadd(new.stream, new.to_fields())  # type: ignore[arg-type]
        line = json.loads(await asyncio.wait_for(process.stdout.readline(), 10))
        assert (line["event_id"], line["data"], line["actor_id"]) == (new.id, {"n": "new"}, "ann")
        process.send_signal(signal.SIGINT)  # Ctrl-C
        code = await asyncio.wait_for(process.wait(), 10)
        assert process.stderr is not None
        errors = (await process.stderr.read()).decode()
        assert (code, errors) == (0, "")  # no traceback, no error
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_dlq_replay_and_drop_from_the_command_line(redis, servers):
    event = Event(type="newThing", data={"n": 1}, producer="test")
    letters = [
        await redis.xadd(
            "events:dlq",
            {
                "stream": event.stream,
                "entry_id": "1-0",
                "group": "fragile_svc",
                "event_id": event.id,
                "error": "ValueError: nope",
                "deliveries": "5",
                "envelope": json.dumps(event.to_fields()),
            },
        )
        for _ in range(2)
    ]
    url = servers.redis.url
    code, out, _ = await swarm("dlq", "replay", letters[0], redis_url=url)
    assert code == 0
    [(entry_id, fields)] = await redis.xrange(event.stream)
    replayed = f"replayed dead letter {letters[0]} to {event.stream} as entry {entry_id} for group fragile_svc"
    assert out.strip() == replayed
    assert fields == {**event.to_fields(), "replay_for": "fragile_svc"}
    code, out, _ = await swarm("dlq", "drop", letters[1], redis_url=url)
    assert (code, out.strip()) == (0, f"dropped dead letter {letters[1]}")
    assert await redis.xlen("events:dlq") == 0
    code, _, err = await swarm("dlq", "show", letters[1], redis_url=url)
    assert (code, err.strip()) == (1, f"error: no dead letter {letters[1]}")


async def test_without_a_running_system_the_commands_say_how_to_point_them_at_one(servers):
    env = {key: value for key, value in cli_env(servers.redis.url).items() if key != "REDIS_URL"}
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        *SWARM, "streams", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _out, err = await process.communicate()
    assert process.returncode == 1
    assert "swarm up" in err.decode() and "REDIS_URL" in err.decode()
    assert time.monotonic() - started < 20


async def test_colours_on_a_terminal_only(redis, servers):
    await redis.xadd("events:newThing", {"id": "e1", "type": "newThing", "data": "{}"})
    await redis.xadd("events:dlq", {"stream": "events:newThing", "group": "g", "envelope": "{}"})
    leader, follower = pty.openpty()
    try:
        process = await asyncio.create_subprocess_exec(
            *SWARM, "streams", env=cli_env(servers.redis.url), stdout=follower, stderr=subprocess.DEVNULL
        )
        os.close(follower)
        assert await asyncio.wait_for(process.wait(), 20) == 0
        on_terminal = b""
        while chunk := await asyncio.to_thread(_read_pty, leader):
            on_terminal += chunk
    finally:
        os.close(leader)
    assert ANSI_ESCAPE.encode() in on_terminal and b"events:newThing" in on_terminal
    code, piped, _ = await swarm("streams", redis_url=servers.redis.url)
    assert code == 0 and "events:newThing" in piped and ANSI_ESCAPE not in piped


def _read_pty(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO: the other side is closed and everything was read
        return b""
