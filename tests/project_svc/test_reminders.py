"""Due-date reminders: card_due_soon to the assignee of an open card due within 24 h, once per due date,
however many scans (and replicas) run at once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from common.contracts.notices import SYSTEM_ACTOR
from common.core.envelope import Event
from common.http.app import runtime_of
from project_svc.app import REMINDERS, create_app
from project_svc.reminders import Reminders
from tests.helpers import eventually
from tests.project_svc.conftest import Api, User

# Far from the real clock, so the app's own reminder loop (scanning around the real now) never sees
# these cards: only the scans a test runs with this `now` do.
NOW = datetime(2031, 3, 4, 12, 0, tzinfo=UTC)
DAY = timedelta(hours=24)


def iso(moment: datetime) -> str:
    return moment.isoformat()


async def sent(api: Api) -> list[Event]:
    """Every card_due_soon published so far."""
    await api.settled()
    return [event for event in await api.events("newNotif") if event.data["type"] == "card_due_soon"]


@pytest.fixture
def reminders(client: TestClient) -> Reminders:
    """A scanner on the app's database, run by hand with an injected `now`."""
    return Reminders(runtime_of(client.server.app))


async def team(api: Api) -> tuple[User, User, dict[str, Any]]:
    alice, bob = await api.users("alice", "bob")
    project = await api.project(alice)
    await api.add(alice, project, bob)
    return alice, bob, project


async def test_a_card_due_within_a_day_reminds_its_assignee_once(api: Api, pool, reminders: Reminders):
    alice, bob, project = await team(api)
    card = await api.card(alice, project, "Ship it", assignee_id=bob.id, due_date=iso(NOW + timedelta(hours=2)))

    assert await reminders.run_once(NOW) == 1
    assert await reminders.run_once(NOW) == 0
    assert await reminders.run_once(NOW + timedelta(hours=1)) == 0

    (event,) = await sent(api)
    assert event.producer == "project_svc"
    assert event.data == {
        "type": "card_due_soon",
        "recipients": [bob.id],
        "actor": SYSTEM_ACTOR,
        "project_id": project["id"],
        "card_id": card["id"],
        "comment_id": None,
        "message": 'Card "Ship it" is due 2031-03-04T14:00:00Z',
    }


async def test_a_reminder_is_not_a_change_of_the_card(api: Api, pool, reminders: Reminders):
    alice, bob, project = await team(api)
    card = await api.card(alice, project, assignee_id=bob.id, due_date=iso(NOW + timedelta(hours=2)))
    query = "SELECT version, updated_at FROM cards WHERE id = $1"
    before = await pool.fetchrow(query, card["id"])

    assert await reminders.run_once(NOW) == 1

    assert await pool.fetchrow(query, card["id"]) == before
    assert await api.published("updateCard") == {"updateCard": 0}


async def test_only_open_assigned_cards_due_within_the_window_are_reminded(api: Api, reminders: Reminders):
    alice, bob, project = await team(api)
    soon = iso(NOW + timedelta(hours=3))
    skipped = [
        await api.card(alice, project, "done", assignee_id=bob.id, due_date=soon, status="done"),
        await api.card(alice, project, "nobody's", due_date=soon),
        await api.card(alice, project, "no date", assignee_id=bob.id),
        await api.card(alice, project, "overdue", assignee_id=bob.id, due_date=iso(NOW - timedelta(minutes=1))),
        await api.card(alice, project, "due now", assignee_id=bob.id, due_date=iso(NOW)),
        await api.card(alice, project, "too far", assignee_id=bob.id, due_date=iso(NOW + DAY + timedelta(seconds=1))),
    ]
    reminded = [
        await api.card(alice, project, "in review", assignee_id=bob.id, due_date=soon, status="review"),
        await api.card(alice, project, "last second", assignee_id=bob.id, due_date=iso(NOW + DAY)),
        await api.card(alice, project, "self-assigned", assignee_id=alice.id, due_date=soon),
    ]

    assert await reminders.run_once(NOW) == 3

    events = await sent(api)
    assert sorted(e.data["card_id"] for e in events) == sorted(card["id"] for card in reminded)
    assert not {e.data["card_id"] for e in events} & {card["id"] for card in skipped}
    by_card = {e.data["card_id"]: e.data["recipients"] for e in events}
    assert by_card[reminded[2]["id"]] == [alice.id]  # the system reminds; nobody is left out as the actor


async def test_a_new_due_date_rearms_the_reminder_and_other_changes_do_not(api: Api, reminders: Reminders):
    alice, bob, project = await team(api)
    card = await api.card(alice, project, assignee_id=bob.id, due_date=iso(NOW + timedelta(hours=2)))
    assert await reminders.run_once(NOW) == 1

    path = f"/cards/{card['id']}"
    await api.ok("PATCH", path, alice, json={"title": "Renamed", "status": "in_progress"})
    assert await reminders.run_once(NOW) == 0
    await api.ok("PATCH", path, alice, json={"due_date": iso(NOW + timedelta(hours=5))})
    assert await reminders.run_once(NOW) == 1

    messages = [e.data["message"] for e in await sent(api)]
    assert messages == ['Card "Fix it" is due 2031-03-04T14:00:00Z', 'Card "Renamed" is due 2031-03-04T17:00:00Z']


