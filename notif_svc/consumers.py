"""notif_svc's event handlers: the users replica, and newNotif turned into one notification per recipient.

newNotif is stored idempotently by (event id, recipient) on top of the worker's inbox: a redelivery the
inbox lets through (MongoDB writes are not in the inbox's transaction) inserts nothing new. The
announcement that wakes readers is registered with `after_commit`, so nobody is woken before the data
is there, and nobody is woken for an event whose effects were rolled back.
"""

from __future__ import annotations

from functools import partial

import asyncpg

from common.contracts.notices import NOTICE_EVENT
from common.contracts.users import USER_REPLICA_HANDLERS
from common.core.envelope import Event
from common.messaging.handlers import Handler, after_commit
from notif_svc.service import NotificationService


def build_handlers(service: NotificationService) -> dict[str, Handler]:
    async def apply_notice(event: Event, conn: asyncpg.Connection) -> None:
        announcements = await service.store_notice(event, conn)
        after_commit(partial(service.announce, announcements))

    return {**USER_REPLICA_HANDLERS, NOTICE_EVENT: apply_notice}
