"""The admin API of stream inspection, through the gateway: who may call it, and what it shows after a
scripted scenario run by the real services."""

from __future__ import annotations

import re
from typing import Any

from aiohttp.test_utils import TestClient

from common.redis.ids import entry_key
from gateway.admin import ROUTES
from tests.common.messaging.views.conftest import AUDIT_CONSUMER, AUDIT_GROUP, THING_STREAM, Groups, Scenario
from tests.helpers import eventually

ADMIN = "/api/v1/admin"


def concrete(path: str) -> str:
    """A route template with its placeholders filled (`/dlq/{id}` → `/dlq/1-0`)."""
    return re.sub(r"\{[^}]+\}", lambda m: "1-0" if m.group(0) == "{id}" else "newCard", path)


async def answer(client: TestClient, method: str, path: str, headers: dict[str, str] | None = None) -> Any:
    response = await client.request(method, ADMIN + path, headers=headers or {})
    body = await response.json() if response.status != 204 else None
    return response.status, body


async def test_a_non_admin_gets_403_and_an_anonymous_caller_401_on_every_admin_route(
    gateway, user_headers, admin_headers
):
    routes = [(method, concrete(path)) for method, path, _handler in ROUTES] + [("GET", "/no/such/thing")]
    assert len(routes) == 11
    for method, path in routes:
        status, body = await answer(gateway, method, path, user_headers)
        assert (status, body["error"]["code"]) == (403, "forbidden"), f"{method} {path} as a user"
        status, body = await answer(gateway, method, path)
        assert (status, body["error"]["code"]) == (401, "missing_token"), f"{method} {path} without a token"
    # The same routes answer an admin (404s here: the streams and dead letters do not exist).
    assert (await answer(gateway, "GET", "/streams", admin_headers))[0] == 200
    assert (await answer(gateway, "GET", "/dlq/1-0", admin_headers))[0] == 404
    assert (await answer(gateway, "GET", "/no/such/thing", admin_headers))[0] == 404


async def test_bad_query_parameters_are_400_and_unknown_names_404(gateway, admin_headers, redis):
    await redis.xadd("events:newThing", {"id": "e1", "type": "newThing", "data": "{}"})
    for path in (
        "/streams/newThing/entries?count=0",
        "/streams/newThing/entries?from=yesterday",
        "/streams/newThing/entries?reverse=maybe",
        "/streams/newThing/entries?colour=blue",
        "/streams/newThing/pending/g?count=100000",
        "/events",
        "/dlq?from=x",
    ):
        status, body = await answer(gateway, "GET", path, admin_headers)
        assert (status, body["error"]["code"]) == (400, "validation_error"), path
    for method, path in (
        ("GET", "/streams/nothing"),
        ("GET", "/streams/nothing/entries"),
        ("GET", "/streams/newThing/pending/nobody_svc"),
        ("GET", "/events/no-such-event"),
        ("GET", "/dlq/123-0"),
        ("GET", "/dlq/not-an-id"),
        ("POST", "/dlq/123-0/replay"),
        ("DELETE", "/dlq/123-0"),
    ):
        status, body = await answer(gateway, method, path, admin_headers)
        assert (status, body["error"]["code"]) == (404, "not_found"), f"{method} {path}"


async def test_a_wrong_method_on_an_admin_route_is_a_405_naming_the_methods_it_takes(gateway, admin_headers):
    for method, path, allowed in (
        ("TRACE", "/streams", "GET,HEAD"),
        ("POST", "/streams/newCard/entries", "GET,HEAD"),
        ("PUT", "/dlq/1-0", "DELETE,GET,HEAD"),
        ("GET", "/dlq/1-0/replay", "POST"),
    ):
        response = await gateway.request(method, f"/api/v1/admin{path}", headers=admin_headers)
        assert response.status == 405, f"{method} {path}"
        assert response.headers["Allow"] == allowed
        assert (await response.json())["error"]["code"] == "method_not_allowed"


