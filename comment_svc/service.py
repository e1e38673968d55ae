"""comment_svc use cases: write, read, edit and delete comments. Rules and events are decided here.

Everything is decided from this service's own replicas (users, projects, members, cards), never by
asking another service. Whoever is not an active member of a live project gets 404 for anything in it,
whether or not it exists (never 403: that would confirm it exists).

Every change and its events commit in one transaction (the outbox). A comment insert or delete also
moves its card's `total_comments` with its own counter `total_comments_version`, under the count row's
lock, so the count each event carries is exact and project_svc can order counts by that counter.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import structlog

from comment_svc import store
from comment_svc.events import comment_created_notice, comment_deleted_event, comment_event
from comment_svc.schemas import CommentSchema
from common.core.envelope import Event
from common.core.errors import Forbidden, NotFound
from common.core.formats import is_uuid
from common.core.ids import decode_keyset, encode_keyset
from common.messaging.outbox import enqueue
from common.service.runtime import Runtime
from common.service.tokens import Principal

log = structlog.get_logger("comment")

CARD_NOT_FOUND = "card not found"
COMMENT_NOT_FOUND = "comment not found"

_comment_view = CommentSchema()


def comment_view(comment: dict[str, Any]) -> dict[str, Any]:
    return _comment_view.dump(comment)


def _counts(card: dict[str, Any]) -> dict[str, int]:
    return {"total_comments": card["total_comments"], "total_comments_version": card["total_comments_version"]}


class CommentService:
    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime

    async def create(self, caller: Principal, card_id: str, body: str) -> dict[str, Any]:
        if not is_uuid(card_id):
            raise NotFound(CARD_NOT_FOUND)
        comment_id = str(uuid.uuid4())
        async with self._rt.db().acquire() as conn, conn.transaction():
            # Locks the card row until commit: concurrent comments on it are counted one at a time.
            card = await store.count_comment(conn, card_id, +1, member_id=caller.user_id)
            if card is None:
                raise NotFound(CARD_NOT_FOUND)
            project_id = card["project_id"]
            earlier = await store.commenters(conn, card_id)
            comment = await store.insert_comment(conn, comment_id, card_id, project_id, caller.user_id, body)
            candidates = [card["created_by"], card["assignee_id"], *earlier]
            members = await store.active_members_among(conn, project_id, candidates)
            recipients = [user_id for user_id in candidates if user_id in members]
            await enqueue(
                conn,
                [
                    comment_event("newComment", comment, _counts(card), caller.user_id),
                    *comment_created_notice(comment, card["title"], recipients, caller),
                ],
            )
        log.info("comment.created", comment_id=comment_id, card_id=card_id, project_id=project_id)
        return comment

    async def list_for_card(
        self, caller: Principal, card_id: str, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        after = decode_keyset(cursor) if cursor is not None else None
        if not is_uuid(card_id):
            raise NotFound(CARD_NOT_FOUND)
        async with self._rt.db().acquire() as conn:
            if await store.visible_card(conn, card_id, caller.user_id) is None:
                raise NotFound(CARD_NOT_FOUND)
            rows = await store.list_comments(conn, card_id, limit + 1, after)
        page = rows[:limit]
        next_cursor = encode_keyset(page[-1]["created_at"], page[-1]["id"]) if len(rows) > limit else None
        return page, next_cursor

    async def get(self, caller: Principal, comment_id: str) -> dict[str, Any]:
        if not is_uuid(comment_id):
            raise NotFound(COMMENT_NOT_FOUND)
        async with self._rt.db().acquire() as conn:
            comment = await store.visible_comment(conn, comment_id, caller.user_id)
        if comment is None:
            raise NotFound(COMMENT_NOT_FOUND)
        return comment

    async def update(self, caller: Principal, comment_id: str, body: str) -> dict[str, Any]:
        if not is_uuid(comment_id):
            raise NotFound(COMMENT_NOT_FOUND)
        async with self._rt.db().acquire() as conn, conn.transaction():
            comment = await store.visible_comment(conn, comment_id, caller.user_id, for_update=True)
            if comment is None:
                raise NotFound(COMMENT_NOT_FOUND)
            if comment["author_id"] != caller.user_id:
                raise Forbidden("only its author may edit a comment")
            if comment["body"] == body:
                return comment  # nothing changed: no new version, no event
            updated = await store.update_comment_body(conn, comment_id, body)
            # The count is unchanged; it travels with its own counter, so a stale pair is harmless.
            counts = await store.card_counts(conn, comment["card_id"])
            await enqueue(conn, [comment_event("updateComment", updated, counts, caller.user_id)])
        log.info("comment.updated", comment_id=comment_id, version=updated["version"])
        return updated

    async def delete(self, caller: Principal, comment_id: str) -> None:
        if not is_uuid(comment_id):
            raise NotFound(COMMENT_NOT_FOUND)
        async with self._rt.db().acquire() as conn, conn.transaction():
            comment = await store.visible_comment(conn, comment_id, caller.user_id)
            if comment is None:
                raise NotFound(COMMENT_NOT_FOUND)
            if caller.user_id not in (comment["author_id"], comment["owner_id"]):
                raise Forbidden("only its author or the project owner may delete a comment")
            card = await store.count_comment(conn, comment["card_id"], -1)
            deleted = await store.delete_comment(conn, comment_id) if card is not None else None
            if card is None or deleted is None:
                # The card went, or a concurrent delete of this comment committed while we waited for
                # the card's lock: raising rolls our decrement back, so the count stays exact.
                raise NotFound(COMMENT_NOT_FOUND)
            await enqueue(conn, [comment_deleted_event(deleted, _counts(card), caller.user_id)])
        log.info("comment.deleted", comment_id=comment_id, card_id=comment["card_id"])


async def snapshot_comments(conn: asyncpg.Connection, after: str | None, limit: int) -> tuple[list[Event], str | None]:
    """Each comment with its card's current count and counter (what project_svc keeps of them)."""
    comments = await store.comments_page(conn, after, limit)
    batch = [comment_event("newComment", comment, _counts(comment), "") for comment in comments]
    return batch, comments[-1]["id"] if len(comments) == limit else None
