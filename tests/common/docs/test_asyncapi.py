"""The AsyncAPI document of the event catalog: valid AsyncAPI 3.0 (against the official JSON schema),
covering every event of SPEC §4 with its producers and consumer groups, generated from the schemas the
services really dump and load with, served by the gateway, and rendered as the README's event table.

`asyncapi-3.0.0.schema.json` beside this file is `schemas/3.0.0.json` of the npm package
`@asyncapi/specs` 6.11.1, vendored because no pip package ships it (Apache-2.0, licence in
`asyncapi-specs.LICENSE`; copyright 2016-2025 AsyncAPI Initiative)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from aiohttp.test_utils import TestClient

from common.contracts.notices import notice
from common.core.envelope import Event
from common.docs import asyncapi
from common.service.tokens import Principal
from tests.common.docs.conftest import REPO_ROOT
from tests.common.docs.spec_tables import SPEC_SECTION_4_ROWS

ASYNCAPI_SCHEMA = Path(__file__).parent / "asyncapi-3.0.0.schema.json"
SPEC_EVENTS = {
    "newUser": "auth_svc",
    "updateUser": "auth_svc",
    "newProject": "project_svc",
    "updateProject": "project_svc",
    "deleteProject": "project_svc",
    "addMember": "project_svc",
    "removeMember": "project_svc",
    "newCard": "project_svc",
    "updateCard": "project_svc",
    "changeCardStatus": "project_svc",
    "deleteCard": "project_svc",
    "newComment": "comment_svc",
    "updateComment": "comment_svc",
    "deleteComment": "comment_svc",
    "newNotif": "auth_svc, project_svc, comment_svc",
}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return asyncapi.document()


def producers_of(document: dict[str, Any], event: str) -> set[str]:
    return {key.partition(".")[0] for key, op in document["operations"].items() if _on(op, event, "send")}


def groups_of(document: dict[str, Any], event: str) -> set[str]:
    return {op["x-consumer-group"] for op in document["operations"].values() if _on(op, event, "receive")}


def _on(operation: dict[str, Any], event: str, action: str) -> bool:
    return bool(operation["channel"]["$ref"] == f"#/channels/{event}" and operation["action"] == action)


def schema_validator(document: dict[str, Any], ref: str) -> jsonschema.Draft7Validator:
    """A validator of the component `ref` points to, its own references resolved in the document."""
    return jsonschema.Draft7Validator({"$ref": ref, "components": document["components"]})


def test_the_document_is_valid_asyncapi_3(document: dict[str, Any]) -> None:
    schema = json.loads(ASYNCAPI_SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(document)]
    assert errors == []
    assert document["asyncapi"] == "3.0.0"


def test_a_broken_document_is_caught_by_the_same_check(document: dict[str, Any]) -> None:
    """The validation above can fail: the vendored schema really checks operations."""
    schema = json.loads(ASYNCAPI_SCHEMA.read_text())
    broken = json.loads(json.dumps(document))
    next(iter(broken["operations"].values()))["action"] = "publish"  # AsyncAPI 2's word, not 3's
    assert not jsonschema.Draft7Validator(schema).is_valid(broken)


def test_every_event_of_spec_section_4_with_its_producers_and_consumers(document: dict[str, Any]) -> None:
    assert set(document["channels"]) == set(SPEC_EVENTS)
    for event, channel in document["channels"].items():
        assert channel["address"] == f"events:{event}"
        assert producers_of(document, event) == set(SPEC_EVENTS[event].split(", ")), event
    # The SPEC's own table: producers and consumer groups row by row.
    rows = SPEC_SECTION_4_ROWS
    assert sorted(e for row in rows for e in row[0].split(", ")) == sorted(SPEC_EVENTS)
    for events, producers, consumers in rows:
        for event in events.split(", "):
            assert producers_of(document, event) == set(producers.split(", ")), event
            assert groups_of(document, event) == set(consumers.split(", ")), event


def test_the_envelope_is_documented_as_every_messages_headers(document: dict[str, Any]) -> None:
    envelope = document["components"]["schemas"]["Envelope"]
    assert set(envelope["properties"]) == {"id", "type", "producer", "occurred_at", "correlation_id", "actor_id"}
    for event, message in document["components"]["messages"].items():
        assert message["headers"]["allOf"][0] == {"$ref": "#/components/schemas/Envelope"}
        assert message["headers"]["allOf"][1]["properties"]["type"] == {"const": event}


def test_each_consumer_declares_the_events_its_handlers_take() -> None:
    """What the manifests consume (what the document shows) is exactly what the workers are given."""
    from comment_svc.consumers import HANDLERS as COMMENT_HANDLERS
    from comment_svc.manifest import MANIFEST as COMMENT
    from notif_svc.consumers import build_handlers
    from notif_svc.manifest import MANIFEST as NOTIF
    from project_svc.consumers import HANDLERS as PROJECT_HANDLERS
    from project_svc.manifest import MANIFEST as PROJECT

    PROJECT_CONSUMES, COMMENT_CONSUMES, NOTIF_CONSUMES = PROJECT.consumes, COMMENT.consumes, NOTIF.consumes

    assert set(PROJECT_CONSUMES) == set(PROJECT_HANDLERS)
    assert set(COMMENT_CONSUMES) == set(COMMENT_HANDLERS)
    assert set(NOTIF_CONSUMES) == set(build_handlers(None))  # type: ignore[arg-type]


def test_every_field_a_consumer_requires_is_sent_by_the_producers(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    checked = 0
    for key, operation in document["operations"].items():
        if operation["action"] != "receive":
            continue
        event = operation["channel"]["$ref"].rsplit("/", 1)[1]
        payload = schemas[document["components"]["messages"][event]["payload"]["$ref"].rsplit("/", 1)[1]]
        loads = schemas[operation["x-loads"]["$ref"].rsplit("/", 1)[1]]
        missing = set(loads.get("required", [])) - set(payload["required"])
        assert missing == set(), f"{key} requires {missing}, which no producer sends"
        checked += 1
    assert checked == 19  # 5 in project_svc, 11 in comment_svc, 3 in notif_svc


def _now() -> datetime:
    return datetime.now(UTC)


def _id() -> str:
    return str(uuid.uuid4())


def produced_events() -> list[Event]:
    """Events made by the producers' own code, as they would publish them."""
    from auth_svc.events import registration_notice, user_event
    from comment_svc.events import comment_deleted_event, comment_event
    from project_svc import events

    actor = Principal(_id(), _id(), "user", "alice", _id(), 0)
    user: dict[str, Any] = {
        "id": actor.user_id,
        "username": "alice",
        "email": "a@example.com",
        "full_name": "",
        "role": "user",
    }
    user |= {"created_at": _now(), "updated_at": _now(), "version": 1}
    project: dict[str, Any] = {"id": _id(), "title": "T", "description": "", "owner_id": actor.user_id, "version": 2}
    project |= {"created_at": _now(), "updated_at": _now()}
    card: dict[str, Any] = {"id": _id(), "project_id": project["id"], "title": "C", "description": "", "status": "todo"}
    card |= {"priority": "low", "due_date": None, "assignee_id": None, "created_by": actor.user_id, "version": 1}
    card |= {"created_at": _now(), "updated_at": _now(), "total_comments": 3}
    comment: dict[str, Any] = {
        "id": _id(),
        "card_id": card["id"],
        "project_id": project["id"],
        "author_id": actor.user_id,
    }
    comment |= {"body": "hi", "created_at": _now(), "updated_at": _now(), "version": 1}
    counts = {"total_comments": 1, "total_comments_version": 1}
    member: dict[str, Any] = {
        "project_id": project["id"],
        "user_id": _id(),
        "role": "member",
        "version": 1,
        "active": True,
    }
    return [
        user_event("newUser", user, actor.user_id),
        user_event("updateUser", user, actor.user_id),
        registration_notice(user),
        events.project_event("newProject", project, actor),
        events.project_deleted(project, actor),
        events.member_event(member, actor),
        events.member_event({**member, "active": False}, actor),
        events.card_event("newCard", {**card, "due_date": _now(), "assignee_id": _id()}, actor),
        events.card_status_changed({**card, "status": "done"}, "todo", actor),
        events.card_deleted(card, actor),
        comment_event("newComment", comment, counts, actor.user_id),
        comment_deleted_event(comment, counts, actor.user_id),
        *events.card_created_notice(project, card, [_id()], actor),
        notice("card_due_soon", recipients=[_id()], actor={"id": None}, message="soon", producer="project_svc"),  # type: ignore[list-item]
    ]


