"""What notif_svc is, for every tool that reads it (`common.contracts.manifest`): its app and routes, the
events it consumes with their schemas (it publishes none), and the checks of its PostgreSQL data.

Light on purpose: only its schemas are imported here; the rest is imported when a tool asks for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from common.contracts.checks import Invariant, Mirror
from common.contracts.manifest import ServiceManifest
from common.contracts.notices import NOTICE_EVENT, NoticeSchema
from common.contracts.users import UserReplicaSchema


def _routes() -> Callable[[Any], None]:
    from notif_svc.api import add_routes

    return add_routes


def _check_queries() -> Mapping[str, str]:
    from notif_svc.store_postgres import CHECK_QUERIES

    return CHECK_QUERIES


MANIFEST = ServiceManifest(
    name="notif_svc",
    app="notif_svc.app:create_app",
    routes=_routes,
    # Each event it consumes (consumers.build_handlers) → the schema its handler loads `data` with.
    consumes={
        "newUser": UserReplicaSchema,
        "updateUser": UserReplicaSchema,
        NOTICE_EVENT: NoticeSchema,
    },
    check_queries=_check_queries,
    # The user replica against auth_svc's users, and one notification per (event, recipient) in the
    # PostgreSQL store (MongoDB's unique index keeps its own).
    replica_checks=(
        Mirror("notif_svc.users", "auth_svc", "users", "notif_svc", "users"),
        Invariant("notif_svc.one_notification_per_event_and_recipient", "notif_svc", "duplicate_notifications"),
    ),
)
