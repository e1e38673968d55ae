"""What auth_svc is, for every tool that reads it (`common.contracts.manifest`): its app, routes and CLI,
the events it publishes with their schemas, what `swarm republish` can re-publish and `swarm check` read.

Light on purpose: only its schemas are imported here; the rest is imported when a tool asks for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from auth_svc.schemas import UserEventSchema
from common.contracts.manifest import ServiceManifest
from common.contracts.notices import NOTICE_EVENT, NoticeSchema
from common.messaging.republish import Snapshot


def _routes() -> Callable[[Any], None]:
    from auth_svc.api import add_routes

    return add_routes


def _snapshots() -> Mapping[str, Snapshot]:
    from auth_svc.service import snapshot_users

    return {"users": snapshot_users}


def _check_queries() -> Mapping[str, str]:
    from auth_svc.store import CHECK_QUERIES

    return CHECK_QUERIES


def _users_cli() -> Any:
    from auth_svc.cli import users_app

    return users_app


MANIFEST = ServiceManifest(
    name="auth_svc",
    app="auth_svc.app:create_app",
    routes=_routes,
    # Each event it publishes → the schema its `data` is dumped with (AsyncAPI, the README's table, retention).
    publishes={
        "newUser": UserEventSchema,
        "updateUser": UserEventSchema,
        NOTICE_EVENT: NoticeSchema,
    },
    snapshots=_snapshots,
    check_queries=_check_queries,
    cli={"users": _users_cli},
)
