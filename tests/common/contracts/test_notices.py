"""The newNotif contract shared by every producer: recipients deduplicated, the actor left out."""

from __future__ import annotations

import pytest

from common.contracts.notices import SYSTEM_ACTOR, NoticeSchema, notice

ACTOR = {"id": "a", "username": "alice"}


def test_the_actor_never_receives_a_notice_about_their_own_action():
    event = notice("card_created", recipients=["a", "b", "c"], actor=ACTOR, message="m", producer="project_svc")
    assert event is not None
    assert event.data["recipients"] == ["b", "c"]
    assert event.type == "newNotif" and event.actor_id == "a"


@pytest.mark.parametrize("kind", ["registration", "project_created"])
def test_notices_confirming_the_actors_own_action_go_to_the_actor(kind):
    event = notice(kind, recipients=["a"], actor=ACTOR, message="m", producer="x")
    assert event is not None and event.data["recipients"] == ["a"]


def test_recipients_are_deduplicated_in_order_and_missing_ones_skipped():
    event = notice("comment_created", recipients=["c", None, "b", "c", "b"], actor=ACTOR, message="m", producer="x")
    assert event is not None and event.data["recipients"] == ["c", "b"]


def test_nothing_is_published_when_nobody_is_left():
    assert notice("card_assigned", recipients=["a", None], actor=ACTOR, message="m", producer="x") is None


def test_an_unknown_type_is_a_programming_error():
    with pytest.raises(ValueError):
        notice("card_exploded", recipients=["b"], actor=ACTOR, message="m", producer="x")


def test_the_consumer_schema_reads_what_producers_write():
    event = notice("member_added", recipients=["b"], actor=ACTOR, message="hi", producer="x", project_id="p")
    assert event is not None
    loaded = NoticeSchema().load(event.data)
    assert loaded == {
        "type": "member_added",
        "recipients": ["b"],
        "actor": {"id": "a", "username": "alice"},
        "project_id": "p",
        "card_id": None,
        "comment_id": None,
        "message": "hi",
    }


def test_a_reminder_from_the_system_reaches_everyone_listed():
    event = notice("card_due_soon", recipients=["b"], actor=SYSTEM_ACTOR, message="due", producer="project_svc")
    assert event is not None and event.data["recipients"] == ["b"]
    assert NoticeSchema().load(event.data)["actor"] == {"id": None, "username": "taskswarm"}
    assert event.actor_id == ""