async def test_after_the_scripted_scenario_each_view_shows_the_right_numbers(scenario: Scenario, admin_headers):
    gateway = scenario.system.gateway

    async def get(path: str) -> Any:
        status, body = await answer(gateway, "GET", path, admin_headers)
        assert status == 200, (path, body)
        return body

    overview = await get("/streams")
    by_name = {item["stream"]: item for item in overview["items"]}
    assert overview["dead_letters"] == 1
    assert "events:dlq" not in by_name
    new_user, new_card = by_name["events:newUser"], by_name["events:newCard"]
    assert (new_user["length"], new_user["lag"], new_user["pending"]) == (2, 0, 0)
    assert new_user["groups"] == ["comment_svc", "notif_svc", "project_svc"]
    assert (new_card["length"], new_card["lag"], new_card["pending"], new_card["dead_letters"]) == (2, 1, 1, 1)
    assert new_card["groups"] == [AUDIT_GROUP, "comment_svc"]
    assert new_card["last_entry"]["id"] == scenario.malformed_entry
    assert by_name["events:newComment"]["length"] == 1
    assert by_name["events:newProject"]["length"] == 1

    detail = await get("/streams/newCard")  # without the prefix, as the CLI allows too
    groups = {group["name"]: group for group in detail["groups"]}
    assert (groups["comment_svc"]["pending"], groups["comment_svc"]["lag"]) == (0, 0)
    assert groups["comment_svc"]["last_delivered"]["id"] == scenario.malformed_entry
    audit = groups[AUDIT_GROUP]
    assert (audit["pending"], audit["lag"], audit["lag_source"]) == (1, 1, "redis")
    assert [(c["name"], c["pending"]) for c in audit["consumers"]] == [(AUDIT_CONSUMER, 1)]
    assert audit["consumers"][0]["idle_ms"] >= 0

    entries = await get("/streams/events:newCard/entries?count=1")
    [card_entry] = entries["items"]
    assert card_entry["data"]["id"] == scenario.card["id"]  # the data JSON, decoded
    assert card_entry["data"]["title"] == "Fix the flux capacitor"
    assert card_entry["correlation_id"] == scenario.request_ids["card"]
    assert card_entry["time"].endswith("Z") and card_entry["malformed"] is None
    assert entries["next_from"] == scenario.malformed_entry
    newest = await get(f"/streams/newCard/entries?reverse=true&from={scenario.malformed_entry}")
    assert [e["id"] for e in newest["items"]] == [scenario.malformed_entry, card_entry["id"]]
    assert newest["items"][0]["malformed"] == "data is not JSON"

    pending = await get(f"/streams/newCard/pending/{AUDIT_GROUP}")
    assert (pending["pending"], pending["consumers"]) == (1, {AUDIT_CONSUMER: 1})
    [held] = pending["items"]
    assert (held["id"], held["consumer"], held["deliveries"]) == (card_entry["id"], AUDIT_CONSUMER, 1)
    assert held["event_id"] == card_entry["event_id"]

    found = await get(f"/events/{card_entry['event_id']}")
    [hit] = found["items"]
    states = {state["group"]: state for state in hit["groups"]}
    assert states["comment_svc"]["state"] == "acknowledged"
    assert states["comment_svc"]["ack_delay_ms"] >= 0
    assert (states[AUDIT_GROUP]["state"], states[AUDIT_GROUP]["consumer"]) == ("pending", AUDIT_CONSUMER)

    dlq = await get("/dlq")
    [letter] = dlq["items"]
    assert (letter["id"], letter["stream"], letter["entry_id"]) == (
        scenario.dead_letter_id,
        "events:newCard",
        scenario.malformed_entry,
    )
    assert (letter["group"], letter["deliveries"]) == ("comment_svc", 1)
    assert "malformed envelope" in letter["error"]
    assert (await get(f"/dlq/{letter['id']}"))["envelope"]["data"] == "{oops"


async def test_a_request_is_traced_across_streams_with_who_processed_each_event(scenario: Scenario, admin_headers):
    gateway = scenario.system.gateway
    request_id = scenario.request_ids["comment"]
    status, trace = await answer(gateway, "GET", f"/events?correlation_id={request_id}", admin_headers)
    assert status == 200
    hits = trace["items"]
    assert [hit["entry"]["correlation_id"] for hit in hits] == [request_id] * len(hits)
    assert hits[0]["entry"]["type"] == "newComment"  # published first: the comment, then its notice
    assert {hit["entry"]["type"] for hit in hits} == {"newComment", "newNotif"}
    assert [entry_key(hit["entry"]["id"]) for hit in hits] == sorted(entry_key(hit["entry"]["id"]) for hit in hits)
    comment_states = {state["group"]: state["state"] for state in hits[0]["groups"]}
    assert comment_states == {"project_svc": "acknowledged"}
    for hit in hits:
        for state in hit["groups"]:
            assert state["acked_at"] is not None and state["ack_delay_ms"] >= 0, state
    notice_groups = {state["group"] for hit in hits[1:] for state in hit["groups"]}
    assert notice_groups == {"notif_svc"}
    assert trace["dead_letters"] == []

    status, broken = await answer(gateway, "GET", f"/events?correlation_id=req-broken-{request_id[-8:]}", admin_headers)
    [letter] = broken["dead_letters"]
    assert letter["id"] == scenario.dead_letter_id
    assert [state["state"] for state in broken["items"][0]["groups"] if state["group"] == "comment_svc"] == [
        "dead_lettered"
    ]


