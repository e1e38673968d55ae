"""What project_svc is, for every tool that reads it (`common.contracts.manifest`): its app and routes, the
events it publishes and consumes with their schemas, its snapshots, and the replica checks of its copies.

Light on purpose: only its schemas are imported here; the rest is imported when a tool asks for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from common.contracts.checks import Mirror
from common.contracts.manifest import ServiceManifest
from common.contracts.notices import NOTICE_EVENT, NoticeSchema
from common.contracts.users import UserReplicaSchema
from common.messaging.republish import Snapshot
from project_svc.schemas import (
    CardDeletedEventSchema,
    CardEventSchema,
    CardStatusEventSchema,
    CommentCountSchema,
    MemberEventSchema,
    ProjectDeletedEventSchema,
    ProjectEventSchema,
)


def _routes() -> Callable[[Any], None]:
    from project_svc.api import add_routes

    return add_routes


def _snapshots() -> Mapping[str, Snapshot]:
    from project_svc.service import snapshot_cards, snapshot_projects

    return {"projects": snapshot_projects, "cards": snapshot_cards}


def _check_queries() -> Mapping[str, str]:
    from project_svc.store import CHECK_QUERIES

    return CHECK_QUERIES


MANIFEST = ServiceManifest(
    name="project_svc",
    app="project_svc.app:create_app",
    routes=_routes,
    # Each event it publishes → the schema its `data` is dumped with (AsyncAPI, the README's table, retention).
    publishes={
        "newProject": ProjectEventSchema,
        "updateProject": ProjectEventSchema,
        "deleteProject": ProjectDeletedEventSchema,
        "addMember": MemberEventSchema,
        "removeMember": MemberEventSchema,
        "newCard": CardEventSchema,
        "updateCard": CardEventSchema,
        "changeCardStatus": CardStatusEventSchema,
        "deleteCard": CardDeletedEventSchema,
        NOTICE_EVENT: NoticeSchema,
    },
    # Each event it consumes (consumers.HANDLERS) → the schema its handler loads `data` with.
    consumes={
        "newUser": UserReplicaSchema,
        "updateUser": UserReplicaSchema,
        "newComment": CommentCountSchema,
        "updateComment": CommentCountSchema,
        "deleteComment": CommentCountSchema,
    },
    snapshots=_snapshots,
    check_queries=_check_queries,
    # The user replica against auth_svc's users, and each card's total_comments against the comments
    # comment_svc really holds for it.
    replica_checks=(
        Mirror("project_svc.users", "auth_svc", "users", "project_svc", "users"),
        Mirror(
            "project_svc.cards.total_comments", "comment_svc", "comment_counts", "project_svc", "card_comment_totals"
        ),
    ),
)
