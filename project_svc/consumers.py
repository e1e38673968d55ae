"""Event handlers project_svc runs for other services' events (its `HANDLERS` table).

- newUser/updateUser keep the local user replica (version-guarded, see common/contracts/users.py).
- newComment/updateComment/deleteComment carry the card's comment count after the change with its
  own counter, `total_comments_version`: a count is applied only if its counter is newer than the
  one stored, so counts arriving late, twice or out of order never move the card backwards. An
  event for a card that is unknown here (deleted, or never seen) changes nothing: a deleted card is
  not resurrected by a late comment event.
"""

from __future__ import annotations

import asyncpg
import structlog

from common.contracts.users import USER_REPLICA_HANDLERS
from common.core.envelope import Event
from common.messaging.handlers import Handler
from project_svc import store
from project_svc.schemas import CommentCountSchema

log = structlog.get_logger("project.consumers")

_comment_count = CommentCountSchema()


async def apply_comment_count(event: Event, conn: asyncpg.Connection) -> None:
    data = _comment_count.load(event.data)
    card_id = str(data["card_id"])
    written = await store.apply_comment_count(conn, card_id, data["total_comments"], data["total_comments_version"])
    if not written:
        log.debug("card.comment_count_skipped", card_id=card_id, version=data["total_comments_version"])


HANDLERS: dict[str, Handler] = {
    **USER_REPLICA_HANDLERS,
    "newComment": apply_comment_count,
    "updateComment": apply_comment_count,
    "deleteComment": apply_comment_count,
}