async def test_a_card_done_or_unassigned_before_the_scan_is_not_reminded(api: Api, reminders: Reminders):
    alice, bob, project = await team(api)
    soon = iso(NOW + timedelta(hours=2))
    finished = await api.card(alice, project, "finished", assignee_id=bob.id, due_date=soon)
    dropped = await api.card(alice, project, "dropped", assignee_id=bob.id, due_date=soon)
    await api.ok("PATCH", f"/cards/{finished['id']}", alice, json={"status": "done"})
    await api.ok("PATCH", f"/cards/{dropped['id']}", alice, json={"assignee_id": None})

    assert await reminders.run_once(NOW) == 0

    # Reopened before its due date, never reminded yet: the assignee hears of it after all.
    await api.ok("PATCH", f"/cards/{finished['id']}", alice, json={"status": "todo"})
    assert await reminders.run_once(NOW) == 1
    assert [e.data["card_id"] for e in await sent(api)] == [finished["id"]]


async def test_a_scan_takes_every_card_in_several_batches(api: Api, client: TestClient):
    alice, bob, project = await team(api)
    cards = [
        await api.card(alice, project, f"card {i}", assignee_id=bob.id, due_date=iso(NOW + timedelta(hours=i + 1)))
        for i in range(5)
    ]
    small = Reminders(runtime_of(client.server.app), batch_size=2)

    assert await small.run_once(NOW) == 5

    assert sorted(e.data["card_id"] for e in await sent(api)) == sorted(card["id"] for card in cards)


async def test_concurrent_scans_remind_each_card_exactly_once(api: Api, client: TestClient):
    alice, bob, project = await team(api)
    cards = await asyncio.gather(
        *(
            api.card(alice, project, f"card {i}", assignee_id=bob.id, due_date=iso(NOW + timedelta(minutes=i + 1)))
            for i in range(40)
        )
    )
    runtime = runtime_of(client.server.app)
    scanners = [Reminders(runtime, batch_size=3) for _ in range(4)]

    counts = await asyncio.gather(*(scanner.run_once(NOW) for scanner in scanners))

    assert sum(counts) == 40
    assert sum(1 for count in counts if count) > 1  # they really shared the work
    per_card = Counter(e.data["card_id"] for e in await sent(api))
    assert per_card == Counter({card["id"]: 1 for card in cards})


@pytest.fixture
async def start_project_svc(make_settings) -> AsyncIterator[Any]:  # type: ignore[no-untyped-def]
    started: list[TestClient] = []

    async def start(**overrides: Any) -> TestClient:
        client = TestClient(TestServer(create_app(make_settings(service_name="project_svc", **overrides))))
        await client.start_server()
        started.append(client)
        return client

    yield start
    for client in started:
        await client.close()


async def test_two_replicas_scanning_on_their_own_remind_each_card_exactly_once(api: Api, pool, start_project_svc):
    alice, bob, project = await team(api)
    due = iso(datetime.now(UTC) + timedelta(hours=1))  # the real clock: the replicas' loops scan around it
    cards = await asyncio.gather(
        *(api.card(alice, project, f"card {i}", assignee_id=bob.id, due_date=due) for i in range(20))
    )
    replicas = [await start_project_svc(reminder_interval_s=0.02, consumer_name=f"project_svc-{name}") for name in "ab"]
    loops = [replica.server.app[REMINDERS] for replica in replicas]

    async def all_reminded() -> bool:
        pending = await pool.fetchval("SELECT count(*) FROM cards WHERE reminded_due_date IS DISTINCT FROM due_date")
        return bool(pending == 0)

    await eventually(all_reminded, what="every card reminded")
    # Both loops scan twice more after that: any duplicate they were going to send is sent by then.
    marks = [loop.scans for loop in loops]

    async def scanned_again() -> bool:
        return all(loop.scans >= mark + 2 for loop, mark in zip(loops, marks, strict=True))

    await eventually(scanned_again, what="two more scans on each replica")

    per_card = Counter(e.data["card_id"] for e in await sent(api))
    assert per_card == Counter({card["id"]: 1 for card in cards})


async def test_the_loop_runs_in_the_app_and_stops_promptly(api: Api, redis, start_project_svc):
    alice, bob, project = await team(api)
    card = await api.card(alice, project, assignee_id=bob.id, due_date=iso(datetime.now(UTC) + timedelta(hours=3)))
    replica = await start_project_svc(reminder_interval_s=0.1, consumer_name="project_svc-fast")

    async def reminded() -> list[Event]:
        entries = await redis.xrange("events:newNotif")
        notices = [Event.from_fields(fields) for _, fields in entries]
        return [n for n in notices if n.data["type"] == "card_due_soon" and n.data["card_id"] == card["id"]]

    (notice,) = await eventually(reminded, what="the reminder in events:newNotif")
    assert notice.data["recipients"] == [bob.id]
    ready = await (await replica.get("/ready")).json()
    assert ready["checks"]["reminders"] == "ok"

    started = time.monotonic()
    await replica.close()  # the loop is between scans: stopping must not wait for the next one
    assert time.monotonic() - started < 3