async def test_replaying_a_dead_letter_makes_its_group_process_it_once(groups: Groups, gateway, admin_headers, redis):
    poison = await groups.publish("poison")
    await groups.publish("fine")
    letters = await eventually(lambda: redis.xrange("events:dlq"), what="poison dead-lettered by fragile_svc")
    await eventually(lambda: _applied(groups, "steady_svc", ["poison", "fine"]), what="steady_svc applied both")
    [(letter_id, letter)] = letters
    assert (letter["group"], letter["event_id"]) == ("fragile_svc", poison.id)
    assert groups.applied["fragile_svc"] == ["fine"]

    groups.broken = False  # the bug is fixed; put the event back for the group that failed it
    status, replayed = await answer(gateway, "POST", f"/dlq/{letter_id}/replay", admin_headers)
    assert status == 200
    assert (replayed["stream"], replayed["group"], replayed["event_id"]) == (THING_STREAM, "fragile_svc", poison.id)
    await eventually(lambda: _applied(groups, "fragile_svc", ["fine", "poison"]), what="fragile_svc applied it")

    async def all_acknowledged() -> bool:
        _status, found = await answer(gateway, "GET", f"/events/{poison.id}", admin_headers)
        replay = [hit for hit in found["items"] if hit["entry"]["id"] == replayed["entry_id"]]
        return bool(replay) and all(state["state"] == "acknowledged" for state in replay[0]["groups"])

    await eventually(all_acknowledged, what="both groups acknowledged the replayed entry")
    assert groups.applied == {"fragile_svc": ["fine", "poison"], "steady_svc": ["poison", "fine"]}  # once each
    status, found = await answer(gateway, "GET", f"/events/{poison.id}", admin_headers)
    replay = next(hit for hit in found["items"] if hit["entry"]["id"] == replayed["entry_id"])
    skipped = {state["group"]: state["skipped"] for state in replay["groups"]}
    assert skipped == {"fragile_svc": False, "steady_svc": True}
    # Each group's recorded ack time sits on the entry it processed: fragile_svc's on the replay,
    # steady_svc's on the original (it skipped the replay).
    original = next(hit for hit in found["items"] if hit["entry"]["id"] != replayed["entry_id"])
    acked = {
        (which, state["group"]): state["acked_at"] is not None
        for which, hit in (("original", original), ("replay", replay))
        for state in hit["groups"]
    }
    assert acked == {
        ("original", "fragile_svc"): False,
        ("original", "steady_svc"): True,
        ("replay", "fragile_svc"): True,
        ("replay", "steady_svc"): False,
    }
    assert found["dead_letters"] == []
    assert await redis.xlen("events:dlq") == 0
    # Replayed already: a second replay (or a drop) of the same id finds nothing.
    assert (await answer(gateway, "POST", f"/dlq/{letter_id}/replay", admin_headers))[0] == 404
    assert (await answer(gateway, "DELETE", f"/dlq/{letter_id}", admin_headers))[0] == 404


async def test_dropping_a_dead_letter_removes_it_for_good(groups: Groups, gateway, admin_headers, redis):
    await groups.publish("poison")
    [(letter_id, _)] = await eventually(lambda: redis.xrange("events:dlq"), what="poison dead-lettered")
    status, _ = await answer(gateway, "DELETE", f"/dlq/{letter_id}", admin_headers)
    assert status == 204
    status, listed = await answer(gateway, "GET", "/dlq", admin_headers)
    assert (listed["items"], listed["total"]) == ([], 0)
    assert groups.applied["fragile_svc"] == []


async def _applied(groups: Groups, group: str, names: list[str]) -> bool:
    return groups.applied[group] == names
