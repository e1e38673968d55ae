"""Each producer runs the retention trimmer over exactly the streams SPEC §2 says it publishes (its
manifest's `publishes`, which its app hands to the trimmer)."""

from __future__ import annotations

import importlib

import pytest

SPEC_PUBLISHES = {
    "auth_svc": {"newUser", "updateUser", "newNotif"},
    "project_svc": {
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
    },
    "comment_svc": {"newComment", "updateComment", "deleteComment", "newNotif"},
}


@pytest.mark.parametrize("service", sorted(SPEC_PUBLISHES))
def test_the_trimmed_streams_are_the_published_ones(service: str) -> None:
    manifest = importlib.import_module(f"{service}.manifest").MANIFEST
    assert set(manifest.publishes) == SPEC_PUBLISHES[service]
