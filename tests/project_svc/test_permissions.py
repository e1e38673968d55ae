"""Broken object-level authorization matrix: every endpoint, every kind of caller.

An outsider (valid token, not a member) and a caller naming an unknown id get 404 everywhere, as if
the project did not exist; a plain member gets 403 on the owner's actions and on deleting someone
else's card. A refused request changes nothing and publishes nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest

EVENT_TYPES = (
    "newProject",
    "updateProject",
    "deleteProject",
    "addMember",
    "removeMember",
    "newCard",
    "updateCard",
    "changeCardStatus",
    "deleteCard",
    "newNotif",
)


@dataclass
class Endpoint:
    method: str
    path: str  # {p}: project id, {c}: card id, {m}: an existing member's user id, {u}: a user to add
    body: dict[str, Any] | None
    member_status: int  # what a plain member gets: 403 for the owner's actions

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


ENDPOINTS = [
    Endpoint("GET", "/projects/{p}", None, 200),
    Endpoint("PATCH", "/projects/{p}", {"title": "Taken over"}, 403),
    Endpoint("DELETE", "/projects/{p}", None, 403),
    Endpoint("POST", "/projects/{p}/members", {"user_id": "{u}"}, 403),
    Endpoint("DELETE", "/projects/{p}/members/{m}", None, 403),
    Endpoint("POST", "/projects/{p}/cards", {"title": "Sneaky"}, 201),
    Endpoint("GET", "/projects/{p}/cards", None, 200),
    Endpoint("GET", "/cards/{c}", None, 200),
    Endpoint("PATCH", "/cards/{c}", {"status": "done"}, 200),
    Endpoint("DELETE", "/cards/{c}", None, 403),  # the card is the owner's, not the member's
]


@pytest.fixture
async def world(api):
    """alice owns a project with a card; bob is a plain member; eve is an outsider; carol could be added."""
    alice, bob, carol, eve = await api.users("alice", "bob", "carol", "eve")
    project = await api.project(alice)
    await api.add(alice, project, bob)
    card = await api.card(alice, project)
    ids = {"p": project["id"], "c": card["id"], "m": bob.id, "u": carol.id}
    return {"owner": alice, "member": bob, "outsider": eve}, ids


def _fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {key: _fill(item, ids) for key, item in value.items()}
    return value


async def _snapshot(api, pool) -> tuple[dict[str, int], list[Any]]:  # type: ignore[no-untyped-def]
    rows = await pool.fetch(
        "SELECT p.version, m.user_id, m.active, m.version AS mv, c.id, c.version AS cv "
        "FROM projects p JOIN members m ON m.project_id = p.id LEFT JOIN cards c ON c.project_id = p.id "
        "ORDER BY 2, 5"
    )
    return await api.published(*EVENT_TYPES), [tuple(r) for r in rows]


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
@pytest.mark.parametrize("caller", ["outsider", "unknown id"])
async def test_outsiders_and_unknown_ids_get_404_and_change_nothing(api, pool, world, endpoint, caller):
    users, ids = world
    user = users["outsider"]
    if caller == "unknown id":  # the owner herself, naming things that do not exist
        user = users["owner"]
        ids = {**ids, "p": str(uuid.uuid4()), "c": str(uuid.uuid4())}
    before = await _snapshot(api, pool)
    status, body = await api.call(endpoint.method, _fill(endpoint.path, ids), user, json=_fill(endpoint.body, ids))
    assert (status, body["error"]["code"]) == (404, "not_found")
    assert await _snapshot(api, pool) == before


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
async def test_a_plain_member_is_refused_the_owners_actions(api, pool, world, endpoint):
    users, ids = world
    before = await _snapshot(api, pool)
    status, body = await api.call(
        endpoint.method, _fill(endpoint.path, ids), users["member"], json=_fill(endpoint.body, ids)
    )
    assert status == endpoint.member_status, body
    if status == 403:
        assert body["error"]["code"] == "forbidden"
        assert await _snapshot(api, pool) == before


async def test_outsiders_do_not_see_the_project_in_their_listings(api, world):
    users, ids = world
    eve = users["outsider"]
    assert (await api.ok("GET", "/projects", eve))["total"] == 0
    assert (await api.ok("GET", "/cards", eve))["items"] == []
    assert (await api.ok("GET", "/cards", users["member"]))["items"][0]["id"] == ids["c"]