def test_what_the_producers_publish_matches_the_document(document: dict[str, Any]) -> None:
    produced = produced_events()
    for event in produced:
        wire = event.to_fields()  # what goes into the stream
        message = document["components"]["messages"][event.type]
        headers = {k: v for k, v in wire.items() if k != "data"}
        schema_validator(document, "#/components/schemas/Envelope").validate(headers)
        assert wire["producer"] in message["headers"]["allOf"][1]["properties"]["producer"]["enum"]
        schema_validator(document, message["payload"]["$ref"]).validate(orjson.loads(wire["data"]))
    assert {event.type for event in produced} == set(SPEC_EVENTS) - {"updateProject", "updateCard", "updateComment"}


def test_a_payload_that_breaks_the_contract_fails_validation(document: dict[str, Any]) -> None:
    ref = document["components"]["messages"]["newCard"]["payload"]["$ref"]
    validator = schema_validator(document, ref)
    card = orjson.loads(produced_events()[7].to_fields()["data"])
    validator.validate(card)
    assert not validator.is_valid({k: v for k, v in card.items() if k != "version"})
    assert not validator.is_valid({**card, "version": "1"})


async def test_the_gateway_serves_the_document_without_a_token(gateway: TestClient, document: dict[str, Any]) -> None:
    response = await gateway.get("/api/v1/asyncapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.json() == json.loads(orjson.dumps(document))


def test_the_readme_event_table_is_generated_from_the_document(document: dict[str, Any]) -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert asyncapi.TABLE_BEGIN_PREFIX in readme
    table = asyncapi.event_table(document)
    assert asyncapi.with_table(readme, table) == readme, "run: python -m common.docs.asyncapi --readme README.md"
    for event in SPEC_EVENTS:
        assert f"| `{event}` | `events:{event}` |" in table


def test_the_table_command_rewrites_a_stale_readme_and_checks_it(tmp_path: Path, capsys: Any) -> None:
    stale = tmp_path / "README.md"
    stale.write_text(f"# x\n\n{asyncapi.TABLE_BEGIN}\n| old |\n{asyncapi.TABLE_END}\n\nafter\n")
    assert asyncapi.main(["--readme", str(stale), "--check"]) == 1
    assert asyncapi.main(["--readme", str(stale)]) == 0
    assert asyncapi.main(["--readme", str(stale), "--check"]) == 0
    text = stale.read_text()
    assert "| old |" not in text and "| `newUser` | `events:newUser` | auth_svc |" in text
    assert text.startswith("# x\n") and text.endswith("\n\nafter\n")
    capsys.readouterr()
