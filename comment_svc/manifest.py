"""What comment_svc is, for every tool that reads it (`common.contracts.manifest`): its app and routes, the
events it publishes and consumes with their schemas, its snapshots, and the checks of its replicas.

Light on purpose: only its schemas are imported here; the rest is imported when a tool asks for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from comment_svc.schemas import (
    CardDeletedEventSchema,
    CardEventSchema,
    CommentDeletedEventSchema,
    CommentEventSchema,
    MemberEventSchema,
    ProjectDeletedEventSchema,
    ProjectEventSchema,
)
from common.contracts.checks import Invariant, Mirror
from common.contracts.manifest import ServiceManifest
from common.contracts.notices import NOTICE_EVENT, NoticeSchema
from common.contracts.users import UserReplicaSchema
from common.messaging.republish import Snapshot


def _routes() -> Callable[[Any], None]:
    from comment_svc.api import add_routes

    return add_routes


def _snapshots() -> Mapping[str, Snapshot]:
    from comment_svc.service import snapshot_comments

    return {"comments": snapshot_comments}


def _check_queries() -> Mapping[str, str]:
    from comment_svc.store import CHECK_QUERIES

    return CHECK_QUERIES


MANIFEST = ServiceManifest(
    name="comment_svc",
    app="comment_svc.app:create_app",
    routes=_routes,
    # Each event it publishes → the schema its `data` is dumped with (AsyncAPI, the README's table, retention).
    publishes={
        "newComment": CommentEventSchema,
        "updateComment": CommentEventSchema,
        "deleteComment": CommentDeletedEventSchema,
        NOTICE_EVENT: NoticeSchema,
    },
    # Each event it consumes (consumers.HANDLERS) → the schema its handler loads `data` with.
    consumes={
        "newUser": UserReplicaSchema,
        "updateUser": UserReplicaSchema,
        "newProject": ProjectEventSchema,
        "updateProject": ProjectEventSchema,
        "deleteProject": ProjectDeletedEventSchema,
        "addMember": MemberEventSchema,
        "removeMember": MemberEventSchema,
        "newCard": CardEventSchema,
        "updateCard": CardEventSchema,
        "changeCardStatus": CardEventSchema,
        "deleteCard": CardDeletedEventSchema,
    },
    snapshots=_snapshots,
    check_queries=_check_queries,
    # Every replica against its source, and this service's own comment counts against its comments (the
    # counts it publishes to project_svc).
    replica_checks=(
        Mirror("comment_svc.users", "auth_svc", "users", "comment_svc", "users"),
        Mirror("comment_svc.projects", "project_svc", "projects", "comment_svc", "projects"),
        Mirror("comment_svc.members", "project_svc", "members", "comment_svc", "members", key_columns=2),
        Mirror("comment_svc.cards", "project_svc", "cards", "comment_svc", "cards"),
        Invariant("comment_svc.comment_counts", "comment_svc", "miscounted_cards"),
        Invariant("comment_svc.orphan_comments", "comment_svc", "orphan_comments"),
    ),
)
